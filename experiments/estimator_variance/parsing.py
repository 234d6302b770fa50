"""Config checks of the estimator-variance experiment, before any computation.

Every check raises :class:`experiments.common.config.ConfigError` naming the
field, so that ``python -m experiments.estimator_variance`` with a bad flag
prints one line and exits with status 1.
"""

from typing import NamedTuple

import ml_collections
import numpy as np

from experiments.common import config as checks
from experiments.configs import estimator_variance as config_lib
from experiments.estimator_variance.costs import COSTS

ConfigError = checks.ConfigError


class Parsed(NamedTuple):
  """What the experiment runs, from a checked config.

  Attributes:
    costs: the selected cost names, in config order.
    estimators: the selected estimator names (of ``config_lib.ESTIMATORS``).
    k_grids: cost -> the k grid, float64.
    scales: the sigma sweep's scales (empty when disabled).
    dims: the dim sweep's dimensions (empty when disabled).
  """

  costs: tuple[str, ...]
  estimators: tuple[str, ...]
  k_grids: dict[str, np.ndarray]
  scales: np.ndarray
  dims: tuple[int, ...]


def _check_ks(config, costs, k_grids) -> None:
  for c in costs:
    ks = [("k_grid", k_grids[c])]
    if config.dim_sweep.enabled:
      ks.append(("dim_sweep.k", np.array([config.dim_sweep.k[c]])))
    if config.sigma_sweep.enabled:
      ks.append(("sigma_sweep.k", np.array([config.sigma_sweep.k[c]])))
    for field, k in ks:
      if not np.all(np.isfinite(k)):
        raise ConfigError(f"config.{field}.{c} must be finite.")
      if COSTS[c].k_positive and np.any(k <= 0):
        raise ConfigError(
          f"config.{field}.{c}: the cost {c} = exp(-k x^2) needs k > 0 "
          f"(it is unbounded for k <= 0), got {k.min()}."
        )


def _dims(config) -> tuple[int, ...]:
  sweep = config.dim_sweep
  checks.chunking(sweep.num_samples, sweep.chunk_size, "dim_sweep.", 2)
  if not isinstance(sweep.dims, (list, tuple)):
    raise ConfigError("config.dim_sweep.dims must be a tuple of ints.")
  dims = tuple(checks.integer(d, "dim_sweep.dims[i]") for d in sweep.dims)
  if not dims or len(set(dims)) != len(dims):
    raise ConfigError(
      f"config.dim_sweep.dims must be non-empty and distinct, got {dims}."
    )
  return dims


def parse_config(config: ml_collections.ConfigDict) -> Parsed:
  """Checks `config` and returns what to run.

  Args:
    config: see `experiments/configs/estimator_variance.py`.

  Returns:
    The :class:`Parsed` names and grids.

  Raises:
    ConfigError: naming the first bad field.
  """
  costs = checks.names(config.costs, "costs", config_lib.COSTS)
  names = checks.names(config.estimators, "estimators", config_lib.ESTIMATORS)
  checks.chunking(config.num_samples, config.chunk_size, "", 2)
  checks.integer(config.cv_num_pilot_samples, "cv_num_pilot_samples", 2)
  checks.integer(config.exact_num_points, "exact_num_points", 2)
  checks.real(config.loc, "loc")
  checks.real(config.scale, "scale", positive=True)
  if not isinstance(config.coupling, bool):
    raise ConfigError(
      f"config.coupling must be a bool, got {config.coupling!r}."
    )
  k_grids = {c: checks.grid(config.k_grid[c], f"k_grid.{c}") for c in costs}
  _check_ks(config, costs, k_grids)
  scales = np.zeros(0)
  if config.sigma_sweep.enabled:
    scales = checks.grid(config.sigma_sweep.scales, "sigma_sweep.scales", True)
  dims = _dims(config) if config.dim_sweep.enabled else ()
  return Parsed(costs, names, k_grids, scales, dims)
