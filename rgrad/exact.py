r"""Exact references for Gaussian gradient estimators, by quadrature.

For :math:`X \sim N(\mu, \sigma^2)`, written :math:`X = \mu + \sigma\epsilon`
with :math:`\epsilon \sim N(0, 1)`, and a smooth scalar cost
:math:`f: \mathbb{R} \to \mathbb{R}`, this module computes, to quadrature
accuracy,

* the gradient :math:`\nabla_{\mu,\sigma} E[f(X)]` (:func:`exact_gradient`);
* the variance of the *single-sample* pathwise, score-function and
  measure-valued estimators of that gradient (:func:`pathwise_variance`,
  :func:`score_function_variance`, :func:`measure_valued_variance`).

These are the references the Monte Carlo estimators in
:mod:`rgrad.estimators` are tested against, so this module deliberately shares
no code with them (a reference that calls the code under test checks nothing):
every expectation here is a fixed quadrature rule, a finite weighted sum
:math:`E[q] \approx \sum_k w_k q(x_k)`, with nodes and weights computed once
by NumPy at trace time. Each estimator's law is written out below as an
integral against the standard normal, Rayleigh, double-sided Maxwell or
uniform density, following Mohamed et al. (2020), Sections 4 to 6.

Quadrature rules used (all with a static number of points ``num_points``):

* Gauss--Hermite for :math:`E[q(\epsilon)]`, :math:`\epsilon \sim N(0,1)`:
  exact for polynomials of degree :math:`< 2n`.
* Double-sided Maxwell, density :math:`m^2\phi(m)`: the Gauss--Hermite rule
  with weights multiplied by :math:`m^2`, since
  :math:`E_M[q(M)] = E_\epsilon[q(\epsilon)\epsilon^2]`.
* Rayleigh, i.e. Weibull(scale :math:`\sqrt2`, shape 2), density
  :math:`r e^{-r^2/2}` on :math:`r > 0`. The density has a kink at 0 when
  folded onto :math:`\mathbb{R}`, so a plain rule converges slowly. Split
  :math:`q` into even and odd parts: the even part is a smooth function of
  :math:`u = r^2/2` and :math:`\int_0^\infty q_e(r) r e^{-r^2/2} dr =
  \int_0^\infty q_e(\sqrt{2u}) e^{-u} du` is a Gauss--Laguerre integral; the
  odd part times :math:`r` is even and smooth, so
  :math:`\int_0^\infty q_o(r) r e^{-r^2/2} dr = \sqrt{\pi/2}\,
  E_\epsilon[q(\epsilon)\epsilon]` is a Gauss--Hermite integral. (The Laguerre
  rule is computed by Golub--Welsch with log-space weights: NumPy's
  ``laggauss`` overflows past ~180 nodes.) Together
  they form one signed rule on :math:`3n` nodes that converges spectrally
  for any smooth :math:`q`.
* Gauss--Legendre on :math:`[0, 1]` for the uniform variable of the coupled
  Maxwell--Gaussian pair.

Variances are computed in two passes, :math:`E[(q - E[q])^2]`, never as
:math:`E[q^2] - E[q]^2`, so that a small variance next to a large mean is not
lost to cancellation.

Accuracy limits. Quadrature is spectrally accurate only for integrands that
are smooth (analytic, ideally), that do not oscillate faster than the nodes
resolve and that have no features much narrower than :math:`\sigma`. Measured
in float64 with the default ``num_points=100`` (errors below 1e-10):
:math:`\cos(kx)` for :math:`k\sigma` up to about 10 (at :math:`k\sigma = 13`
the error is ~2e-11; at 20 the result is wrong), Gaussian bumps
:math:`\exp(-kx^2)` for :math:`k\sigma^2` up to about 3 (4: 2e-10; 8: 3e-6,
which 200 points bring back to 4e-11), and polynomials of moderate degree.
Variances integrate :math:`f^2` (or :math:`f'^2`) times a polynomial, which
halves these ranges roughly: the pathwise variance of :math:`\cos(10x)` at
:math:`\sigma = 1` (integrand :math:`\sin^2(10x)`, frequency 20) is 70.39
with 100 points for a true 50, 50.0004 with 150 and exact to 1e-14 with 200
and more. Every rule stays finite for any ``num_points`` (the Laguerre rule
is computed in log space, :func:`_laguerre_rule`), so more points are always
an option. Costs with kinks (``abs``, ``relu``), jumps, or
faster oscillation are *not* handled accurately: increase ``num_points``
(the error then decays only algebraically for kinks) or use another
reference. Costs that grow faster than :math:`e^{x^2/2}` have no finite
moments and no meaningful result.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 21(132), 2020. https://arxiv.org/abs/1906.10652
  (Section 4: score function; Section 5: pathwise; Section 6 and Table 1:
  measure-valued gradients of the Gaussian and their coupling).
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ScalarCost = Callable[[jax.Array], jax.Array]

DEFAULT_NUM_POINTS = 100


class LocScale(NamedTuple):
  """A pair of per-parameter quantities for :math:`N(\\mu, \\sigma^2)`.

  Unpacks as the ``(d/dmu, d/dsigma)`` tuple of the contract.
  """

  loc: jax.Array
  scale: jax.Array


class _Rule(NamedTuple):
  """A quadrature rule :math:`E[q(Z)] \\approx \\sum_k w_k q(z_k)`."""

  nodes: np.ndarray  # [num_nodes] (or [num_nodes, 2] for a product rule)
  weights: np.ndarray  # [num_nodes]


# ---------------------------------------------------------------------------
# Quadrature rules, computed in float64 NumPy at trace time (static sizes).
# ---------------------------------------------------------------------------


@functools.cache
def _normal_rule(num_points: int) -> _Rule:
  r"""Gauss--Hermite rule for :math:`E[q(\epsilon)]`, standard normal.

  ``hermgauss`` integrates against :math:`e^{-t^2}`; substituting
  :math:`\epsilon = \sqrt2 t` gives weights :math:`w/\sqrt\pi`.
  """
  t, w = np.polynomial.hermite.hermgauss(num_points)
  return _Rule(nodes=math.sqrt(2.0) * t, weights=w / math.sqrt(math.pi))


def _laguerre_recurrence(u: np.ndarray, n: int):
  r"""Orthonormal Laguerre values at `u`, rescaled to stay finite.

  The Laguerre polynomials are orthonormal for :math:`e^{-u}` and satisfy
  :math:`(j+1)L_{j+1} = (2j+1-u)L_j - jL_{j-1}`. Near the largest nodes
  (:math:`u \approx 4n`) they grow like :math:`e^{u/2}`, past the float64
  range for :math:`n \gtrsim 180`: every step divides by the running
  :math:`\sqrt{\sum_{i \le j} L_i^2}` and keeps its logarithm instead.

  Returns:
    ``(L_n, L_{n-1}, total, log_scale)``, all ``[len(u)]``: the first two
    divided by :math:`S = e^{\mathrm{log\_scale}}` and ``total`` equal to
    :math:`\sum_{j<n} L_j^2 / S^2`.
  """
  p_prev = np.zeros_like(u)  # L_{-1}
  p = np.ones_like(u)  # L_0
  total = np.ones_like(u)
  log_scale = np.zeros_like(u)
  for j in range(1, n + 1):
    p_prev, p = p, ((2 * j - 1 - u) * p - (j - 1) * p_prev) / j  # L_j
    if j < n:
      total = total + p * p
      s = np.sqrt(total)  # >= |L_j|, |L_{j-1}|: all stay <= 1
      p, p_prev, total = p / s, p_prev / s, total / (s * s)
      log_scale = log_scale + np.log(s)
  return p, p_prev, total, log_scale


@functools.cache
def _laguerre_rule(num_points: int) -> _Rule:
  r"""Gauss--Laguerre rule for :math:`\int_0^\infty q(u) e^{-u} du`.

  ``numpy.polynomial.laguerre.laggauss`` overflows for ``num_points``
  :math:`\gtrsim 180` (its weights divide by polynomial values near
  :math:`e^{2n}`) and returns NaN. Here, following Golub and Welsch (1969),
  the nodes are the eigenvalues of the symmetric tridiagonal Jacobi matrix
  of the recurrence (diagonal :math:`2j+1`, off-diagonal :math:`j`), polished
  by two Newton steps on :math:`L_n` (with
  :math:`L_n' = n(L_n - L_{n-1})/u`); the weights come from the Christoffel
  function, :math:`w_i = 1 / \sum_{j<n} L_j(u_i)^2`, a sum of positive terms
  evaluated in log space (:func:`_laguerre_recurrence`). The smallest weights
  (below ~1e-308, at nodes where any integrand of interest is negligible)
  underflow to exactly 0, never to NaN.

  References:
    Golub, Welsch. Calculation of Gauss quadrature rules. Math. Comp. 23
    (1969), 221-230.
  """
  n = num_points
  j = np.arange(1, n, dtype=np.float64)
  jacobi = (
    np.diag(2.0 * np.arange(n, dtype=np.float64) + 1.0)
    + np.diag(j, 1)
    + np.diag(j, -1)
  )
  u = np.linalg.eigvalsh(jacobi)
  for _ in range(2):
    l_n, l_prev, _, _ = _laguerre_recurrence(u, n)
    u = u - l_n * u / (n * (l_n - l_prev))  # Newton: L_n / L_n'
  _, _, total, log_scale = _laguerre_recurrence(u, n)
  log_w = -(np.log(total) + 2.0 * log_scale)
  # Normalize to the exact zeroth moment, int e^{-u} du = 1 (log-sum-exp).
  log_w = log_w - (np.max(log_w) + np.log(np.sum(np.exp(log_w - log_w.max()))))
  weights = np.exp(log_w)
  if not (np.all(np.isfinite(u)) and np.all(np.isfinite(weights))):
    raise ValueError(f"Gauss--Laguerre rule failed for num_points={n}.")
  return _Rule(nodes=u, weights=weights)


@functools.cache
def _maxwell_rule(num_points: int) -> _Rule:
  r"""Rule for the double-sided Maxwell law, density :math:`m^2 \phi(m)`."""
  eps, w = _normal_rule(num_points)
  return _Rule(nodes=eps, weights=w * np.square(eps))


@functools.cache
def _rayleigh_rule(num_points: int) -> _Rule:
  r"""Signed rule for the Rayleigh law, density :math:`r e^{-r^2/2}`, r > 0.

  Evaluates :math:`q` on :math:`\mathbb{R}` (see the module docstring): the
  even part of :math:`q` by Gauss--Laguerre in :math:`u = r^2/2` at
  :math:`\pm\sqrt{2u_j}` with weights :math:`w_j/2` each, the odd part by
  Gauss--Hermite at :math:`\epsilon_i` with weights
  :math:`\sqrt{\pi/2}\, w_i \epsilon_i` (signed; the even part of
  :math:`q(\epsilon)\epsilon` vanishes under the symmetric rule).
  """
  u, w_lag = _laguerre_rule(num_points)
  r = np.sqrt(2.0 * u)
  eps, w_her = _normal_rule(num_points)
  nodes = np.concatenate([r, -r, eps])
  weights = np.concatenate(
    [0.5 * w_lag, 0.5 * w_lag, math.sqrt(0.5 * math.pi) * w_her * eps]
  )
  return _Rule(nodes=nodes, weights=weights)


@functools.cache
def _maxwell_uniform_rule(num_points: int) -> _Rule:
  r"""Product rule for :math:`(M, U)`, M double-sided Maxwell, U ~ U(0, 1).

  Gauss--Legendre on :math:`[-1, 1]` mapped to :math:`[0, 1]`. Nodes are
  ``[num_points**2, 2]`` with columns ``(m, u)``.
  """
  m, w_m = _maxwell_rule(num_points)
  x, w_x = np.polynomial.legendre.leggauss(num_points)
  u, w_u = 0.5 * (x + 1.0), 0.5 * w_x
  mm, uu = np.meshgrid(m, u, indexing="ij")
  nodes = np.stack([mm.ravel(), uu.ravel()], axis=-1)
  weights = np.outer(w_m, w_u).ravel()
  return _Rule(nodes=nodes, weights=weights)


# ---------------------------------------------------------------------------
# Argument checks and evaluation helpers.
# ---------------------------------------------------------------------------


def _check_num_points(num_points) -> None:
  if isinstance(num_points, bool) or not isinstance(num_points, int):
    raise TypeError(
      f"num_points must be a Python int (static), got {num_points!r}."
    )
  if num_points < 2:
    raise ValueError(f"num_points must be >= 2, got {num_points}.")


def _check_scale(scale: jax.Array) -> None:
  """Raises if `scale` is concrete and not positive; no-op when traced."""
  try:
    value = np.asarray(scale)
  except (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
  ):
    return  # Traced under jit/vmap: the values are unknown here.
  if not np.all(value > 0):
    raise ValueError(
      "scale must be strictly positive (and not NaN); got "
      f"{value if value.size <= 8 else f'an array with min {np.min(value)}'}."
    )


def _prepare(f, loc, scale, num_points):
  """Validates arguments; returns `loc`, `scale` broadcast, in a float dtype."""
  if not callable(f):
    raise TypeError(
      f"f must be a callable scalar cost, got {type(f).__name__}."
    )
  _check_num_points(num_points)
  loc = jnp.asarray(loc)
  scale = jnp.asarray(scale)
  for name, value in (("loc", loc), ("scale", scale)):
    if not (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      raise TypeError(f"{name} must be real, got dtype {value.dtype}.")
  _check_scale(scale)
  dtype = jnp.result_type(loc, scale, float)
  loc, scale = jnp.broadcast_arrays(loc.astype(dtype), scale.astype(dtype))
  return loc, scale


def _apply(f: ScalarCost, x: jax.Array) -> jax.Array:
  """Applies the scalar function `f` to every entry of `x` (via vmap)."""
  flat = x.reshape(-1)
  out = jax.vmap(f)(flat)
  if out.shape != flat.shape:
    raise TypeError(
      "f must map a scalar to a scalar; applied to one point it returned "
      f"shape {out.shape[1:]}."
    )
  return out.reshape(x.shape)


def _expect(weights: np.ndarray, values: jax.Array) -> jax.Array:
  """:math:`\\sum_k w_k q_k` over the last axis of `values`."""
  return jnp.sum(values * jnp.asarray(weights, values.dtype), axis=-1)


def _mean_and_variance(weights: np.ndarray, values: jax.Array):
  """Two-pass mean and variance of a quantity given at the rule's nodes."""
  mean = _expect(weights, values)
  variance = _expect(weights, jnp.square(values - mean[..., None]))
  return mean, variance


