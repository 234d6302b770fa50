"""The results in `workdir`: results.json and three CSVs (schema below).

* ``results.json``::

    {"schema_version": 2,
     "config": {...},                       # the config used
     "estimators": ["pathwise", ...],       # the ones trained, in order
     "data": {"num_train": 455, "num_test": 114, "dim": 31},
     "variance": {                          # per estimator, every
       "<estimator>": [                     # variance_every steps
         {"step": int,                      # SGD steps taken
          "wall_time_s": float,             # training time so far (no
                                            # compilation, measurement or
                                            # evaluation)
          "variance_loc": float,            # variance of the step's gradient
                                            # estimate, summed over the 31
                                            # mean parameters
          "variance_loc_se": float,         # its standard error (fourth
                                            # moment, evaluation module)
          "variance_log_scale": float,      # ... over the 31 log-scales
          "variance_log_scale_se": float,
          "cv_coefficient_loc": float|null, # score_function_cv_online: mean
          "cv_coefficient_log_scale": ...}, # of its coefficients; else null
         ...]},
     "evaluation": {                        # per estimator, every
       "<estimator>": [                     # eval_every steps
         {"step": int, "wall_time_s": float,
          "elbo": float,                    # train ELBO, num_eval_samples
                                            # draws (nats)
          "elbo_exact": float,              # by quadrature (rgrad.exact)
          "test_log_likelihood": float,     # log predictive, nats per point
          "test_accuracy": float}, ...]},
     "final": {"<estimator>": {<FINAL_FIELDS>}},
     "timing": {"platform": str, "device_count": int, "process_count": int,
                "wall_time_s": float}}      # the whole run

  ``final`` (:data:`FINAL_FIELDS`): the last evaluation row's ``elbo``,
  ``elbo_exact``, ``test_log_likelihood``, ``test_accuracy``; the training
  time ``wall_time_s`` and ``seconds_per_step``; over the run's variance
  rows the mean of :math:`\\log_{10}` of each variance
  (``log10_variance_loc``, ``log10_variance_log_scale``) and of the variance
  times the seconds per step (``log10_work_variance_loc``,
  ``log10_work_variance_log_scale``: variance per unit of compute); the
  ratios of the geometric-mean variances to pathwise's
  (``variance_ratio_loc``, ``variance_ratio_log_scale``; null without a
  pathwise run); and ``steps_to_target``, the first evaluated step whose
  exact ELBO is within ``TARGET_GAP`` nats of the best final exact ELBO of
  the run (null if never).

  The ``_se`` fields are standard errors of the measurement noise, given the
  training trajectory: the rows' measurements use independent draws (keys
  folded with the step), so the mean over :math:`n` rows of
  :math:`\\log_{10} V_i` has :math:`\\mathrm{SE} = \\sqrt{\\sum_i
  \\mathrm{se}_i^2} / n` with :math:`\\mathrm{se}_i = \\mathrm{SE}(V_i) / (V_i
  \\ln 10)` (the delta method; ``log10_variance_*_se``; the work-normalised
  means differ by the constant :math:`\\log_{10}` of the seconds per step and
  have the same SE), and the ratio :math:`r = 10^{L - L_{pw}}` of two runs
  has :math:`\\mathrm{SE}(r) = r \\ln 10\\, \\sqrt{\\mathrm{SE}(L)^2 +
  \\mathrm{SE}(L_{pw})^2}` (``variance_ratio_*_se``; 0 for pathwise itself,
  whose ratio is 1 by definition), which treats the two runs' measurements
  as independent: they share the measurement key, so two estimators that
  draw their noise alike see the same draws, and a positive correlation
  makes this SE conservative. None of these include the run-to-run spread
  of the trajectory (another seed).

* ``variance.csv``, ``evaluation.csv``: the rows, with a leading
  ``estimator`` column; ``final.csv``: one row per estimator.

The figures are :mod:`~experiments.logistic_regression.plots`'; the
checkpoints :mod:`experiments.common.checkpoints`'. Files are written on
process 0 only (:mod:`experiments.common.outputs`).
"""

import math
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from experiments.common import outputs
from experiments.logistic_regression import evaluation

SCHEMA_VERSION = 2
TOP_LEVEL_KEYS = (
  "schema_version",
  "config",
  "estimators",
  "data",
  "variance",
  "evaluation",
  "final",
  "timing",
)
VARIANCE_FIELDS = ("step", "wall_time_s", *evaluation.VARIANCE_METRICS)
EVALUATION_FIELDS = ("step", "wall_time_s", *evaluation.EVALUATION_METRICS)
FINAL_FIELDS = (
  "elbo",
  "elbo_exact",
  "test_log_likelihood",
  "test_accuracy",
  "wall_time_s",
  "seconds_per_step",
  "log10_variance_loc",
  "log10_variance_loc_se",
  "log10_variance_log_scale",
  "log10_variance_log_scale_se",
  "log10_work_variance_loc",
  "log10_work_variance_log_scale",
  "variance_ratio_loc",
  "variance_ratio_loc_se",
  "variance_ratio_log_scale",
  "variance_ratio_log_scale_se",
  "steps_to_target",
)
TIMING_FIELDS = ("platform", "device_count", "process_count", "wall_time_s")
# Nats below the best final exact ELBO that count as "reached".
TARGET_GAP = 1.0


