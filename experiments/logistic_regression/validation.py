"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.logistic_regression`` prints as one line before
exiting with status 1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib
from experiments.logistic_regression import gradients

_POSITIVE_INTS = (
  "num_steps",
  "batch_size",
  "num_samples",
  "variance_every",
  "variance_chunk_size",
  "eval_every",
  "num_eval_samples",
  "log_every",
  "checkpoint_every",
)
# Intervals that must be whole numbers of variance intervals: the loop runs
# `variance_every` steps per compiled call.
# What the variance rows measure on (evaluation.gradient_variance).
VARIANCE_DATA = ("minibatch", "train_set")
_MULTIPLES = ("num_steps", "eval_every", "log_every", "checkpoint_every")


def validate_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks the config before any work; returns the estimators to train.

  Raises:
    ConfigError: naming the offending field.
  """
  names = config_lib.names(
    config.estimators, "estimators", gradients.ESTIMATORS
  )
  for field in _POSITIVE_INTS:
    config_lib.integer(config[field], field)
  for field in ("seed", "data_seed"):
    config_lib.integer(config[field], field, minimum=0)
  for field in _MULTIPLES:
    if config[field] % config.variance_every:
      raise config_lib.ConfigError(
        f"config.{field} ({config[field]}) must be a multiple of "
        f"config.variance_every ({config.variance_every})."
      )
  replicates = config_lib.integer(
    config.num_variance_replicates, "num_variance_replicates", minimum=2
  )
  if replicates % config.variance_chunk_size:
    raise config_lib.ConfigError(
      f"config.num_variance_replicates ({replicates}) must be a multiple of "
      f"config.variance_chunk_size ({config.variance_chunk_size})."
    )
  config_lib.integer(
    config.num_coefficient_samples, "num_coefficient_samples", minimum=2
  )
  config_lib.integer(config.exact_num_points, "exact_num_points", minimum=2)
  for name in names:
    minimum = 2 if name == "leave_one_out" else 1
    if config.num_samples < minimum:
      raise config_lib.ConfigError(
        f"config.num_samples must be >= {minimum} for the {name} estimator, "
        f"got {config.num_samples}."
      )
  if config.variance_data not in VARIANCE_DATA:
    raise config_lib.ConfigError(
      f"config.variance_data must be one of {', '.join(VARIANCE_DATA)}, got "
      f"{config.variance_data!r}."
    )
  config_lib.real(config.test_fraction, "test_fraction", positive=True, high=1)
  config_lib.real(config.online_decay, "online_decay", low=0.0, high=1.0)
  config_lib.real(config.learning_rate, "learning_rate", positive=True)
  config_lib.real(config.init_log_scale, "init_log_scale")
  for field in ("float64", "distributed", "plot"):
    if not isinstance(config[field], bool):
      raise config_lib.ConfigError(
        f"config.{field} must be True or False, got {config[field]!r}."
      )
  return names


def check_data_sizes(config: ml_collections.ConfigDict, num_train: int) -> None:
  """The minibatch fits in the `num_train` training points.

  Raises:
    ConfigError: a batch larger than the training set.
  """
  config_lib.batches_fit(config, ("batch_size",), num_train, "points")
