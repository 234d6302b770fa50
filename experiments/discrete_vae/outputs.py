"""The results in `workdir`: metrics.json, metrics.csv and final.csv.

* ``metrics.json``::

    {"schema_version": 1,
     "config": {...},                       # the config used
     "estimators": ["score_function", ...], # the ones trained, in order
     "data": {"source": "sklearn_digits" or the .npz path,
              "num_train": int, "num_test": int, "dim": int},
     "cost_evaluations": {"<estimator>": int},  # per data point per step
     "history": {                           # per estimator, one row per log
       "<estimator>": [
         {"step": int,                      # optimizer steps taken
          "wall_time_s": float,             # training time so far (excludes
                                            # compilation and evaluation)
          "train_elbo": float,              # nats per image, whole train set
          "test_elbo": float,               # nats per image, test set
          "test_iwae": float,               # IWAE bound, num_eval_samples
          "grad_variance": float,           # trace of the encoder-gradient
                                            # covariance (sum over params)
          "grad_variance_se": float,        # its jackknife standard error
          "grad_snr_sq": float,             # unbiased (||mean||^2 -
                                            # grad_variance / R) /
                                            # grad_variance; may be < 0
          "grad_snr": float,                # sqrt(max(grad_snr_sq, 0))
          "baseline": float}, ...]},        # moving-average baseline value
     "final": {"<estimator>": {<last row>,
                               "test_iwae_final": float}}}  # the test bound
                                            # with num_final_samples (100)

* ``metrics.csv``: the history rows, one per (estimator, step), with columns
  ``estimator`` and :data:`METRIC_FIELDS`.
* ``final.csv``: the ELBO table, one row per estimator, columns
  :data:`FINAL_FIELDS`.

metrics.json and metrics.csv are written by
:func:`experiments.common.vae.write_metrics`, like the Gaussian VAE's, on
process 0 only; the figures are :mod:`experiments.discrete_vae.plots`', the
checkpoints :mod:`experiments.common.checkpoints`'.
"""

import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from experiments.common import outputs
from experiments.common import vae as common_vae

METRIC_FIELDS = (
  *common_vae.BOUND_FIELDS,
  "grad_variance",
  "grad_variance_se",
  *common_vae.SNR_FIELDS,
  "baseline",
)
FINAL_FIELDS = (
  "estimator",
  "cost_evaluations",
  "step",
  "wall_time_s",
  "train_elbo",
  "test_elbo",
  "test_iwae_final",
  "grad_variance",
  "grad_variance_se",
)
SCHEMA_VERSION = 1


def metrics(
  config: ml_collections.ConfigDict,
  names: Sequence[str],
  data_info: dict[str, Any],
  cost_evaluations: dict[str, int],
  histories: dict[str, list[dict[str, float]]],
  final_bounds: dict[str, float],
) -> dict[str, Any]:
  """The content of metrics.json.

  Args:
    config: the config used.
    names: the estimators trained, in order.
    data_info: `{"source", "num_train", "num_test", "dim"}`.
    cost_evaluations: per estimator, per data point per step.
    histories: per estimator, its history rows.
    final_bounds: per estimator, the final test bound.
  """
  return {
    "schema_version": SCHEMA_VERSION,
    "config": config.to_dict(),
    "estimators": list(names),
    "data": dict(data_info),
    "cost_evaluations": {n: int(cost_evaluations[n]) for n in names},
    "history": histories,
    "final": {
      n: {**histories[n][-1], "test_iwae_final": float(final_bounds[n])}
      for n in names
    },
  }


def write(metrics: dict[str, Any], workdir: str) -> None:
  """Writes metrics.json, metrics.csv and final.csv (on process 0)."""
  common_vae.write_metrics(metrics, workdir, METRIC_FIELDS)
  names = metrics["estimators"]
  table = [
    {
      "estimator": n,
      "cost_evaluations": metrics["cost_evaluations"][n],
      **metrics["final"][n],
    }
    for n in names
  ]
  outputs.write_csv(os.path.join(workdir, "final.csv"), table, FINAL_FIELDS)
