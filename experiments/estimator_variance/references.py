r"""Every exact reference of the experiment, from :mod:`rgrad.exact`.

The exact gradient and single-sample variance of each estimator at each grid
point, by quadrature (:mod:`rgrad.exact` shares no code with the
estimators): the control variate's given the coefficients its pilot batch
estimated, and the dim sweep's from the additive-cost decomposition
(:func:`rgrad.exact.additive_score_function_variance`,
:func:`rgrad.exact.additive_delta_method_variance`). All costs and sweeps are
one compiled program, the grid points ``vmap``-ed.
"""

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.estimator_variance import sweeps
from experiments.estimator_variance.costs import COSTS
from experiments.estimator_variance.costs import PARAMS
from experiments.estimator_variance.costs import Cost
from rgrad import exact


def _at(cost: Cost, k, loc, scale, coupling: bool, num_points: int, cv):
  """Exact gradient [2] and variance [2] per estimator at one (k, scale).

  `cv` [2] is the control variate's (c_mu, c_sigma) there.
  """
  f = lambda x: cost.fn(x, k)
  kw = dict(num_points=num_points)
  return (
    jnp.stack(exact.exact_gradient(f, loc, scale, **kw)),
    {
      "pathwise": jnp.stack(exact.pathwise_variance(f, loc, scale, **kw)),
      "score_function": jnp.stack(
        exact.score_function_variance(f, loc, scale, **kw)
      ),
      "score_function_cv": jnp.stack(
        exact.delta_method_variance(f, loc, scale, cv, **kw)
      ),
      "measure_valued": jnp.stack(
        exact.measure_valued_variance(f, loc, scale, coupling=coupling, **kw)
      ),
    },
  )


def _dim_at(cost: Cost, k, loc, scale, coupling, num_points, dims, cv):
  """The dim sweep's references before the host assembles them.

  Returns:
    ``(grad [2], {estimator: 1-d variance [2]})`` at (k, scale), the
    score function's first-coordinate variance ``[2, D]`` and the control
    variate's per coordinate ``[D, max_dim, 2]`` (each with its own c).
  """
  f = lambda x: cost.fn(x, k)
  kw = dict(num_points=num_points)

  def score(d):
    return jnp.stack(
      exact.additive_score_function_variance(f, loc, scale, d, **kw)
    )

  def controlled(d, c):  # c: [2] of one coordinate
    return jnp.stack(
      exact.additive_delta_method_variance(f, loc, scale, d, c, **kw)
    )

  one_d = _at(cost, k, loc, scale, coupling, num_points, jnp.zeros(2))
  return (
    one_d,
    jax.vmap(score, out_axes=1)(dims),
    jax.vmap(jax.vmap(controlled, (None, 0)))(dims, cv),
  )


def _assemble_dim(dims: np.ndarray, one_d, score, cv):
  """(exact_mean [2], first {estimator: [2, D]}, total {estimator: [2, D]}).

  Pathwise and measure-valued: the 1-d variance whatever d. Coordinates are
  exchangeable: the plain estimators' total over the d active coordinates is
  d times the first coordinate's; the control variate's has one c per
  coordinate.
  """
  grad, variances = one_d
  ones = np.ones_like(dims)
  first = {
    "pathwise": variances["pathwise"][:, None] * ones,
    "score_function": score,
    "measure_valued": variances["measure_valued"][:, None] * ones,
    "score_function_cv": cv[:, 0, :].T,
  }
  total = {n: v * dims for n, v in first.items()}
  masks = sweeps.dim_masks(dims.astype(int))  # [D, max_dim]
  total["score_function_cv"] = np.einsum("dm,dmp->pd", masks, cv)
  return grad, first, total


def coefficients(config, parsed, outcomes) -> dict[str, dict[str, Any]]:
  """The control variate's coefficients, as :func:`exact_references` takes.

  Returns:
    cost -> {"points": [G, 2], "dim": [len(dims), max(dims), 2]} (c_mu,
    c_sigma) on the last axis; zeros (unused) when ``score_function_cv`` was
    not run.
  """
  run_cv = "score_function_cv" in parsed.estimators
  result = {}
  for c in parsed.costs:
    shapes = {"points": (len(sweeps.points(config, parsed, c)), 1)}
    names = {"points": "main"}
    if parsed.dims:
      shapes["dim"] = (len(parsed.dims), max(parsed.dims))
      names["dim"] = "dim_sweep"
    result[c] = {}
    for field, shape in shapes.items():
      if run_cv:
        pilot = outcomes[(names[field], "score_function_cv")].coefficients[c]
        values = np.stack([pilot[p] for p in PARAMS], axis=-1)  # [*shape, 2]
      else:
        values = np.zeros((*shape, 2))
      result[c][field] = values[:, 0] if field == "points" else values
  return result


class _Setting(NamedTuple):
  """The static part of the references program (hashable: compiled once)."""

  costs: tuple[str, ...]
  loc: float
  scale: float
  coupling: bool
  num_points: int
  dim_k: tuple[float, ...]  # per cost; empty without the dim sweep


@functools.partial(jax.jit, static_argnames="setting")
def _compute(grid, dims, cv_coefficients, *, setting: _Setting):
  loc, scale = setting.loc, setting.scale
  out = {}
  for i, c in enumerate(setting.costs):
    cost = COSTS[c]
    at = lambda g, cv, cost=cost: _at(
      cost, g[0], loc, g[1], setting.coupling, setting.num_points, cv
    )
    out[c] = {
      "points": jax.vmap(at, out_axes=(1, 1))(
        grid[c], cv_coefficients[c]["points"]
      )
    }
    if setting.dim_k:
      out[c]["dim"] = _dim_at(
        cost,
        setting.dim_k[i],
        loc,
        scale,
        setting.coupling,
        setting.num_points,
        dims,
        cv_coefficients[c]["dim"],
      )
  return out


def exact_references(config, parsed, cv_coefficients) -> dict[str, Any]:
  r"""Every exact reference, in one compiled program.

  Args:
    config: the config.
    parsed: ``parsing.parse_config(config)``.
    cv_coefficients: from :func:`coefficients`.

  Returns:
    cost -> {"points": (grad [2, G], {estimator: variance [2, G]}) at
    ``sweeps.points``, and, with the dim sweep, "dim": (grad [2],
    {estimator: first-coordinate variance [2, len(dims)]}, {estimator:
    variance summed over the d active coordinates [2, len(dims)]})}; the
    parameters (mu, sigma) on the first axis.
  """
  dims = np.asarray(parsed.dims, np.float64)
  setting = _Setting(
    costs=parsed.costs,
    loc=float(config.loc),
    scale=float(config.scale),
    coupling=config.coupling,
    num_points=config.exact_num_points,
    dim_k=tuple(float(config.dim_sweep.k[c]) for c in parsed.costs)
    if len(dims)
    else (),
  )
  grid = {c: sweeps.points(config, parsed, c) for c in parsed.costs}
  out = jax.tree.map(
    np.asarray, _compute(grid, dims, cv_coefficients, setting=setting)
  )
  for c in parsed.costs:
    if len(dims):
      out[c]["dim"] = _assemble_dim(dims, *out[c]["dim"])
  return out
