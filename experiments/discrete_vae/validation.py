"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.discrete_vae`` prints as one line before exiting
with status 1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib
from experiments.discrete_vae import gradients
from experiments.discrete_vae import model as model_lib

_POSITIVE_INTS = (
  "num_samples",
  "relaxed_num_samples",
  "num_steps",
  "latent_dim",
  "hidden_dim",
  "batch_size",
  "log_every",
  "checkpoint_every",
  "num_eval_samples",
  "num_final_samples",
  "eval_batch_size",
  "variance_batch_size",
  "num_display",
)


def _choice(value, field: str, valid) -> str:
  if value not in valid:
    raise config_lib.ConfigError(
      f"Unknown {field} {value!r} in config.{field}; choose one of "
      f"{', '.join(valid)}."
    )
  return value


def validate_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks the config before any work; returns the estimators to train.

  Raises:
    ConfigError: naming the offending field.
  """
  if config.estimator == "all":
    names = gradients.ESTIMATORS
  elif isinstance(config.estimator, str) and "," in config.estimator:
    names = config_lib.names(
      config.estimator, "estimator", gradients.ESTIMATORS
    )
  else:
    names = (
      _choice(config.estimator, "estimator", (*gradients.ESTIMATORS, "all")),
    )
  _choice(config.model, "model", model_lib.MODELS)
  _choice(config.activation, "activation", tuple(model_lib.ACTIVATIONS))
  for field in ("learn_prior", "decoder_bias_from_data"):
    if not isinstance(config[field], bool):
      raise config_lib.ConfigError(
        f"config.{field} must be True or False, got {config[field]!r}."
      )
  if not isinstance(config.data_path, str):
    raise config_lib.ConfigError(
      "config.data_path must be a string (empty for sklearn's digits)."
    )
  for field in _POSITIVE_INTS:
    config_lib.integer(config[field], field)
  for field in ("seed", "data_seed"):
    config_lib.integer(config[field], field, minimum=0)
  # Three replicates at least, for the jackknife SE of the variance.
  config_lib.integer(
    config.num_variance_replicates, "num_variance_replicates", minimum=3
  )
  for name in names:
    spec = gradients.get_spec(name)
    if name in gradients.RELAXED:
      continue  # relaxed_num_samples >= 1 is all they need.
    if config.num_samples < spec.min_num_samples:
      raise config_lib.ConfigError(
        f"config.num_samples must be >= {spec.min_num_samples} for the "
        f"{name} estimator ({spec.summary}), got {config.num_samples}."
      )
    if spec.rows == "pairs" and config.num_samples % 2:
      raise config_lib.ConfigError(
        f"config.num_samples must be even for the {name} estimator (rows "
        f"are antithetic pairs), got {config.num_samples}."
      )
  config_lib.real(config.test_fraction, "test_fraction", positive=True, high=1)
  config_lib.real(
    config.binarize_threshold, "binarize_threshold", low=0.0, high=1.0
  )
  config_lib.real(config.baseline_decay, "baseline_decay", low=0.0, high=1.0)
  config_lib.real(config.learning_rate, "learning_rate", positive=True)
  config_lib.real(
    config.control_learning_rate, "control_learning_rate", positive=True
  )
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
