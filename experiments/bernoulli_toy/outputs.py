"""The results in `workdir`: results.json, results.csv, timings.json.

* ``results.json`` (:data:`SCHEMA`; the same config gives the same bytes)::

    {"schema_version": 1,
     "config": {...},                      # the config used
     "estimators": [...], "targets": [...],
     "steps": [0, log_every, ..., num_steps],
     "runs": [                             # one per (estimator, target)
       {"estimator", "target",
        "rows", "num_rows", "units",       # the registry's row structure;
                                           # draws and independent units
                                           # (draws, pairs, groups) per step
        "cost_evaluations_per_step", "unbiased", "stateful",
        "exact_note",                      # why no exact curve, or null
        # [num_seeds][num_logs] each:
        "theta", "p", "loss",              # loss: exact E[f] at theta
        "grad_mean", "grad_variance",      # of num_variance_draws fresh step
        "grad_variance_stderr",            # estimates (4th-moment SE)
        "exact_gradient",                  # the true dE/dtheta
        "exact_mean", "exact_variance",    # the step estimate's, or null
        "state": {field: [[...]]}}, ...],  # learned state (REBAR), or {}
     "final": [<FINAL>, ...],              # per (estimator, target)
     "theta_grid": {"theta": [...],        # exact UNIT variances at common
                    "unit_variance": {name: [[per theta] per target]}},
     "checks": {...}}                      # the expected orderings

* ``results.csv``: one row per (estimator, target, seed, step), columns
  :data:`CSV_COLUMNS`.
* ``timings.json``: compile + run seconds per estimator (not
  deterministic).

Files are written on process 0 only (:mod:`experiments.common.outputs`).
"""

import os
from typing import Any

import numpy as np

from experiments.common import outputs

SCHEMA_VERSION = 1
_NONE = type(None)
_CURVE = [[float]]
_CURVE_OR_NONE = ([[float]], _NONE)

RUN = {
  "estimator": str,
  "target": float,
  "rows": str,
  "num_rows": int,
  "units": int,
  "cost_evaluations_per_step": int,
  "unbiased": bool,
  "stateful": bool,
  "exact_note": (str, _NONE),
  "theta": _CURVE,
  "p": _CURVE,
  "loss": _CURVE,
  "grad_mean": _CURVE,
  "grad_variance": _CURVE,
  "grad_variance_stderr": _CURVE,
  "exact_gradient": _CURVE,
  "exact_mean": _CURVE_OR_NONE,
  "exact_variance": _CURVE_OR_NONE,
  "state": dict,
}
_OPT = (float, _NONE)
# Seed means at the first (step 0) and the last log, unless said otherwise.
FINAL = {
  "estimator": str,
  "target": float,
  "p_final_median": float,  # over seeds
  "p_final_min": float,
  "p_final_max": float,
  "converged_fraction": float,  # seeds with final p < config.converged_p
  "variance_first": float,
  "exact_variance_first": _OPT,
  "variance_last": float,
  "exact_variance_last": _OPT,
  # mean measured / mean exact variance at the first/last log (null where
  # the exact variance is 0: DisARM at theta = 0, whose estimate is a
  # constant and whose measured variance is rounding).
  "variance_ratio_first": _OPT,
  "variance_ratio_last": _OPT,
  # Over seeds, |measured - exact| / stderr at the first/last log, and the
  # fraction of all (seed, log) points with |z| > 3. The stderr is the
  # 4th-moment one of the draws; it understates the error of a heavy-tailed
  # estimate, and for a two-point law with probability 1/2 (the score
  # function and leave-one-out at p = 1/2) the variance's error is of
  # second order, so there z is large without meaning.
  "max_abs_variance_z_first": _OPT,
  "max_abs_variance_z_last": _OPT,
  "fraction_abs_variance_z_above_3": _OPT,
  "grad_mean_first": float,
  "exact_mean_first": _OPT,  # the estimator's own mean at theta_0
  "exact_gradient_first": float,  # the true gradient at theta_0
}
SCHEMA = {
  "schema_version": int,
  "config": dict,
  "estimators": [str],
  "targets": [float],
  "steps": [int],
  "runs": [RUN],
  "final": [FINAL],
  "theta_grid": {"theta": [float], "unit_variance": dict},
  "checks": dict,
}
CSV_COLUMNS = (
  "estimator",
  "target",
  "seed",
  "step",
  "theta",
  "p",
  "loss",
  "grad_mean",
  "grad_variance",
  "grad_variance_stderr",
  "exact_gradient",
  "exact_mean",
  "exact_variance",
)
CURVE_FIELDS = CSV_COLUMNS[4:]


def _problems(value: Any, schema: Any, path: str) -> list[str]:
  if isinstance(schema, dict):
    if not isinstance(value, dict):
      return [f"{path}: expected an object, got {type(value).__name__}"]
    out = []
    missing, extra = set(schema) - set(value), set(value) - set(schema)
    if missing or extra:
      out.append(
        f"{path}: missing {sorted(missing)}, unexpected {sorted(extra)}"
      )
    for field in schema.keys() & value.keys():
      out += _problems(value[field], schema[field], f"{path}.{field}")
    return out
  if isinstance(schema, tuple):  # any of
    found = [_problems(value, s, path) for s in schema]
    return [] if any(not f for f in found) else found[0]
  if isinstance(schema, list):
    if not isinstance(value, list):
      return [f"{path}: expected a list, got {type(value).__name__}"]
    return [
      p
      for i, v in enumerate(value)
      for p in _problems(v, schema[0], f"{path}[{i}]")
    ]
  if schema is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif schema is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  else:
    ok = isinstance(value, schema)
  return [] if ok else [f"{path}: expected {schema.__name__}, got {value!r}"]


