"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.vae`` prints as one line before exiting with status
1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib
from experiments.vae import gradients

_POSITIVE_INTS = (
  "num_samples",
  "num_steps",
  "latent_dim",
  "hidden_dim",
  "batch_size",
  "log_every",
  "checkpoint_every",
  "num_eval_samples",
  "variance_batch_size",
  "num_display",
)


def validate_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks the config before any work; returns the estimators to train.

  Raises:
    ConfigError: naming the offending field.
  """
  if config.estimator == "all":
    names = gradients.ESTIMATORS
  elif config.estimator in gradients.ESTIMATORS:
    names = (config.estimator,)
  else:
    raise config_lib.ConfigError(
      f"Unknown estimator {config.estimator!r} in config.estimator; choose "
      f"one of {', '.join(gradients.ESTIMATORS)} or 'all'."
    )
  for field in _POSITIVE_INTS:
    config_lib.integer(config[field], field)
  for field in ("seed", "data_seed"):
    config_lib.integer(config[field], field, minimum=0)
  # Two replicates at least, for a sample variance.
  config_lib.integer(
    config.num_variance_replicates, "num_variance_replicates", minimum=2
  )
  for name in names:
    spec = gradients.get_spec(name)
    if config.num_samples < spec.min_num_samples:
      raise config_lib.ConfigError(
        f"config.num_samples must be >= {spec.min_num_samples} for the "
        f"{name} estimator ({spec.summary}), got {config.num_samples}."
      )
  config_lib.real(config.test_fraction, "test_fraction", positive=True, high=1)
  config_lib.real(
    config.binarize_threshold, "binarize_threshold", low=0.0, high=1.0
  )
  config_lib.real(config.baseline_decay, "baseline_decay", low=0.0, high=1.0)
  config_lib.real(config.learning_rate, "learning_rate", positive=True)
  return names


def check_data_sizes(config: ml_collections.ConfigDict, num_train: int) -> None:
  """The batches fit in the `num_train` training images.

  Raises:
    ConfigError: a batch larger than the training set.
  """
  for field in ("batch_size", "variance_batch_size"):
    if config[field] > num_train:
      raise config_lib.ConfigError(
        f"config.{field} ({config[field]}) exceeds the {num_train} training "
        "images."
      )