def _mean_log10(values: Sequence[float]) -> float:
  return sum(math.log10(v) for v in values) / len(values)


def _mean_log10_se(values: Sequence[float], ses: Sequence[float]) -> float:
  """SE of `_mean_log10` for independent measurements (module docstring)."""
  terms = [
    (se / (v * math.log(10.0))) ** 2 for v, se in zip(values, ses, strict=True)
  ]
  return math.sqrt(sum(terms)) / len(values)


def final(
  names: Sequence[str],
  variance: dict[str, list[dict[str, Any]]],
  evaluation_rows: dict[str, list[dict[str, Any]]],
  wall_times: dict[str, float],
  num_steps: int,
) -> dict[str, dict[str, Any]]:
  """The ``final`` section (see the module docstring)."""
  best = max(evaluation_rows[n][-1]["elbo_exact"] for n in names)
  out = {}
  for n in names:
    last = evaluation_rows[n][-1]
    seconds = wall_times[n] / num_steps
    row = {k: last[k] for k in evaluation.EVALUATION_METRICS}
    row["wall_time_s"] = wall_times[n]
    row["seconds_per_step"] = seconds
    for part in ("loc", "log_scale"):
      values = [r[f"variance_{part}"] for r in variance[n]]
      ses = [r[f"variance_{part}_se"] for r in variance[n]]
      row[f"log10_variance_{part}"] = _mean_log10(values)
      row[f"log10_variance_{part}_se"] = _mean_log10_se(values, ses)
      row[f"log10_work_variance_{part}"] = _mean_log10(
        [v * seconds for v in values]
      )
    reached = [
      r["step"]
      for r in evaluation_rows[n]
      if r["elbo_exact"] >= best - TARGET_GAP
    ]
    row["steps_to_target"] = reached[0] if reached else None
    out[n] = row
  for n in names:
    for part in ("loc", "log_scale"):
      key = f"log10_variance_{part}"
      ratio = se = None
      if "pathwise" in out:
        ratio = 10.0 ** (out[n][key] - out["pathwise"][key])
        se = 0.0
        if n != "pathwise":
          se = (
            ratio
            * math.log(10.0)
            * math.hypot(out[n][f"{key}_se"], out["pathwise"][f"{key}_se"])
          )
      out[n][f"variance_ratio_{part}"] = ratio
      out[n][f"variance_ratio_{part}_se"] = se
    out[n] = {k: out[n][k] for k in FINAL_FIELDS}
  return out


def results(
  config: ml_collections.ConfigDict,
  names: Sequence[str],
  data_shapes: tuple[tuple[int, int], tuple[int, int]],
  variance: dict[str, list[dict[str, Any]]],
  evaluation_rows: dict[str, list[dict[str, Any]]],
  wall_times: dict[str, float],
  timing: dict[str, Any],
) -> dict[str, Any]:
  """The content of results.json, as a JSON round trip would read it."""
  (num_train, dim), (num_test, _) = data_shapes
  return outputs.as_json(
    {
      "schema_version": SCHEMA_VERSION,
      "config": config.to_dict(),
      "estimators": list(names),
      "data": {
        "num_train": int(num_train),
        "num_test": int(num_test),
        "dim": int(dim),
      },
      "variance": {n: variance[n] for n in names},
      "evaluation": {n: evaluation_rows[n] for n in names},
      "final": final(
        names, variance, evaluation_rows, wall_times, config.num_steps
      ),
      "timing": {k: timing[k] for k in TIMING_FIELDS},
    }
  )


def write(results: dict[str, Any], workdir: str) -> None:
  """Writes results.json and the CSVs to `workdir` (on process 0)."""
  # Not strict: a diverged run's NaNs are written (as NaN) rather than lost.
  outputs.write_json(
    os.path.join(workdir, "results.json"), results, strict=False
  )
  names = results["estimators"]
  for section, fields in (
    ("variance", VARIANCE_FIELDS),
    ("evaluation", EVALUATION_FIELDS),
  ):
    rows = [
      {"estimator": n, **row} for n in names for row in results[section][n]
    ]
    outputs.write_csv(
      os.path.join(workdir, f"{section}.csv"), rows, ("estimator", *fields)
    )
  outputs.write_csv(
    os.path.join(workdir, "final.csv"),
    [{"estimator": n, **results["final"][n]} for n in names],
    ("estimator", *FINAL_FIELDS),
  )
