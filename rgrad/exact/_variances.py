r"""Exact gradients and single-sample estimator variances, by quadrature.

For :math:`X \sim N(\mu, \sigma^2)`, written :math:`X = \mu + \sigma\epsilon`
with :math:`\epsilon \sim N(0, 1)`, and a smooth scalar cost :math:`f`: the
gradient :math:`\nabla_{\mu,\sigma} E[f(X)]`, the mean and variance of
:math:`f(X)` itself, and the mean and variance of the single-sample pathwise
(Section 5), score-function (Section 4) and measure-valued (Section 6,
Table 1) estimators of Mohamed et al. (2020), each law written out as an
integral against the standard normal, Rayleigh, double-sided Maxwell or
uniform density (the rules of :mod:`rgrad.exact._quadrature`).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad.exact import _quadrature as q
from rgrad.exact._quadrature import DEFAULT_NUM_POINTS
from rgrad.exact._quadrature import LocScale
from rgrad.exact._quadrature import ScalarCost


class EstimatorMoments(NamedTuple):
  """Mean and variance of a single-sample estimator, per parameter.

  Attributes:
    mean: the estimator's mean, which equals the gradient for an unbiased
      estimator (a check of the written-out law): a ``LocScale`` for the
      Gaussian references, an array shaped like the logits for the discrete
      ones (:mod:`rgrad.exact._discrete`).
    variance: its variance per unit (one draw; one pair or one batch mean
      for the discrete pair and batch estimators), the same structure.
  """

  mean: LocScale
  variance: LocScale


def _check_moments(name, mean_loc, mean_scale, var_loc, var_scale, *args):
  q.check_finite_result(
    name,
    {
      "mean of d/dmu": mean_loc,
      "mean of d/dsigma": mean_scale,
      "variance of d/dmu": var_loc,
      "variance of d/dsigma": var_scale,
    },
    *args,
  )


# ---------------------------------------------------------------------------
# The gradient.
# ---------------------------------------------------------------------------


def exact_gradient(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Gradient of :math:`E_{N(\mu,\sigma^2)}[f(X)]` with respect to (μ, σ).

  By the score identity (Mohamed et al. 2020, Eq. 13), with
  :math:`\epsilon = (X - \mu)/\sigma`,

  .. math::
    \partial_\mu E[f(X)] = E\Big[f(X)\,\frac{\epsilon}{\sigma}\Big], \qquad
    \partial_\sigma E[f(X)] = E\Big[f(X)\,\frac{\epsilon^2 - 1}{\sigma}\Big],

  integrated by Gauss--Hermite quadrature. This needs only values of `f`
  (no derivative); `f` is first centred by its mean, which leaves both
  expectations unchanged (the scores have mean zero) and keeps a large
  constant offset from costing digits.

  Args:
    f: scalar cost :math:`\mathbb{R} \to \mathbb{R}`, smooth (see
      :mod:`rgrad.exact` for the accuracy limits). Applied to the nodes with
      `jax.vmap`; it may close over traced values.
    loc: means :math:`\mu`, any shape broadcastable with `scale`.
    scale: standard deviations :math:`\sigma > 0` (checked when concrete).
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=d/dmu, scale=d/dsigma)``, each of the broadcast shape of
    `loc` and `scale`.

  Raises:
    ValueError: if `scale` is concrete and not positive, or `num_points < 2`;
      or, when the values are concrete (outside ``jax.jit``), if a result is
      NaN or inf: the message names it and the likely cause (a non-finite
      `loc`, or a cost that is non-finite at quadrature nodes). Under
      ``jit`` a non-finite result propagates.
    TypeError: if `f` is not callable or not scalar-valued.
  """
  loc, scale = q.prepare(f, loc, scale, num_points)
  eps, weights = q.normal_rule(num_points)
  fx = q.apply(f, q.at(loc, scale, eps))  # [*batch, num_points]
  centred = fx - q.expect(weights, fx)[..., None]
  eps = jnp.asarray(eps, fx.dtype)
  d_loc = q.expect(weights, centred * eps) / scale
  d_scale = q.expect(weights, centred * (jnp.square(eps) - 1.0)) / scale
  q.check_finite_result(
    "exact_gradient",
    {"d/dmu": d_loc, "d/dsigma": d_scale},
    {"f": (fx,)},
    {"loc": loc},
  )
  return LocScale(loc=d_loc, scale=d_scale)