def _at(loc, scale, nodes):
  """Points :math:`\\mu + \\sigma z` for all nodes: ``[*batch, num_nodes]``."""
  nodes = jnp.asarray(nodes, loc.dtype)
  return loc[..., None] + scale[..., None] * nodes


class _Moments(NamedTuple):
  """Mean and variance of a single-sample estimator, per parameter."""

  mean: LocScale
  variance: LocScale


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
    f: scalar cost :math:`\mathbb{R} \to \mathbb{R}`, smooth (see the module
      docstring for the accuracy limits). Applied to the nodes with
      `jax.vmap`; it may close over traced values.
    loc: means :math:`\mu`, any shape broadcastable with `scale`.
    scale: standard deviations :math:`\sigma > 0` (checked when concrete).
    num_points: number of quadrature nodes (static).

  Returns:
    ``LocScale(loc=d/dmu, scale=d/dsigma)``, each of the broadcast shape of
    `loc` and `scale`.

  Raises:
    ValueError: if `scale` is concrete and not positive, or `num_points < 2`.
    TypeError: if `f` is not callable or not scalar-valued.
  """
  loc, scale = _prepare(f, loc, scale, num_points)
  eps, weights = _normal_rule(num_points)
  fx = _apply(f, _at(loc, scale, eps))  # [*batch, num_points]
  centred = fx - _expect(weights, fx)[..., None]
  eps = jnp.asarray(eps, fx.dtype)
  d_loc = _expect(weights, centred * eps) / scale
  d_scale = _expect(weights, centred * (jnp.square(eps) - 1.0)) / scale
  return LocScale(loc=d_loc, scale=d_scale)


# ---------------------------------------------------------------------------
# Pathwise (Section 5) and score-function (Section 4) estimators.
# ---------------------------------------------------------------------------


def _pathwise_moments(f, loc, scale, num_points) -> _Moments:
  loc, scale = _prepare(f, loc, scale, num_points)
  eps, weights = _normal_rule(num_points)
  # The user's cost is differentiated here, not an estimator: this is the
  # integrand of the pathwise identity, not a call into the code under test.
  df = _apply(jax.grad(f), _at(loc, scale, eps))  # f'(mu + sigma eps)
  mean_loc, var_loc = _mean_and_variance(weights, df)
  mean_scale, var_scale = _mean_and_variance(
    weights, df * jnp.asarray(eps, df.dtype)
  )
  return _Moments(LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale))


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
  return _pathwise_moments(f, loc, scale, num_points).variance


def _score_function_moments(f, loc, scale, baseline, num_points) -> _Moments:
  loc, scale = _prepare(f, loc, scale, num_points)
  eps, weights = _normal_rule(num_points)
  fx = _apply(f, _at(loc, scale, eps))
  centred = fx - jnp.asarray(baseline, fx.dtype)[..., None]
  eps = jnp.asarray(eps, fx.dtype)
  # Hand-written Gaussian scores: d/dmu log N = eps / sigma,
  # d/dsigma log N = (eps^2 - 1) / sigma.
  mean_loc, var_loc = _mean_and_variance(
    weights, centred * eps / scale[..., None]
  )
  mean_scale, var_scale = _mean_and_variance(
    weights, centred * (jnp.square(eps) - 1.0) / scale[..., None]
  )
  return _Moments(LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale))


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
  return _score_function_moments(f, loc, scale, baseline, num_points).variance


# ---------------------------------------------------------------------------
# Measure-valued estimator (Section 6, Table 1).
# ---------------------------------------------------------------------------


def _measure_valued_moments(f, loc, scale, coupling, num_points) -> _Moments:
  r"""Mean and variance of the Gaussian measure-valued estimator.

  Mean (Table 1): :math:`\partial_\mu N = c_\mu (p^+ - p^-)` with
  :math:`c_\mu = 1/(\sqrt{2\pi}\sigma)`, :math:`p^\pm = \mu \pm \sigma R`,
  :math:`R` Rayleigh (Weibull with scale :math:`\sqrt2`, shape 2). Coupled:
  one :math:`R` for both arms; uncoupled: independent :math:`R, R'`.

  Scale: :math:`\partial_\sigma N = c_\sigma (p^+ - p^-)` with
  :math:`c_\sigma = 1/\sigma`, :math:`p^+ = \mu + \sigma M` (M double-sided
  Maxwell), :math:`p^- = \mu + \sigma\epsilon`. Coupled:
  :math:`\epsilon = U M` with :math:`U \sim U(0, 1)` (which is exactly
  standard normal); uncoupled: :math:`\epsilon` independent of M.
  """
  if not isinstance(coupling, bool):
    raise TypeError(f"coupling must be a Python bool, got {coupling!r}.")
  loc, scale = _prepare(f, loc, scale, num_points)
  c_loc = 1.0 / (math.sqrt(2.0 * math.pi) * scale[..., None])
  c_scale = 1.0 / scale[..., None]

  r_nodes, r_weights = _rayleigh_rule(num_points)
  f_plus = _apply(f, _at(loc, scale, r_nodes))  # f(mu + sigma r)
  f_minus = _apply(f, _at(loc, scale, -r_nodes))  # f(mu - sigma r)
  if coupling:
    mean_loc, var_loc = _mean_and_variance(
      r_weights, c_loc * (f_plus - f_minus)
    )
  else:
    # Independent arms: the variance of a difference is the sum.
    m_plus, v_plus = _mean_and_variance(r_weights, c_loc * f_plus)
    m_minus, v_minus = _mean_and_variance(r_weights, c_loc * f_minus)
    mean_loc, var_loc = m_plus - m_minus, v_plus + v_minus

  if coupling:
    mu_nodes, mu_weights = _maxwell_uniform_rule(num_points)
    m, u = mu_nodes[:, 0], mu_nodes[:, 1]
    f_max = _apply(f, _at(loc, scale, m))  # f(mu + sigma M)
    f_gauss = _apply(f, _at(loc, scale, u * m))  # f(mu + sigma U M)
    mean_scale, var_scale = _mean_and_variance(
      mu_weights, c_scale * (f_max - f_gauss)
    )
  else:
    m, w_m = _maxwell_rule(num_points)
    eps, w_n = _normal_rule(num_points)
    m_plus, v_plus = _mean_and_variance(
      w_m, c_scale * _apply(f, _at(loc, scale, m))
    )
    m_minus, v_minus = _mean_and_variance(
      w_n, c_scale * _apply(f, _at(loc, scale, eps))
    )
    mean_scale, var_scale = m_plus - m_minus, v_plus + v_minus
  return _Moments(LocScale(mean_loc, mean_scale), LocScale(var_loc, var_scale))


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
  return _measure_valued_moments(f, loc, scale, coupling, num_points).variance
