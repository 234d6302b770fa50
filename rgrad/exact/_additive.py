r"""Exact variances for an additive cost over independent Gaussian coordinates.

For :math:`F(x) = \sum_{i=1}^d f(x_i)` with :math:`x_i \sim N(\mu,
\sigma^2)` independent, consider the single-sample estimators of
:math:`\partial_{\theta_1} E[F]`, the gradient with respect to the first
coordinate's parameters.

* Pathwise and measure-valued estimates depend on :math:`x_1` only (the
  other terms have zero derivative, and the measure-valued estimator only
  replaces :math:`x_1`): their variance is the 1-d one, whatever :math:`d`
  (:func:`rgrad.exact.pathwise_variance`,
  :func:`rgrad.exact.measure_valued_variance`).
* The score function multiplies the *whole* cost by the score of
  :math:`x_1`: its estimate is :math:`(f(x_1) + S)\, s(x_1)` with
  :math:`S = \sum_{i>1} f(x_i)` independent of :math:`x_1`. Conditioning on
  :math:`x_1`, by the law of total variance,

  .. math:: \mathrm{Var} = V(E S) + \mathrm{Var}(S)\, E[s^2],

  where :math:`V(b)` is the 1-d score-function variance of :math:`f + b`,
  :math:`E S = (d - 1) E f`, :math:`\mathrm{Var}\, S = (d - 1)
  \mathrm{Var} f` and :math:`E[s_\mu^2] = 1/\sigma^2`,
  :math:`E[s_\sigma^2] = 2/\sigma^2` (the Fisher information). The variance
  grows linearly in :math:`d` (:func:`additive_score_function_variance`).
* The delta method's :math:`H = \sum_i h(x_i)` (the Hessian of :math:`F` is
  diagonal), and coordinate 1's coefficient :math:`c` multiplies all of
  :math:`H`: its estimate is :math:`(g(x_1) + S)\, s(x_1)` up to a constant,
  with :math:`g = f - c h` and :math:`S = \sum_{i>1} g(x_i)`, the same
  decomposition with :math:`g` in place of :math:`f`
  (:func:`additive_delta_method_variance`).

By exchangeability the same holds for every coordinate, with its own
coefficient.
"""

import jax
import jax.numpy as jnp

from rgrad.exact._control_variates import coefficient_pair
from rgrad.exact._control_variates import delta_expansion
from rgrad.exact._quadrature import DEFAULT_NUM_POINTS
from rgrad.exact._quadrature import LocScale
from rgrad.exact._quadrature import ScalarCost
from rgrad.exact._variances import cost_mean_and_variance
from rgrad.exact._variances import score_function_variance


def _additive_score_variance(residuals, loc, scale, dim, num_points):
  """Var of ``(g(x_1) + sum_{1<i<=d} g(x_i)) s(x_1)``, g per parameter."""
  others = jnp.asarray(dim) - 1
  # E[s^2], the Fisher information of (mu, sigma).
  score_sq = (1.0 / scale**2, 2.0 / scale**2)
  out = []
  for index, g in enumerate(residuals):
    mean_g, var_g = cost_mean_and_variance(g, loc, scale, num_points=num_points)
    shifted = score_function_variance(
      g, loc, scale, baseline=-others * mean_g, num_points=num_points
    )[index]
    out.append(shifted + others * var_g * score_sq[index])
  return LocScale(*out)


def additive_score_function_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  dim: jax.typing.ArrayLike,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Score-function variance of the first coordinate of an additive cost.

  For :math:`F(x) = \sum_{i \le d} f(x_i)`, :math:`x_i \sim N(\mu,
  \sigma^2)` independent, the variance of the single-sample score-function
  estimate of :math:`(\partial_{\mu_1}, \partial_{\sigma_1}) E[F]`,

  .. math:: V(b) + (d - 1)\,\mathrm{Var} f \cdot E[s^2], \qquad
            b = (d - 1) E f,

  with :math:`V(b)` the 1-d score-function variance of :math:`f + b` (see
  the module docstring). At :math:`d = 1` it is
  :func:`rgrad.exact.score_function_variance`.

  Args:
    f: scalar cost, smooth.
    loc: every coordinate's mean, a scalar (vmap for a batch).
    scale: every coordinate's standard deviation, positive, a scalar.
    dim: the number of coordinates :math:`d \ge 1` (int or float; may be
      traced).
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=var_mu_1, scale=var_sigma_1)``.

  Raises:
    ValueError, TypeError: as :func:`rgrad.exact.exact_gradient`.
  """
  return _additive_score_variance((f, f), loc, scale, dim, num_points)


def additive_delta_method_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  dim: jax.typing.ArrayLike,
  coefficient,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Delta-method control-variate variance, one coordinate of an additive
  cost.

  For :math:`F(x) = \sum_{i \le d} f(x_i)` (see
  :func:`additive_score_function_variance`) and the delta method's
  :math:`H = \sum_i h(x_i)` with the coefficient :math:`c_\theta` of this
  coordinate's parameter :math:`\theta`: the score-function variance of the
  additive residual :math:`\sum_i g(x_i)`, :math:`g = f - c_\theta h`. At
  :math:`d = 1` it is :func:`rgrad.exact.delta_method_variance`.

  Args:
    f: scalar cost, twice differentiable, smooth.
    loc: every coordinate's mean, a scalar (vmap for a batch).
    scale: every coordinate's standard deviation, positive, a scalar.
    dim: the number of coordinates :math:`d \ge 1`.
    coefficient: this coordinate's ``(c_mu, c_sigma)``, as for
      :func:`rgrad.exact.delta_method_variance`.
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=var_mu, scale=var_sigma)`` of that coordinate.

  Raises:
    ValueError, TypeError: as :func:`rgrad.exact.delta_method_variance`.
  """
  expansion = delta_expansion(f, loc)
  residuals = tuple(
    lambda x, c=c: f(x) - c * expansion(x)
    for c in coefficient_pair(coefficient)
  )
  return _additive_score_variance(residuals, loc, scale, dim, num_points)