def cost_mean_and_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> tuple[jax.Array, jax.Array]:
  r"""Mean and variance of the cost itself, :math:`E f(X)` and
  :math:`\mathrm{Var}\, f(X)` for :math:`X \sim N(\mu, \sigma^2)`.

  By Gauss--Hermite quadrature in two passes,
  :math:`\mathrm{Var}\, f = E[(f - E f)^2]`: when :math:`f(X)` is constant up
  to roundoff (a control variate that equals the cost) the variance comes
  out at roundoff squared (~1e-30), where :math:`E f^2 - (E f)^2` would
  leave ~1e-14.

  Args:
    f: scalar cost, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    num_points: number of quadrature nodes (static).

  Returns:
    ``(mean, variance)``, each of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`.
  """
  loc, scale = q.prepare(f, loc, scale, num_points)
  eps, weights = q.normal_rule(num_points)
  fx = q.apply(f, q.at(loc, scale, eps))
  mean, variance = q.mean_and_variance(weights, fx)
  q.check_finite_result(
    "cost_mean_and_variance",
    {"mean": mean, "variance": variance},
    {"f": (fx,)},
    {"loc": loc},
  )
  return mean, variance


# ---------------------------------------------------------------------------
# Pathwise (Section 5) and score-function (Section 4) estimators.
# ---------------------------------------------------------------------------


def pathwise_moments(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-sample pathwise estimator (§5).

  The estimator is :math:`(f'(X),\ f'(X)\,\epsilon)` for
  :math:`(\partial_\mu, \partial_\sigma)`, :math:`X = \mu + \sigma\epsilon`;
  its mean is the gradient (the pathwise identity), its variance
  :func:`pathwise_variance`.

  Args:
    f: scalar cost, differentiable by `jax.grad`, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    num_points: number of quadrature nodes (static).

  Returns:
    :class:`EstimatorMoments` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`.
  """
  loc, scale = q.prepare(f, loc, scale, num_points)
  eps, weights = q.normal_rule(num_points)
  # The user's cost is differentiated here, not an estimator: this is the
  # integrand of the pathwise identity, not a call into the code under test.
  df = q.apply(jax.grad(f), q.at(loc, scale, eps))  # f'(mu + sigma eps)
  mean_loc, var_loc = q.mean_and_variance(weights, df)
  mean_scale, var_scale = q.mean_and_variance(
    weights, df * jnp.asarray(eps, df.dtype)
  )
  _check_moments(
    "pathwise_moments",
    mean_loc,
    mean_scale,
    var_loc,
    var_scale,
    {"f'": (df,)},
    {"loc": loc},
  )
  return EstimatorMoments(
    LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale)
  )


def pathwise_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Variance of the single-sample pathwise estimator (Mohamed et al. §5).

  With :math:`X = \mu + \sigma\epsilon`, the pathwise estimator is
  :math:`(f'(X),\ f'(X)\,\epsilon)` for :math:`(\partial_\mu,
  \partial_\sigma)`; this returns

  .. math:: \big(\mathrm{Var}[f'(X)],\ \mathrm{Var}[f'(X)\,\epsilon]\big)

  by Gauss--Hermite quadrature, with :math:`f'` from `jax.grad(f)`.

  Args:
    f: scalar cost, differentiable by `jax.grad`, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=var_mu, scale=var_sigma)`` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`.
  """
  return pathwise_moments(f, loc, scale, num_points=num_points).variance


def score_function_moments(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  baseline: jax.typing.ArrayLike = 0.0,
  num_points: int = DEFAULT_NUM_POINTS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-sample score-function estimator (§4).

  The estimator is :math:`(f(X) - b)\,\nabla_{\mu,\sigma}\log
  N(X;\mu,\sigma)` with a constant baseline :math:`b`; its mean is the
  gradient for any :math:`b` (the scores have mean zero), its variance
  :func:`score_function_variance`.

  Args:
    f: scalar cost, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    baseline: constant baseline :math:`b`, broadcastable with `loc`.
    num_points: number of quadrature nodes (static).

  Returns:
    :class:`EstimatorMoments` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`.
  """
  loc, scale = q.prepare(f, loc, scale, num_points)
  eps, weights = q.normal_rule(num_points)
  fx = q.apply(f, q.at(loc, scale, eps))
  centred = fx - jnp.asarray(baseline, fx.dtype)[..., None]
  eps = jnp.asarray(eps, fx.dtype)
  # Hand-written Gaussian scores: d/dmu log N = eps / sigma,
  # d/dsigma log N = (eps^2 - 1) / sigma.
  mean_loc, var_loc = q.mean_and_variance(
    weights, centred * eps / scale[..., None]
  )
  mean_scale, var_scale = q.mean_and_variance(
    weights, centred * (jnp.square(eps) - 1.0) / scale[..., None]
  )
  _check_moments(
    "score_function_moments",
    mean_loc,
    mean_scale,
    var_loc,
    var_scale,
    {"f": (fx,)},
    {"loc": loc, "baseline": baseline},
  )
  return EstimatorMoments(
    LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale)
  )


def score_function_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  *,
  baseline: jax.typing.ArrayLike = 0.0,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Variance of the single-sample score-function estimator (§4).

  The estimator is :math:`(f(X) - b)\,\nabla_{\mu,\sigma}\log N(X;\mu,\sigma)`
  with a constant baseline :math:`b` (0 by default); this returns

  .. math::
    \Big(\mathrm{Var}\Big[(f(X) - b)\frac{\epsilon}{\sigma}\Big],\
    \mathrm{Var}\Big[(f(X) - b)\frac{\epsilon^2 - 1}{\sigma}\Big]\Big).

  Args:
    f: scalar cost, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    baseline: constant baseline :math:`b`, broadcastable with `loc`.
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=var_mu, scale=var_sigma)`` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`.
  """
  return score_function_moments(
    f, loc, scale, baseline=baseline, num_points=num_points
  ).variance


