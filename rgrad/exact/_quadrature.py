r"""Quadrature rules and evaluation helpers behind :mod:`rgrad.exact`.

Every expectation in :mod:`rgrad.exact` is a fixed quadrature rule, a finite
weighted sum :math:`E[q] \approx \sum_k w_k q(x_k)`, with nodes and weights
computed once by NumPy in float64 at trace time (static sizes):

* Gauss--Hermite for :math:`E[q(\epsilon)]`, :math:`\epsilon \sim N(0,1)`
  (:func:`normal_rule`): exact for polynomials of degree :math:`< 2n`.
  Like the Gauss--Laguerre rule it is computed by Golub--Welsch with the
  weights in log space, so both stay finite for any number of nodes
  (NumPy's ``hermgauss`` and ``laggauss`` return NaN from about 375 and 180).
* Double-sided Maxwell, density :math:`m^2\phi(m)`: the Gauss--Hermite rule
  with weights multiplied by :math:`m^2`, since
  :math:`E_M[q(M)] = E_\epsilon[q(\epsilon)\epsilon^2]`.
* Rayleigh, i.e. Weibull(scale :math:`\sqrt2`, shape 2), density
  :math:`r e^{-r^2/2}` on :math:`r > 0`. The density has a kink at 0 when
  folded onto :math:`\mathbb{R}`, so a plain rule converges slowly. Split
  :math:`q` into even and odd parts: the even part is a smooth function of
  :math:`u = r^2/2` and :math:`\int_0^\infty q_e(r) r e^{-r^2/2} dr =
  \int_0^\infty q_e(\sqrt{2u}) e^{-u} du` is a Gauss--Laguerre integral
  (:func:`laguerre_rule`); the odd part times :math:`r` is even and smooth,
  so :math:`\int_0^\infty q_o(r) r e^{-r^2/2} dr = \sqrt{\pi/2}\,
  E_\epsilon[q(\epsilon)\epsilon]` is a Gauss--Hermite integral. Together
  they form one signed rule on :math:`3n` nodes that converges spectrally
  for any smooth :math:`q`.
* Gauss--Legendre on :math:`[0, 1]` for the uniform variable of the coupled
  Maxwell--Gaussian pair.

This module is private to :mod:`rgrad.exact` (its names may change); the
rules users need are re-exported there.
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal

ScalarCost = Callable[[jax.Array], jax.Array]

DEFAULT_NUM_POINTS = 100


class LocScale(NamedTuple):
  """A pair of per-parameter quantities for :math:`N(\\mu, \\sigma^2)`.

  Unpacks as the ``(d/dmu, d/dsigma)`` tuple of the contract.
  """

  loc: jax.Array
  scale: jax.Array


class Rule(NamedTuple):
  """A quadrature rule :math:`E[q(Z)] \\approx \\sum_k w_k q(z_k)`.

  Attributes:
    nodes: ``[num_nodes]`` (``[num_nodes, 2]`` for a product rule), float64.
    weights: ``[num_nodes]``, float64.
  """

  nodes: np.ndarray
  weights: np.ndarray


# ---------------------------------------------------------------------------
# Quadrature rules, computed in float64 NumPy at trace time (static sizes).
# ---------------------------------------------------------------------------


def _hermite_recurrence(x: np.ndarray, n: int):
  r"""Orthonormal Hermite values at `x`, rescaled to stay finite.

  The probabilists' Hermite polynomials, orthonormal for the standard normal,
  satisfy :math:`\sqrt{j+1}\,p_{j+1} = x p_j - \sqrt{j}\,p_{j-1}`. At the
  outermost nodes (:math:`|x| \approx 2\sqrt n`) they grow like
  :math:`e^{x^2/4}`, past the float64 range for :math:`n \gtrsim 350`: as in
  :func:`_laguerre_recurrence`, every step divides by the running
  :math:`\sqrt{\sum_{i \le j} p_i^2}` and keeps its logarithm instead.

  Returns:
    ``(p_n, p_{n-1}, total, log_scale)``, all ``[len(x)]``: the first two
    divided by :math:`S = e^{\mathrm{log\_scale}}` and ``total`` equal to
    :math:`\sum_{j<n} p_j^2 / S^2`.
  """
  p_prev = np.zeros_like(x)  # p_{-1}
  p = np.ones_like(x)  # p_0
  total = np.ones_like(x)
  log_scale = np.zeros_like(x)
  for j in range(1, n + 1):
    p_prev, p = p, (x * p - math.sqrt(j - 1) * p_prev) / math.sqrt(j)  # p_j
    if j < n:
      total = total + p * p
      s = np.sqrt(total)  # >= |p_j|, |p_{j-1}|: all stay <= 1
      p, p_prev, total = p / s, p_prev / s, total / (s * s)
      log_scale = log_scale + np.log(s)
  return p, p_prev, total, log_scale


@functools.cache
def normal_rule(num_points: int) -> Rule:
  r"""Gauss--Hermite rule for :math:`E[q(\epsilon)]`, standard normal.

  ``numpy.polynomial.hermite.hermgauss`` returns NaN weights from 375 nodes
  on (its weights divide by polynomial values that overflow) and NaN nodes
  by 1,000. Here, following Golub and Welsch (1969), the nodes are the
  eigenvalues of the symmetric tridiagonal Jacobi matrix of the
  probabilists' Hermite recurrence (zero diagonal, off-diagonal
  :math:`\sqrt{k}`, :math:`k = 1, \dots, n-1`), polished by two Newton
  steps on :math:`p_n` (with :math:`p_n' = \sqrt{n}\,p_{n-1}`); the weights
  come from the Christoffel function, :math:`w_i = 1 / \sum_{j<n}
  p_j(x_i)^2`, a sum of positive terms evaluated in log space (rather than
  as squared first eigenvector components, which are accurate only to
  ~1e-16 absolute), then normalized to the exact zeroth moment 1. Nodes and
  weights are symmetrized (:math:`x_{n-1-i} = -x_i`, equal weights), so the
  rule integrates every odd function to 0. Weights below ~1e-308 (at
  :math:`|x| \gtrsim 37.6`, where any integrand of interest is negligible)
  lose digits (subnormal) or underflow to exactly 0, never to NaN.

  Args:
    num_points: number of nodes, a Python int >= 2.

  Returns:
    The :class:`Rule`, nodes increasing; exact for polynomials of degree
    < ``2 num_points``.

  Raises:
    ValueError: if the rule is not finite (never seen to 1,000 nodes; a
      guard).

  References:
    Golub, Welsch. Calculation of Gauss quadrature rules. Math. Comp. 23
    (1969), 221-230.
  """
  check_num_points(num_points)
  n = num_points
  off = np.sqrt(np.arange(1, n, dtype=np.float64))
  x = np.linalg.eigvalsh(np.diag(off, 1) + np.diag(off, -1))
  x = 0.5 * (x - x[::-1])  # exactly symmetric; the middle node of odd n is 0
  for _ in range(2):
    p_n, p_prev, _, _ = _hermite_recurrence(x, n)
    x = x - p_n / (math.sqrt(n) * p_prev)  # Newton: p_n / p_n'
    x = 0.5 * (x - x[::-1])
  _, _, total, log_scale = _hermite_recurrence(x, n)
  log_w = -(np.log(total) + 2.0 * log_scale)
  log_w = 0.5 * (log_w + log_w[::-1])
  # Normalize to the exact zeroth moment, E[1] = 1 (log-sum-exp).
  top = np.max(log_w)
  log_w = log_w - (top + np.log(np.sum(np.exp(log_w - top))))
  weights = np.exp(log_w)
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(weights))):
    raise ValueError(f"Gauss--Hermite rule failed for num_points={n}.")
  return Rule(nodes=x, weights=weights)


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
def laguerre_rule(num_points: int) -> Rule:
  r"""Gauss--Laguerre rule for :math:`\int_0^\infty q(u) e^{-u} du`.

  ``numpy.polynomial.laguerre.laggauss`` overflows for ``num_points``
  :math:`\gtrsim 180` (its weights divide by polynomial values near
  :math:`e^{2n}`) and returns NaN. Here, following Golub and Welsch (1969),
  the nodes are the eigenvalues of the symmetric tridiagonal Jacobi matrix
  of the recurrence (diagonal :math:`2j+1`, off-diagonal :math:`j`), polished
  by two Newton steps on :math:`L_n` (with
  :math:`L_n' = n(L_n - L_{n-1})/u`); the weights come from the Christoffel
  function, :math:`w_i = 1 / \sum_{j<n} L_j(u_i)^2`, a sum of positive terms
  evaluated in log space. The smallest weights (below ~1e-308, at nodes where
  any integrand of interest is negligible) underflow to exactly 0, never to
  NaN.

  Args:
    num_points: number of nodes, a Python int >= 2.

  Returns:
    The :class:`Rule`, nodes increasing; exact for polynomials of degree
    < ``2 num_points``.

  Raises:
    ValueError: if the rule is not finite (never seen; a guard).

  References:
    Golub, Welsch. Calculation of Gauss quadrature rules. Math. Comp. 23
    (1969), 221-230.
  """
  check_num_points(num_points)
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
  return Rule(nodes=u, weights=weights)


@functools.cache
def maxwell_rule(num_points: int) -> Rule:
  r"""Rule for the double-sided Maxwell law, density :math:`m^2 \phi(m)`."""
  eps, w = normal_rule(num_points)
  return Rule(nodes=eps, weights=w * np.square(eps))


@functools.cache
def rayleigh_rule(num_points: int) -> Rule:
  r"""Signed rule for the Rayleigh law, density :math:`r e^{-r^2/2}`, r > 0.

  Evaluates :math:`q` on :math:`\mathbb{R}` (see the module docstring): the
  even part of :math:`q` by Gauss--Laguerre in :math:`u = r^2/2` at
  :math:`\pm\sqrt{2u_j}` with weights :math:`w_j/2` each, the odd part by
  Gauss--Hermite at :math:`\epsilon_i` with weights
  :math:`\sqrt{\pi/2}\, w_i \epsilon_i` (signed; the even part of
  :math:`q(\epsilon)\epsilon` vanishes under the symmetric rule).
  """
  u, w_lag = laguerre_rule(num_points)
  r = np.sqrt(2.0 * u)
  eps, w_her = normal_rule(num_points)
  nodes = np.concatenate([r, -r, eps])
  weights = np.concatenate(
    [0.5 * w_lag, 0.5 * w_lag, math.sqrt(0.5 * math.pi) * w_her * eps]
  )
  return Rule(nodes=nodes, weights=weights)


@functools.cache
def maxwell_uniform_rule(num_points: int) -> Rule:
  r"""Product rule for :math:`(M, U)`, M double-sided Maxwell, U ~ U(0, 1).

  Gauss--Legendre on :math:`[-1, 1]` mapped to :math:`[0, 1]`. Nodes are
  ``[num_points**2, 2]`` with columns ``(m, u)``.
  """
  m, w_m = maxwell_rule(num_points)
  x, w_x = np.polynomial.legendre.leggauss(num_points)
  u, w_u = 0.5 * (x + 1.0), 0.5 * w_x
  mm, uu = np.meshgrid(m, u, indexing="ij")
  nodes = np.stack([mm.ravel(), uu.ravel()], axis=-1)
  weights = np.outer(w_m, w_u).ravel()
  return Rule(nodes=nodes, weights=weights)


# ---------------------------------------------------------------------------
# Argument checks and evaluation helpers.
# ---------------------------------------------------------------------------


def check_num_points(num_points) -> None:
  if isinstance(num_points, bool) or not isinstance(num_points, int):
    raise TypeError(
      f"num_points must be a Python int (static), got {num_points!r}."
    )
  if num_points < 2:
    raise ValueError(f"num_points must be >= 2, got {num_points}.")


def check_scale(scale: jax.Array) -> None:
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


def prepare(f, loc, scale, num_points):
  """Validates arguments; returns `loc`, `scale` broadcast, in a float dtype."""
  if not callable(f):
    raise TypeError(
      f"f must be a callable scalar cost, got {type(f).__name__}."
    )
  check_num_points(num_points)
  loc = jnp.asarray(loc)
  scale = jnp.asarray(scale)
  for name, value in (("loc", loc), ("scale", scale)):
    if not (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      raise TypeError(f"{name} must be real, got dtype {value.dtype}.")
  check_scale(scale)
  dtype = jnp.result_type(loc, scale, float)
  loc, scale = jnp.broadcast_arrays(loc.astype(dtype), scale.astype(dtype))
  return loc, scale


def check_finite_result(
  name: str,
  results: dict[str, jax.Array],
  integrands: dict[str, tuple[jax.Array, ...]] | None = None,
  inputs: dict[str, jax.typing.ArrayLike] | None = None,
) -> None:
  """Raises if a concrete exact result is NaN or inf; a no-op when traced.

  An exact reference that is not finite is no reference: rather than return
  it, say which result went non-finite and why, as far as can be told: a
  non-finite input (`loc`, a baseline), or an integrand (the cost, or its
  derivative, at the quadrature nodes) that is non-finite there -- a cost
  that overflows in the tails the rule reaches -- or, with every integrand
  finite, a weighted sum that overflowed. Under ``jax.jit`` the values are
  unknown and propagate.

  Args:
    name: the public function, for the message.
    results: label -> result array (e.g. ``{"d/dmu": ..., "d/dsigma": ...}``).
    integrands: label -> the values summed by the rules (each
      ``[..., num_nodes]``), e.g. ``{"f": (fx,)}``.
    inputs: label -> an argument (``loc``, ``baseline``), to blame a
      non-finite one.

  Raises:
    ValueError: naming every non-finite result and the likely cause.
  """
  bad = []
  for label, value in results.items():
    array = _internal.concrete(value)
    if array is None:
      return  # traced
    count = int(np.sum(~np.isfinite(array)))
    if count:
      kinds = "/".join(
        k
        for k, m in (("nan", np.isnan(array)), ("inf", np.isinf(array)))
        if np.any(m)
      )
      bad.append(f"{label} ({kinds} at {count} of {array.size} entries)")
  if not bad:
    return
  causes = []
  for label, value in (inputs or {}).items():
    array = _internal.concrete(value)
    if array is not None and not np.all(np.isfinite(array)):
      causes.append(f"{label} is non-finite")
  for label, values in (integrands or {}).items():
    arrays = [_internal.concrete(v) for v in values]
    if any(a is None for a in arrays):
      continue
    count = sum(int(np.sum(~np.isfinite(a))) for a in arrays)
    size = sum(a.size for a in arrays)
    if count:
      causes.append(
        f"{label} is non-finite at {count} of {size} quadrature nodes "
        "(a cost that overflows in the tails the rule reaches, or has no "
        "finite moments under this Gaussian; fewer num_points reach less far"
        " into the tails)"
      )
  if not causes:
    causes.append(
      "every integrand is finite at the nodes, so the weighted sum "
      "overflowed float64 (rescale the cost)"
    )
  raise ValueError(
    f"{name}: the exact result is non-finite: {', '.join(bad)}; "
    + "; ".join(causes)
    + "."
  )


def apply(f: ScalarCost, x: jax.Array) -> jax.Array:
  """Applies the scalar function `f` to every entry of `x` (via vmap)."""
  flat = x.reshape(-1)
  out = jax.vmap(f)(flat)
  if out.shape != flat.shape:
    raise TypeError(
      "f must map a scalar to a scalar; applied to one point it returned "
      f"shape {out.shape[1:]}."
    )
  return out.reshape(x.shape)


def expect(weights: np.ndarray, values: jax.Array) -> jax.Array:
  """:math:`\\sum_k w_k q_k` over the last axis of `values`."""
  return jnp.sum(values * jnp.asarray(weights, values.dtype), axis=-1)


def mean_and_variance(weights: np.ndarray, values: jax.Array):
  """Two-pass mean and variance of a quantity given at the rule's nodes.

  :math:`E[(q - E[q])^2]`, never :math:`E[q^2] - E[q]^2`, so that a small
  variance next to a large mean is not lost to cancellation.
  """
  mean = expect(weights, values)
  variance = expect(weights, jnp.square(values - mean[..., None]))
  return mean, variance


def at(loc, scale, nodes):
  """Points :math:`\\mu + \\sigma z` for all nodes: ``[*batch, num_nodes]``."""
  nodes = jnp.asarray(nodes, loc.dtype)
  return loc[..., None] + scale[..., None] * nodes
