"""Tests for rgrad.control_variates.

The references are closed-form: for X ~ N(mu, sigma^2) per coordinate and the
separable costs sum_j phi(x_j) below, E[f] and its derivatives in (mu, sigma)
are derived by hand in this file (and checked against jax.grad of the
closed-form expectation and against Gauss-Hermite quadrature), sharing no code
with the estimators. Statistical tests use fixed keys and assert
|mean - exact| < 5 standard errors, the standard error estimated from i.i.d.
replicates of each estimator (per-sample rows where they are i.i.d., pair
means for antithetic draws, batch means for leave-one-out and for estimated
coefficients). Each states the smallest relative bias it detects and asserts
it (tests/power.py); variances are compared with exact values (rgrad.exact,
or closed forms derived here) within 5 of their own standard errors, from
the fourth moment, never with fixed ratios.
"""

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import control_variates as cv
from rgrad import diagnostics
from rgrad import distributions
from rgrad import estimators
from rgrad import exact as exact_lib
from tests import power

# ---------------------------------------------------------------------------
# Costs and their exact gradients, derived by hand.
# ---------------------------------------------------------------------------

# phi(x; k) per coordinate; the cost is the sum over coordinates.
_PHI = {
  "quadratic": lambda x, k: (x - k) ** 2,
  "gaussian_bump": lambda x, k: jnp.exp(-k * x**2),
  "cosine": lambda x, k: jnp.cos(k * x),
}
_K = {"quadratic": 0.7, "gaussian_bump": 0.5, "cosine": 1.3}


def _cost(name, offset=0.0):
  phi, k = _PHI[name], _K[name]
  return lambda x: jnp.sum(phi(x, k)) + offset


def _expectation(name, mu, sigma):
  """Closed-form E[phi(X)], X ~ N(mu, sigma^2), elementwise."""
  k = _K[name]
  if name == "quadratic":
    return (mu - k) ** 2 + sigma**2
  if name == "gaussian_bump":
    # Gaussian integral: E exp(-k X^2) = a^{-1/2} exp(-k mu^2 / a),
    # a = 1 + 2 k sigma^2.
    a = 1.0 + 2.0 * k * sigma**2
    return a**-0.5 * jnp.exp(-k * mu**2 / a)
  # Characteristic function: E cos(kX) = cos(k mu) exp(-k^2 s^2 / 2).
  return jnp.cos(k * mu) * jnp.exp(-0.5 * k**2 * sigma**2)


def _exact_gradient(name, mu, sigma):
  """Hand-derived (d/dmu, d/dsigma) of E[phi(X)], elementwise (NumPy)."""
  k = _K[name]
  mu, sigma = np.asarray(mu), np.asarray(sigma)
  if name == "quadratic":
    return 2.0 * (mu - k), 2.0 * sigma
  if name == "gaussian_bump":
    a = 1.0 + 2.0 * k * sigma**2
    e = a**-0.5 * np.exp(-k * mu**2 / a)
    # d/dmu = e * (-2 k mu / a); d/da = e * (-1/(2a) + k mu^2 / a^2),
    # da/dsigma = 4 k sigma.
    d_mu = e * (-2.0 * k * mu / a)
    d_sigma = e * (-0.5 / a + k * mu**2 / a**2) * 4.0 * k * sigma
    return d_mu, d_sigma
  damp = np.exp(-0.5 * k**2 * sigma**2)
  return -k * np.sin(k * mu) * damp, -(k**2) * sigma * np.cos(k * mu) * damp


# Two parameterizations, two pytree structures: d=1 is a LogScaleNormal built
# from a tuple (loc, log_scale); d=10 a Normal built from a dict.
def _setup(dim):
  if dim == 1:
    loc, scale = np.array([0.3]), np.array([0.8])
    params = (jnp.asarray(loc), jnp.log(jnp.asarray(scale)))
    builder = lambda p: distributions.LogScaleNormal(p[0], p[1])
  else:
    loc = np.linspace(-1.0, 1.0, dim)
    scale = np.linspace(0.5, 1.5, dim)
    params = {"loc": jnp.asarray(loc), "scale": jnp.asarray(scale)}
    builder = lambda p: distributions.Normal(p["loc"], p["scale"])
  return params, builder, loc, scale


def _exact_for_params(name, dim):
  _, _, loc, scale = _setup(dim)
  d_loc, d_scale = _exact_gradient(name, loc, scale)
  if dim == 1:
    # sigma = exp(log sigma): d/dlog sigma = sigma d/dsigma.
    return (d_loc, scale * d_scale)
  return {"loc": d_loc, "scale": d_scale}


