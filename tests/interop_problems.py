"""Problems and helpers of tests/interop_test.py: each library's families.

Constructors by library, the reference problems (each with its exact
gradient in NumPy, sharing no code with rgrad), and how the tests call the
registered estimators. Not collected by pytest (no ``_test`` suffix);
importing it skips the caller when a library is missing.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rgrad
from rgrad import interop
from rgrad import testing

distrax = pytest.importorskip("distrax")
numpyro_dist = pytest.importorskip("numpyro.distributions")
tfp = pytest.importorskip("tensorflow_probability.substrates.jax")
tfd = tfp.distributions

LIBRARIES = ("distrax", "tfp", "numpyro")


# ---------------------------------------------------------------------------
# Each library's constructors, by family.
# ---------------------------------------------------------------------------


_MODULES = {"distrax": distrax, "tfp": tfd, "numpyro": numpyro_dist}


def make(library, family, *args, **kwargs):
  """`library`'s distribution `family` (the three spell the names alike)."""
  return getattr(_MODULES[library], family)(*args, **kwargs)


def foreign(library, dist):
  """rgrad's `dist` rebuilt in `library` (anything else unchanged)."""
  if isinstance(dist, rgrad.Normal):
    return make(library, "Normal", dist.loc, dist.scale)
  if isinstance(dist, rgrad.LogScaleNormal):
    return make(library, "Normal", dist.loc, jnp.exp(dist.log_scale))
  if isinstance(dist, rgrad.Bernoulli):
    return make(library, "Bernoulli", logits=dist.logits)
  return dist


# ---------------------------------------------------------------------------
# The problems, each with its exact gradient in NumPy.
# ---------------------------------------------------------------------------


class Problem:
  """A cost, params, rgrad's builder, each library's builder, the answer."""

  def __init__(self, name, function, params, own, build, gradient, **kw):
    self.variances = kw.get("variances", {})  # exact row variances by name
    self.name = name
    self.function = function
    self.params = params
    self.own = own  # params -> rgrad's distribution
    self.build = build  # (library, params) -> the library's distribution
    self.gradient = gradient

  def builder(self, library, **adapt):
    if adapt:
      return lambda p: interop.adapt(self.build(library, p), **adapt)
    return functools.partial(self.build, library)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def normal_problem():
  # The contract's expectation problem: sum_i cos(x_i), closed forms.
  ref = testing.gaussian_problem(
    "cosine", 1.0, [0.7, -0.8, 0.9], [0.8, 0.6, 1.0]
  )
  return Problem(
    "normal",
    ref.function,
    ref.params,
    ref.dist_builder,
    lambda lib, p: make(lib, "Normal", p["loc"], p["scale"]),
    ref.gradient,
    variances=ref.variances,
  )


# Chosen so that the three coordinates of the gradient are alike (0.29,
# 0.31, 0.27): a 5% test of the score function then needs ~1e5 rows.
_LOGITS = np.array([-0.6, -0.9, -0.3])
_CENTRE = 0.02


def _bernoulli_cost(b):
  return jnp.sum(jnp.square(b - _CENTRE)) + b[0] * b[1] + 0.5 * b[1] * b[2]


def _bernoulli_gradient_logits():
  """d/d logits of E f(b), by enumerating the 8 states."""
  p = _sigmoid(_LOGITS)
  states = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
  probs = np.prod(np.where(states > 0, p, 1.0 - p), axis=1)
  costs = (
    np.sum((states - _CENTRE) ** 2, axis=1)
    + states[:, 0] * states[:, 1]
    + 0.5 * states[:, 1] * states[:, 2]
  )
  return (probs * costs) @ (states - p)


def _discrete_problem(family, parameterization, cost, law, gradient, to_logits):
  """`family` ("Bernoulli", "Categorical") in logits or in probs.

  Args:
    family: the name of rgrad's class and of each library's.
    parameterization: "logits" or "probs", the params' one field.
    cost: the cost of a draw.
    law: ``{"logits": ..., "probs": ...}``, one law both ways.
    gradient: ``{"logits": ..., "probs": ...}``, d/d each of E f.
    to_logits: rgrad's logits from the probs.
  """
  field = parameterization

  def own(q):
    x = q[field]
    return getattr(rgrad, family)(x if field == "logits" else to_logits(x))

  return Problem(
    f"{family.lower()}_{field}",
    cost,
    {field: jnp.asarray(law[field])},
    own,
    lambda lib, q: make(lib, family, **{field: q[field]}),
    {field: gradient[field]},
  )


def bernoulli_problem(parameterization):
  g = _bernoulli_gradient_logits()
  p = _sigmoid(_LOGITS)
  law = {"logits": _LOGITS, "probs": p}
  # d logit / dp = 1 / (p (1 - p)).
  gradient = {"logits": g, "probs": g / (p * (1.0 - p))}
  return _discrete_problem(
    "Bernoulli",
    parameterization,
    _bernoulli_cost,
    law,
    gradient,
    lambda q: jnp.log(q) - jnp.log1p(-q),
  )


