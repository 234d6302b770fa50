r"""Random LQR problems for the tests of rgrad.exact's and rgrad.rl's LQR.

:func:`random_lqr` draws a problem whose closed loop :math:`A + BK` has a
chosen spectral radius (a random matrix rescaled, then :math:`A = F - BK`),
with random symmetric positive-definite costs and covariances and a random
policy, so that every term of the cost and the gradients is exercised
(unlike :func:`rgrad.rl.example_lqr`, whose costs are diagonal). The name
does not end in ``_test``, so pytest does not collect it.
"""

import jax.numpy as jnp
import numpy as np

from rgrad import rl


def _spd(rng, n, scale, ridge):
  g = rng.normal(size=(n, n))
  return scale * g @ g.T / n + ridge * np.eye(n)


def random_lqr(seed, n, m, spectral_radius, *, sigma=0.3):
  """A random float64 ``(problem, params)`` with rho(A + BK) as given."""
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(n, n))
  f = spectral_radius * g / np.max(np.abs(np.linalg.eigvals(g)))
  b = rng.normal(size=(n, m))
  k = 0.5 * rng.normal(size=(m, n))
  arrays = {
    "A": f - b @ k,
    "B": b,
    "Q": _spd(rng, n, 1.0, 0.1),
    "R": _spd(rng, m, 0.2, 0.05),
    "Q_T": _spd(rng, n, 1.0, 0.5),
    "W": _spd(rng, n, 0.02, 0.005),
    "m0": rng.normal(size=n),
    "S0": _spd(rng, n, 0.1, 0.02),
  }
  problem = rl.LQR(
    **{key: jnp.asarray(v, jnp.float64) for key, v in arrays.items()}
  )
  params = {
    "K": jnp.asarray(k, jnp.float64),
    "log_sigma": jnp.asarray(np.log(sigma), jnp.float64),
  }
  return problem, params
