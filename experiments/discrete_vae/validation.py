"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.discrete_vae`` prints as one line before exiting
with status 1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib
from experiments.common import vae as common_vae
from experiments.discrete_vae import gradients
from experiments.discrete_vae import model as model_lib

# Beyond the counts of `experiments.common.vae.POSITIVE_INTS`.
_POSITIVE_INTS = (
  "relaxed_num_samples",
  "num_final_samples",
  "eval_batch_size",
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
  # Three replicates at least, for the jackknife SE of the variance.
  common_vae.check_counts(config, _POSITIVE_INTS, min_replicates=3)
  for name in names:
    spec = gradients.get_spec(name)
    if name in gradients.RELAXED:
      continue  # relaxed_num_samples >= 1 is all they need.
    common_vae.check_num_samples(config, name, spec)
    if spec.rows == "pairs" and config.num_samples % 2:
      raise config_lib.ConfigError(
        f"config.num_samples must be even for the {name} estimator (rows "
        f"are antithetic pairs), got {config.num_samples}."
      )
  common_vae.check_rates(config)
  config_lib.real(
    config.control_learning_rate, "control_learning_rate", positive=True
  )
  return names