# Two independent categoricals over 3 categories and a cost coupling them,
# chosen so that no coordinate of the gradient is small next to the others
# (a 5% test of the score function then needs ~5e4 rows).
_CAT_LOGITS = np.array([[0.9, -1.0, -0.5], [-0.8, -0.1, 0.7]])
_TABLE = np.array([[1.8, -1.1, -0.8], [-0.5, -0.9, 0.9]])


def _categorical_cost(x):
  a = jnp.asarray(_TABLE[0])[x[0]]
  b = jnp.asarray(_TABLE[1])[x[1]]
  return a + b + a * b


def _categorical_gradient_logits():
  """d/d logits of E f(x), by enumerating the 9 states."""
  p = np.exp(_CAT_LOGITS) / np.exp(_CAT_LOGITS).sum(-1, keepdims=True)
  g = np.zeros_like(p)
  for i, j in itertools.product(range(3), repeat=2):
    a, b = _TABLE[0, i], _TABLE[1, j]
    weight = p[0, i] * p[1, j] * (a + b + a * b)
    score = -p.copy()
    score[0, i] += 1.0
    score[1, j] += 1.0
    g += weight * score
  return g, p


def categorical_problem(parameterization):
  g, p = _categorical_gradient_logits()
  # With logits = log p (unnormalized: the law reads p / sum p),
  # d/dp_j = g_j / p_j.
  law = {"logits": _CAT_LOGITS, "probs": p}
  gradient = {"logits": g, "probs": g / p}
  return _discrete_problem(
    "Categorical", parameterization, _categorical_cost, law, gradient, jnp.log
  )


_ALPHA = np.array([1.5, 3.0])
_BETA = np.array([2.0, 0.7])


def _gamma_cost(x):
  return jnp.sum(jnp.exp(-x)) + 0.5 * jnp.exp(-x[0] - x[1])


def gamma_problem():
  r"""E e^{-t x} = (b / (b + t))^a for x ~ Gamma(a, b), in closed form.

  f(x) = e^{-x_0} + e^{-x_1} + e^{-x_0 - x_1} / 2, so
  E f = m_0(1) + m_1(1) + m_0(1) m_1(1) / 2 with m(t) = (b / (b + t))^a,
  dm/da = m log(b / (b + t)), dm/db = m a t / (b (b + t)).
  """
  a, b = _ALPHA, _BETA
  m = (b / (b + 1.0)) ** a
  dm_da = m * np.log(b / (b + 1.0))
  dm_db = m * a / (b * (b + 1.0))
  other = m[::-1]
  return Problem(
    "gamma",
    _gamma_cost,
    {"concentration": jnp.asarray(a), "rate": jnp.asarray(b)},
    lambda p: rgrad.Gamma(p["concentration"], p["rate"]),
    lambda lib, p: make(lib, "Gamma", p["concentration"], p["rate"]),
    {
      "concentration": dm_da * (1.0 + 0.5 * other),
      "rate": dm_db * (1.0 + 0.5 * other),
    },
  )


PROBLEMS = {
  "normal": normal_problem,
  "bernoulli_logits": functools.partial(bernoulli_problem, "logits"),
  "bernoulli_probs": functools.partial(bernoulli_problem, "probs"),
  "categorical_logits": functools.partial(categorical_problem, "logits"),
  "categorical_probs": functools.partial(categorical_problem, "probs"),
  "gamma": gamma_problem,
}


# ---------------------------------------------------------------------------
# Which registered estimators apply, and how they are called.
# ---------------------------------------------------------------------------

EXPECTATION = rgrad.registry.estimators_for(stateful=None)


def applicable(problem):
  """Registered expectation estimators whose capabilities rgrad's has."""
  dist = problem.own(problem.params)
  return [
    name
    for name in EXPECTATION
    if not rgrad._internal.missing_capabilities(
      dist, rgrad.get_estimator(name).distributions
    )
  ]


def call(name, function, params, builder, key, num_samples):
  spec = rgrad.get_estimator(name)
  n = max(num_samples, spec.min_num_samples)
  if spec.stateful:
    jac, _ = spec.fn.estimate(
      function, params, builder, key, n, spec.fn.init(params)
    )
    return jac
  return spec.fn(function, params, builder, key, n)


def names_capability(message, missing):
  """Whether `message` names one of the `missing` capabilities."""
  # "pathwise sampler" is how the pathwise family names "reparameterized".
  return any(
    c in message or (c == "reparameterized" and "pathwise sampler" in message)
    for c in missing
  )


def chex_close(actual, expected):
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
    actual,
    expected,
  )
