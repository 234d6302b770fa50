r"""Exact moments of the Bernoulli relaxations, REBAR and RELAX, by quadrature.

With :math:`u \sim U(0, 1)` and :math:`z = \eta + \mathrm{logit}(u)` (a
logistic variable of location :math:`\eta`, density
:math:`\rho(z - \eta)`, :math:`\rho(x) = \sigma(x)\sigma(-x)`), the draw is
:math:`b = 1[z > 0]` and the relaxed sample :math:`y = \sigma(z/\tau)`. Per
coordinate, for a cost :math:`f` of one coordinate (d = 1, or an additive
:math:`F(b) = \sum_i f(b_i)`), the estimators are functions of :math:`z`:

* concrete (Maddison et al.; Jang et al. 2017):
  :math:`g = f'(y)\,y(1-y)/\tau` (the pathwise gradient, :math:`dz/d\eta = 1`);
* straight-through: :math:`g = f'(b)\,y(1-y)/\tau` (forward at the draw,
  backward through the relaxation);
* RELAX (Grathwohl et al. 2018) with a surrogate :math:`c` of the relaxed
  logits, and REBAR (Tucker et al. 2017) as :math:`c(z) = \lambda_s
  f(\sigma(z/\tau))`: :math:`g = [f(b) - c(\tilde z)](b - p) + c'(z) -
  c'(\tilde z)\,\partial_\eta\tilde z`, where :math:`\tilde z` is the
  conditional relaxation given :math:`b` with fixed uniform :math:`v`
  (:math:`u' = 1-p+vp` for :math:`b = 1`, :math:`u' = v(1-p)` for
  :math:`b = 0`, :math:`\tilde z = \eta + \mathrm{logit}(u')`). Given
  :math:`b`, :math:`\tilde z` has the law of :math:`z` restricted to its
  half-line, and :math:`z` and :math:`\tilde z` are independent; in terms of
  :math:`\tilde z` itself, :math:`\partial_\eta\tilde z = p(1 - e^{-\tilde
  z})` for :math:`b = 1` and :math:`(1-p)(1 - e^{\tilde z})` for
  :math:`b = 0` (derived from :math:`1 - u' = p(1-v)`, resp.
  :math:`u' = v(1-p)`). So :math:`g = A_b(\tilde z) + B(z)` and every
  moment is a sum over :math:`b` of one-dimensional integrals on the
  half-lines :math:`z < 0` and :math:`z > 0` (no two-dimensional rule).

In d > 1 with an additive cost the REBAR/RELAX coordinate :math:`i` also
carries :math:`(b_i - p_i)\sum_{j \ne i} D_j`,
:math:`D_j = f(b_j) - c(\tilde z_j)`, independent of coordinate :math:`i`'s
noise; its moments enter in closed form.

Quadrature. Each half-line is mapped by :math:`z = \pm\tau\sinh x`, which
resolves the relaxation's width-:math:`\tau` feature at :math:`z = 0` and
reaches the tails in a few units of :math:`x`; it is truncated where the
logistic tail :math:`e^{-40}` of the half-line's mass is left, and split
into ``num_panels`` equal panels of 16-point Gauss--Legendre. The split at
:math:`z = 0` (where :math:`b` jumps) keeps the integrands smooth on each
piece, and the logit singularity of :math:`u \to 0, 1` is gone in
:math:`z`. Verified accuracy (float64, default 64 panels, against 256
panels and against independent checks in ``tests/exact_discrete_test.py``):
relative error below 1e-12 for the REBAR/RELAX toy costs at temperatures
from 0.01 to 10 and logits in [-10, 10]; REBAR's and RELAX's means equal
the exact gradient to ~1e-13.

This module is private to :mod:`rgrad.exact`; its public functions are
re-exported there.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.exact import _enumeration as en
from rgrad.exact._variances import EstimatorMoments

DEFAULT_NUM_PANELS = 64
_ORDER = 16
# Truncation: the half-line's logistic tail beyond this distance from the
# location (or from 0) has mass below e^-40 of the half-line's.
_TAIL = 40.0


@functools.cache
def _legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
  t, w = np.polynomial.legendre.leggauss(order)
  return 0.5 * (t + 1.0), 0.5 * w  # on [0, 1]


@functools.partial(jax.jit, static_argnames="num_panels")
def logistic_rule(
  eta: jax.Array, resolution: jax.Array, num_panels: int
) -> tuple[jax.Array, jax.Array]:
  r"""Rule for :math:`\int h(z)\rho(z - \eta)\,dz` split at :math:`z = 0`.

  Args:
    eta: ``[d]`` locations.
    resolution: the width of the narrowest feature at 0 (the temperature).
    num_panels: panels per half-line (static).

  Returns:
    ``(z, w)``, each ``[d, 2, num_panels * 16]``: side 0 is :math:`z < 0`
    (:math:`b = 0`), side 1 is :math:`z > 0`; the weights include the
    density, so ``w[:, 1].sum(-1)`` is :math:`p = \sigma(\eta)`.
  """
  t, wt = _legendre(_ORDER)
  panel = np.arange(num_panels)[:, None]
  unit = ((panel + t[None, :]) / num_panels).reshape(-1)  # in (0, 1)
  unit_w = np.broadcast_to(wt / num_panels, (num_panels, _ORDER)).reshape(-1)
  sign = jnp.asarray([-1.0, 1.0], eta.dtype)  # [2]
  reach = jnp.maximum(sign * eta[:, None], 0.0) + _TAIL  # [d, 2]
  top = jnp.arcsinh(reach / resolution)  # x range per side
  x = top[..., None] * jnp.asarray(unit, eta.dtype)  # [d, 2, M]
  z = sign[:, None] * resolution * jnp.sinh(x)
  jac = top[..., None] * jnp.asarray(unit_w, eta.dtype)
  jac = jac * resolution * jnp.cosh(x)
  r = jnp.abs(z - eta[:, None, None])
  density = jnp.exp(-r - 2.0 * jax.nn.softplus(-r))  # sigma(x) sigma(-x)
  return z, jac * density


def _map(name, f, x, what):
  """`f` (scalar -> scalar) at every entry of `x`."""
  flat = x.reshape(-1)
  try:
    out = jax.vmap(f)(flat)
  except (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
  ) as e:
    raise TypeError(
      f"{name}: {what} must be a JAX function (it is evaluated and "
      f"differentiated at quadrature nodes); tracing it raised {e}"
    ) from e
  if out.shape != flat.shape:
    raise TypeError(
      f"{name}: {what} must return a scalar; it returned shape "
      f"{tuple(out.shape[1:])}."
    )
  return out.reshape(x.shape)


def _scalar(name, function, logits, additive, what):
  """The per-coordinate scalar function behind `function`."""
  function = _internal.as_cost(function, what, name)
  if additive:
    return function
  if logits.size != 1:
    raise ValueError(
      f"{name}: logits has {logits.size} entries; the relaxed references "
      f"need d = 1 or an additive {what} (additive=True, {what} a scalar "
      "function of one coordinate)."
    )
  shape = logits.shape
  return lambda x: jnp.reshape(function(jnp.reshape(x, shape)), ())


def _prepare(name, cost, logits, temperature, additive):
  logits = en.check_logits(name, logits)
  tau = en.check_positive(name, temperature, "temperature")
  f = _scalar(name, cost, logits, additive, "cost")
  return logits, logits.reshape(-1), tau.astype(logits.dtype), f


def _finish(name, shape, mean, variance):
  en.check_finite_results(name, mean=mean, variance=variance)
  return EstimatorMoments(
    mean=mean.reshape(shape), variance=variance.reshape(shape)
  )


@jax.jit
def _two_pass(g, w):
  mean = jnp.sum(w * g, axis=(1, 2))
  variance = jnp.sum(w * jnp.square(g - mean[:, None, None]), axis=(1, 2))
  return mean, variance


@jax.jit
def _relaxation(z, tau):
  """:math:`y = \\sigma(z/\\tau)` and :math:`dy/dz = y(1-y)/\\tau`."""
  return jax.nn.sigmoid(z / tau), (
    jax.nn.sigmoid(z / tau) * jax.nn.sigmoid(-z / tau) / tau
  )


def concrete_moments(
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  temperature: jax.typing.ArrayLike,
  *,
  additive: bool = False,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-draw binary concrete estimator.

  :math:`g_i = f'(y_i)\,y_i(1-y_i)/\tau`, :math:`y = \sigma(z/\tau)`
  (module docstring). Its mean is the gradient of the *relaxed* objective
  :math:`E f(y)` (see :func:`relaxed_bernoulli_expectation`), not of
  :math:`E f(b)`; as :math:`\tau \to 0` it tends to the exact gradient while
  its variance grows like :math:`1/\tau`.

  Args:
    cost: d = 1: a scalar JAX cost on arrays shaped like `logits`;
      `additive`: the scalar :math:`f` of one coordinate. Differentiable on
      [0, 1].
    logits: :math:`\eta`.
    temperature: :math:`\tau > 0`.
    additive: whether :math:`F = \sum_i f(y_i)`.
    num_panels: panels per half-line (static).

  Returns:
    :class:`EstimatorMoments`, shaped like `logits`.
  """
  name = "concrete_moments"
  logits, eta, tau, f = _prepare(name, cost, logits, temperature, additive)
  z, w = logistic_rule(eta, tau, num_panels)
  y, dy = _relaxation(z, tau)
  g = _map(name, jax.grad(f), y, "cost") * dy
  return _finish(name, logits.shape, *_two_pass(g, w))


