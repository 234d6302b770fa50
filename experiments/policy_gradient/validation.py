"""CartPole config checks, all before any computation; each names the field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.policy_gradient`` prints as one line before exiting
with status 1 (:func:`experiments.common.launch.run_app`).
"""

import ml_collections

from experiments.common import config as config_lib

_POSITIVE_INTS = (
  "num_envs",
  "horizon",
  "num_steps",
  "log_every",
  "num_eval_envs",
  "checkpoint_every",
  "value_steps",
)


def validate_config(
  config: ml_collections.ConfigDict, max_episode_steps: int
) -> None:
  """Checks a CartPole config before any work.

  Args:
    config: see `experiments/configs/policy_gradient.py`.
    max_episode_steps: the environment's episode cap (500 for CartPole-v1).

  Raises:
    ConfigError: naming the offending field.
  """
  for field in _POSITIVE_INTS:
    config_lib.integer(config[field], field)
  config_lib.integer(config.seed, "seed", minimum=0)
  if config.horizon > max_episode_steps:
    raise config_lib.ConfigError(
      f"config.horizon ({config.horizon}) exceeds the environment's "
      f"{max_episode_steps}-step episodes; a rollout holds one episode."
    )
  # The jackknife of the variance's standard error needs 3 estimates.
  config_lib.integer(config.num_variance_envs, "num_variance_envs", minimum=3)
  if config.num_variance_envs > config.num_eval_envs:
    raise config_lib.ConfigError(
      f"config.num_variance_envs ({config.num_variance_envs}) exceeds "
      f"config.num_eval_envs ({config.num_eval_envs}): the variance is "
      "measured on a subset of the evaluation episodes."
    )
  if config.num_eval_envs < 2:
    raise config_lib.ConfigError(
      "config.num_eval_envs must be >= 2 (a standard error), got "
      f"{config.num_eval_envs}."
    )
  dims = config.hidden_dims
  if not isinstance(dims, (tuple, list)) or not dims:
    raise config_lib.ConfigError(
      f"config.hidden_dims must be a non-empty tuple of ints, got {dims!r}."
    )
  for i, width in enumerate(dims):
    config_lib.integer(width, f"hidden_dims[{i}]")
  config_lib.real(config.discount, "discount", low=0.0)
  if config.discount > 1.0:
    raise config_lib.ConfigError(
      f"config.discount must be in [0, 1], got {config.discount}."
    )
  config_lib.real(config.learning_rate, "learning_rate", positive=True)
  config_lib.real(
    config.value_learning_rate, "value_learning_rate", positive=True
  )
  config_lib.real(config.solved_return, "solved_return")
  if not isinstance(config.normalize_advantages, bool):
    raise config_lib.ConfigError(
      "config.normalize_advantages must be a bool, got "
      f"{type(config.normalize_advantages).__name__}."
    )
