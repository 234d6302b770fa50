"""Tests for rgrad.estimators against closed-form gradients and variances.

Every reference here is derived by hand (or by exact polynomial moment algebra)
in this file and shares no code with the estimators. Statistical checks use
fixed keys and compare a sample mean (or variance) with its exact value in
units of the standard error estimated from the same samples.
"""

import functools
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized
from numpy.polynomial import Polynomial
from numpy.polynomial import hermite_e

import rgrad
from rgrad import diagnostics
from rgrad import distributions
from rgrad import estimators
from rgrad import exact
from tests import power

# The core estimators, from the one registry (the variance-reduced ones have
# their own tests, and every registered estimator runs through
# tests/contract_test.py).
_ESTIMATORS = {
  name: rgrad.get_estimator(name).fn
  for name in (
    "pathwise",
    "score_function",
    "measure_valued",
    "measure_valued_uncoupled",
  )
}
_K = 0.7  # The constant k of the test costs.
_COSTS = ("x", "x2", "shifted_square", "gauss", "cos")
# Compilation dominates this file's time, so statistical tests reuse a few
# jitted programs: costs and builders are module-level functions (stable static
# arguments), and cost choices and shifts are traced arguments.
_SMALL_DIM, _SMALL_N = 3, 8  # Shapes shared by the eager (op-by-op) tests.


def _normal(params):
  return distributions.Normal(params["loc"], params["scale"])


def _small_params():
  return {"loc": jnp.array([0.5, -1.0, 2.0]), "scale": jnp.array([1.0, 0.5, 2])}


def _gauss_cost(x):
  return jnp.sum(jnp.exp(-_K * x**2))


def _params(dim):
  return {
    "loc": jnp.linspace(-1.0, 1.5, dim) if dim > 1 else jnp.array([0.4]),
    "scale": jnp.linspace(0.5, 1.5, dim) if dim > 1 else jnp.array([0.8]),
  }


# ---------------------------------------------------------------------------
# Closed forms. X ~ N(mu, sigma^2), elementwise; the costs sum over
# coordinates, so each coordinate's gradient involves only its own mu, sigma.
# ---------------------------------------------------------------------------


def _scalar_cost(name, k=_K):
  """Cost `name` of one coordinate, with constant `k` (may be traced)."""
  return {
    "x": lambda x: x,
    "x2": lambda x: x**2,
    "shifted_square": lambda x: (x - k) ** 2,
    "gauss": lambda x: jnp.exp(-k * x**2),
    "cos": lambda x: jnp.cos(k * x),
  }[name]


def _cost_family(x, c, k):
  """Cost number `c` (a Python int) of _COSTS, summed over coordinates."""
  return jnp.sum(_scalar_cost(_COSTS[c], k)(x))


def _switched_cost(x, c, k):
  """As `_cost_family`, for a traced `c`."""
  branches = [_scalar_cost(name, k) for name in _COSTS]
  return jnp.sum(jax.lax.switch(c, branches, x))


class _Sizes(NamedTuple):
  """A statistical test's sample size and the power it is sized for.

  Attributes:
    num_samples: i.i.d. samples.
    rel: the smallest relative bias detected on every coordinate (5 SE /
      |exact|, from the exact single-sample variance; tests/power.py).
    floor: the absolute bias detected where the gradient is (near) zero.
  """

  num_samples: int
  rel: float
  floor: float


# The Gaussian-cost suite (UnbiasednessTest, VarianceTest), d = 1 at (mu,
# sigma) = (0.4, 0.8), shifts k = 0.7, 1.5, 2. At d = 1 each size meets the
# suite's target; the binding cases, with the samples they need (exact
# variances: rgrad.exact, _poly_moments, _measure_valued_variances):
#   pathwise: (x - 0.7)^2 d/dloc: Var 4 sigma^2 = 2.56 for g = -0.6, 1%
#     needs 1.8e6 -> 2^21;
#   score function: (x - 2)^2 d/dscale: 8.7e5 -> 2^20;
#   measure-valued: (x - 2)^2 d/dscale, Var 4 (mu - k)^2 + 4 sigma^2 = 12.8
#     for g = 1.6, 5.0e4 -> 2^16; uncoupled 16 (mu - k)^2 + 8 sigma^2 = 46,
#     1.8e5 -> 2^18.
# The floors are for d/dscale of f = x (exact gradient 0), in units of the
# d/dloc gradient 1.
# At d = 10 the score function's variance carries the other nine
# coordinates' costs (5 SE up to 1.2 on gradients of 0.07 to 3.4): 5% on
# every coordinate would take ~1e8 samples at d = 10 (minutes of CI; some
# coordinates' gradients are near zero, -0.05 for the bump at mu = 0.1), so
# d = 10 runs 2^16 samples and detects what it is there for: a coordinate
# built from another's draw, score or pull-back, an O(1) error (5 SE <=
# 1.25 absolute). The 5% and 1% of an estimator's construction per
# coordinate are checked at d = 1 through the same code. Pathwise and
# measure-valued at d = 10 and 2^14: 5 SE <= 0.22 and 0.17 absolute (1% to
# 5% of |g| on the larger gradients).
_SIZES = {
  ("pathwise", 1): _Sizes(2**21, power.PATHWISE_POWER, 0.005),
  ("score_function", 1): _Sizes(2**20, power.SCORE_FUNCTION_POWER, 0.02),
  ("measure_valued", 1): _Sizes(2**16, power.SCORE_FUNCTION_POWER, 0.02),
  ("measure_valued_uncoupled", 1): _Sizes(
    2**18, power.SCORE_FUNCTION_POWER, 0.02
  ),
  ("pathwise", 10): _Sizes(2**14, power.PATHWISE_POWER, 0.22),
  ("score_function", 10): _Sizes(2**16, power.SCORE_FUNCTION_POWER, 1.25),
  ("measure_valued", 10): _Sizes(2**14, power.SCORE_FUNCTION_POWER, 0.17),
}


