r"""Primitives with hand-derived derivatives.

(Other primitives are added above this section.)
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_HALF_LOG_TWO_PI = 0.5 * jnp.log(2.0 * jnp.pi)


# ---------------------------------------------------------------------------
# The Gaussian log-density.
# ---------------------------------------------------------------------------


class NormalLogProbGrads(NamedTuple):
  """Elementwise partial derivatives of :math:`\\log N(x; \\mu, \\sigma)`."""

  x: jax.Array
  loc: jax.Array
  scale: jax.Array
  log_scale: jax.Array


def normal_log_prob(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Elementwise Gaussian log-density.

  .. math:: \log N(x; \mu, \sigma) = -\tfrac12 z^2 - \log\sigma
            - \tfrac12\log 2\pi, \qquad z = (x - \mu) / \sigma.

  Args:
    x: points, broadcastable against `loc` and `scale`.
    loc: means :math:`\mu`.
    scale: standard deviations :math:`\sigma > 0`.

  Returns:
    The log-density, with the broadcast shape of the arguments.
  """
  z = (x - loc) / scale
  return -0.5 * jnp.square(z) - jnp.log(scale) - _HALF_LOG_TWO_PI


def normal_log_prob_grads(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> NormalLogProbGrads:
  r"""Hand-derived partial derivatives of :func:`normal_log_prob`.

  With :math:`z = (x - \mu)/\sigma` and :math:`\ell = \log N(x; \mu, \sigma)`:

  .. math::
    \partial_x \ell = -z/\sigma, \quad \partial_\mu \ell = z/\sigma, \quad
    \partial_\sigma \ell = (z^2 - 1)/\sigma, \quad
    \partial_{\log\sigma} \ell = z^2 - 1.

  Args:
    x: points, broadcastable against `loc` and `scale`.
    loc: means.
    scale: standard deviations, positive.

  Returns:
    A :class:`NormalLogProbGrads` of arrays with the broadcast shape.
  """
  x, loc, scale = jnp.broadcast_arrays(x, loc, scale)
  z = (x - loc) / scale
  # d/dmu of -z^2/2 is z * (1/sigma); d/dx is its negative.
  d_loc = z / scale
  # d/dsigma of (-z^2/2 - log sigma) = z^2/sigma - 1/sigma.
  d_log_scale = jnp.square(z) - 1.0
  # Chain rule through sigma = exp(log sigma): d/dlog sigma = sigma * d/dsigma.
  return NormalLogProbGrads(
    x=-d_loc, loc=d_loc, scale=d_log_scale / scale, log_scale=d_log_scale
  )
