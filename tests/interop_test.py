r"""rgrad's estimators over distrax, TFP-on-JAX and NumPyro distributions.

Three kinds of checks, for Normal, Bernoulli, Categorical and Gamma from
each library (:mod:`rgrad.interop`):

* **Conversion is exact.** A foreign family that rgrad has is converted to
  rgrad's distribution with the same parameters, so every applicable
  registered estimator must return, with the same key, the same rows as on
  rgrad's own distribution, to roundoff (float64): the means agree with
  z = 0 exactly, which no k-SE test can beat. The Bernoulli and Categorical
  problems are also posed in the library's ``probs`` parameterization,
  where rgrad's own builder is ``Bernoulli(logit(p))``: the rows then agree
  only if the gradient flows ``params -> probs -> logits`` through the
  foreign constructor. An estimator that does not apply must raise naming
  the capability it misses.
* **Exact references.** The converted distributions, through each library,
  agree with exact gradients written in NumPy (enumeration and closed
  forms sharing no code with rgrad): ``rgrad.testing.assert_unbiased``
  sizes every run so that a 5% bias is detected (score-function family;
  1% for the pathwise one, tests/power.py) at power 0.95, family-wise
  false-alarm rate 1e-3, and each report's detectable bias is asserted.
* **The generic adapter** (``adapt(..., convert=False)``: the library's
  sampler, its ``log_prob``, scores by ``jax.grad``): the same exact
  references at the same power, and the estimators it cannot serve (weak
  derivatives, uniform noise...) raise naming the capability.

The kit's contract suite (``rgrad.testing.check_estimator``: output, jit
and vmap, bad inputs, robustness) runs over every registered estimator with
its reference problem's distribution rebuilt in each library.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

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


def normal(library, loc, scale):
  return {
    "distrax": distrax.Normal,
    "tfp": tfd.Normal,
    "numpyro": numpyro_dist.Normal,
  }[library](loc, scale)


def gamma(library, concentration, rate):
  return {
    "distrax": distrax.Gamma,
    "tfp": tfd.Gamma,
    "numpyro": numpyro_dist.Gamma,
  }[library](concentration, rate)


def bernoulli(library, *, logits=None, probs=None):
  cls = {
    "distrax": distrax.Bernoulli,
    "tfp": tfd.Bernoulli,
    "numpyro": numpyro_dist.Bernoulli,
  }[library]
  return cls(logits=logits, probs=probs)


def categorical(library, *, logits=None, probs=None):
  cls = {
    "distrax": distrax.Categorical,
    "tfp": tfd.Categorical,
    "numpyro": numpyro_dist.Categorical,
  }[library]
  return cls(logits=logits, probs=probs)


def foreign(library, dist):
  """rgrad's `dist` rebuilt in `library` (anything else unchanged)."""
  if isinstance(dist, rgrad.Normal):
    return normal(library, dist.loc, dist.scale)
  if isinstance(dist, rgrad.LogScaleNormal):
    return normal(library, dist.loc, jnp.exp(dist.log_scale))
  if isinstance(dist, rgrad.Bernoulli):
    return bernoulli(library, logits=dist.logits)
  return dist


# ---------------------------------------------------------------------------
# The problems, each with its exact gradient in NumPy.
# ---------------------------------------------------------------------------


class Problem:
  """A cost, params, rgrad's builder, each library's builder, the answer."""

  def __init__(self, name, function, params, own, build, gradient):
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
    lambda lib, p: normal(lib, p["loc"], p["scale"]),
    ref.gradient,
  )


_LOGITS = np.array([0.4, -0.6, 1.0])


def _bernoulli_cost(b):
  return jnp.sum(jnp.square(b - 0.45)) + b[0] * b[1] + 0.5 * b[1] * b[2]


def _bernoulli_gradient_logits():
  """d/d logits of E f(b), by enumerating the 8 states."""
  p = _sigmoid(_LOGITS)
  states = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
  probs = np.prod(np.where(states > 0, p, 1.0 - p), axis=1)
  costs = (
    np.sum((states - 0.45) ** 2, axis=1)
    + states[:, 0] * states[:, 1]
    + 0.5 * states[:, 1] * states[:, 2]
  )
  return (probs * costs) @ (states - p)