def validate(results: Any) -> None:
  """Checks loaded ``results.json`` against :data:`SCHEMA`.

  Raises:
    ValueError: listing the problems found (up to 20), by path.
  """
  problems = _problems(results, SCHEMA, "$")
  if not problems and results["schema_version"] != SCHEMA_VERSION:
    problems.append(f"$.schema_version: expected {SCHEMA_VERSION}")
  if problems:
    raise ValueError(
      "does not match the schema:\n  " + "\n  ".join(problems[:20])
    )


def _float(x: Any) -> float | None:
  return None if x is None else float(x)


def _curve(x: np.ndarray | None) -> list[list[float]] | None:
  return None if x is None else np.asarray(x, np.float64).tolist()


def final_record(run: dict[str, Any], converged_p: float) -> dict[str, Any]:
  """The :data:`FINAL` summary of one run (arrays ``[S, L]``)."""
  p_final = np.asarray(run["p"])[:, -1]
  variance = np.asarray(run["grad_variance"])
  stderr = np.asarray(run["grad_variance_stderr"])
  exact = run["exact_variance"]
  exact = None if exact is None else np.asarray(exact)

  zs = None
  if exact is not None:
    with np.errstate(divide="ignore", invalid="ignore"):
      zs = np.abs(variance - exact) / stderr
    # No z where the estimate is a constant (exact variance 0).
    zs = np.where(exact > 0, zs, np.nan)

  def z(log: int) -> float | None:
    if zs is None or not np.isfinite(zs[:, log]).any():
      return None
    return float(np.nanmax(zs[:, log]))

  def ratio(log: int) -> float | None:
    if exact is None or exact[:, log].mean() <= 0:
      return None
    return float(variance[:, log].mean() / exact[:, log].mean())

  finite = None if zs is None else zs[np.isfinite(zs)]

  return {
    "estimator": run["estimator"],
    "target": run["target"],
    "p_final_median": float(np.median(p_final)),
    "p_final_min": float(np.min(p_final)),
    "p_final_max": float(np.max(p_final)),
    "converged_fraction": float(np.mean(p_final < converged_p)),
    "variance_first": float(variance[:, 0].mean()),
    "exact_variance_first": None
    if exact is None
    else float(exact[:, 0].mean()),
    "variance_last": float(variance[:, -1].mean()),
    "exact_variance_last": None
    if exact is None
    else float(exact[:, -1].mean()),
    "variance_ratio_first": ratio(0),
    "variance_ratio_last": ratio(-1),
    "max_abs_variance_z_first": z(0),
    "max_abs_variance_z_last": z(-1),
    "fraction_abs_variance_z_above_3": None
    if finite is None or not finite.size
    else float(np.mean(finite > 3)),
    "grad_mean_first": float(np.asarray(run["grad_mean"])[:, 0].mean()),
    "exact_mean_first": None
    if run["exact_mean"] is None
    else float(np.asarray(run["exact_mean"])[:, 0].mean()),
    "exact_gradient_first": float(
      np.asarray(run["exact_gradient"])[:, 0].mean()
    ),
  }


def as_json_run(run: dict[str, Any]) -> dict[str, Any]:
  """`run` with its arrays as nested lists (the :data:`RUN` fields)."""
  out = {k: v for k, v in run.items() if k not in CURVE_FIELDS and k != "state"}
  for field in CURVE_FIELDS:
    out[field] = _curve(run[field])
  out["state"] = {k: _curve(v) for k, v in run["state"].items()}
  return out


def write(
  workdir: str, results: dict[str, Any], timings: dict[str, Any]
) -> None:
  """Writes results.json, results.csv and timings.json (on process 0)."""
  # Not strict: a diverged run's NaNs are written (as NaN) rather than lost.
  outputs.write_json(
    os.path.join(workdir, "results.json"), results, strict=False
  )
  outputs.write_json(os.path.join(workdir, "timings.json"), timings)
  rows = []
  steps = results["steps"]
  for run in results["runs"]:
    for seed in range(len(run["theta"])):
      for i, step in enumerate(steps):
        row = {"estimator": run["estimator"], "target": run["target"]}
        row.update(seed=seed, step=step)
        for field in CURVE_FIELDS:
          row[field] = None if run[field] is None else run[field][seed][i]
        rows.append(row)
  outputs.write_csv(os.path.join(workdir, "results.csv"), rows, CSV_COLUMNS)


def _fmt(x: float | None) -> str:
  return "      -  " if x is None else f"{x:9.3g}"


def table(final: list[dict[str, Any]]) -> str:
  """The closing numbers: final p and measured vs exact variances."""
  lines = [
    f"{'estimator':18s} {'t':>6s} {'p_final (med [min, max])':>28s} "
    f"{'var@0':>9s} {'exact@0':>9s} {'var@end':>9s} {'exact@end':>9s} "
    f"{'mean@0':>9s} {'exact':>9s} {'true':>9s}"
  ]
  for r in final:
    p = "{p_final_median:.3g} [{p_final_min:.3g}, {p_final_max:.3g}]".format(
      **r
    )
    lines.append(
      f"{r['estimator']:18s} {r['target']:6.3f} {p:>28s} "
      + " ".join(
        _fmt(r[k])
        for k in (
          "variance_first",
          "exact_variance_first",
          "variance_last",
          "exact_variance_last",
          "grad_mean_first",
          "exact_mean_first",
          "exact_gradient_first",
        )
      )
    )
  return "\n".join(lines)
