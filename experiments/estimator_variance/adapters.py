r"""The experiment's estimators, selected from the registry, and its problems.

The config names (``configs.estimator_variance.ESTIMATORS``; their order
fixes the random keys) map to :data:`rgrad.ESTIMATORS` entries:

* ``pathwise`` -> ``pathwise``, ``score_function`` -> ``score_function``;
* ``score_function_cv`` -> ``delta_method``: the score function with the
  delta-method control variate :math:`h` (the second-order Taylor expansion
  of :math:`f` at :math:`\mu`), with the near-optimal coefficient
  :math:`c^* = \mathrm{Cov}(g, g_h) / \mathrm{Var}(g_h)` per grid point and
  parameter coordinate, estimated by
  :func:`rgrad.estimate_control_variate_coefficients` from an independent
  pilot batch of ``cv_num_pilot_samples`` draws (its own key) and then held
  fixed (``coefficient=``). Given :math:`c` the estimates are iid and
  unbiased, with an exact variance (:func:`rgrad.exact.delta_method_variance`).
  This is the paper's curve; a fixed :math:`c = 1` is far *worse* than the
  plain score function for :math:`\cos(kx)` and :math:`\exp(-kx^2)`, where
  the quadratic :math:`h` is a poor global fit;
* ``measure_valued`` -> ``measure_valued`` (``config.coupling``) or
  ``measure_valued_uncoupled``.

A *problem* turns one grid point into ``(function, params)``; a
:class:`GridChunk` runs one estimator on every grid point of every cost for
one chunk of draws, as the ``chunk_fn`` of :func:`rgrad.diagnostics.
stream_moments`. Grid points are ``vmap``-ed, and every grid point of a cost
sees the same key (common random numbers: smooth curves).
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rgrad
from experiments.estimator_variance.costs import Cost

# Config name -> registry name (measure_valued depends on the coupling).
_REGISTRY_NAMES = {
  "pathwise": "pathwise",
  "score_function": "score_function",
  "score_function_cv": "delta_method",
}


def registry_name(name: str, coupling: bool) -> str:
  """The :data:`rgrad.ESTIMATORS` entry behind the config name `name`."""
  if name == "measure_valued":
    return "measure_valued" if coupling else "measure_valued_uncoupled"
  return _REGISTRY_NAMES[name]


def dist_builder(params: dict[str, jax.Array]) -> rgrad.Normal:
  return rgrad.Normal(loc=params["mu"], scale=params["sigma"])


def gaussian_params(loc, scale, dim: int) -> dict[str, jax.Array]:
  return {
    "mu": jnp.full((dim,), loc, jnp.float64),
    "sigma": jnp.full((dim,), scale, jnp.float64),
  }


class Adapter(NamedTuple):
  """One estimator of the sweep, with its pilot stage if it has one.

  Attributes:
    estimator: ``(function, params, dist_builder, key, num_samples, **kw)``,
      from the registry.
    pilot_num_samples: draws of the pilot batch that estimates the control
      variate's coefficients, or None for an estimator without one.
  """

  estimator: Any
  pilot_num_samples: int | None = None

  def sample(self, function, params, key, num_samples, coefficient):
    """Per-sample jacobians; `coefficient` is the pilot's (None without)."""
    if self.pilot_num_samples is None:
      return self.estimator(function, params, dist_builder, key, num_samples)
    return self.estimator(
      function, params, dist_builder, key, num_samples, coefficient=coefficient
    )

  def pilot(self, function, params, key):
    """The control variate's c* per parameter coordinate, from `key`."""
    return rgrad.estimate_control_variate_coefficients(
      function,
      params,
      dist_builder,
      key,
      self.pilot_num_samples,
      estimator="score_function",
      control_variate="delta",
    )


def adapter(name: str, coupling: bool, num_pilot_samples: int) -> Adapter:
  """The :class:`Adapter` of the config name `name`."""
  spec = rgrad.get_estimator(registry_name(name, coupling))
  pilot = num_pilot_samples if name == "score_function_cv" else None
  return Adapter(spec.fn, pilot)


class KGridProblem(NamedTuple):
  """Grid point ``(k, scale)`` -> the 1-d problem ``f(x; k)``, N(loc, scale)."""

  cost: Cost
  loc: float

  def __call__(self, point: jax.Array):
    k, scale = point[0], point[1]
    return (
      lambda x: jnp.sum(self.cost.fn(x, k)),
      gaussian_params(self.loc, scale, 1),
    )


class DimProblem(NamedTuple):
  r"""Grid point ``mask`` -> :math:`\sum_i \text{mask}_i f(x_i; k)`.

  The dim sweep samples ``max_dim`` coordinates and masks the cost to the
  first ``d``, which leaves the law of the first coordinate's estimates
  unchanged; so one program serves every ``d``.
  """

  cost: Cost
  k: float
  loc: float
  scale: float
  max_dim: int

  def __call__(self, mask: jax.Array):
    return (
      lambda x: jnp.sum(mask * self.cost.fn(x, self.k)),
      gaussian_params(self.loc, self.scale, self.max_dim),
    )


class GridChunk(NamedTuple):
  """``chunk_fn`` of the engine: one estimator on every cost's grid.

  Called as ``(keys, size, args)`` with ``keys`` ``{cost: key}`` (each
  already folded with the chunk index) and ``args`` ``{cost: (grid,
  coefficients, centers)}``, ``coefficients`` ``{param: [G, dim]}`` or
  None. Returns the estimates minus their centers, ``{cost: {param: [size,
  G, dim]}}`` (see :mod:`experiments.estimator_variance.sweeps`). Hashable,
  so a second call with the same sweep reuses the compilation.
  """

  adapter: Adapter
  problems: tuple[tuple[str, Any], ...]  # (cost name, problem)

  def __call__(self, keys, size: int, args):
    out = {}
    for c, problem in self.problems:
      grid, coefficients, centers = args[c]

      def at(point, coefficient, problem=problem, key=keys[c]):
        function, params = problem(point)
        return self.adapter.sample(function, params, key, size, coefficient)

      estimates = jax.vmap(at, out_axes=1)(grid, coefficients)
      out[c] = jax.tree.map(lambda e, m: e - m, estimates, centers)
    return out


class GridPilot(NamedTuple):
  """The pilot stage: ``(keys, grids) -> {cost: {param: [G, dim]}}`` c*."""

  adapter: Adapter
  problems: tuple[tuple[str, Any], ...]

  def __call__(self, keys, grids):
    out = {}
    for c, problem in self.problems:

      def at(point, problem=problem, key=keys[c]):
        function, params = problem(point)
        return self.adapter.pilot(function, params, key)

      out[c] = jax.vmap(at)(grids[c])
    return out