def _pair_means(jacobians):
  """Means of antithetic pairs (rows i and i + n/2), [n/2, ...]."""
  return jax.tree.map(
    lambda j: 0.5 * (j[: j.shape[0] // 2] + j[j.shape[0] // 2 :]), jacobians
  )


# Each statistical test compiles its programs once and runs them once, so
# XLA's LLVM optimizations cost far more than they save: compiling without
# them is ~3x faster here. (The chex.variants tests use plain jax.jit.)
_fast_jit = functools.partial(
  jax.jit,
  compiler_options={
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
  },
)


def _fast_call(fn, function, params, builder, key, num_samples, **kw):
  """`estimator(...)` as one program compiled with `_fast_jit`."""
  return _fast_jit(lambda p, k: fn(function, p, builder, k, num_samples, **kw))(
    params, key
  )


class _FastCompileTestCase(chex.TestCase):
  """Runs each test with the non-partitionable threefry PRNG.

  With this JAX, XLA compiles the partitionable threefry (the default) about
  five times slower on CPU, and compiling the samplers dominates these tests.
  The estimators only split keys and call the samplers, so they do not depend
  on how the random bits are derived.
  """

  def setUp(self):
    super().setUp()
    self.enter_context(jax.threefry_partitionable(False))


class ExactReferenceTest(parameterized.TestCase):
  """The references themselves: hand derivatives and closed forms."""

  @parameterized.parameters("quadratic", "gaussian_bump", "cosine")
  def test_hand_gradient_matches_jax_grad_of_closed_form(self, name):
    mu = jnp.linspace(-1.0, 1.0, 7)
    sigma = jnp.linspace(0.3, 1.7, 7)
    d_mu = jax.vmap(jax.grad(functools.partial(_expectation, name), 0))(
      mu, sigma
    )
    d_sigma = jax.vmap(jax.grad(functools.partial(_expectation, name), 1))(
      mu, sigma
    )
    hand = _exact_gradient(name, mu, sigma)
    np.testing.assert_allclose(hand[0], d_mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hand[1], d_sigma, rtol=1e-12, atol=1e-14)

  @parameterized.parameters("quadratic", "gaussian_bump", "cosine")
  def test_closed_form_matches_gauss_hermite(self, name):
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / np.sqrt(2.0 * np.pi)  # probabilists' -> N(0, 1)
    for mu, sigma in [(0.3, 0.8), (-1.0, 1.5)]:
      quad = np.sum(
        weights * np.asarray(_PHI[name](mu + sigma * nodes, _K[name]))
      )
      np.testing.assert_allclose(
        _expectation(name, mu, sigma), quad, rtol=1e-12
      )


# ---------------------------------------------------------------------------
# Unbiasedness of every estimator against the exact gradient.
# ---------------------------------------------------------------------------

_FLOAT_FLOOR = 1e-10  # float64 roundoff where an estimator has no variance


def _replicates(estimator_name, function, params, builder, key, size):
  """`size` i.i.d. replicates [size, ...] of one estimator's estimate.

  Per-sample rows where they are i.i.d.; pair means for antithetic draws;
  means of batches of 4 for leave-one-out and the estimated coefficients
  (whose rows share a baseline or a coefficient).
  """
  if estimator_name == "leave_one_out":
    keys = jax.random.split(key, size)
    batch = jax.vmap(
      lambda k: cv.leave_one_out_jacobians(function, params, builder, k, 4)
    )(keys)
    return jax.tree.map(lambda j: j.mean(1), batch)
  if estimator_name.endswith("_estimated"):
    estimator = estimator_name.removesuffix("_estimated")
    keys = jax.random.split(key, size)
    batch = jax.vmap(
      lambda k: cv.control_variate_jacobians(
        function,
        params,
        builder,
        k,
        4,
        estimator=estimator,
        coefficient="estimate",
        num_coefficient_samples=6,
      )
    )(keys)
    return jax.tree.map(lambda j: j.mean(1), batch)
  if estimator_name == "antithetic_pathwise":
    return _pair_means(
      cv.antithetic_pathwise_jacobians(function, params, builder, key, 2 * size)
    )
  if estimator_name == "antithetic_score_function":
    return _pair_means(
      cv.antithetic_score_function_jacobians(
        function, params, builder, key, 2 * size
      )
    )
  if estimator_name == "first_order_delta_score_function":
    return cv.control_variate_jacobians(
      function,
      params,
      builder,
      key,
      size,
      control_variate="first_order_delta",
    )
  return cv.control_variate_jacobians(
    function, params, builder, key, size, estimator=estimator_name
  )


_ESTIMATORS = (
  "leave_one_out",
  "score_function",  # delta method, coefficient 1
  "pathwise",  # delta method, coefficient 1
  "score_function_estimated",
  "pathwise_estimated",
  "first_order_delta_score_function",
  "antithetic_pathwise",
  "antithetic_score_function",
)


def _switched_cost(index):
  """All three costs behind one traced index, so that one compiled program
  (vmapped over the index) checks every cost: compiling the samplers is what
  dominates these tests' run time."""
  branches = [_cost(name) for name in _PHI]
  return lambda x: jax.lax.switch(index, branches, x)


def _all_costs(estimator, params, builder, key, size):
  """`_replicates` of the three costs, leaves [size, cost, ...]."""
  keys = jax.random.split(key, len(_PHI))
  out = jax.vmap(
    lambda i, k: _replicates(
      estimator, _switched_cost(i), params, builder, k, size
    )
  )(jnp.arange(len(_PHI)), keys)
  return jax.tree.map(lambda j: jnp.moveaxis(j, 0, 1), out)


def _chunk_step(running, key, params, *, chunk_fn, size):
  values = chunk_fn(key, size, params)
  return diagnostics.merge_moment_sums(
    running, diagnostics.chunk_moment_sums(values, higher_moments=True)
  )


_STEPS = {
  True: _fast_jit(_chunk_step, static_argnames=("chunk_fn", "size")),
  False: jax.jit(_chunk_step, static_argnames=("chunk_fn", "size")),
}


def _streamed_moments(chunk_fn, params, key, num, chunk_size, *, fast=True):
  """Moments of `num` replicates of ``chunk_fn(key, size, params)``, NumPy.

  The chunks' moments are merged with rgrad.diagnostics' public merge (the
  engine's own formulas), one compiled chunk program per `chunk_fn` (a
  hashable callable) called `num / chunk_size` times with keys
  ``fold_in(key, c)``. `fast` compiles it with `_fast_jit` (compiling is
  most of these tests' time); ``fast=False`` with full optimization, for
  the largest sizes, whose run time then dominates.
  """
  if num % chunk_size:
    raise ValueError(f"{num} is not a multiple of {chunk_size}.")
  first = jax.eval_shape(
    lambda k, p: diagnostics.chunk_moment_sums(
      chunk_fn(k, chunk_size, p), higher_moments=True
    ),
    key,
    params,
  )
  running = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)
  step = functools.partial(_STEPS[fast], chunk_fn=chunk_fn, size=chunk_size)
  for c in range(num // chunk_size):
    running = step(running, jax.random.fold_in(key, c), params)
  del key
  moments = diagnostics.finalize_moments(running, num, higher_moments=True)
  return jax.tree.map(np.asarray, moments)


# Replicates per test and the power they buy: the smallest relative bias
# detected on every coordinate, 5 SE / |exact| (tests/power.py), SE from the
# replicates' variance, which the run measures to ~1% (4th-moment SE) at d =
# 1 (no closed form is written out for these estimators; those of the delta
# method are checked against rgrad.exact in VarianceAgainstExactTest). d = 1
# meets the targets (5% for the score-function family, 1% for pathwise),
# the binding case and its need in brackets, except `pathwise_estimated`:
# 1% there takes 2.5e5 batches (gaussian_bump d/dloc, g = 0.14), whose
# estimated coefficient makes the program compile and run ~15 s; 2^15
# detects 3%.
# d = 10 cannot: every coordinate's score-function variance carries the
# other nine costs and several gradients are ~0.04, so 5% takes 1e6 to 1e9
# replicates. d = 10 is there for the per-coordinate construction (another
# coordinate's score, coefficient or pair, an O(1) error); what it detects
# is the absolute floor, 5 SE <= floor on every coordinate (gradients up to
# 3.4).
# estimator: ((replicates, rel) at d = 1, (replicates, floor) at d = 10).
_UNBIASED_SIZES = {
  "leave_one_out": ((2**16, 0.05), (2**12, 1.1)),  # [4.1e4]
  "score_function": ((2**19, 0.05), (2**13, 0.8)),  # [3.8e5]
  "pathwise": ((9 * 2**18, 0.01), (2**13, 0.2)),  # [2.2e6]
  "score_function_estimated": ((2**17, 0.05), (2**12, 0.6)),  # [8.2e4]
  "pathwise_estimated": ((2**15, 0.03), (2**12, 0.1)),  # [2.5e5]
  "first_order_delta_score_function": ((2**19, 0.05), (2**13, 2.3)),  # [2.9e5]
  "antithetic_pathwise": ((2**19, 0.01), (2**13, 0.25)),  # [5.0e5]
  "antithetic_score_function": ((2**18, 0.05), (2**13, 3.5)),  # [1.8e5]
}
# The big d = 1 programs run long enough to be worth optimizing.
_OPTIMIZED = ("score_function", "pathwise", "first_order_delta_score_function",
              "antithetic_pathwise")  # fmt: skip


class _AllCosts(NamedTuple):
  """`_all_costs` as a chunk function (a hashable callable)."""

  estimator: str
  dim: int

  def __call__(self, key, size, params):
    _, builder, _, _ = _setup(self.dim)
    return _all_costs(self.estimator, params, builder, key, size)


class UnbiasedTest(_FastCompileTestCase):
  @parameterized.named_parameters(
    *[(f"{e}_d{d}", e, d) for e in _ESTIMATORS for d in (1, 10)]
  )
  @pytest.mark.slow
  def test_unbiased(self, estimator, dim):
    params, _, _, _ = _setup(dim)
    (num, rel), (num_10, floor) = _UNBIASED_SIZES[estimator]
    if dim == 10:
      num = num_10
      rel = (
        power.PATHWISE_POWER
        if "pathwise" in estimator
        else power.SCORE_FUNCTION_POWER
      )
    else:
      floor = 0.0
    moments = _streamed_moments(
      _AllCosts(estimator, dim),
      params,
      jax.random.key(17),
      num,
      min(num, 2**14 if dim == 1 else 2**11),
      fast=dim == 10 or estimator not in _OPTIMIZED,
    )
    trees = (moments.mean, moments.stderr, moments.variance)
    for index, cost in enumerate(_PHI):
      exact = jax.tree.leaves(_exact_for_params(cost, dim))
      for leaf, (mean, stderr, variance) in enumerate(
        zip(*map(jax.tree.leaves, trees), strict=True)
      ):
        what = f"{estimator} d={dim} cost {cost} leaf {leaf}"
        power.assert_detects(
          variance[index], exact[leaf], num, rel, floor=floor, what=what
        )
        power.assert_unbiased(
          mean[index],
          stderr[index],
          exact[leaf],
          what=what,
          roundoff=_FLOAT_FLOOR,
        )

  @pytest.mark.slow
  def test_moving_average_baseline_unbiased_and_variance_exact(self):
    # Score function with the debiased moving average of *past* costs as the
    # baseline, over a trajectory at fixed params. Each step is unbiased given
    # the past, so the per-step estimates are uncorrelated and the standard
    # error of their mean comes from their spread.
    params, builder, loc, scale = _setup(10)
    offset, decay, num_steps, num_samples = 50.0, 0.9, 2**15, 4
    function = _cost("quadratic", offset=offset)

    @_fast_jit
    def trajectory(key, use_baseline):
      def step(state, step_key):
        baseline = jnp.where(
          use_baseline, cv.moving_average_baseline_value(state), 0.0
        )
        jac, costs = estimators.score_function_jacobians(
          function,
          params,
          builder,
          step_key,
          num_samples,
          baseline=baseline,
          return_costs=True,
        )
        state = cv.moving_average_baseline_update(state, costs, decay=decay)
        return state, jax.tree.map(lambda j: j.mean(0), jac)

      keys = jax.random.split(key, num_steps)
      _, estimates = jax.lax.scan(step, cv.moving_average_baseline_init(), keys)
      return estimates

    # Exact variances. With F = offset + sum_i phi(x_i), m = E F and a
    # baseline b independent of the step's draws with E b = m (the debiased
    # average of t past batch means, weights (1 - d) d^(t-i) / (1 - d^t)),
    # the step's estimate (F - b) s_j averaged over its 4 draws has variance
    #   (Var[(F - m) s_j] + Var(b_t) E[s_j^2]) / 4,
    # Var(b_t) = Var(F)/4 (1 - d)^2 (1 - d^2t) / ((1 - d^2)(1 - d^t)^2);
    # plain (b = 0): Var[F s_j] / 4. The sample variance over steps
    # t0..T-1 estimates the mean of these (the estimates are uncorrelated).
    # tests/power.py gives Var[(F - b) s_j] for a constant b.
    phi = lambda x: _PHI["quadratic"](x, _K["quadratic"])  # noqa: E731
    means, variances = (
      np.array(v) for v in exact_lib.cost_mean_and_variance(phi, loc, scale)
    )
    mean_f, var_f = offset + means.sum(), variances.sum()
    second = {"loc": 1.0 / scale**2, "scale": 2.0 / scale**2}  # E s_j^2
    first = 10  # steps skipped: b_t is far from stationary before
    t = np.arange(first, num_steps)
    var_b = (
      var_f
      / num_samples
      * (1 - decay) ** 2
      * (1 - decay ** (2 * t))
      / ((1 - decay**2) * (1 - decay**t) ** 2)
    ).mean()
    centred = dict(
      zip(
        ("loc", "scale"),
        power.additive_score_function_variance(
          phi, loc, scale, baseline=mean_f - offset
        ),
        strict=True,
      )
    )
    plain = dict(
      zip(
        ("loc", "scale"),
        power.additive_score_function_variance(
          phi, loc, scale, baseline=-offset
        ),
        strict=True,
      )
    )
    key = jax.random.key(3)
    with_baseline = trajectory(key, True)
    without = trajectory(key, False)
    exact = _exact_for_params("quadratic", 10)
    for name in ("loc", "scale"):
      steps = np.asarray(with_baseline[name][first:])
      want = (centred[name] + var_b * second[name]) / num_samples
      # The mean: at d = 10 the other coordinates' costs dominate each
      # coordinate's variance (see UnbiasedTest): 5 SE <= 0.22 on d/dloc and
      # 0.33 on d/dscale, whose gradients are 0.16 to 3.4.
      power.assert_detects(
        want,
        exact[name],
        steps.shape[0],
        power.SCORE_FUNCTION_POWER,
        floor={"loc": 0.22, "scale": 0.33}[name],
        what=name,
      )
      power.assert_unbiased(
        steps.mean(0),
        steps.std(0, ddof=1) / np.sqrt(steps.shape[0]),
        exact[name],
        what=f"moving average {name}",
      )
      # The variances, with and without the baseline, within 5 of their
      # standard errors (from the 4th moment) of the exact values: this
      # detects a variance off by <= 25% (asserted), where the baseline
      # takes away 97-99% of the plain estimator's (the offset 50 dominates
      # it).
      for got, exact_variance, label in (
        (steps, want, "with baseline"),
        (np.asarray(without[name][first:]), plain[name] / num_samples, "plain"),
      ):
        n = got.shape[0]
        variance = got.var(0, ddof=1)
        mu4 = np.mean((got - got.mean(0)) ** 4, axis=0)
        variance_se = np.sqrt((mu4 - variance**2 * (n - 3) / (n - 1)) / n)
        rel = power.assert_variance(
          variance, variance_se, exact_variance, what=f"{name} {label}"
        )
        self.assertLess(np.max(rel), 0.25, f"{name} {label}")


# ---------------------------------------------------------------------------
# Variance reduction where theory says it happens.
# ---------------------------------------------------------------------------


def _normal_builder(p):
  return distributions.Normal(p["loc"], p["scale"])


class _Coefficients(NamedTuple):
  """The delta-method estimator at several fixed coefficients, one draw.

  A chunk function; args ``(params, coefficients [C])``, leaves
  ``[size, C, ...]``.
  """

  estimator: str

  def __call__(self, key, size, args):
    params, coefficients = args
    jac = jax.vmap(
      lambda c: cv.control_variate_jacobians(
        _cost("cosine"),
        params,
        _normal_builder,
        key,
        size,
        estimator=self.estimator,
        coefficient=c,
      )
    )(coefficients)
    return jax.tree.map(lambda j: jnp.moveaxis(j, 0, 1), jac)


class _PoorControlVariate(NamedTuple):
  """Batch means (8 draws) of pathwise with the delta method at c = 1 and
  with c estimated from 32 pilot draws, and independent pilot estimates
  c-hat and c-hat^2, as a chunk function."""

  def __call__(self, key, size, params):
    function = _cost("cosine")
    k_fixed, k_estimated, k_pilot = jax.random.split(key, 3)

    def batch_means(key, **kwargs):
      return jax.tree.map(
        lambda j: j.mean(1),
        jax.vmap(
          lambda k: cv.control_variate_jacobians(
            function,
            params,
            _normal_builder,
            k,
            8,
            estimator="pathwise",
            **kwargs,
          )
        )(jax.random.split(key, size)),
      )

    coefficient = jax.vmap(
      lambda k: cv.estimate_control_variate_coefficients(
        function, params, _normal_builder, k, 32, estimator="pathwise"
      )
    )(jax.random.split(k_pilot, size))
    return {
      "fixed": batch_means(k_fixed, coefficient=1.0),
      "estimated": batch_means(
        k_estimated, coefficient="estimate", num_coefficient_samples=32
      ),
      "coefficient": coefficient,
      "coefficient_sq": jax.tree.map(jnp.square, coefficient),
    }


class _LeaveOneOutAndPlain(NamedTuple):
  """Batch means (4 draws) of leave-one-out and of the plain score function
  for f = offset + sum (x - k)^2 at d = 10, as a chunk function."""

  offset: float

  def __call__(self, key, size, params):
    _, builder, _, _ = _setup(10)
    function = _cost("quadratic", offset=self.offset)
    keys = jax.random.split(key, size)
    loo = jax.vmap(
      lambda k: cv.leave_one_out_jacobians(function, params, builder, k, 4)
    )(keys)
    plain = jax.vmap(
      lambda k: estimators.score_function_jacobians(
        function, params, builder, k, 4
      )
    )(keys)
    mean = lambda t: jax.tree.map(lambda j: j.mean(1), t)  # noqa: E731
    return {"leave_one_out": mean(loo), "plain": mean(plain)}


# The relative variance error test_variance_in_the_coefficient_matches_exact
# detects at 2^18 samples, for the controlled estimates.
_CONTROLLED_POWER = {"score_function": 0.35, "pathwise": 0.15}


class VarianceReductionTest(_FastCompileTestCase):
  @parameterized.parameters(
    ("score_function", 1),
    ("score_function", 10),
    ("pathwise", 1),
    ("pathwise", 10),
  )
  def test_delta_method_is_exact_for_quadratic_cost(self, estimator, dim):
    # For a quadratic f the second-order expansion is f itself, so with c = 1
    # every per-sample jacobian equals the exact gradient.
    params, builder, _, _ = _setup(dim)
    function = _cost("quadratic", offset=3.0)
    key = jax.random.key(0)
    jac = _fast_call(
      cv.control_variate_jacobians,
      function,
      params,
      builder,
      key,
      64,
      estimator=estimator,
    )
    plain = _fast_call(
      {
        "score_function": estimators.score_function_jacobians,
        "pathwise": estimators.pathwise_jacobians,
      }[estimator],
      function,
      params,
      builder,
      key,
      64,
    )
    exact = _exact_for_params("quadratic", dim)
    for got, want, base in zip(
      jax.tree.leaves(jac),
      jax.tree.leaves(exact),
      jax.tree.leaves(plain),
      strict=True,
    ):
      np.testing.assert_allclose(
        got, np.broadcast_to(want, got.shape), atol=1e-12
      )
      # ... while the plain estimator does vary.
      self.assertGreater(float(np.min(np.var(base, axis=0))), 1e-2)

  def test_delta_method_exact_for_quadratic_multivariate_normal_tril(self):
    # Full covariance: E|x - k|^2 = |mu - k|^2 + tr(L L^T), so the gradient
    # w.r.t. L is 2 tril(L) (the class reads the lower triangle only).
    loc = jnp.array([0.2, -0.4, 1.0])
    tril = jnp.array([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.5, 1.2]])
    builder = lambda p: distributions.MultivariateNormalTriL(p[0], p[1])
    function = _cost("quadratic")
    exact = (2.0 * (loc - _K["quadratic"]), 2.0 * tril)
    for estimator in ("score_function", "pathwise"):
      jac = _fast_call(
        cv.control_variate_jacobians,
        function,
        (loc, tril),
        builder,
        jax.random.key(1),
        16,
        estimator=estimator,
      )
      for got, want in zip(jac, exact, strict=True):
        np.testing.assert_allclose(
          got, np.broadcast_to(want, got.shape), atol=1e-12
        )

  @parameterized.parameters("score_function", "pathwise")
  def test_estimated_coefficient_is_one_for_quadratic_cost(self, estimator):
    params, builder, _, _ = _setup(10)
    coefficients = _fast_call(
      cv.estimate_control_variate_coefficients,
      _cost("quadratic"),
      params,
      builder,
      jax.random.key(2),
      8,
      estimator=estimator,
    )
    for c in jax.tree.leaves(coefficients):
      np.testing.assert_allclose(c, 1.0, atol=1e-9)

  @parameterized.parameters(1, 10)
  def test_antithetic_pathwise_linear_cost_has_zero_variance(self, dim):
    # grad f is constant: the location gradient is constant and the scale
    # gradients a * eps and a * (-eps) cancel within each pair.
    params, builder, loc, scale = _setup(dim)
    slope = jnp.linspace(-2.0, 3.0, dim)
    function = lambda x: jnp.dot(slope, x) + 1.0
    jac = _fast_call(
      cv.antithetic_pathwise_jacobians,
      function,
      params,
      builder,
      jax.random.key(7),
      64,
    )
    pairs = _pair_means(jac)
    exact = (slope, 0.0 * scale) if dim == 1 else {"loc": slope, "scale": 0.0}
    for got, want in zip(
      jax.tree.leaves(pairs), jax.tree.leaves(exact), strict=True
    ):
      np.testing.assert_allclose(
        got, np.broadcast_to(want, got.shape), atol=1e-12
      )
    # Single rows do vary (that is what the pairing removes).
    self.assertGreater(float(np.var(jax.tree.leaves(jac)[1])), 0.1)

  def test_antithetic_pathwise_quadratic_location_gradient_exact(self):
    # grad f(x) = 2 (x - k) is linear, so each pair's location gradient is
    # 2 (mu - k) exactly; the scale gradient 2 sigma eps^2 still varies.
    params, builder, loc, _ = _setup(10)
    pairs = _pair_means(
      _fast_call(
        cv.antithetic_pathwise_jacobians,
        _cost("quadratic"),
        params,
        builder,
        jax.random.key(8),
        64,
      )
    )
    np.testing.assert_allclose(
      pairs["loc"],
      np.broadcast_to(2.0 * (loc - _K["quadratic"]), pairs["loc"].shape),
      atol=1e-12,
    )
    self.assertGreater(float(np.min(np.var(pairs["scale"], 0))), 1e-2)

  def test_antithetic_score_function_location_ignores_offset(self):
    # The location score is odd in eps, so the pair mean of the location
    # gradient is (f(x) - f(x')) s(x) / 2: an offset cancels exactly.
    params, builder, _, scale = _setup(10)
    key = jax.random.key(9)
    offset, num_samples = 1e3, 2**13
    pairs = [
      _pair_means(
        _fast_call(
          cv.antithetic_score_function_jacobians,
          _cost("cosine", shift),
          params,
          builder,
          key,
          num_samples,
        )
      )
      for shift in (0.0, offset)
    ]
    np.testing.assert_allclose(
      pairs[0]["loc"], pairs[1]["loc"], rtol=1e-8, atol=1e-9
    )
    # The scale score is even, so the pair mean of the scale gradient is
    # (f(x) + f(x')) s(x) / 2 and, at the same draws, the offset adds
    # exactly offset (eps^2 - 1) / sigma: variance 2 offset^2 / sigma^2.
    # Within 5 of its standard errors (4th moment; (eps^2 - 1) has kurtosis
    # 15): 4096 pairs detect a variance off by <= 30% (asserted); a pair
    # mean that dropped the offset, or kept it twice, is off by 100%.
    added = np.asarray(pairs[1]["scale"] - pairs[0]["scale"])
    n = added.shape[0]
    variance = added.var(0, ddof=1)
    mu4 = np.mean((added - added.mean(0)) ** 4, axis=0)
    variance_se = np.sqrt((mu4 - variance**2 * (n - 3) / (n - 1)) / n)
    rel = power.assert_variance(
      variance, variance_se, 2 * offset**2 / scale**2, what="offset term"
    )
    self.assertLess(np.max(rel), 0.3)


# ---------------------------------------------------------------------------
# The delta-method control variate itself.
# ---------------------------------------------------------------------------


@pytest.mark.slow
class VarianceAgainstExactTest(_FastCompileTestCase):
  """The controlled estimators' variances against rgrad.exact (large sizes)."""

  @parameterized.parameters("score_function", "pathwise")
  def test_variance_in_the_coefficient_matches_exact(self, estimator):
    # V(c), the single-sample variance with the delta method's h and a fixed
    # coefficient c, against rgrad.exact (quadrature of the residual f - c h,
    # sharing no code with the estimators) at c = 0, 0.5, 1, 1.5, for
    # cos(k x) at k sigma = 0.26, where h is close to f over the bulk of p
    # and V(1) is ~1e-4 V(0) (the old check: a ratio < 1e-3), and at 1.04.
    # Each within 5 of its standard errors (4th moment). 2^18 samples detect
    # a variance off by <= 4% (c = 0) to <= 35% (score function) and 15%
    # (pathwise) for the controlled estimates (asserted), whose residual
    # times a score is heavy-tailed; V(c) at the four c differ by factors of
    # 1.7 to 5000, all resolved.
    f = functools.partial(_PHI["cosine"], k=_K["cosine"])
    coefficients = jnp.array([0.0, 0.5, 1.0, 1.5])
    loc = 0.3
    for scale in (0.2, 0.8):
      params = {"loc": jnp.array([loc]), "scale": jnp.array([scale])}
      moments = _streamed_moments(
        _Coefficients(estimator),
        (params, coefficients),
        jax.random.key(4),
        2**18,
        2**15,
      )
      h = exact_lib.delta_expansion(f, loc)
      for i, c in enumerate(np.asarray(coefficients)):
        if estimator == "score_function":
          want = exact_lib.delta_method_variance(f, loc, scale, c)
        else:
          want = exact_lib.pathwise_variance(
            lambda x, c=c, h=h: f(x) - c * h(x), loc, scale
          )
        for field, v in zip(("loc", "scale"), want, strict=True):
          what = f"{estimator} sigma={scale} c={c} d/d{field}"
          rel = power.assert_variance(
            moments.variance[field][i, 0],
            moments.variance_stderr[field][i, 0],
            v,
            what=what,
          )
          self.assertLess(rel, _CONTROLLED_POWER[estimator], what)

  def test_estimated_coefficient_protects_against_a_poor_control_variate(self):
    # For cos(k x) with k sigma = 3 the expansion at the mean is a poor
    # surrogate (E[h] grows with sigma^2 while E[f] decays): with c = 1 the
    # pathwise variance is V(1) = 14 and 31 times V(0) (d/dloc, d/dscale),
    # exactly; the estimated coefficient keeps it near the optimum V(c*) =
    # V(0) - C^2 / H ~ V(0). V(c) = V(0) - 2 c C + c^2 H exactly (f - c h is
    # linear in c), so C and H follow from V(0), V(1), V(-1) (rgrad.exact).
    # A batch of 8 with a coefficient c-hat from 32 independent pilot draws
    # has variance E[V(c-hat)] / 8 = (V(0) - 2 C E c-hat + H E c-hat^2) / 8:
    # checked within 5 SE, with E c-hat and E c-hat^2 measured from
    # independent pilot runs (their SE added); and c = 1 against V(1) / 8.
    loc, scale = 0.4, 3.0 / 1.3
    f = functools.partial(_PHI["cosine"], k=_K["cosine"])
    h = exact_lib.delta_expansion(f, loc)

    def exact_v(c):
      return np.array(
        exact_lib.pathwise_variance(lambda x: f(x) - c * h(x), loc, scale)
      )

    v0, v_plus, v_minus = exact_v(0.0), exact_v(1.0), exact_v(-1.0)
    curvature = 0.5 * (v_plus + v_minus) - v0  # H
    slope = 0.25 * (v_minus - v_plus)  # C
    self.assertTrue(np.all(v_plus > 10 * v0))  # The premise: c = 1 is poor.
    params = {"loc": jnp.array([loc]), "scale": jnp.array([scale])}
    moments = _streamed_moments(
      _PoorControlVariate(), params, jax.random.key(5), 2**13, 2**12
    )
    for j, field in enumerate(("loc", "scale")):
      fixed = moments.variance["fixed"][field][0]
      fixed_se = moments.variance_stderr["fixed"][field][0]
      power.assert_variance(fixed, fixed_se, v_plus[j] / 8, what=field)
      m1 = moments.mean["coefficient"][field][0]
      m2 = moments.mean["coefficient_sq"][field][0]
      se1 = moments.stderr["coefficient"][field][0]
      se2 = moments.stderr["coefficient_sq"][field][0]
      want = (v0[j] - 2 * slope[j] * m1 + curvature[j] * m2) / 8
      want_se = (2 * abs(slope[j]) * se1 + curvature[j] * se2) / 8
      got = moments.variance["estimated"][field][0]
      got_se = moments.variance_stderr["estimated"][field][0]
      self.assertLess(abs(got - want), 5 * (got_se + want_se), field)
      # What it detects: 5 SE against the gap it guards (V(1) - V(0)) / 8.
      self.assertLess(5 * (got_se + want_se), 0.02 * (v_plus[j] - v0[j]) / 8)
      # And the estimated coefficient's cost over the optimum, exactly
      # H E(c-hat - c*)^2 / 8, stays small against V(0) / 8.
      self.assertLess(want, 1.3 * v0[j] / 8, field)

  def test_leave_one_out_variance_with_offset_matches_exact(self):
    # A large constant offset inflates the plain score-function variance by
    # ~offset^2 Var(score); the leave-one-out baseline cancels it exactly.
    # For a batch of K draws with baselines b_i = mean of the other costs,
    # the batch mean (1/K) sum_i (f_i - b_i) s_i has, with m = E f,
    #   Var = Var[(f - m) s] / K + (Var(f) E[s^2] + g^2) / (K (K - 1))
    # (the cross terms vanish: s_i has mean zero and is independent of f_j,
    # j != i); the plain batch mean Var[f s] / K. Here f = 100 + sum_i
    # (x_i - k)^2 at d = 10 (tests/power.py for Var[(f - b) s_j]); each
    # within 5 of its standard errors (4th moment), which detects a
    # variance off by <= 13% for d/dloc, below the second term's 16-25%
    # share there, and <= 35% for the heavier-tailed d/dscale (asserted).
    params, _, loc, scale = _setup(10)
    offset, batch = 100.0, 4
    phi = functools.partial(_PHI["quadratic"], k=_K["quadratic"])
    means, variances = (
      np.array(v) for v in exact_lib.cost_mean_and_variance(phi, loc, scale)
    )
    gradient = _exact_for_params("quadratic", 10)
    second = {"loc": 1.0 / scale**2, "scale": 2.0 / scale**2}  # E s_j^2
    centred = power.additive_score_function_variance(
      phi, loc, scale, baseline=means.sum()
    )
    plain = power.additive_score_function_variance(
      phi, loc, scale, baseline=-offset
    )
    moments = _streamed_moments(
      _LeaveOneOutAndPlain(offset), params, jax.random.key(6), 2**14, 2**12
    )
    for j, field in enumerate(("loc", "scale")):
      exact_variances = {
        "leave_one_out": centred[j] / batch
        + (variances.sum() * second[field] + gradient[field] ** 2)
        / (batch * (batch - 1)),
        "plain": plain[j] / batch,
      }
      for name, want in exact_variances.items():
        rel = power.assert_variance(
          moments.variance[name][field],
          moments.variance_stderr[name][field],
          want,
          what=f"{name} d/d{field}",
        )
        self.assertLess(
          np.max(rel), {"loc": 0.13, "scale": 0.35}[field], f"{name} {field}"
        )


class DeltaMethodControlVariateTest(_FastCompileTestCase):
  def test_expected_value_gradient_matches_closed_form(self):
    # grad_mu E[h] = f'(mu), grad_sigma E[h] = f''(mu) sigma per coordinate;
    # for cos(k x): -k sin(k mu) and -k^2 cos(k mu) sigma.
    params, builder, loc, scale = _setup(10)
    k = _K["cosine"]

    def expected_value_grad(params, builder):
      control = cv.delta_method_control_variate(
        _cost("cosine"), params, builder
      )
      return jax.grad(control.expected_value)(params)

    grads = _fast_jit(expected_value_grad, static_argnums=1)(params, builder)
    np.testing.assert_allclose(grads["loc"], -k * np.sin(k * loc), rtol=1e-12)
    np.testing.assert_allclose(
      grads["scale"], -(k**2) * np.cos(k * loc) * scale, rtol=1e-12
    )
    # Log-scale parameterization: chain rule sigma * d/dsigma.
    params1, builder1, loc1, scale1 = _setup(1)
    grads1 = _fast_jit(expected_value_grad, static_argnums=1)(params1, builder1)
    np.testing.assert_allclose(
      grads1[1], -(k**2) * np.cos(k * loc1) * scale1**2, rtol=1e-12
    )

  def test_expected_value_is_exact_away_from_expansion_point(self):
    # For a quadratic f, h = f, so E[h] under *other* params is E[f] there.
    params, builder, _, _ = _setup(10)
    control = cv.delta_method_control_variate(
      _cost("quadratic"), params, builder
    )
    other = {"loc": params["loc"] + 0.5, "scale": params["scale"] * 1.3}
    want = jnp.sum(_expectation("quadratic", other["loc"], other["scale"]))
    np.testing.assert_allclose(control.expected_value(other), want, rtol=1e-12)

  def test_value_is_second_order_taylor_expansion(self):
    params, builder, loc, _ = _setup(10)
    function = _cost("gaussian_bump")
    control = cv.delta_method_control_variate(function, params, builder)
    x = jnp.asarray(loc) + 0.1 * jnp.sin(jnp.arange(10.0))
    delta = x - loc
    g = jax.grad(function)(jnp.asarray(loc))
    h = jax.hessian(function)(jnp.asarray(loc))
    want = function(jnp.asarray(loc)) + g @ delta + 0.5 * delta @ h @ delta
    np.testing.assert_allclose(control.value(x), want, rtol=1e-12)
    first = cv.delta_method_control_variate(function, params, builder, order=1)
    np.testing.assert_allclose(
      first.value(x), function(jnp.asarray(loc)) + g @ delta, rtol=1e-12
    )

  def test_delta_method_jacobians_match_hand_formula(self):
    # The controlled score function written out by hand, per draw: with
    # x = mu + sigma eps, f(x) = sum_j cos(k x_j) and h its second-order
    # expansion at mu,
    #   eta = (f(x) - c h(x)) s(x) + c grad E[h],
    # s = (eps / sigma, (eps^2 - 1) / sigma), grad E[h] = (f'(mu), f''(mu)
    # sigma) = (-k sin(k mu), -k^2 cos(k mu) sigma). The draws are the
    # distribution's own (sample_with_noise with the same key, as the score
    # function makes them); nothing else comes from rgrad.
    params, builder, loc, scale = _setup(10)
    k = _K["cosine"]
    key = jax.random.key(10)
    xs, noise = builder(params).sample_with_noise(key, (16,))
    eps = np.asarray(noise)
    np.testing.assert_allclose(xs, loc + scale * eps, rtol=1e-12)
    x = loc + scale * eps
    f = np.cos(k * x).sum(1)
    d = x - loc
    h = (
      np.cos(k * loc)
      - k * np.sin(k * loc) * d
      - 0.5 * k**2 * np.cos(k * loc) * d**2
    ).sum(1)
    for c in (1.0, 0.5):  # 1: the default
      want = {
        "loc": (f - c * h)[:, None] * eps / scale + c * (-k * np.sin(k * loc)),
        "scale": (f - c * h)[:, None] * (eps**2 - 1) / scale
        + c * (-(k**2) * np.cos(k * loc) * scale),
      }
      kw = {} if c == 1.0 else {"coefficient": c}
      got = _fast_call(
        cv.delta_method_jacobians,
        _cost("cosine"),
        params,
        builder,
        key,
        16,
        **kw,
      )
      for name in ("loc", "scale"):
        np.testing.assert_allclose(
          got[name], want[name], rtol=1e-10, atol=1e-12
        )

  def test_pytree_coefficient_and_return_costs(self):
    params, builder, _, _ = _setup(10)
    function = _cost("cosine")
    key = jax.random.key(11)
    coefficients = {"loc": jnp.full(10, 0.5), "scale": jnp.full(10, 0.5)}

    @_fast_jit
    def run(params, key):
      a, costs = cv.control_variate_jacobians(
        function,
        params,
        builder,
        key,
        16,
        coefficient=coefficients,
        return_costs=True,
      )
      b = cv.control_variate_jacobians(
        function, params, builder, key, 16, coefficient=0.5
      )
      _, plain_costs = estimators.score_function_jacobians(
        function, params, builder, key, 16, return_costs=True
      )
      return a, b, costs, plain_costs

    a, b, costs, plain_costs = run(params, key)
    chex.assert_trees_all_close(a, b, rtol=0, atol=1e-15)
    chex.assert_shape(costs, (16,))
    np.testing.assert_allclose(costs, plain_costs, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Moving-average baseline: the update math, exactly.
# ---------------------------------------------------------------------------


class MovingAverageBaselineTest(_FastCompileTestCase):
  def test_init_is_zero(self):
    state = cv.moving_average_baseline_init()
    self.assertEqual(float(cv.moving_average_baseline_value(state)), 0.0)
    self.assertEqual(int(state.count), 0)
    self.assertEqual(state.value.dtype, jnp.float64)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 0.5, 0.9, 0.99)
  def test_debiased_value_matches_closed_form(self, decay):
    batches = np.array(
      [[1.0, 3.0], [-2.0, 0.5], [10.0, 4.0], [0.25, 0.25], [7.0, -1.0]]
    )
    update = self.variant(
      functools.partial(cv.moving_average_baseline_update, decay=decay)
    )
    state = cv.moving_average_baseline_init()
    for t in range(1, len(batches) + 1):
      state = update(state, batches[t - 1])
      means = batches[:t].mean(1)
      # m_t = sum_s beta^(t-s) (1 - beta) cbar_s; debiased: / (1 - beta^t).
      weights = decay ** np.arange(t - 1, -1, -1) * (1.0 - decay)
      want = np.sum(weights * means) / (1.0 - decay**t)
      np.testing.assert_allclose(
        cv.moving_average_baseline_value(state), want, rtol=1e-13
      )
      self.assertEqual(int(state.count), t)
    if decay == 0.0:
      self.assertEqual(float(state.value), batches[-1].mean())

  def test_first_update_is_batch_mean_and_constant_costs_stay_put(self):
    # Zero-debiasing: no pull towards the initial 0, from the first step on.
    state = cv.moving_average_baseline_init()
    for _ in range(5):
      state = cv.moving_average_baseline_update(state, jnp.full(3, 4.5), 0.99)
      np.testing.assert_allclose(state.value, 4.5, rtol=1e-14)

  def test_update_is_pure_and_stops_gradients(self):
    state = cv.moving_average_baseline_init()
    new = cv.moving_average_baseline_update(state, jnp.array([1.0, 2.0]))
    self.assertEqual(float(state.value), 0.0)
    self.assertEqual(int(state.count), 0)
    self.assertIsInstance(new, cv.MovingAverageBaselineState)
    grad = jax.grad(
      lambda c: cv.moving_average_baseline_update(state, c).value
    )(jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(grad, 0.0)

  def test_works_in_scan_and_vmap(self):
    costs = jnp.arange(12.0).reshape(4, 3)

    def run(decay):
      final, values = jax.lax.scan(
        lambda s, c: (
          (s := cv.moving_average_baseline_update(s, c, decay)),
          s.value,
        ),
        cv.moving_average_baseline_init(),
        costs,
      )
      return final.value, values

    final, _ = jax.jit(jax.vmap(run))(jnp.array([0.5, 0.9]))
    for i, decay in enumerate((0.5, 0.9)):
      state = cv.moving_average_baseline_init()
      for c in costs:
        state = cv.moving_average_baseline_update(state, c, decay)
      np.testing.assert_allclose(final[i], state.value, rtol=1e-13)

  @parameterized.parameters(1.0, -0.1, 1.5)
  def test_bad_decay(self, decay):
    with self.assertRaisesRegex(ValueError, r"decay must be in \[0, 1\)"):
      cv.moving_average_baseline_update(
        cv.moving_average_baseline_init(), jnp.ones(2), decay
      )

  def test_empty_costs(self):
    with self.assertRaisesRegex(ValueError, "costs must be non-empty"):
      cv.moving_average_baseline_update(
        cv.moving_average_baseline_init(), jnp.zeros((0,))
      )


# ---------------------------------------------------------------------------
# jit / vmap compatibility.
# ---------------------------------------------------------------------------

_ALL = {
  "leave_one_out": cv.leave_one_out_jacobians,
  # coefficient="estimate" under jit and vmap: UnbiasedTest.
  "control_variate_score": cv.control_variate_jacobians,
  "control_variate_pathwise": functools.partial(
    cv.control_variate_jacobians, estimator="pathwise"
  ),
  "antithetic_pathwise": cv.antithetic_pathwise_jacobians,
  "antithetic_score_function": cv.antithetic_score_function_jacobians,
}


class TransformationsTest(_FastCompileTestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(n, n) for n in _ALL])
  def test_jit_matches_eager_and_shapes(self, name):
    params, builder, _, _ = _setup(10)
    estimator = _ALL[name]
    function = _cost("cosine")

    @self.variant
    def run(params, key):
      return estimator(function, params, builder, key, 8, return_costs=True)

    jac, costs = run(params, jax.random.key(12))
    eager_jac, eager_costs = estimator(
      function, params, builder, jax.random.key(12), 8, return_costs=True
    )
    chex.assert_shape(costs, (8,))
    chex.assert_trees_all_equal_structs(jac, params)
    chex.assert_shape(jax.tree.leaves(jac), (8, 10))
    chex.assert_trees_all_close(jac, eager_jac, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(costs, eager_costs, rtol=1e-12)

  @parameterized.named_parameters(*[(n, n) for n in _ALL])
  def test_vmap_over_keys_and_no_retracing(self, name):
    chex.clear_trace_counter()  # `run` below has the same code in every case.
    params, builder, _, _ = _setup(10)
    estimator = _ALL[name]

    @_fast_jit
    @chex.assert_max_traces(n=1)
    def run(params, keys):
      return jax.vmap(
        lambda k: estimator(_cost("cosine"), params, builder, k, 4)
      )(keys)

    for seed in range(3):
      keys = jax.random.split(jax.random.key(seed), 5)
      shifted = jax.tree.map(lambda p, s=seed: p * (1.0 + 0.1 * s), params)
      out = run(shifted, keys)
      chex.assert_shape(jax.tree.leaves(out), (5, 4, 10))
      # Replicates differ: each key gives its own draws.
      self.assertGreater(float(np.var(out["loc"][:, 0, 0])), 0.0)


# ---------------------------------------------------------------------------
# Bad inputs.
# ---------------------------------------------------------------------------


class BadInputTest(_FastCompileTestCase):
  def setUp(self):
    super().setUp()
    self.params, self.builder, _, _ = _setup(10)
    self.key = jax.random.key(0)
    self.function = _cost("cosine")

  def _call(self, fn, num_samples, function=None, builder=None, **kw):
    return fn(
      function or self.function,
      self.params,
      builder or self.builder,
      self.key,
      num_samples,
      **kw,
    )

  def test_leave_one_out_needs_two_samples(self):
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2, got 1"):
      self._call(cv.leave_one_out_jacobians, 1)

  @parameterized.parameters(
    cv.leave_one_out_jacobians,
    cv.control_variate_jacobians,
    cv.antithetic_pathwise_jacobians,
    cv.antithetic_score_function_jacobians,
  )
  def test_num_samples_must_be_int(self, estimator):
    for bad in (4.0, True, np.array(4)):
      with self.assertRaisesRegex(
        TypeError, "num_samples must be a static Python int"
      ):
        self._call(estimator, bad)

  def test_control_variate_needs_positive_num_samples(self):
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 1, got 0"):
      self._call(cv.control_variate_jacobians, 0)

  @parameterized.parameters(
    cv.antithetic_pathwise_jacobians, cv.antithetic_score_function_jacobians
  )
  def test_antithetic_needs_even_num_samples(self, estimator):
    with self.assertRaisesRegex(ValueError, "must be even.*got 5"):
      self._call(estimator, 5)
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2, got 0"):
      self._call(estimator, 0)

  def test_unknown_estimator(self):
    with self.assertRaisesRegex(
      ValueError,
      r"Unknown estimator 'reinforce'; valid names are \[.*'pathwise', "
      r"'score_function'.*\] \(the stateless expectation estimators of "
      r"rgrad.ESTIMATORS\)",
    ):
      self._call(cv.control_variate_jacobians, 4, estimator="reinforce")

  def test_unknown_control_variate(self):
    with self.assertRaisesRegex(
      ValueError,
      r"Unknown control variate 'taylor'; valid names are \['delta', "
      r"'first_order_delta'\]",
    ):
      self._call(cv.control_variate_jacobians, 4, control_variate="taylor")
    with self.assertRaisesRegex(ValueError, "Unknown control variate"):
      cv.estimate_control_variate_coefficients(
        self.function,
        self.params,
        self.builder,
        self.key,
        4,
        control_variate="taylor",
      )

  def test_bad_coefficient(self):
    with self.assertRaisesRegex(ValueError, "coefficient must be a number"):
      self._call(cv.control_variate_jacobians, 4, coefficient="optimal")
    with self.assertRaisesRegex(ValueError, "coefficient must be a scalar"):
      self._call(cv.control_variate_jacobians, 4, coefficient=jnp.ones(10))

  def test_too_few_coefficient_samples(self):
    with self.assertRaisesRegex(
      ValueError, "num_coefficient_samples must be >= 2, got 1"
    ):
      self._call(
        cv.control_variate_jacobians,
        4,
        coefficient="estimate",
        num_coefficient_samples=1,
      )
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2, got 1"):
      cv.estimate_control_variate_coefficients(
        self.function, self.params, self.builder, self.key, 1
      )

  def test_delta_method_needs_a_gaussian(self):
    gamma = lambda p: distributions.Gamma(p["loc"] ** 2 + 1.0, p["scale"])
    with self.assertRaisesRegex(TypeError, "needs a Gaussian.*got Gamma"):
      self._call(cv.control_variate_jacobians, 4, builder=gamma)

  def test_delta_method_rejects_batched_multivariate_normal(self):
    builder = lambda p: distributions.MultivariateNormalTriL(
      p["loc"], jnp.broadcast_to(jnp.eye(2), (5, 2, 2))
    )
    params = {"loc": jnp.zeros((5, 2))}
    with self.assertRaisesRegex(ValueError, "without batch dimensions"):
      cv.delta_method_control_variate(self.function, params, builder)

  def test_delta_method_order(self):
    with self.assertRaisesRegex(ValueError, "order must be 1 or 2, got 3"):
      cv.delta_method_control_variate(
        self.function, self.params, self.builder, order=3
      )

  @parameterized.parameters(
    cv.antithetic_pathwise_jacobians, cv.antithetic_score_function_jacobians
  )
  def test_antithetic_needs_a_symmetric_distribution(self, estimator):
    gamma = lambda p: distributions.Gamma(p["loc"] ** 2 + 1.0, p["scale"])
    with self.assertRaisesRegex(TypeError, "symmetric.*got Gamma"):
      self._call(estimator, 4, builder=gamma)

  @parameterized.parameters(
    cv.leave_one_out_jacobians,
    cv.control_variate_jacobians,
    cv.antithetic_pathwise_jacobians,
    cv.antithetic_score_function_jacobians,
  )
  def test_non_scalar_cost(self, estimator):
    with self.assertRaisesRegex(ValueError, "scalar"):
      self._call(estimator, 4, function=lambda x: x**2)

  @parameterized.parameters(
    cv.leave_one_out_jacobians,
    cv.antithetic_pathwise_jacobians,
    cv.antithetic_score_function_jacobians,
  )
  def test_non_finite_cost(self, estimator):
    with self.assertRaisesRegex(ValueError, "non-finite"):
      self._call(estimator, 4, function=lambda x: jnp.sum(jnp.log(x)))


def _gamma_builder(p):
  return distributions.Gamma(p["concentration"], p["rate"])


def _mean_control_variate(function, params, dist_builder):
  """h(x) = sum(x), with E[h] = sum(concentration / rate) for the Gamma."""
  del function, params, dist_builder
  return cv.ControlVariate(
    value=jnp.sum,
    expected_value=lambda p: jnp.sum(p["concentration"] / p["rate"]),
  )


class FusedDrawsTest(_FastCompileTestCase):
  """The one-draw implementations equal the separate estimator calls.

  An estimator passed as a wrapping callable (not one of the two named ones)
  takes the generic path: one estimator call for f, one for h, same key. The
  named estimators draw once and share the scores (score function) or the
  sampling path's VJP (pathwise); the results must agree to rounding.
  """

  @parameterized.product(
    estimator=("score_function", "pathwise"),
    case=("log_scale_normal", "normal_delta", "gamma"),
  )
  def test_control_variate_jacobians_match_two_calls(self, estimator, case):
    function = _cost("gaussian_bump")
    control_variate = "delta"
    if case == "gamma":
      params = {
        "concentration": jnp.array([0.7, 2.5, 4.0]),
        "rate": jnp.array([1.5, 0.8, 2.0]),
      }
      builder = _gamma_builder
      control_variate = _mean_control_variate
    else:
      params, builder, _, _ = _setup(1 if case == "log_scale_normal" else 3)
    named = {
      "score_function": estimators.score_function_jacobians,
      "pathwise": estimators.pathwise_jacobians,
    }[estimator]
    wrapped = lambda *a, **kw: named(*a, **kw)  # noqa: E731
    key = jax.random.key(11)
    coefficient = jax.tree.map(lambda p: 0.3 + 0.1 * jnp.ones_like(p), params)
    for c in (coefficient, "estimate"):
      kw = dict(
        control_variate=control_variate,
        coefficient=c,
        num_coefficient_samples=6,
        return_costs=True,
      )
      fused = cv.control_variate_jacobians(
        function, params, builder, key, 8, estimator=estimator, **kw
      )
      separate = cv.control_variate_jacobians(
        function, params, builder, key, 8, estimator=wrapped, **kw
      )
      chex.assert_trees_all_close(fused, separate, rtol=1e-10, atol=1e-12)

  def test_leave_one_out_matches_score_function_with_its_baseline(self):
    params, builder, _, _ = _setup(3)
    function = _cost("cosine", offset=5.0)
    key = jax.random.key(12)
    jacobians, costs = cv.leave_one_out_jacobians(
      function, params, builder, key, 6, return_costs=True
    )
    _, expected_costs = estimators.score_function_jacobians(
      function, params, builder, key, 6, return_costs=True
    )
    # b_i = mean of the other costs, written out by hand.
    baselines = jnp.stack(
      [jnp.mean(jnp.delete(expected_costs, i)) for i in range(6)]
    )
    expected = estimators.score_function_jacobians(
      function, params, builder, key, 6, baseline=baselines
    )
    chex.assert_trees_all_close(costs, expected_costs, rtol=1e-12)
    chex.assert_trees_all_close(jacobians, expected, rtol=1e-10, atol=1e-12)

  def test_pathwise_control_variate_poisons_non_finite_costs_under_jit(self):
    # A finite gradient at a NaN cost must not leak out of the fused path.
    params, builder, _, _ = _setup(3)
    # x[0] ~ N(-1, 0.5^2): about half the draws have a NaN cost.
    function = lambda x: jnp.where(x[0] > -1, jnp.nan, jnp.sum(x**2))  # noqa: E731
    jacobians, costs = jax.jit(
      lambda p, k: cv.control_variate_jacobians(
        function, p, builder, k, 16, estimator="pathwise", return_costs=True
      )
    )(params, jax.random.key(13))
    bad = ~np.isfinite(np.asarray(costs))
    self.assertTrue(0 < bad.sum() < 16)
    for leaf in jax.tree.leaves(jacobians):
      leaf = np.asarray(leaf)
      self.assertTrue(np.all(np.isnan(leaf[bad])))
      self.assertTrue(np.all(np.isfinite(leaf[~bad])))


class PublicFaceTest(absltest.TestCase):
  """The package's public names stay put whichever private file holds them."""

  # Every public name of the single-file module this package replaced.
  _PUBLIC = (
    "ControlVariate",
    "ControlVariateBuilder",
    "MovingAverageBaselineState",
    "antithetic_pathwise_jacobians",
    "antithetic_score_function_jacobians",
    "control_variate_jacobians",
    "delta_method_control_variate",
    "delta_method_jacobians",
    "estimate_control_variate_coefficients",
    "leave_one_out_jacobians",
    "moving_average_baseline",
    "moving_average_baseline_init",
    "moving_average_baseline_update",
    "moving_average_baseline_value",
  )

  def test_public_names_are_unchanged(self):
    public = [n for n in dir(cv) if not n.startswith("_")]
    self.assertCountEqual(public, self._PUBLIC)
    self.assertCountEqual(cv.__all__, self._PUBLIC)

  def test_top_level_names_are_the_same_objects(self):
    for name in self._PUBLIC:
      if hasattr(rgrad, name):
        self.assertIs(getattr(rgrad, name), getattr(cv, name))

  def test_the_registry_lists_the_package_estimators(self):
    # The registry imports this package, which imports the registry lazily.
    spec = rgrad.get_estimator("delta_method")
    self.assertIs(spec.fn, cv.delta_method_jacobians)


if __name__ == "__main__":
  absltest.main()