# ---------------------------------------------------------------------------
# Measure-valued estimator (Section 6, Table 1).
# ---------------------------------------------------------------------------


def measure_valued_moments(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  coupling: bool = True,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-sample measure-valued estimator (§6).

  The estimator is the one of :func:`measure_valued_variance`; its laws:

  Mean (Table 1): :math:`\partial_\mu N = c_\mu (p^+ - p^-)` with
  :math:`c_\mu = 1/(\sqrt{2\pi}\sigma)`, :math:`p^\pm = \mu \pm \sigma R`,
  :math:`R` Rayleigh (Weibull with scale :math:`\sqrt2`, shape 2). Coupled:
  one :math:`R` for both arms; uncoupled: independent :math:`R, R'`.

  Scale: :math:`\partial_\sigma N = c_\sigma (p^+ - p^-)` with
  :math:`c_\sigma = 1/\sigma`, :math:`p^+ = \mu + \sigma M` (M double-sided
  Maxwell), :math:`p^- = \mu + \sigma\epsilon`. Coupled:
  :math:`\epsilon = U M` with :math:`U \sim U(0, 1)` (which is exactly
  standard normal); uncoupled: :math:`\epsilon` independent of M.

  Args:
    f: scalar cost, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    coupling: whether the positive and negative arms are coupled.
    num_points: number of nodes per quadrature dimension (static).

  Returns:
    :class:`EstimatorMoments` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`measure_valued_variance`.
  """
  if not isinstance(coupling, bool):
    raise TypeError(f"coupling must be a Python bool, got {coupling!r}.")
  loc, scale = q.prepare(f, loc, scale, num_points)
  c_loc = 1.0 / (math.sqrt(2.0 * math.pi) * scale[..., None])
  c_scale = 1.0 / scale[..., None]

  r_nodes, r_weights = q.rayleigh_rule(num_points)
  f_plus = q.apply(f, q.at(loc, scale, r_nodes))  # f(mu + sigma r)
  f_minus = q.apply(f, q.at(loc, scale, -r_nodes))  # f(mu - sigma r)
  evaluated = (f_plus, f_minus)  # every cost value, for the finiteness check
  if coupling:
    mean_loc, var_loc = q.mean_and_variance(
      r_weights, c_loc * (f_plus - f_minus)
    )
  else:
    # Independent arms: the variance of a difference is the sum.
    m_plus, v_plus = q.mean_and_variance(r_weights, c_loc * f_plus)
    m_minus, v_minus = q.mean_and_variance(r_weights, c_loc * f_minus)
    mean_loc, var_loc = m_plus - m_minus, v_plus + v_minus

  if coupling:
    mu_nodes, mu_weights = q.maxwell_uniform_rule(num_points)
    m, u = mu_nodes[:, 0], mu_nodes[:, 1]
    f_max = q.apply(f, q.at(loc, scale, m))  # f(mu + sigma M)
    f_gauss = q.apply(f, q.at(loc, scale, u * m))  # f(mu + sigma U M)
    mean_scale, var_scale = q.mean_and_variance(
      mu_weights, c_scale * (f_max - f_gauss)
    )
    evaluated += (f_max, f_gauss)
  else:
    m, w_m = q.maxwell_rule(num_points)
    eps, w_n = q.normal_rule(num_points)
    f_max = q.apply(f, q.at(loc, scale, m))  # f(mu + sigma M)
    f_gauss = q.apply(f, q.at(loc, scale, eps))  # f(mu + sigma eps)
    m_plus, v_plus = q.mean_and_variance(w_m, c_scale * f_max)
    m_minus, v_minus = q.mean_and_variance(w_n, c_scale * f_gauss)
    mean_scale, var_scale = m_plus - m_minus, v_plus + v_minus
    evaluated += (f_max, f_gauss)
  _check_moments(
    "measure_valued_moments",
    mean_loc,
    mean_scale,
    var_loc,
    var_scale,
    {"f": evaluated},
    {"loc": loc},
  )
  return EstimatorMoments(
    LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale)
  )


def measure_valued_variance(
  f: ScalarCost,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  coupling: bool = True,
  *,
  num_points: int = DEFAULT_NUM_POINTS,
) -> LocScale:
  r"""Variance of the single-sample Gaussian measure-valued estimator (§6).

  The estimator of Mohamed et al. (2020), Table 1:

  .. math::
    \hat g_\mu = \frac{f(\mu + \sigma R) - f(\mu - \sigma R')}
                      {\sqrt{2\pi}\,\sigma}, \qquad
    \hat g_\sigma = \frac{f(\mu + \sigma M) - f(\mu + \sigma \epsilon)}
                         {\sigma},

  with :math:`R, R'` Rayleigh (Weibull(:math:`\sqrt2`, 2)), :math:`M`
  double-sided Maxwell and :math:`\epsilon \sim N(0, 1)`. With
  ``coupling=True`` the arms share randomness: :math:`R' = R`, and
  :math:`\epsilon = U M` with :math:`U \sim U(0, 1)` (a standard normal,
  the common-random-numbers coupling of Mohamed et al. Section 6, as in
  optax and :func:`rgrad.estimators.measure_valued_jacobians`); otherwise
  they are independent. All four variances are computed exactly by quadrature:
  Rayleigh expectations by the split Laguerre/Hermite rule, Maxwell ones by
  the weighted Hermite rule and the coupled :math:`(M, U)` pair by a
  Hermite x Legendre product rule (``num_points**2`` cost evaluations).

  Args:
    f: scalar cost, smooth.
    loc: means, broadcastable with `scale`.
    scale: standard deviations, positive.
    coupling: whether the positive and negative arms are coupled as above.
    num_points: number of nodes per quadrature dimension (static).

  Returns:
    ``LocScale(loc=var_mu, scale=var_sigma)`` of the broadcast shape.

  Raises:
    ValueError, TypeError: as :func:`exact_gradient`; TypeError if
      `coupling` is not a bool.
  """
  return measure_valued_moments(
    f, loc, scale, coupling, num_points=num_points
  ).variance
