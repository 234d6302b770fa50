"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.vae`` prints as one line before exiting with status
1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib
from experiments.common import vae as common_vae
from experiments.vae import gradients


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
  # Two replicates at least, for a sample variance.
  common_vae.check_counts(config, (), min_replicates=2)
  for name in names:
    common_vae.check_num_samples(config, name, gradients.get_spec(name))
  common_vae.check_rates(config)
  return names
