"""Config checks, all before any computation; each names the bad field.

A failing check raises :class:`experiments.common.config.ConfigError`, which
``python -m experiments.bernoulli_toy`` prints as one line before exiting
with status 1 (:func:`experiments.common.launch.run_app`).
"""

from typing import NamedTuple

import ml_collections
import numpy as np

import rgrad
from experiments.common import config as config_lib


class Parsed(NamedTuple):
  """The checked config values the run uses.

  Attributes:
    estimators: registry names, in the config's order.
    targets: the targets t, float64 ``[num_targets]``.
    num_rows: per estimator, the rows (draws) one step asks for.
    units: per estimator, the independent units those rows form (draws,
      pairs or groups); the step's gradient is the mean of the units.
    theta_grid: float64 thetas of the exact-variance grid (may be empty).
  """

  estimators: tuple[str, ...]
  targets: np.ndarray
  num_rows: dict[str, int]
  units: dict[str, int]
  theta_grid: np.ndarray


def supports_bernoulli(spec: rgrad.EstimatorSpec) -> bool:
  """Whether :class:`rgrad.Bernoulli` has every capability `spec` needs."""
  return all(
    hasattr(rgrad.Bernoulli, method)
    for capability in spec.distributions
    for method in rgrad.CAPABILITIES[capability].methods
  ) and ("reparameterized" not in spec.distributions)


def valid_estimators() -> tuple[str, ...]:
  """The registered estimators of E[f] that run on a Bernoulli, sorted."""
  return tuple(
    sorted(
      name
      for name, spec in rgrad.ESTIMATORS.items()
      if spec.objective == "expectation" and supports_bernoulli(spec)
    )
  )


def rows_per_step(config: ml_collections.ConfigDict, spec) -> tuple[int, int]:
  """``(rows, units)`` of one step for `spec`'s row structure."""
  if spec.rows == "iid":
    return config.num_samples, config.num_samples
  if spec.rows == "pairs":
    return 2 * config.num_pairs, config.num_pairs
  rows = config.num_group_samples
  group = rows if spec.group_size == "batch" else spec.group_size
  return rows, rows // group


def validate_config(config: ml_collections.ConfigDict) -> Parsed:
  """Checks the config before any work.

  Raises:
    ConfigError: naming the offending field.
  """
  names = config_lib.names(config.estimators, "estimators", valid_estimators())
  for field in ("num_steps", "num_seeds", "log_every", "num_samples"):
    config_lib.integer(config[field], field)
  config_lib.integer(config.num_pairs, "num_pairs")
  config_lib.integer(config.num_group_samples, "num_group_samples", minimum=2)
  config_lib.integer(config.seed, "seed", minimum=0)
  # Two draws at least, for a sample variance.
  config_lib.integer(config.num_variance_draws, "num_variance_draws", 2)
  if config.num_steps % config.log_every:
    raise config_lib.ConfigError(
      f"config.num_steps ({config.num_steps}) must be a multiple of "
      f"config.log_every ({config.log_every})."
    )
  config_lib.real(config.learning_rate, "learning_rate", positive=True)
  config_lib.real(config.theta_init, "theta_init")
  config_lib.real(config.converged_p, "converged_p", positive=True, high=1.0)
  targets = config.targets
  if isinstance(targets, (int, float)):
    targets = (targets,)
  if not isinstance(targets, (list, tuple)) or not targets:
    raise config_lib.ConfigError(
      f"config.targets must be a non-empty tuple of numbers, got {targets!r}."
    )
  targets = np.array(
    [
      config_lib.real(t, f"targets[{i}]", low=0.0, high=1.0)
      for i, t in enumerate(targets)
    ]
  )
  theta_grid = np.zeros(0)
  if tuple(config.theta_grid)[2:] != (0,):
    theta_grid = config_lib.grid(config.theta_grid, "theta_grid")
  num_rows, units = {}, {}
  for name in names:
    spec = rgrad.get_estimator(name)
    num_rows[name], units[name] = rows_per_step(config, spec)
    if num_rows[name] < spec.min_num_samples:
      raise config_lib.ConfigError(
        f"{name} needs >= {spec.min_num_samples} draws per step "
        f"({spec.summary}); raise config.num_samples, config.num_pairs or "
        "config.num_group_samples."
      )
    group = spec.group_size
    if spec.rows == "groups" and group != "batch" and num_rows[name] % group:
      raise config_lib.ConfigError(
        f"config.num_group_samples ({num_rows[name]}) must be a multiple of "
        f"{name}'s group size {group}."
      )
  return Parsed(names, targets, num_rows, units, theta_grid)
