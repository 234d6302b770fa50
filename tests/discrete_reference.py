"""Shared pieces of the discrete exact-reference tests (not collected).

The REBAR/RELAX toy cost, a non-additive cost on {0,1}^3, and a Monte Carlo
checker that states and asserts its power; plus NumPy versions of REBAR and
RELAX written out from the design's definitions, sharing no code with
rgrad.exact or rgrad's estimators. Imported as ``from tests import
discrete_reference as ref``; the name does not end in ``_test``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import exact
from tests import power

TOY_TARGETS = (0.45, 0.49, 0.499)
W = np.array([1.0, -2.0, 0.5])


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def toy(t):
  return lambda b: jnp.sum((b - t) ** 2)


def general(b):
  """A non-additive cost on {0,1}^3 (JAX)."""
  return jnp.sin(1.0 + b @ W) + 0.3 * b[0] * b[1] * b[2]


def general_np(b):  # [n, 3]
  return np.sin(1.0 + b @ W) + 0.3 * b[:, 0] * b[:, 1] * b[:, 2]


def moments(estimator, cost, logits, **kwargs):
  return exact.bernoulli_estimator_moments(estimator, cost, logits, **kwargs)


def toy_grid(estimator, t, theta, **kwargs):
  """Unit moments of the toy on a grid: `t`, `theta` arrays of one shape."""

  def one(t, theta):
    m = moments(estimator, toy(t), theta[None], **kwargs)
    return jax.tree.map(lambda x: x[0], m)

  fn = jax.jit(jax.vmap(one))
  out = fn(jnp.ravel(t), jnp.ravel(theta))
  return jax.tree.map(lambda x: np.asarray(x).reshape(np.shape(t)), out)


def states(d):
  return (np.arange(2**d)[:, None] >> np.arange(d)) & 1


def check_mc(samples, moments, rel_mean, rel_var, what):
  """Mean and variance of i.i.d. `samples` [n, d] against `moments`.

  Asserts first that 5 SE (from the exact variance for the mean, from the
  sample fourth moment for the variance) is at most `rel_mean` times the
  largest |mean| over the coordinates and `rel_var` times each variance: the
  smallest errors each check detects. (The means are also pinned exactly by
  identities elsewhere; these runs are mainly the variances' check.)
  """
  n = samples.shape[0]
  mean = np.asarray(moments.mean).reshape(-1)
  var = np.asarray(moments.variance).reshape(-1)
  floor = rel_mean * np.max(np.abs(mean))
  power.assert_detects(var, mean, n, 0.0, floor=floor, what=what + " mean")
  centred = samples - samples.mean(0)
  m2 = np.mean(centred**2, 0)
  se_var = np.sqrt(np.maximum(np.mean(centred**4, 0) - m2**2, 0) / n)
  assert np.all(5 * se_var <= rel_var * var), (what, 5 * se_var / var)
  power.assert_unbiased(
    samples.mean(0), np.sqrt(var / n), mean, what=what + " mean"
  )
  power.assert_variance(m2, se_var, var, what=what + " variance")


def logit(u):
  return np.log(u) - np.log1p(-u)


def rebar_np(f, df, logits, scale, tau, n, seed, surrogate=None):
  """REBAR (or RELAX with per-coordinate `surrogate` (c, c')) in NumPy.

  F(b) = sum_i f(b_i); the conditional relaxation follows the design
  (u' = 1 - p + v p for b = 1, v (1 - p) for b = 0) and its derivative in
  the logits is a central finite difference of that map, not a formula.
  """
  rng = np.random.default_rng(seed)
  u, v = rng.uniform(size=(2, n, logits.size))
  p = sigmoid(logits)
  b = (u > 1 - p).astype(float)

  def tilde(eta):
    q = sigmoid(eta)
    return eta + logit(np.where(b > 0, 1 - q + v * q, v * (1 - q)))

  z, zt, h = logits + logit(u), tilde(logits), 1e-6
  dzt = (tilde(logits + h) - tilde(logits - h)) / (2 * h)
  if surrogate is None:
    y, yt = sigmoid(z / tau), sigmoid(zt / tau)
    c, dc = scale * f(yt), scale * df(yt) * yt * (1 - yt) / tau
    dcz = scale * df(y) * y * (1 - y) / tau
  else:
    c, dc, dcz = surrogate[0](zt), surrogate[1](zt), surrogate[1](z)
  weight = np.sum(f(b) - c, 1, keepdims=True)
  return weight * (b - p) + dcz - dc * dzt
