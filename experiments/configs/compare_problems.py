r"""Example problems for `experiments/compare/`: ``make_problem()`` functions.

Each returns ``(function, params, dist_builder)``.
"""

import jax.numpy as jnp
import numpy as np

import rgrad


def _normal(params):
  return rgrad.Normal(params["loc"], params["scale"])


def gaussian_quadratic(dim: int = 100):
  r"""A Gaussian-process-like quadratic :math:`x^\top A x / 2` in d = 100.

  :math:`A` is the squared-exponential kernel matrix on a grid of
  :math:`[0, 1]` (length scale 0.1) plus the identity, under
  :math:`N(\mu, \mathrm{diag}\,\sigma^2)` with :math:`\mu = 1`,
  :math:`\sigma = 0.5`.
  """
  grid = np.linspace(0.0, 1.0, dim)
  kernel = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / 0.1) ** 2)
  a = jnp.asarray(kernel + np.eye(dim))

  def function(x):
    return 0.5 * x @ (a @ x)

  params = {"loc": jnp.ones(dim), "scale": jnp.full(dim, 0.5)}
  return function, params, _normal
