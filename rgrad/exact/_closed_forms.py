r"""Closed-form moments of three test costs under :math:`N(\mu, \sigma^2)`.

The costs of Mohamed et al. (2020), Figures 2 and 3: :math:`(x - k)^2`,
:math:`\exp(-a x^2)` and :math:`\cos(k x)`. Each function returns
:math:`(E f(X), \mathrm{Var} f(X))` from formulas, with no quadrature, so
that they check the quadrature references of :mod:`rgrad.exact` (and
Monte Carlo means) independently. Derivatives in ``loc`` and ``scale`` (by
`jax.grad`) give the exact gradients of the expectations.
"""

import jax
import jax.numpy as jnp


def quadratic_moments(
  k: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""Mean and variance of :math:`(X - k)^2`, :math:`X \sim N(\mu, \sigma^2)`.

  :math:`X - k \sim N(\mu - k, \sigma^2)`, so :math:`(X - k)^2/\sigma^2` is
  non-central chi-square with one degree of freedom:
  :math:`E = (\mu - k)^2 + \sigma^2` and :math:`\mathrm{Var} = 2\sigma^4 +
  4\sigma^2(\mu - k)^2`.

  Args:
    k: the cost's centre, broadcastable with `loc` and `scale`.
    loc: means :math:`\mu`.
    scale: standard deviations :math:`\sigma > 0`.

  Returns:
    ``(mean, variance)`` of the broadcast shape.
  """
  shift = loc - k
  return shift**2 + scale**2, 2 * scale**4 + 4 * scale**2 * shift**2


def _gaussian_bump_mean(a, loc, scale):
  # E exp(-a X^2) = (1 + 2 a s^2)^{-1/2} exp(-a loc^2 / (1 + 2 a s^2)).
  denom = 1.0 + 2.0 * a * scale**2
  return jnp.exp(-a * loc**2 / denom) / jnp.sqrt(denom)


def gaussian_bump_moments(
  a: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""Mean and variance of :math:`\exp(-a X^2)`, :math:`X \sim N(\mu,
  \sigma^2)`.

  Completing the square in the Gaussian integral,
  :math:`E\, e^{-a X^2} = (1 + 2a\sigma^2)^{-1/2}
  \exp(-a\mu^2 / (1 + 2a\sigma^2))` for :math:`1 + 2a\sigma^2 > 0`; the
  second moment is the same at :math:`2a`.

  Args:
    a: the bump's rate; the variance needs :math:`1 + 4a\sigma^2 > 0`.
    loc: means :math:`\mu`.
    scale: standard deviations :math:`\sigma > 0`.

  Returns:
    ``(mean, variance)`` of the broadcast shape.
  """
  mean = _gaussian_bump_mean(a, loc, scale)
  return mean, _gaussian_bump_mean(2 * a, loc, scale) - mean**2


def cosine_moments(
  k: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""Mean and variance of :math:`\cos(k X)`, :math:`X \sim N(\mu, \sigma^2)`.

  From the characteristic function, :math:`E \cos(kX) =
  e^{-k^2\sigma^2/2}\cos(k\mu)`, and :math:`\cos^2 = (1 + \cos 2kx)/2`.

  Args:
    k: the frequency, broadcastable with `loc` and `scale`.
    loc: means :math:`\mu`.
    scale: standard deviations :math:`\sigma > 0`.

  Returns:
    ``(mean, variance)`` of the broadcast shape.
  """
  mean = jnp.exp(-0.5 * (k * scale) ** 2) * jnp.cos(k * loc)
  second = 0.5 * (1.0 + jnp.exp(-2.0 * (k * scale) ** 2) * jnp.cos(2 * k * loc))
  return mean, second - mean**2