def straight_through_moments(
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  temperature: jax.typing.ArrayLike,
  *,
  additive: bool = False,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-draw straight-through estimator.

  :math:`g_i = f'(b_i)\,y_i(1-y_i)/\tau` for d = 1 or an additive cost
  (the general cost is ``straight_through_general``, by enumeration).

  Args:
    cost, logits, temperature, additive, num_panels: as
      :func:`concrete_moments`; :math:`f` differentiable at 0 and 1.

  Returns:
    :class:`EstimatorMoments`, shaped like `logits`.
  """
  name = "straight_through_moments"
  logits, eta, tau, f = _prepare(name, cost, logits, temperature, additive)
  z, w = logistic_rule(eta, tau, num_panels)
  _, dy = _relaxation(z, tau)
  df = _map(name, jax.grad(f), jnp.asarray([0.0, 1.0], eta.dtype), "cost")
  g = df[None, :, None] * dy
  return _finish(name, logits.shape, *_two_pass(g, w))


def straight_through_general(
  name: str, cost: Callable[[jax.Array], Any], draw: Any, temperature, panels
) -> EstimatorMoments:
  r"""Straight-through moments for any differentiable cost, d <= 12.

  :math:`g_i = \partial_i F(b)\,r_i`, :math:`r_i = y_i(1-y_i)/\tau`,
  depends on :math:`b` and on :math:`z_i` alone, and given :math:`b_i`,
  :math:`r_i` is independent of the other coordinates; with
  :math:`\bar r_i(b_i) = E[r_i | b_i]`,
  :math:`\mu_i = \sum_b P(b)\,\partial_i F(b)\,\bar r_i(b_i)` and
  :math:`\mathrm{Var}_i = \sum_b P(b)[\partial_i F(b)^2
  \mathrm{Var}(r_i | b_i) + (\partial_i F(b)\,\bar r_i(b_i) - \mu_i)^2]`.

  `draw` is the enumeration of :mod:`rgrad.exact._discrete` (states,
  probabilities, logits).
  """
  tau = en.check_positive(name, temperature, "temperature")
  tau = tau.astype(draw.eta.dtype)
  z, w = logistic_rule(draw.eta, tau, panels)
  _, dy = _relaxation(z, tau)
  mass = jnp.sum(w, -1)  # [d, 2]
  safe = jnp.where(mass > 0, mass, 1.0)
  r_bar = jnp.sum(w * dy, -1) / safe  # E[r | b], [d, 2]
  r_var = jnp.sum(w * jnp.square(dy - r_bar[..., None]), -1) / safe
  cost = _internal.as_cost(cost, "cost", name)
  rows = jnp.asarray(draw.states, draw.eta.dtype).reshape((-1,) + draw.shape)
  try:
    grads = jax.vmap(jax.grad(cost))(rows).reshape(rows.shape[0], -1)
  except (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
  ) as e:
    raise TypeError(
      f"{name}: cost must be a JAX function differentiable at the states "
      f"for 'straight_through'; differentiating it raised {e}"
    ) from e
  side = draw.states.astype(np.int32)  # [2^d, d]
  col = np.arange(draw.d)[None, :]
  rb = r_bar[col, side]  # [2^d, d]
  rv = r_var[col, side]
  mean = draw.probs @ (grads * rb)
  variance = draw.probs @ (
    jnp.square(grads) * rv + jnp.square(grads * rb - mean)
  )
  en.check_finite_results(name, mean=mean, variance=variance)
  return EstimatorMoments(
    mean=mean.reshape(draw.shape), variance=variance.reshape(draw.shape)
  )


def relaxed_bernoulli_expectation(
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  *,
  temperature: jax.typing.ArrayLike,
  additive: bool = False,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> tuple[jax.Array, jax.Array]:
  r"""The relaxed objective :math:`E f(\sigma(z/\tau))` and its gradient.

  The gradient is taken by the score identity in :math:`z`,
  :math:`\partial_\eta \rho(z - \eta) = \rho(z - \eta)(2\sigma(z - \eta) -
  1)`, from values of :math:`f` only: independent of the concrete
  estimator's pathwise integrand, whose mean it must equal.

  Args:
    cost, logits, temperature, additive, num_panels: as
      :func:`concrete_moments` (for additive, the value sums the
      coordinates).

  Returns:
    ``(value, gradient)``, the gradient shaped like `logits`.
  """
  name = "relaxed_bernoulli_expectation"
  logits, eta, tau, f = _prepare(name, cost, logits, temperature, additive)
  z, w = logistic_rule(eta, tau, num_panels)
  y, _ = _relaxation(z, tau)
  fy = _map(name, f, y, "cost")
  means = jnp.sum(w * fy, axis=(1, 2))
  score = 2.0 * jax.nn.sigmoid(z - eta[:, None, None]) - 1.0
  gradient = jnp.sum(w * (fy - means[:, None, None]) * score, axis=(1, 2))
  value = jnp.sum(means)
  en.check_finite_results(name, value=value, gradient=gradient)
  return value, gradient.reshape(logits.shape)


def _relax(name, logits, eta, f, c, resolution, num_panels):
  """Moments of RELAX with per-coordinate cost `f` and surrogate `c`."""
  dtype = eta.dtype
  f01 = en.cost_table(name, f, np.array([0.0, 1.0]), (), dtype)  # [2]
  z, w = logistic_rule(eta, resolution, num_panels)  # [d, 2, M]
  cz = _map(name, c, z, "surrogate")
  dcz = _map(name, jax.grad(c), z, "surrogate")
  mean, variance = _relax_core(f01, z, w, cz, dcz, eta)
  return _finish(name, logits.shape, mean, variance)


@jax.jit
def _relax_core(f01, z, w, cz, dcz, eta):
  """The moments from the surrogate's values at the nodes (no callables)."""
  dtype = eta.dtype
  p = jax.nn.sigmoid(eta)[:, None, None]
  b = jnp.asarray([0.0, 1.0], dtype)[None, :, None]
  # d z~ / d eta at fixed v, as a function of z~ on each half-line.
  dzt = jnp.where(b > 0, -p * jnp.expm1(-z), -(1.0 - p) * jnp.expm1(z))
  a = (f01[None, :, None] - cz) * (b - p) - dcz * dzt  # A_b(z~)
  mass = jnp.sum(w, -1)  # [d, 2]
  safe = jnp.where(mass > 0, mass, 1.0)

  def cond(h):  # E[h | b], [d, 2]
    return jnp.sum(w * h, -1) / safe

  def spread(h, centre):  # p_b Var(h | b), [d, 2]
    return jnp.sum(w * jnp.square(h - centre[..., None]), -1)

  alpha, beta = cond(a), cond(dcz)
  mean = jnp.sum(mass * (alpha + beta), -1)  # [d]
  variance = jnp.sum(
    spread(a, alpha)
    + spread(dcz, beta)
    + mass * jnp.square(alpha + beta - mean[:, None]),
    -1,
  )
  # The other coordinates' D_j = f(b_j) - c(z~_j) (zero terms in d = 1).
  gamma = cond(cz)
  d_mean = jnp.sum(mass * (f01[None, :] - gamma), -1)  # E D_j
  d_var = jnp.sum(
    spread(cz, gamma)
    + mass * jnp.square(f01[None, :] - gamma - d_mean[:, None]),
    -1,
  )
  r_mean = jnp.sum(d_mean) - d_mean
  r_var = jnp.sum(d_var) - d_var
  p = p[:, 0, 0]
  a_x = jnp.sum(mass * (b[0, :, 0] - p[:, None]) * (alpha + beta), -1)
  cross = 2.0 * a_x * r_mean + p * (1.0 - p) * (r_var + jnp.square(r_mean))
  return mean, variance + cross


def relax_moments(
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  surrogate: Callable[[jax.Array], Any],
  *,
  additive: bool = False,
  resolution: jax.typing.ArrayLike = 1.0,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-draw RELAX estimator.

  :math:`g = [F(b) - C(\tilde z)]\nabla\log P(b) + \nabla C(z) - \nabla
  C(\tilde z)` (Grathwohl et al. 2018, Eq. 8, with the conditional
  relaxation of the module docstring), for a fixed surrogate :math:`C` of
  the relaxed logits. It is unbiased for any :math:`C`: the mean equals
  :func:`bernoulli_expectation`'s gradient (a check of this law).

  Args:
    cost: d = 1: scalar cost on arrays shaped like `logits` (values at 0/1
      only); `additive`: the scalar :math:`f`, :math:`F = \sum_i f(b_i)`.
    logits: :math:`\eta`.
    surrogate: d = 1: :math:`C(z)` on arrays shaped like `logits`, a
      differentiable JAX function; `additive`: the scalar :math:`c`,
      :math:`C(z) = \sum_i c(z_i)`.
    additive: whether cost and surrogate are per coordinate.
    resolution: width of the surrogate's narrowest feature at :math:`z = 0`
      (the quadrature clusters nodes there; REBAR passes its temperature).
    num_panels: panels per half-line (static).

  Returns:
    :class:`EstimatorMoments`, shaped like `logits`.

  Raises:
    ValueError: d > 1 without `additive`, non-finite logits or results, a
      non-positive `resolution`.
    TypeError: non-callable or non-scalar cost/surrogate.
  """
  name = "relax_moments"
  logits = en.check_logits(name, logits)
  resolution = en.check_positive(name, resolution, "resolution")
  f = _scalar(name, cost, logits, additive, "cost")
  c = _scalar(name, surrogate, logits, additive, "surrogate")
  eta = logits.reshape(-1)
  resolution = resolution.astype(eta.dtype)
  return _relax(name, logits, eta, f, c, resolution, num_panels)


def rebar_moments(
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  *,
  temperature: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
  additive: bool = False,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> EstimatorMoments:
  r"""Mean and variance of the single-draw REBAR estimator.

  REBAR (Tucker et al. 2017, Eq. 5) is RELAX with the surrogate
  :math:`C(z) = \lambda_s F(\sigma(z/\tau))`, :math:`\lambda_s` = `scale`,
  :math:`\tau` = `temperature`: :func:`relax_moments` with that surrogate.
  Unbiased for any scale and temperature.

  Args:
    cost: as :func:`relax_moments`; also evaluated on [0, 1] (JAX,
      differentiable there).
    logits: :math:`\eta` (a scalar or shape [1] for d = 1).
    temperature: :math:`\tau > 0`.
    scale: the control variate's scale :math:`\lambda_s`, real.
    additive, num_panels: as :func:`relax_moments`.

  Returns:
    :class:`EstimatorMoments`, shaped like `logits`.
  """
  name = "rebar_moments"
  logits = en.check_logits(name, logits)
  tau = en.check_positive(name, temperature, "temperature")
  scale = jnp.asarray(scale)
  if scale.shape != ():
    raise ValueError(f"{name}: scale must be a scalar, got {scale.shape}.")
  s = _internal.concrete(scale)
  if s is not None and not np.isfinite(s):
    raise ValueError(f"{name}: scale must be finite, got {s}.")
  f = _scalar(name, cost, logits, additive, "cost")
  eta = logits.reshape(-1)
  tau = tau.astype(eta.dtype)
  scale = scale.astype(eta.dtype)

  def c(z):
    return scale * f(jax.nn.sigmoid(z / tau))

  return _relax(name, logits, eta, f, c, tau, num_panels)