def bernoulli_problem(parameterization):
  g = _bernoulli_gradient_logits()
  if parameterization == "logits":
    return Problem(
      "bernoulli_logits",
      _bernoulli_cost,
      {"logits": jnp.asarray(_LOGITS)},
      lambda p: rgrad.Bernoulli(p["logits"]),
      lambda lib, p: bernoulli(lib, logits=p["logits"]),
      {"logits": g},
    )
  p = _sigmoid(_LOGITS)
  # d logit / dp = 1 / (p (1 - p)).
  return Problem(
    "bernoulli_probs",
    _bernoulli_cost,
    {"probs": jnp.asarray(p)},
    lambda q: rgrad.Bernoulli(jnp.log(q["probs"]) - jnp.log1p(-q["probs"])),
    lambda lib, q: bernoulli(lib, probs=q["probs"]),
    {"probs": g / (p * (1.0 - p))},
  )


# Two independent categoricals over 4 categories, a cost coupling them.
_CAT_LOGITS = np.array([[0.3, -0.5, 0.8, 0.0], [-0.2, 0.6, -1.0, 0.4]])
_TABLE = np.array([[1.0, -0.5, 2.0, 0.3], [0.7, 1.5, -1.2, 0.1]])


def _categorical_cost(x):
  a = jnp.asarray(_TABLE[0])[x[0]]
  b = jnp.asarray(_TABLE[1])[x[1]]
  return a + b + a * b


def _categorical_gradient_logits():
  """d/d logits of E f(x), by enumerating the 16 states."""
  p = np.exp(_CAT_LOGITS) / np.exp(_CAT_LOGITS).sum(-1, keepdims=True)
  g = np.zeros_like(p)
  for i, j in itertools.product(range(4), repeat=2):
    a, b = _TABLE[0, i], _TABLE[1, j]
    weight = p[0, i] * p[1, j] * (a + b + a * b)
    score = -p.copy()
    score[0, i] += 1.0
    score[1, j] += 1.0
    g += weight * score
  return g, p


def categorical_problem(parameterization):
  g, p = _categorical_gradient_logits()
  if parameterization == "logits":
    return Problem(
      "categorical_logits",
      _categorical_cost,
      {"logits": jnp.asarray(_CAT_LOGITS)},
      lambda q: rgrad.Categorical(q["logits"]),
      lambda lib, q: categorical(lib, logits=q["logits"]),
      {"logits": g},
    )
  # With logits = log p (unnormalized: the law reads p / sum p),
  # d/dp_j = g_j / p_j.
  return Problem(
    "categorical_probs",
    _categorical_cost,
    {"probs": jnp.asarray(p)},
    lambda q: rgrad.Categorical(jnp.log(q["probs"])),
    lambda lib, q: categorical(lib, probs=q["probs"]),
    {"probs": g / p},
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
    lambda lib, p: gamma(lib, p["concentration"], p["rate"]),
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

_EXPECTATION = rgrad.registry.estimators_for(stateful=None)


def applicable(problem):
  """Registered expectation estimators whose capabilities rgrad's has."""
  dist = problem.own(problem.params)
  return [
    name
    for name in _EXPECTATION
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


class ConversionTest(parameterized.TestCase):
  """Converted families: the same rows as rgrad's own, for every estimator."""

  @parameterized.named_parameters(*((name, name) for name in PROBLEMS))
  def test_same_rows_as_rgrads_own(self, problem):
    problem = PROBLEMS[problem]()
    names = applicable(problem)
    self.assertNotEmpty(names)
    key = jax.random.key(7)
    for name in names:
      own = call(name, problem.function, problem.params, problem.own, key, 32)
      for library in LIBRARIES:
        theirs = call(
          name,
          problem.function,
          problem.params,
          problem.builder(library),
          key,
          32,
        )
        jax.tree.map(
          lambda a, b, name=name, library=library: np.testing.assert_allclose(
            b, a, rtol=1e-9, atol=1e-12, err_msg=f"{name} on {library}"
          ),
          own,
          theirs,
        )

  @parameterized.named_parameters(*((name, name) for name in PROBLEMS))
  def test_inapplicable_estimators_name_the_capability(self, problem):
    problem = PROBLEMS[problem]()
    dist = problem.own(problem.params)
    key = jax.random.key(0)
    inapplicable = sorted(set(_EXPECTATION) - set(applicable(problem)))
    for name, library in itertools.product(inapplicable, LIBRARIES):
      spec = rgrad.get_estimator(name)
      missing = rgrad._internal.missing_capabilities(dist, spec.distributions)
      with self.assertRaises((TypeError, ValueError)) as ctx:
        call(
          name,
          problem.function,
          problem.params,
          problem.builder(library),
          key,
          16,
        )
      self.assertTrue(names_capability(str(ctx.exception), missing), name)


def names_capability(message, missing):
  """Whether `message` names one of the `missing` capabilities."""
  # "pathwise sampler" is how the pathwise family names "reparameterized".
  return any(
    c in message or (c == "reparameterized" and "pathwise sampler" in message)
    for c in missing
  )


if __name__ == "__main__":
  absltest.main()
