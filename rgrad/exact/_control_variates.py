r"""Exact variance of the score function with the delta-method control variate.

The delta method (Mohamed et al. 2020, Section 7.4.2) controls the cost
:math:`f` with its second-order Taylor expansion at the mean,

.. math:: h(x) = f(\mu) + f'(\mu)(x - \mu) + \tfrac12 f''(\mu)(x - \mu)^2,

whose expectation is known in closed form. Given a coefficient
:math:`c_\theta` per parameter :math:`\theta \in \{\mu, \sigma\}`, the
controlled score-function estimate

.. math:: \hat g_\theta = (f - c_\theta h)(X)\, s_\theta(X)
          + c_\theta\, \partial_\theta E[h],
          \qquad s_\theta = \partial_\theta \log N(X; \mu, \sigma^2),

differs from the plain score-function estimate of :math:`f - c_\theta h` by a
constant, so its variance is that estimate's
(:func:`rgrad.exact.score_function_variance` applied to the residual
:math:`f - c_\theta h`). Here :math:`h` is built from the derivatives of the
user's cost by `jax.grad`, independently of
:func:`rgrad.control_variates.delta_method_control_variate`, which it checks.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.exact._quadrature import DEFAULT_NUM_POINTS
from rgrad.exact._quadrature import LocScale
from rgrad.exact._quadrature import ScalarCost
from rgrad.exact._variances import score_function_variance


class DeltaExpansion(NamedTuple):
  r"""The second-order Taylor expansion of a scalar cost at ``center``.

  Calling it evaluates :math:`h(x) = f_0 + f_1 (x - m) + \tfrac12 f_2
  (x - m)^2`, elementwise in ``x``.

  Attributes:
    center: the expansion point :math:`m` (the Gaussian's mean).
    value: :math:`f_0 = f(m)`.
    slope: :math:`f_1 = f'(m)`.
    curvature: :math:`f_2 = f''(m)`.
  """

  center: jax.Array
  value: jax.Array
  slope: jax.Array
  curvature: jax.Array

  def __call__(self, x: jax.Array) -> jax.Array:
    return (
      self.value
      + self.slope * (x - self.center)
      + 0.5 * self.curvature * (x - self.center) ** 2
    )


def _check_scalar(value: jax.Array, name: str) -> None:
  if jnp.ndim(value) != 0:
    raise ValueError(
      f"{name} must be a scalar (vmap for a batch), got shape "
      f"{jnp.shape(value)}."
    )


def delta_expansion(f: ScalarCost, loc: jax.typing.ArrayLike) -> DeltaExpansion:
  r"""The delta method's control variate :math:`h` for the cost `f` at `loc`.

  Args:
    f: scalar cost, twice differentiable by `jax.grad`.
    loc: the expansion point, a scalar (may be traced).

  Returns:
    The :class:`DeltaExpansion`; call it for :math:`h(x)`.

  Raises:
    TypeError: if `f` is not callable.
    ValueError: if `loc` is not a scalar.
  """
  if not callable(f):
    raise TypeError(
      f"f must be a callable scalar cost, got {type(f).__name__}."
    )
  loc = jnp.asarray(loc)
  _check_scalar(loc, "loc")
  loc = loc.astype(jnp.result_type(loc, float))
  f0, f1 = jax.value_and_grad(f)(loc)
  f2 = jax.grad(jax.grad(f))(loc)
  return DeltaExpansion(center=loc, value=f0, slope=f1, curvature=f2)


def _check_finite_inputs(inputs) -> None:
  """Raises if a concrete input of the residual is NaN or inf.

  A non-finite coefficient or Taylor expansion makes the residual
  :math:`f - c h` non-finite at every node; name it here rather than let
  the score-function variance blame the cost.
  """
  for label, values in inputs.items():
    arrays = [_internal.concrete(v) for v in values]
    if any(a is None for a in arrays):
      continue  # traced
    if not all(np.all(np.isfinite(a)) for a in arrays):
      raise ValueError(
        f"delta_method_variance: {label} is non-finite "
        f"({[a.tolist() for a in arrays]}); the exact variance would be NaN."
      )


def coefficient_pair(coefficient) -> tuple[jax.Array, jax.Array]:
  """A scalar, a ``[2]`` array or a pair -> ``(c_mu, c_sigma)``."""
  if isinstance(coefficient, (tuple, list)):
    if len(coefficient) != 2:
      raise ValueError(
        f"coefficient must be a scalar or a (c_mu, c_sigma) pair, got "
        f"{len(coefficient)} values."
      )
    return tuple(jnp.asarray(c) for c in coefficient)
  coefficient = jnp.asarray(coefficient)
  if coefficient.shape == ():
    return coefficient, coefficient
  if coefficient.shape == (2,):
    return coefficient[0], coefficient[1]
  raise ValueError(
    "coefficient must be a scalar or a (c_mu, c_sigma) pair, got shape "
    f"{coefficient.shape}."
  )


def delta_method_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  coefficient,
  *,
  baseline: jax.typing.ArrayLike = 0.0,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Variance of the score function with the delta-method control variate.

  For a fixed coefficient :math:`c_\theta` per parameter (see the module
  docstring), the single-sample variance

  .. math:: \mathrm{Var}\big[(f - c_\theta h - b)(X)\, s_\theta(X)\big],
            \qquad \theta \in \{\mu, \sigma\},

  with :math:`h` the delta method's expansion at `loc` and an optional
  constant baseline :math:`b`. With :math:`c = 0` it is
  :func:`rgrad.exact.score_function_variance`; for a quadratic :math:`f`,
  :math:`h = f` and :math:`c = 1` give zero (up to roundoff). The variance
  is quadratic in :math:`c_\theta`, minimal at :math:`c^* =
  \mathrm{Cov}(g, g_h) / \mathrm{Var}(g_h)`, which
  :func:`rgrad.control_variates.estimate_control_variate_coefficients`
  estimates.

  Args:
    f: scalar cost, twice differentiable, smooth.
    loc: the Gaussian's mean, a scalar (vmap for a batch).
    scale: its standard deviation, positive, a scalar.
    coefficient: ``(c_mu, c_sigma)`` as a pair or a ``[2]`` array, or one
      scalar for both; may be traced (e.g. estimated by a pilot batch).
    baseline: a constant :math:`b` subtracted from the residual.
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=var_mu, scale=var_sigma)``, scalars.

  Raises:
    ValueError, TypeError: as :func:`rgrad.exact.exact_gradient`, or if
      `loc`, `scale` or `coefficient` have the wrong shape, or (when
      concrete) if the coefficient or the expansion is non-finite.
  """
  expansion = delta_expansion(f, loc)
  _check_scalar(jnp.asarray(scale), "scale")
  pair = coefficient_pair(coefficient)
  _check_finite_inputs(
    {
      "coefficient": pair,
      "the expansion's f(loc), f'(loc), f''(loc)": expansion[1:],
    }
  )

  def component(c: jax.Array, index: int) -> jax.Array:
    residual = lambda x: f(x) - c * expansion(x)
    return score_function_variance(
      residual, loc, scale, baseline=baseline, num_points=num_points
    )[index]

  return LocScale(component(pair[0], 0), component(pair[1], 1))
