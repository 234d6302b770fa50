"""The results in `workdir`: metrics.json and metrics.csv (schema below).

* ``metrics.json``::

    {"schema_version": 2,
     "config": {...},                       # the config used
     "estimators": ["pathwise", ...],       # the ones trained, in order
     "data": {"num_train": int, "num_test": int, "dim": 64},
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
          "grad_snr_sq": float,             # unbiased (||mean||^2 -
                                            # grad_variance / R) /
                                            # grad_variance; may be < 0
          "grad_snr": float,                # sqrt(max(grad_snr_sq, 0))
          "baseline": float}, ...]},        # moving-average baseline value
     "final": {"<estimator>": {<last row>}}}

* ``metrics.csv``: the history rows, one per (estimator, step), with columns
  ``estimator, step, wall_time_s, train_elbo, test_elbo, test_iwae,
  grad_variance, grad_snr_sq, grad_snr, baseline``.

The figures are :mod:`experiments.vae.plots`'; the checkpoints
:mod:`experiments.common.checkpoints`'. Files are written on process 0 only
(:mod:`experiments.common.outputs`).
"""

from collections.abc import Sequence
from typing import Any

import ml_collections

from experiments.common import vae as common_vae

METRIC_FIELDS = (
  *common_vae.BOUND_FIELDS,
  "grad_variance",
  *common_vae.SNR_FIELDS,
  "baseline",
)
SCHEMA_VERSION = 2  # 2: grad_snr unbiased (see evaluation), grad_snr_sq


def metrics(
  config: ml_collections.ConfigDict,
  names: Sequence[str],
  data_shapes: tuple[tuple[int, int], tuple[int, int]],
  histories: dict[str, list[dict[str, float]]],
) -> dict[str, Any]:
  """The content of metrics.json.

  Args:
    config: the config used.
    names: the estimators trained, in order.
    data_shapes: the shapes of the train and test data.
    histories: per estimator, its history rows.
  """
  (num_train, dim), (num_test, _) = data_shapes
  return {
    "schema_version": SCHEMA_VERSION,
    "config": config.to_dict(),
    "estimators": list(names),
    "data": {
      "num_train": int(num_train),
      "num_test": int(num_test),
      "dim": int(dim),
    },
    "history": histories,
    "final": {name: histories[name][-1] for name in names},
  }


def write(metrics: dict[str, Any], workdir: str) -> None:
  """Writes metrics.json and metrics.csv to `workdir` (on process 0)."""
  common_vae.write_metrics(metrics, workdir, METRIC_FIELDS)