class _Family(NamedTuple):
  """All five costs at once, as a `diagnostics.moments` chunk function.

  Returns the estimator's jacobians with leaves ``[size, cost, dim]``, each
  cost from its own key. One compiled program per (estimator, dim) serves
  every shift `k` and parameter value, which are traced (compilation
  dominates these tests' time).
  """

  estimator: str

  def __call__(self, key, size, args):
    params, k = args
    estimator = _ESTIMATORS[self.estimator]
    if self.estimator.startswith("measure_valued") or params["loc"].size > 1:
      # One copy of the estimator, vmapped over a traced cost index (every
      # cost is then evaluated at every draw): it compiles faster, which is
      # what counts at d = 10 and for measure-valued (small sizes); five
      # copies run faster, which counts for the big d = 1 runs.
      def one(c):
        cost = functools.partial(_switched_cost, c=c, k=k)
        return estimator(
          cost, params, _normal, jax.random.fold_in(key, c), size
        )

      jacobians = jax.vmap(one)(jnp.arange(len(_COSTS)))
      return jax.tree.map(lambda j: jnp.moveaxis(j, 0, 1), jacobians)
    jacobians = [
      estimator(
        functools.partial(_cost_family, c=c, k=k),
        params,
        _normal,
        jax.random.fold_in(key, c),
        size,
      )
      for c in range(len(_COSTS))
    ]
    return jax.tree.map(lambda *j: jnp.stack(j, axis=1), *jacobians)


def _family_moments(estimator, params, k, key):
  """Streamed moments (with variance SEs) of all five costs, NumPy."""
  dim = params["loc"].shape[-1]
  n = _SIZES[(estimator, dim)].num_samples
  moments = diagnostics.moments(
    _Family(estimator),
    key,
    n,
    (params, k),
    # Measure-valued holds [chunk, d, d] cost inputs per part.
    chunk_size=2**16 if dim == 1 else 2**13,
    higher_moments=True,
  )
  return jax.tree.map(np.asarray, moments)


def _exact_variances(estimator, name, loc, scale, k=_K):
  """Exact single-sample (var d/dloc, var d/dscale) per coordinate.

  From rgrad.exact (quadrature, no estimator code); the costs sum over
  coordinates, so the score function's variance has the other coordinates'
  terms (tests/power.py), while pathwise and measure-valued (which share
  the other coordinates between their two arms) see one coordinate only.
  """
  f = _scalar_cost(name, k)
  if estimator == "score_function":
    return power.additive_score_function_variance(f, loc, scale)
  if estimator == "pathwise":
    v = exact.pathwise_variance(f, loc, scale)
  else:
    coupling = estimator == "measure_valued"
    v = exact.measure_valued_variance(f, loc, scale, coupling)
  return np.asarray(v.loc), np.asarray(v.scale)


def _expectation(name, mu, sigma, k=_K):
  """E[g(X)] in closed form, elementwise."""
  if name == "x":
    return mu
  if name == "x2":
    return mu**2 + sigma**2
  if name == "shifted_square":
    return (mu - k) ** 2 + sigma**2
  if name == "gauss":
    a = 1 + 2 * k * sigma**2
    return a**-0.5 * np.exp(-k * mu**2 / a)
  if name == "cos":
    return np.cos(k * mu) * np.exp(-(k**2) * sigma**2 / 2)
  raise ValueError(name)


def _exact_grads(name, mu, sigma, k=_K):
  """(d/dmu, d/dsigma) of E[g(X)], derived by hand, elementwise."""
  mu, sigma = np.asarray(mu), np.asarray(sigma)
  if name == "x":
    return np.ones_like(mu), np.zeros_like(sigma)
  if name == "x2":
    return 2 * mu, 2 * sigma
  if name == "shifted_square":
    return 2 * (mu - k), 2 * sigma
  if name == "gauss":
    # E = a^{-1/2} exp(-k mu^2 / a), a = 1 + 2 k sigma^2, da/dsigma = 4 k sigma.
    a = 1 + 2 * k * sigma**2
    e = a**-0.5 * np.exp(-k * mu**2 / a)
    return -2 * k * mu / a * e, 4 * k * sigma * e * (
      -0.5 / a + k * mu**2 / a**2
    )
  if name == "cos":
    damp = np.exp(-(k**2) * sigma**2 / 2)
    return -k * np.sin(k * mu) * damp, -(k**2) * sigma * np.cos(k * mu) * damp
  raise ValueError(name)


def _normal_moment(i):
  """E[eps^i] for eps ~ N(0, 1): 0 for odd i, (i - 1)!! for even i."""
  return 0.0 if i % 2 else float(np.prod(np.arange(i - 1, 0, -2)))


def _poly_mean(p):
  return sum(c * _normal_moment(i) for i, c in enumerate(p.coef))


def _poly_moments(estimator, coef, mu, sigma):
  """Exact mean and variance of the single-sample estimator, f polynomial.

  With x = mu + sigma eps every per-sample estimate below is a polynomial in
  eps, so its moments follow from the Gaussian moments exactly:
    pathwise:  d/dmu = f'(x),          d/dsigma = f'(x) eps,
    score:     d/dmu = f(x) eps/sigma, d/dsigma = f(x) (eps^2 - 1)/sigma.
  Returns {"loc": (mean, var), "scale": (mean, var)}.
  """
  f = Polynomial(coef)
  x = Polynomial([mu, sigma])
  eps = Polynomial([0.0, 1.0])
  if estimator == "pathwise":
    per_sample = {"loc": f.deriv()(x), "scale": f.deriv()(x) * eps}
  elif estimator == "score_function":
    per_sample = {
      "loc": f(x) * eps / sigma,
      "scale": f(x) * (eps**2 - 1) / sigma,
    }
  else:
    raise ValueError(estimator)
  return {
    k: (_poly_mean(p), _poly_mean(p * p) - _poly_mean(p) ** 2)
    for k, p in per_sample.items()
  }


def _measure_valued_variances(coupling, cost, mu, sigma, k):
  """Variances (d/dmu, d/dsigma) of one measure-valued sample, by hand.

  W ~ Rayleigh(1): E W = sqrt(pi/2), Var W = (4 - pi)/2, Var W^2 = 4.
  M ~ double-sided Maxwell: E M^2 = 3, E M^4 = 15; U ~ U(0, 1).
  f = x:
    coupled:   mu: 2W/sqrt(2pi)               -> (4 - pi)/pi
               sigma: M(1 - U)                -> 3 E(1-U)^2 = 1
    uncoupled: mu: (W + W')/sqrt(2pi)         -> (4 - pi)/(2 pi)
               sigma: M - eps                 -> 3 + 1 = 4
  f = (x - k)^2, a = mu - k (the estimator is translation-equivariant):
    coupled:   mu: 4aW/sqrt(2pi)              -> 4a^2(4 - pi)/pi
               sigma: 2aM(1-U) + sigma M^2(1-U^2)
                      -> 4a^2 + 15 sigma^2 (8/15) - (2 sigma)^2
    uncoupled: mu: (2a(W+W') + sigma(W^2-W'^2))/sqrt(2pi)
                      -> (4a^2(4 - pi) + 8 sigma^2)/(2 pi)
               sigma: 2a(M - eps) + sigma(M^2 - eps^2)
                      -> 16a^2 + sigma^2 (6 + 2) = 16a^2 + 8sigma^2
  """
  pi = math.pi
  if cost == "x":
    return ((4 - pi) / pi, 1.0) if coupling else ((4 - pi) / (2 * pi), 4.0)
  a = mu - k
  if coupling:
    return 4 * a**2 * (4 - pi) / pi, 4 * a**2 + 4 * sigma**2
  return (
    (4 * a**2 * (4 - pi) + 8 * sigma**2) / (2 * pi),
    16 * a**2 + 8 * sigma**2,
  )


class _StatisticalTestCase(parameterized.TestCase):
  """Runs each test with the non-partitionable threefry PRNG.

  XLA compiles the partitionable threefry (the default) several times
  slower on CPU, and compiling the streamed programs dominates these tests;
  the estimators only split keys and call the samplers, so they do not
  depend on how the random bits are derived.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


class ClosedFormsTest(parameterized.TestCase):
  """The references themselves, checked by independent means (no sampling)."""

  @parameterized.parameters(*_COSTS)
  def test_expectation_matches_quadrature(self, name):
    nodes, weights = hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    g = {
      "x": lambda x: x,
      "x2": lambda x: x**2,
      "shifted_square": lambda x: (x - _K) ** 2,
      "gauss": lambda x: np.exp(-_K * x**2),
      "cos": lambda x: np.cos(_K * x),
    }[name]
    for mu, sigma in [(0.4, 0.8), (-1.0, 1.5), (1.2, 0.3)]:
      quad = np.sum(weights * g(mu + sigma * nodes))
      np.testing.assert_allclose(
        _expectation(name, mu, sigma), quad, rtol=1e-12, atol=1e-14
      )

  @parameterized.parameters(*_COSTS)
  def test_hand_gradients_match_autodiff(self, name):
    mu, sigma = jnp.array([0.4, -1.0]), jnp.array([0.8, 1.5])

    def expectation(m, s):
      # _expectation uses numpy's exp/cos: redo it with jnp for autodiff.
      return {
        "x": m,
        "x2": m**2 + s**2,
        "shifted_square": (m - _K) ** 2 + s**2,
        "gauss": (1 + 2 * _K * s**2) ** -0.5
        * jnp.exp(-_K * m**2 / (1 + 2 * _K * s**2)),
        "cos": jnp.cos(_K * m) * jnp.exp(-(_K**2) * s**2 / 2),
      }[name]

    d_mu, d_sigma = jax.grad(
      lambda m, s: jnp.sum(expectation(m, s)), argnums=(0, 1)
    )(mu, sigma)
    hand = _exact_grads(name, mu, sigma)
    np.testing.assert_allclose(hand[0], d_mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hand[1], d_sigma, rtol=1e-12, atol=1e-14)

  def test_polynomial_moments_match_hand_formulas(self):
    mu, sigma = 0.7, 1.3
    # f = x. Score: d/dmu = mu eps/sigma + eps^2, var mu^2/sigma^2 + 2;
    # d/dsigma = mu(eps^2 - 1)/sigma + eps^3 - eps, var 2mu^2/sigma^2 + 10.
    m = _poly_moments("score_function", [0.0, 1.0], mu, sigma)
    np.testing.assert_allclose(m["loc"], (1.0, mu**2 / sigma**2 + 2))
    np.testing.assert_allclose(m["scale"], (0.0, 2 * mu**2 / sigma**2 + 10))
    # f = (x - k)^2, a = mu - k. Pathwise: d/dmu = 2(a + sigma eps), var
    # 4 sigma^2 for every k. Score: d/dmu var a^4/sigma^2 + 14 a^2 + 15 sigma^2.
    k = 2.0
    a = mu - k
    coef = [k**2, -2 * k, 1.0]
    m = _poly_moments("pathwise", coef, mu, sigma)
    np.testing.assert_allclose(m["loc"], (2 * a, 4 * sigma**2))
    np.testing.assert_allclose(m["scale"], (2 * sigma, 4 * a**2 + 8 * sigma**2))
    m = _poly_moments("score_function", coef, mu, sigma)
    np.testing.assert_allclose(
      m["loc"], (2 * a, a**4 / sigma**2 + 14 * a**2 + 15 * sigma**2)
    )


@pytest.mark.slow
class UnbiasednessTest(_StatisticalTestCase):
  # The uncoupled measure-valued estimator is checked in d = 1 only (its
  # d = 10 program would only add compilation time; coupling changes nothing
  # about the per-coordinate construction).
  @parameterized.parameters(
    *[
      (e, d)
      for e in _ESTIMATORS
      for d in (1, 10)
      if (e, d) != ("measure_valued_uncoupled", 10)
    ]
  )
  def test_unbiased_for_gaussian_costs(self, estimator, dim):
    """Each of the five costs, d/dloc and d/dscale of every coordinate."""
    params = _params(dim)
    loc, scale = np.asarray(params["loc"]), np.asarray(params["scale"])
    sizes = _SIZES[(estimator, dim)]
    if dim == 1:  # The run VarianceTest's k = _K shares.
      moments = _shifted_moments(estimator, 0.4, 0.8, _K, 1)
    else:
      moments = _family_moments(estimator, params, _K, jax.random.key(dim))
    chex.assert_shape(moments.mean["loc"], (len(_COSTS), dim))
    for c, name in enumerate(_COSTS):
      grads = _exact_grads(name, loc, scale)
      variances = _exact_variances(estimator, name, loc, scale)
      for field, g, v in zip(("loc", "scale"), grads, variances, strict=True):
        what = f"{estimator} d={dim} {name} d/d{field}"
        power.assert_detects(
          v, g, sizes.num_samples, sizes.rel, floor=sizes.floor, what=what
        )
        power.assert_unbiased(
          moments.mean[field][c], moments.stderr[field][c], g, what=what
        )

  # Pathwise differentiates through dist_builder with autodiff (covered by the
  # Gamma and MultivariateNormalTriL tests); these two pull a hand-derived
  # gradient back with a VJP and have LogScaleNormal-specific code.
  @parameterized.parameters("score_function", "measure_valued")
  def test_unbiased_through_dist_builder(self, estimator):
    """params -> LogScaleNormal(mean, 0.5 raw - 0.2): the chain rule."""
    mu = np.array([0.3, -0.8, 1.1])
    raw = np.array([-0.5, 0.2, 1.0])
    sigma = np.exp(0.5 * raw - 0.2)
    # Per sample, d/draw = 0.5 d/dlog sigma = 0.5 sigma d/dsigma, so its
    # variance is 0.25 sigma^2 that of d/dsigma.
    d_mu, d_sigma = _exact_grads("cos", mu, sigma)
    grads = {"mean": d_mu, "raw": 0.5 * sigma * d_sigma}
    var_mu, var_sigma = _exact_variances(estimator, "cos", mu, sigma)
    variances = {"mean": var_mu, "raw": 0.25 * sigma**2 * var_sigma}
    # Measure-valued: 1.4e4 samples give 5% on every coordinate. The score
    # function (d = 3, the others' costs in each coordinate's variance) needs
    # 5.5e6 for 5% (d/dmean at mu = 0.3, g = -0.13); 2^21 (2 s) detects 8.5%,
    # far below what a wrong pull-back costs (a missing 0.5 or sigma: >= 35%
    # here); 5% of the estimator itself is checked at d = 1 above.
    num_samples, rel = {
      "score_function": (2**21, 0.085),
      "measure_valued": (2**15, power.SCORE_FUNCTION_POWER),
    }[estimator]
    moments = diagnostics.gradient_moments(
      _ESTIMATORS[estimator],
      _cos_cost,
      {"mean": jnp.asarray(mu), "raw": jnp.asarray(raw)},
      _log_scale_builder,
      jax.random.key(11),
      num_samples,
      chunk_size=2**15,
    )
    for field in ("mean", "raw"):
      what = f"{estimator} d/d{field}"
      power.assert_detects(
        variances[field], grads[field], num_samples, rel, what=what
      )
      power.assert_unbiased(
        moments.mean[field], moments.stderr[field], grads[field], what=what
      )


def _cos_cost(x):
  return _cost_family(x, _COSTS.index("cos"), _K)


def _log_scale_builder(p):
  return distributions.LogScaleNormal(p["mean"], 0.5 * p["raw"] - 0.2)


@functools.cache
def _shifted_moments(estimator, mu, sigma, k, seed):
  params = {"loc": jnp.array([mu]), "scale": jnp.array([sigma])}
  return _family_moments(estimator, params, k, jax.random.key(seed))


@pytest.mark.slow
class VarianceTest(_StatisticalTestCase):
  """Empirical variances against closed forms (d = 1, polynomial costs).

  Each variance is compared with its exact value within 5 of its standard
  errors (from the fourth moment); at the sizes of `_SIZES` that detects a
  relative variance error of at most `_VARIANCE_POWER` (asserted; the
  largest, 11%, is d/dscale of the score function, whose per-sample
  estimate is a degree-4 polynomial in eps, heavy-tailed: 5% there would
  take 5x the samples).
  """

  # The unbiasedness test's d = 1 problem: its run is this one's k = _K.
  _MU, _SIGMA = 0.4, 0.8
  _SHIFTS = (_K, 1.5, 2.0)
  _VARIANCE_POWER = {
    "pathwise": 0.02,
    "score_function": 0.15,
    "measure_valued": 0.1,
    "measure_valued_uncoupled": 0.1,
  }

  def _run(self, estimator, k, seed):
    """All five costs at shift k (f = x and k = 0 share one run)."""
    return _shifted_moments(estimator, self._MU, self._SIGMA, k, seed)

  def _costs(self):
    """(name, shift, coefficients of f): f = x and f = (x - k)^2."""
    yield "x", _K, [0.0, 1.0, 0.0]
    for k in self._SHIFTS:
      yield "shifted_square", k, [k**2, -2 * k, 1.0]

  def _check(self, estimator, moments, name, means, variances, what):
    """Means and variances of cost `name` against their exact values."""
    sizes = _SIZES[(estimator, 1)]
    c = _COSTS.index(name)
    for field, g, v in zip(("loc", "scale"), means, variances, strict=True):
      label = f"{what} d/d{field}"
      power.assert_detects(
        v, g, sizes.num_samples, sizes.rel, floor=sizes.floor, what=label
      )
      power.assert_unbiased(
        moments.mean[field][c, 0],
        moments.stderr[field][c, 0],
        g,
        what=label,
      )
      rel = power.assert_variance(
        moments.variance[field][c, 0],
        moments.variance_stderr[field][c, 0],
        v,
        what=label,
      )
      if v > 0:
        self.assertLess(rel, self._VARIANCE_POWER[estimator], label)
    return moments.variance["loc"][c, 0]

  @parameterized.parameters("pathwise", "score_function")
  def test_pathwise_and_score_variances(self, estimator):
    variances = []
    for name, k, coef in self._costs():
      # One key for every cost: common random numbers make the comparisons
      # across k below exact for pathwise and sharper for the score function.
      moments = self._run(estimator, k, 1)
      want = _poly_moments(estimator, coef, self._MU, self._SIGMA)
      var_mu = self._check(
        estimator,
        moments,
        name,
        (want["loc"][0], want["scale"][0]),
        (want["loc"][1], want["scale"][1]),
        f"{estimator} f={name} k={k}",
      )
      variances.append((var_mu, want["loc"][1]))
    if estimator == "pathwise":
      # f = x: the pathwise d/dmu is exactly 1 (zero variance, checked above).
      # f = (x - k)^2: d/dmu = 2(x - k) has variance 4 sigma^2 whatever k.
      for var, want in variances[1:]:
        np.testing.assert_allclose(want, 4 * self._SIGMA**2)
        np.testing.assert_allclose(var, variances[1][0], rtol=1e-9)
    else:
      # Score function: the variance grows with the shift k (|mu - k| here),
      # both exactly and empirically.
      shifted = variances[1:]
      for (v0, e0), (v1, e1) in zip(shifted[:-1], shifted[1:], strict=True):
        self.assertLess(e0, e1)
        self.assertLess(v0, v1)

  @parameterized.parameters(True, False)
  def test_measure_valued_variances(self, coupling):
    estimator = "measure_valued" if coupling else "measure_valued_uncoupled"
    for name, k, _ in self._costs():
      moments = self._run(estimator, k, 1)
      # Means: f = x -> (1, 0); f = (x - k)^2 -> (2(mu - k), 2 sigma).
      self._check(
        estimator,
        moments,
        name,
        _exact_grads(name, self._MU, self._SIGMA, k),
        _measure_valued_variances(coupling, name, self._MU, self._SIGMA, k),
        f"{estimator} f={name} k={k}",
      )


def _bernoulli_cost(x):  # Not additive: couples the coordinates.
  return jnp.sin(jnp.dot(jnp.array([1.5, -2.0, 0.7]), x)) + x[0] * x[2]


_TABLE = jnp.array([[3.0, -1.0, 0.5, 2.0], [0.0, 4.0, -2.0, 1.0]])


def _categorical_cost(x):  # x: [2] category indices, one per batch row.
  return _TABLE[0, x[0]] * _TABLE[1, x[1]] + _TABLE[1, x[1]]


def _gamma_cost(x):
  return jnp.sum(x**2 + jnp.log(x))


def _gamma(p):
  return distributions.Gamma(*p)


_SHIFT = jnp.array([1.0, 0.0, -1.0])
_SLOPE = jnp.array([0.3, -0.2, 0.25])


def _mvn_cost(x):
  return jnp.sum((x - _SHIFT) ** 2) + jnp.exp(jnp.dot(_SLOPE, x))


def _mvn(p):
  return distributions.MultivariateNormalTriL(p["loc"], p["scale_tril"])


def _moments(estimator, function, params, builder, key, num_samples):
  """Moments of `estimator`'s samples, drawn in one jitted call, NumPy.

  These sizes fit in memory, and one plain jit compiles faster than the
  streamed engine, which is what these tests' time is made of.
  """
  jacobians = jax.jit(estimator, static_argnums=(0, 2, 4))(
    function, params, builder, key, num_samples
  )
  del key

  jacobians = jax.tree.map(np.asarray, jacobians)
  mean = jax.tree.map(lambda x: x.mean(0), jacobians)
  variance = jax.tree.map(lambda x: x.var(0, ddof=1), jacobians)
  return diagnostics.GradientMoments(
    mean=mean,
    variance=variance,
    stderr=jax.tree.map(lambda v: np.sqrt(v / num_samples), variance),
    num_samples=num_samples,
    num_nonfinite=0,
  )


def _check_all(moments, exact_grads, rel, what, variances=None):
  """Power and unbiasedness of every leaf.

  `variances` defaults to the run's own variance (precise to ~1% at these
  sizes), where no closed form is written out.
  """
  variances = moments.variance if variances is None else variances
  trees = (exact_grads, variances, moments.mean, moments.stderr)
  leaves = [jax.tree.leaves(t) for t in trees]
  for i, (g, v, mean, stderr) in enumerate(zip(*leaves, strict=True)):
    label = f"{what} leaf {i}"
    power.assert_detects(v, g, moments.num_samples, rel, what=label)
    power.assert_unbiased(mean, stderr, g, what=label)


@pytest.mark.slow
class OtherDistributionsTest(_StatisticalTestCase):
  """The score and reparameterization pull-backs of the other families.

  Each states the relative bias it detects on every coordinate (5 SE /
  |exact|). Where that is above the 5% / 1% targets, the comment says what
  the target would cost; the estimators' arithmetic is held to the targets
  on the Gaussian suite above, and these tests are after the distributions'
  own scores and sampling paths, whose plausible errors (a wrong score
  term, a missing pull-back factor) are far larger.
  """

  def test_score_function_bernoulli_by_enumeration(self):
    logits = jnp.array([0.4, -1.3, 2.0])
    # E[f] and the per-sample estimate's variance, by summing over all 2^3
    # outcomes with prob. prod_i p_i^x_i (1 - p_i)^(1 - x_i); the score of
    # the logits is x - p.
    outcomes = jnp.array(
      [[(j >> i) & 1 for i in range(3)] for j in range(8)], jnp.float64
    )
    p = 1.0 / (1.0 + jnp.exp(-logits))
    probs = jnp.prod(outcomes * p + (1 - outcomes) * (1 - p), axis=1)
    per_outcome = jax.vmap(_bernoulli_cost)(outcomes)[:, None] * (outcomes - p)
    exact_grad = probs @ per_outcome
    exact_var = probs @ per_outcome**2 - exact_grad**2

    def exact_value(logits):
      p = 1.0 / (1.0 + jnp.exp(-logits))
      probs = jnp.prod(outcomes * p + (1 - outcomes) * (1 - p), axis=1)
      return jnp.sum(probs * jax.vmap(_bernoulli_cost)(outcomes))

    # The enumerated mean of the estimate is the gradient (a check of both).
    np.testing.assert_allclose(
      exact_grad, jax.grad(exact_value)(logits), rtol=1e-12
    )
    # 5%: 1.0e5 samples (d/dlogit_2, g = 0.083) -> 2^17.
    moments = _moments(
      estimators.score_function_jacobians,
      _bernoulli_cost,
      logits,
      distributions.Bernoulli,
      jax.random.key(40),
      2**17,
    )
    _check_all(
      moments,
      exact_grad,
      power.SCORE_FUNCTION_POWER,
      "bernoulli",
      variances=exact_var,
    )

  def test_score_function_categorical_by_enumeration(self):
    params = {"logits": jnp.array([[0.2, -0.5, 1.0, 0.0], [1.0, 1.0, -2, 0.3]])}
    probs = jax.nn.softmax(params["logits"], -1)  # [2, 4]
    # All 16 outcomes (a, b): probability, and the per-sample estimate
    # f(a, b) (onehot - probs) (the score of the logits), [16, 2, 4].
    a, b = np.divmod(np.arange(16), 4)
    joint = probs[0, a] * probs[1, b]
    values = _TABLE[0, a] * _TABLE[1, b] + _TABLE[1, b]
    scores = jnp.stack(
      [jax.nn.one_hot(a, 4) - probs[0], jax.nn.one_hot(b, 4) - probs[1]], 1
    )
    per_outcome = values[:, None, None] * scores
    exact_grad = jnp.einsum("o,oij->ij", joint, per_outcome)
    exact_var = jnp.einsum("o,oij->ij", joint, per_outcome**2) - exact_grad**2

    def exact_value(params):
      probs = jax.nn.softmax(params["logits"], -1)
      joint = probs[0][:, None] * probs[1][None, :]  # [4, 4]
      values = _TABLE[0][:, None] * _TABLE[1][None, :] + _TABLE[1][None, :]
      return jnp.sum(joint * values)

    np.testing.assert_allclose(
      exact_grad, jax.grad(exact_value)(params)["logits"], rtol=1e-12
    )
    # 5% on every logit needs 1.2e6 samples (logit [0, 3], g = 0.26, ~8 s);
    # 2^19 detects 7.5% there and <= 5% on the others.
    moments = _moments(
      estimators.score_function_jacobians,
      _categorical_cost,
      params,
      _categorical,
      jax.random.key(41),
      2**19,
    )
    _check_all(
      moments,
      {"logits": exact_grad},
      0.075,
      "categorical",
      variances={"logits": exact_var},
    )

  @parameterized.parameters("pathwise", "score_function")
  def test_gamma(self, estimator):
    """f = x^2 + log x: E = a(a+1)/b^2 + digamma(a) - log b."""
    a = jnp.array([0.6, 2.5])
    b = jnp.array([1.5, 0.8])
    d_a = (2 * a + 1) / b**2 + jax.scipy.special.polygamma(1, a)
    d_b = -2 * a * (a + 1) / b**3 - 1 / b
    # Single-sample variances measured offline (2^20 samples, +-1%):
    # pathwise (5.9, 76) d/da and (2.8, 2150) d/db: 1% needs 4.6e5 (d/db at
    # b = 0.8, g = 35), ~7 s more; 2^18 detects 1.4%.
    # Score function (1800, 630) and (200, 17600): 5% needs 1.3e6 (d/db at
    # b = 1.5, g = 1.24); the gamma sampler's rejection loop makes that
    # ~15 s, so 2^18 (detects <= 12%).
    num_samples, rel = {
      "pathwise": (2**18, 0.014),
      "score_function": (2**18, 0.12),
    }[estimator]
    moments = _moments(
      _ESTIMATORS[estimator],
      _gamma_cost,
      (a, b),
      _gamma,
      jax.random.key(42),
      num_samples,
    )
    _check_all(moments, (d_a, d_b), rel, f"gamma {estimator}")

  @parameterized.parameters("pathwise", "score_function")
  def test_multivariate_normal_tril(self, estimator):
    """f = |x - c|^2 + exp(a.x).

    E[f] = |mu - c|^2 + |L|_F^2 + exp(a.mu + |L^T a|^2 / 2), so
    d/dmu = 2(mu - c) + E_2 a and d/dL = 2L + E_2 tril(a (L^T a)^T), with E_2
    the exponential term (d/dL_ij of |L^T a|^2/2 is a_i (L^T a)_j).
    """
    mu = jnp.array([0.2, -0.4, 0.5])
    tril = jnp.array([[0.9, 0.0, 0.0], [0.3, 0.6, 0.0], [-0.2, 0.4, 0.7]])
    e = np.exp(_SLOPE @ mu + 0.5 * np.sum((tril.T @ _SLOPE) ** 2))
    d_mu = 2 * (mu - _SHIFT) + e * _SLOPE
    d_tril = 2 * tril + e * np.tril(np.outer(_SLOPE, tril.T @ _SLOPE))
    # Variances measured offline (2^22 samples): pathwise 1.8-16, score
    # function 140-500 per coordinate. The binding coordinate is L_20,
    # g = -0.15: 1% pathwise needs 3.0e7 samples, 5% score function 2.1e7
    # (about a minute each). 2^18 detects, pathwise, <= 1.6% on mu and
    # <= 11% on L; score function <= 14% on mu and <= 46% on L (5 SE =
    # 0.16 absolute at L_20, whose gradient is -0.15, 0.2 at most elsewhere):
    # enough for a wrong pull-back to L (a transposed or untriangled factor
    # is an O(1) error), not for a few percent.
    num_samples = 2**18
    rel = {
      "pathwise": {"loc": 0.016, "scale_tril": 0.11},
      "score_function": {"loc": 0.14, "scale_tril": 0.46},
    }[estimator]
    moments = _moments(
      _ESTIMATORS[estimator],
      _mvn_cost,
      {"loc": mu, "scale_tril": tril},
      _mvn,
      jax.random.key(43),
      num_samples,
    )
    # The strict upper triangle gets exactly zero: it is not a parameter.
    upper = np.triu(np.ones((3, 3), bool), k=1)
    np.testing.assert_array_equal(moments.mean["scale_tril"][upper], 0.0)
    np.testing.assert_array_equal(moments.variance["scale_tril"][upper], 0.0)
    for field, g in (("loc", d_mu), ("scale_tril", d_tril)):
      lower = ... if field == "loc" else ~upper
      label = f"mvn {estimator} d/d{field}"
      power.assert_detects(
        moments.variance[field][lower],
        g[lower],
        num_samples,
        rel[field],
        what=label,
      )
      power.assert_unbiased(
        moments.mean[field], moments.stderr[field], g, what=label
      )


def _categorical(p):
  return distributions.Categorical(p["logits"])


_CORE = ("pathwise", "score_function", "measure_valued")


def _all_three(params, key):
  """The three estimators at once: one program for the transformation tests."""
  return tuple(
    _ESTIMATORS[e](_gauss_cost, params, _normal, key, _SMALL_N) for e in _CORE
  )


class TransformationsTest(chex.TestCase):
  """jit, vmap, shapes, retracing, costs and baselines (not statistical)."""

  def setUp(self):
    super().setUp()
    chex.clear_trace_counter()

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_matches_eager_and_shapes(self):
    params = _small_params()
    key = jax.random.key(50)
    got = self.variant(_all_three)(params, key)
    expected = _all_three(params, key)
    for g in got:
      chex.assert_trees_all_equal_structs(g, params)
      chex.assert_shape(g["loc"], (_SMALL_N, _SMALL_DIM))
      chex.assert_shape(g["scale"], (_SMALL_N, _SMALL_DIM))
    chex.assert_trees_all_close(got, expected, rtol=1e-12, atol=1e-14)

  def test_one_trace_per_shape(self):
    # .trace() runs jit's tracing cache without compiling: retracing is what
    # assert_max_traces counts, and compiling would only cost time here.
    run = jax.jit(chex.assert_max_traces(_all_three, n=2))
    for dim in (3, 3, 4, 4, 3):  # Two shapes, new values each call.
      run.trace(
        {"loc": jnp.full(dim, dim * 0.1), "scale": jnp.full(dim, 0.5 + dim)},
        jax.random.key(dim),
      )
    with self.assertRaises(AssertionError):  # A third shape: a third trace.
      run.trace({"loc": jnp.zeros(7), "scale": jnp.ones(7)}, jax.random.key(7))

  def test_vmap_over_params_and_keys(self):
    locs = jnp.array([[0.0, 1.0, 2.0], [2.0, -1.0, 0.0]])
    scales = jnp.array([[1.0, 2.0, 0.5], [0.5, 0.5, 3.0]])
    keys = jax.random.split(jax.random.key(51), 2)
    batched = jax.jit(
      jax.vmap(
        lambda loc, scale, key: _all_three({"loc": loc, "scale": scale}, key)
      )
    )(locs, scales, keys)
    chex.assert_shape(batched[0]["loc"], (2, _SMALL_N, _SMALL_DIM))
    for i in range(2):
      # Eager rows: same shapes as the other eager tests, so cheap.
      row = _all_three({"loc": locs[i], "scale": scales[i]}, keys[i])
      chex.assert_trees_all_close(
        jax.tree.map(lambda v, i=i: v[i], batched), row, rtol=1e-10
      )

  @parameterized.parameters("pathwise", "score_function")
  def test_return_costs(self, estimator):
    params = _small_params()
    jac, costs = _ESTIMATORS[estimator](
      jnp.sum,
      params,
      _normal,
      jax.random.key(52),
      _SMALL_N,
      return_costs=True,
    )
    chex.assert_shape(costs, (_SMALL_N,))
    if estimator == "pathwise":
      # f = sum(x): d/dloc = 1 exactly, d/dscale = eps = (x - mu)/sigma, so
      # the costs (sums of the draws) are recoverable from the jacobians.
      np.testing.assert_array_equal(jac["loc"], 1.0)
      draws = params["loc"] + params["scale"] * jac["scale"]
    else:
      # Score: d/dloc = f(x) (x - mu)/sigma^2 with f(x) = costs.
      draws = params["loc"] + jac["loc"] / costs[:, None] * params["scale"] ** 2
    np.testing.assert_allclose(costs, draws.sum(-1), rtol=1e-10)

  def test_baseline_shifts_costs_exactly(self):
    params = _small_params()
    key = jax.random.key(53)
    est = estimators.score_function_jacobians
    plain = est(_gauss_cost, params, _normal, key, _SMALL_N)
    shifted = est(
      lambda x: _gauss_cost(x) + 100.0,
      params,
      _normal,
      key,
      _SMALL_N,
      baseline=100.0,
    )
    chex.assert_trees_all_close(plain, shifted, rtol=1e-9, atol=1e-9)
    per_sample = est(
      lambda x: _gauss_cost(x) + 100.0,
      params,
      _normal,
      key,
      _SMALL_N,
      baseline=jnp.full(_SMALL_N, 100.0),
    )
    chex.assert_trees_all_close(plain, per_sample, rtol=1e-9, atol=1e-9)

  def test_exported(self):
    for name in (
      "pathwise_jacobians",
      "score_function_jacobians",
      "measure_valued_jacobians",
      "score_jacobians",
      "noise_score_jacobians",
    ):
      self.assertIs(getattr(rgrad, name), getattr(estimators, name))
      self.assertIn(name, rgrad.__all__)
    for name in (
      "Normal",
      "LogScaleNormal",
      "MultivariateNormalTriL",
      "Bernoulli",
      "Categorical",
      "Gamma",
      "Distribution",
    ):
      self.assertIs(getattr(rgrad, name), getattr(distributions, name))
      self.assertIn(name, rgrad.__all__)


def _nan_if_positive(x):
  # Written with where: the gradient of the taken branch is finite even where
  # the cost is NaN, so pathwise must poison such samples itself.
  return jnp.where(x[0] > 0, jnp.nan, jnp.sum(x**2))


def _inf_cost(x):
  return jnp.sum(x) * jnp.inf


class NonFiniteTest(parameterized.TestCase):
  @parameterized.parameters(*_ESTIMATORS)
  def test_raises_outside_jit_with_count(self, estimator):
    # Measure-valued evaluates f 4 d times per sample (2 d for loc, 2 d for
    # scale), and counts evaluations.
    total = _SMALL_N * (4 * _SMALL_DIM if "measure" in estimator else 1)
    with self.assertRaisesRegex(
      ValueError, f"{total} of {total} costs are non-finite"
    ):
      _ESTIMATORS[estimator](
        _inf_cost, _small_params(), _normal, jax.random.key(60), _SMALL_N
      )

  def test_propagates_under_jit_and_count_matches(self):
    params, key = _small_params(), jax.random.key(61)

    @jax.jit
    def run():  # One program for the three estimators.
      return (
        estimators.pathwise_jacobians(
          _nan_if_positive, params, _normal, key, _SMALL_N, return_costs=True
        ),
        estimators.score_function_jacobians(
          _nan_if_positive, params, _normal, key, _SMALL_N, return_costs=True
        ),
        estimators.measure_valued_jacobians(
          _nan_if_positive, params, _normal, key, _SMALL_N
        ),
      )

    *with_costs, measure_valued = run()
    for name, (jac, costs) in zip(
      ("pathwise", "score_function"), with_costs, strict=True
    ):
      bad = int(np.sum(~np.isfinite(costs)))
      self.assertBetween(bad, 1, _SMALL_N - 1)
      # Outside jit the same draws raise, with the same count.
      with self.assertRaisesRegex(ValueError, f"{bad} of {_SMALL_N} costs"):
        _ESTIMATORS[name](_nan_if_positive, params, _normal, key, _SMALL_N)
      # Under jit nothing is masked: exactly the bad samples are non-finite,
      # and so is the mean.
      for leaf in (jac["loc"], jac["scale"]):
        finite = np.all(np.isfinite(leaf), axis=1)
        np.testing.assert_array_equal(finite, np.isfinite(costs))
        self.assertFalse(np.isfinite(np.mean(leaf)))
    self.assertFalse(np.isfinite(np.mean(measure_valued["loc"])))
    self.assertFalse(np.isfinite(np.mean(measure_valued["scale"])))


class BadInputTest(parameterized.TestCase):
  def _call(
    self,
    estimator,
    function=jnp.sum,
    params=None,
    builder=_normal,
    num_samples=_SMALL_N,
    **kwargs,
  ):
    params = _small_params() if params is None else params
    return _ESTIMATORS[estimator](
      function, params, builder, jax.random.key(0), num_samples, **kwargs
    )

  @parameterized.product(estimator=tuple(_ESTIMATORS), num_samples=(0, -3))
  def test_num_samples_value(self, estimator, num_samples):
    with self.assertRaisesRegex(
      ValueError, f"num_samples must be >= 1, got {num_samples}"
    ):
      self._call(estimator, num_samples=num_samples)

  @parameterized.product(
    estimator=tuple(_ESTIMATORS), num_samples=(2.0, True, np.float32(3))
  )
  def test_num_samples_type(self, estimator, num_samples):
    with self.assertRaisesRegex(TypeError, "num_samples must be a static"):
      self._call(estimator, num_samples=num_samples)

  @parameterized.parameters(*_ESTIMATORS)
  def test_traced_num_samples(self, estimator):
    with self.assertRaisesRegex(TypeError, "static_argnames"):
      jax.jit(lambda n: self._call(estimator, num_samples=n))(4)

  @parameterized.parameters(*_ESTIMATORS)
  def test_params_do_not_fit(self, estimator):
    with self.assertRaisesRegex(
      ValueError, r"params do not fit dist_builder.*KeyError.*'scale'"
    ):
      self._call(estimator, params={"loc": jnp.zeros(3)})
    with self.assertRaisesRegex(
      ValueError,
      r"params do not fit .*do not broadcast: loc\(3,\), scale\(4,\)",
    ):
      self._call(estimator, params={"loc": jnp.zeros(3), "scale": jnp.ones(4)})

  @parameterized.parameters(*_ESTIMATORS)
  def test_jit_error_in_builder_is_not_rewrapped(self, estimator):
    """Python control flow on traced params is a jit bug, not a misfit."""

    def branchy(p):
      scale = p["scale"] if p["scale"][0] > 0 else -p["scale"]
      return distributions.Normal(p["loc"], scale)

    with self.assertRaises(jax.errors.TracerBoolConversionError):
      jax.jit(lambda p: self._call(estimator, params=p, builder=branchy))(
        _small_params()
      )

  @parameterized.parameters(*_ESTIMATORS)
  def test_builder_not_a_distribution(self, estimator):
    with self.assertRaisesRegex(TypeError, "must return an rgrad.*got tuple"):
      self._call(estimator, builder=lambda p: (p["loc"],))

  @parameterized.parameters(*_ESTIMATORS)
  def test_non_scalar_cost(self, estimator):
    with self.assertRaisesRegex(
      ValueError, r"function must return a scalar .* \(3,\), got shape \(3,\)"
    ):
      self._call(estimator, function=lambda x: x**2)
    with self.assertRaisesRegex(ValueError, "got tuple"):
      self._call(estimator, function=lambda x: (x.sum(), x.sum()))

  @parameterized.parameters(*_ESTIMATORS)
  def test_non_positive_scale(self, estimator):
    with self.assertRaisesRegex(ValueError, "scale must be positive, got 1 "):
      self._call(
        estimator, params={"loc": jnp.zeros(3), "scale": jnp.array([1, 0, 1.0])}
      )

  def test_pathwise_rejects_discrete(self):
    for cls in (distributions.Bernoulli, distributions.Categorical):
      with self.assertRaisesRegex(
        ValueError, f"{cls.__name__} has no pathwise sampler"
      ):
        self._call("pathwise", params=jnp.zeros((2, 3)), builder=cls)

  def test_measure_valued_rejects_non_gaussian(self):
    with self.assertRaisesRegex(ValueError, "Gaussian .* got Gamma"):
      self._call("measure_valued", params=(jnp.ones(2),) * 2, builder=_gamma)
    with self.assertRaisesRegex(ValueError, "got MultivariateNormalTriL"):
      self._call(
        "measure_valued",
        params={"loc": jnp.zeros(2), "scale_tril": jnp.eye(2)},
        builder=_mvn,
      )

  def test_baseline_shape(self):
    with self.assertRaisesRegex(
      ValueError,
      rf"baseline must be a scalar or have shape \({_SMALL_N},\), got \(3,\)",
    ):
      self._call("score_function", baseline=jnp.zeros(3))


def _log_scale_softplus(params):
  # A nonlinear parameterization, so the pull-back is not the identity.
  return distributions.Normal(params["loc"], jax.nn.softplus(params["raw"]))


def _mvn_builder(params):
  return distributions.MultivariateNormalTriL(
    params["loc"], params["scale_tril"]
  )


class ScoreJacobiansTest(parameterized.TestCase):
  """score_jacobians against per-sample autodiff of log_prob (float64)."""

  @parameterized.named_parameters(
    ("normal_softplus", _log_scale_softplus),
    ("mvn_tril", _mvn_builder),
  )
  def test_matches_autodiff_of_log_prob(self, builder):
    if builder is _mvn_builder:
      params = {
        "loc": jnp.array([0.3, -0.2]),
        "scale_tril": jnp.array([[1.2, 0.0], [0.4, 0.7]]),
      }
    else:
      params = {
        "loc": jnp.array([0.5, -1.0, 2.0]),
        "raw": jnp.array([0.1, -1, 2]),
      }
    xs, noise = builder(params).sample_with_noise(jax.random.key(3), (5,))
    weights = jnp.linspace(-2.0, 3.0, 5)
    grad_log_prob = jax.vmap(
      jax.grad(lambda p, x: builder(p).log_prob(x)), in_axes=(None, 0)
    )(params, xs)
    plain = estimators.score_jacobians(params, builder, xs)
    chex.assert_trees_all_close(plain, grad_log_prob, rtol=1e-10, atol=1e-10)
    weighted = estimators.score_jacobians(params, builder, xs, weights=weights)
    expected = jax.tree.map(
      lambda g: g * weights.reshape((5,) + (1,) * (g.ndim - 1)), grad_log_prob
    )
    chex.assert_trees_all_close(weighted, expected, rtol=1e-10, atol=1e-10)
    # The same scores from the noise (z = eps, no whitening), at the same
    # draws.
    from_noise = estimators.noise_score_jacobians(params, builder, noise)
    chex.assert_trees_all_close(
      from_noise, grad_log_prob, rtol=1e-10, atol=1e-10
    )
    from_noise = estimators.noise_score_jacobians(
      params, builder, noise, weights=weights
    )
    chex.assert_trees_all_close(from_noise, expected, rtol=1e-10, atol=1e-10)

  def test_is_what_score_function_jacobians_weights(self):
    params = _small_params()
    key = jax.random.key(4)
    jac, costs = estimators.score_function_jacobians(
      _gauss_cost, params, _normal, key, _SMALL_N, return_costs=True
    )
    xs = _normal(params).sample(key, (_SMALL_N,))
    direct = estimators.score_jacobians(params, _normal, xs, weights=costs)
    chex.assert_trees_all_close(jac, direct, rtol=1e-12, atol=1e-12)

  def test_bad_shapes(self):
    params = _small_params()
    with self.assertRaisesRegex(
      ValueError, r"xs must have shape \[num_samples, \*\[3\]\].*got \[4, 2\]"
    ):
      estimators.score_jacobians(params, _normal, jnp.zeros((4, 2)))
    with self.assertRaisesRegex(
      ValueError, r"weights must be a scalar or have shape \(4,\), got \(3,\)"
    ):
      estimators.score_jacobians(
        params, _normal, jnp.zeros((4, 3)), weights=jnp.ones(3)
      )
    with self.assertRaisesRegex(
      ValueError,
      r"noise_score_jacobians: noise must have shape \[num_samples, \*\[3\]\]",
    ):
      estimators.noise_score_jacobians(params, _normal, jnp.zeros((4, 2)))
    with self.assertRaisesRegex(
      ValueError, r"weights must be a scalar or have shape \(4,\), got \(3,\)"
    ):
      estimators.noise_score_jacobians(
        params, _normal, jnp.zeros((4, 3)), weights=jnp.ones(3)
      )


if __name__ == "__main__":
  absltest.main()
