"""Tests for rgrad.discrete (ARM, DisARM, concrete, straight-through) and VIMCO.

Cheap by design: row values against their formulas written out in NumPy at
the same noise, shapes and pytrees, jit and vmap, bad inputs, and the d = 1
means of ARM and DisARM against the one-line closed form
:math:`(f(1) - f(0))\\,p(1 - p)`. The registry-wide contract and robustness
suites (tests/contract_test.py, tests/robustness_test.py) run the new
entries on the kit's Bernoulli problem; the d = 10 exactness and variance
tests against rgrad.exact live with the exact references.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import discrete
from rgrad import distributions
from rgrad import testing
from rgrad import variational

_LOGITS = np.array([-1.2, 0.3, 2.0])


def _cost(b):
  return jnp.sum(jnp.square(b - 0.3)) + b[0] * b[1]


def _np_cost(b):  # [n, 3] -> [n], the same cost in NumPy.
  return np.sum((b - 0.3) ** 2, -1) + b[:, 0] * b[:, 1]


def _bernoulli(params):
  return distributions.Bernoulli(params["logits"])


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


class PairEstimatorRowsTest(parameterized.TestCase):
  """ARM's and DisARM's rows against their formulas at the same uniforms."""

  @parameterized.parameters("arm", "disarm")
  def test_rows_are_the_pair_formula(self, name):
    n = 10
    key = jax.random.key(5)
    params = {"logits": jnp.asarray(_LOGITS)}
    jac, costs = jax.jit(
      lambda p, k: rgrad.get_estimator(name).fn.__call__(
        _cost, p, _bernoulli, k, n, return_costs=True
      )
    )(params, key)
    chex.assert_shape(jac["logits"], (n, 3))
    # The uniforms the estimator used: the Bernoulli's noise at the key.
    _, u = _bernoulli(params).sample_with_noise(key, (n // 2,))
    u = np.asarray(u)
    p = _sigmoid(_LOGITS)
    b, b_tilde = (u > 1 - p).astype(float), (1 - u > 1 - p).astype(float)
    diff = (_np_cost(b) - _np_cost(b_tilde))[:, None]
    np.testing.assert_allclose(
      costs, np.concatenate([_np_cost(b), _np_cost(b_tilde)]), rtol=1e-12
    )
    if name == "arm":
      pair = diff * (u - 0.5)
    else:
      pair = (
        0.5
        * diff
        * (-1.0) ** b_tilde
        * (b != b_tilde)
        * _sigmoid(np.abs(_LOGITS))
      )
    np.testing.assert_allclose(jac["logits"][: n // 2], pair, rtol=1e-12)
    np.testing.assert_array_equal(
      jac["logits"][: n // 2], jac["logits"][n // 2 :]
    )

  def test_pull_back_to_params(self):
    # logits = 2 w + c: the jacobian w.r.t. w is twice the logits', and c
    # gets the logits' own.
    def builder(params):
      return distributions.Bernoulli(2.0 * params["w"] + params["c"])

    params = {"w": jnp.asarray(_LOGITS / 2), "c": jnp.zeros(3)}
    key = jax.random.key(1)
    for fn in (rgrad.arm_jacobians, rgrad.disarm_jacobians):
      run = jax.jit(
        lambda p, b, fn=fn: fn(_cost, p, b, key, 8), static_argnums=1
      )
      jac = run(params, builder)
      direct = run({"logits": jnp.asarray(_LOGITS)}, _bernoulli)
      np.testing.assert_allclose(jac["w"], 2 * direct["logits"], rtol=1e-12)
      np.testing.assert_allclose(jac["c"], direct["logits"], rtol=1e-12)


# d = 1: f(b) = (b - 0.3)^2, f(1) - f(0) = 0.4, logits = 2 w (a pull-back).
_DELTA = 0.4


def _cost_1d(b):
  return jnp.square(b[0] - 0.3)


def _doubled(params):
  return distributions.Bernoulli(2.0 * params["w"])


def _pair_variance_1d(name, logit):
  """Var of one pair's estimate w.r.t. the logit, closed form (d = 1).

  With m = min(p, 1 - p), b != b~ exactly when u < m or u > 1 - m. ARM:
  E g^2 = D^2 2 ((m - 1/2)^3 + 1/8) / 3 (the integral of (u - 1/2)^2 over
  both ends); DisARM: g = +-D (1 - m) / 2 with probability 2 m.
  """
  p = _sigmoid(logit)
  m = min(p, 1.0 - p)
  mean = _DELTA * p * (1 - p)
  if name == "arm":
    second = _DELTA**2 * 2.0 * ((m - 0.5) ** 3 + 0.125) / 3.0
  else:
    second = 2.0 * m * (0.5 * _DELTA * (1.0 - m)) ** 2
  return second - mean**2


class OneDimensionalMeanTest(parameterized.TestCase):
  @parameterized.product(name=("arm", "disarm"), logit=(-2.0, 0.3, 1.5))
  def test_mean_is_closed_form(self, name, logit):
    """The mean against (f(1) - f(0)) p (1 - p), times 2 for w = logit / 2.

    Sized by assert_unbiased from the closed-form pair variance (effective
    per-row variance = 2 Var(pair), rgrad.diagnostics' convention) to catch
    a 5% bias with probability 0.95 at a false-alarm rate 1e-3; the report's
    detectable bias is asserted below.
    """
    p = _sigmoid(logit)
    exact = {"w": jnp.array([2.0 * _DELTA * p * (1 - p)])}
    # d/dw = 2 d/dlogit: variances times 4; per row, twice the pair's.
    variance = {"w": jnp.array([4.0 * 2.0 * _pair_variance_1d(name, logit)])}
    report = testing.assert_unbiased(
      name,
      _cost_1d,
      {"w": jnp.array([logit / 2.0])},
      _doubled,
      jax.random.key(7),
      exact=exact,
      exact_variance=variance,
      detectable_bias=0.05,
    )
    self.assertLessEqual(report.max_detectable, 0.0501)


class RelaxationRowsTest(parameterized.TestCase):
  """Concrete and straight-through rows: the chain rule written out."""

  @parameterized.parameters(("concrete", 0.5), ("straight_through", 0.8))
  def test_bernoulli_rows(self, name, tau):
    n = 6
    key = jax.random.key(3)
    params = {"logits": jnp.asarray(_LOGITS)}
    fn = getattr(discrete, f"{name}_jacobians")
    jac, costs = fn(
      _cost, params, _bernoulli, key, n, temperature=tau, return_costs=True
    )
    b, u = (
      np.asarray(a) for a in _bernoulli(params).sample_with_noise(key, (n,))
    )
    z = _LOGITS + np.log(u) - np.log1p(-u)
    s = _sigmoid(z / tau)  # the relaxed draw
    at = s if name == "concrete" else b  # where the cost is evaluated
    # d/dx [sum (x - 0.3)^2 + x0 x1] and d s / d logit = s (1 - s) / tau.
    grad_x = 2 * (at - 0.3) + np.stack(
      [at[:, 1], at[:, 0], np.zeros(n)], axis=1
    )
    np.testing.assert_allclose(costs, _np_cost(at), rtol=1e-12)
    np.testing.assert_allclose(
      jac["logits"], grad_x * s * (1 - s) / tau, rtol=1e-10
    )

  def test_one_hot_relaxations_jit_and_vmap(self):
    logits = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
    weights = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])

    def cost(x):  # linear in the draw: ST's mean is then concrete's
      return jnp.sum(weights * x)

    def builder(p):
      return distributions.OneHotCategorical(p)

    def both(key):
      c = rgrad.concrete_jacobians(
        cost, logits, builder, key, 5, temperature=0.7
      )
      st = rgrad.straight_through_jacobians(
        cost, logits, builder, key, 5, temperature=0.7, return_costs=True
      )
      return c, st

    keys = jax.random.split(jax.random.key(0), 2)
    (c, (st, st_costs)) = jax.jit(both)(keys[0])
    batched = jax.jit(jax.vmap(both))(keys)
    chex.assert_shape([c, st], (5, 2, 3))
    chex.assert_trees_all_close(
      jax.tree.map(lambda a: a[0], batched), (c, (st, st_costs)), rtol=1e-10
    )
    # Linear cost: the gradient of w . r is the softmax Jacobian applied to
    # w, identical for both, while ST's forward value is at the draw.
    np.testing.assert_allclose(st, c, rtol=1e-12)
    x, g = builder(logits).sample_with_noise(keys[0], (5,))
    np.testing.assert_allclose(
      st_costs, np.sum(weights * x, (1, 2)), rtol=1e-12
    )
    s = jax.nn.softmax((logits + g) / 0.7, -1)
    expected = s * (weights - jnp.sum(weights * s, -1, keepdims=True)) / 0.7
    np.testing.assert_allclose(c, expected, rtol=1e-10)


def _vimco_weights_naive(log_w):
  """VIMCO's -K [(L - L_-k) - w~_k], by loops in NumPy (Mnih & Rezende)."""
  k = len(log_w)
  w = np.exp(log_w)
  bound = np.log(w.mean())
  out = np.empty(k)
  for i in range(k):
    others = np.delete(log_w, i)
    geometric = np.exp(others.mean())
    loo = np.log((np.exp(others).sum() + geometric) / k)
    out[i] = -k * ((bound - loo) - w[i] / w.sum())
  return out


def _vimco_log_joint(z):
  # A Bernoulli-latent "model": log p(x, z) for two binary latents.
  return -jnp.sum(jnp.square(z - jnp.array([0.8, 0.1]))) + 0.7 * z[0] * z[1]


def _exact_iwae_gradient(logits, k):
  """-grad L_K for d = 2 binary latents: every (z_1..z_K), jax.grad."""
  states = np.array(list(itertools.product([0.0, 1.0], repeat=2)))  # [4, 2]
  combos = np.array(list(itertools.product(range(4), repeat=k)))  # [4^K, K]
  zs = states[combos]  # [4^K, K, 2]
  log_p = (
    -np.sum((zs - np.array([0.8, 0.1])) ** 2, -1)
    + 0.7 * zs[..., 0] * zs[..., 1]
  )  # [4^K, K]

  def negative_bound(eta):
    log_q = jnp.sum(zs * eta - jnp.logaddexp(0.0, eta), -1)  # [4^K, K]
    prob = jnp.exp(jnp.sum(log_q, -1))  # the K draws are independent
    value = jax.nn.logsumexp(log_p - log_q, -1) - np.log(k)
    return -jnp.sum(prob * value)

  return jax.grad(negative_bound)(jnp.asarray(logits))


class VimcoTest(parameterized.TestCase):
  def test_weights_against_loops(self):
    log_w = np.array([-1.3, 0.2, -4.0, 0.9, 0.0])
    weights = jax.jit(variational.vimco_weights)
    np.testing.assert_allclose(
      weights(jnp.asarray(log_w)),
      _vimco_weights_naive(log_w),
      rtol=1e-12,
    )
    # Far apart log weights stay finite (everything in log space).
    far = jnp.array([-800.0, 0.0, 700.0])
    self.assertTrue(np.all(np.isfinite(weights(far))))

  @pytest.mark.slow
  def test_unbiased_on_binary_latents(self):
    """K = 3, d = 2 binary latents, against the enumerated bound's gradient.

    assert_unbiased sizes the run from a pilot to catch a 5% bias with
    probability 0.95 (false-alarm rate 1e-3); asserted below.
    """
    logits = np.array([0.4, -0.9])
    exact = _exact_iwae_gradient(logits, 3)
    report = testing.assert_unbiased(
      "vimco",
      _vimco_log_joint,
      jnp.asarray(logits),
      distributions.Bernoulli,
      jax.random.key(11),
      exact=exact,
      chunk_size=3,
      detectable_bias=0.05,
    )
    self.assertLessEqual(report.max_detectable, 0.0501)

  def test_rows_and_costs(self):
    logits = jnp.array([0.4, -0.9])
    key = jax.random.key(2)
    jac, costs = jax.jit(
      functools.partial(
        rgrad.vimco_jacobians,
        _vimco_log_joint,
        dist_builder=distributions.Bernoulli,
        num_samples=4,
        return_costs=True,
      )
    )(logits, key=key)
    z, _ = distributions.Bernoulli(logits).sample_with_noise(key, (4,))
    p = _sigmoid(np.asarray(logits))
    log_q = np.sum(z * np.log(p) + (1 - z) * np.log1p(-p), -1)
    log_w = np.asarray(jax.vmap(_vimco_log_joint)(z)) - log_q
    np.testing.assert_allclose(costs, -log_w, rtol=1e-12)
    expected = _vimco_weights_naive(log_w)[:, None] * (np.asarray(z) - p)
    np.testing.assert_allclose(jac, expected, rtol=1e-10)


class BadInputTest(parameterized.TestCase):
  _PARAMS = {"logits": jnp.asarray(_LOGITS)}

  def _call(self, name, num_samples=4, builder=_bernoulli, **kwargs):
    fn = getattr(rgrad, f"{name}_jacobians")
    return fn(
      _cost, self._PARAMS, builder, jax.random.key(0), num_samples, **kwargs
    )

  @parameterized.parameters("arm", "disarm")
  def test_odd_or_too_few_samples(self, name):
    with self.assertRaisesRegex(ValueError, "num_samples must be even"):
      self._call(name, 5)
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2"):
      self._call(name, 0)
    with self.assertRaisesRegex(TypeError, "num_samples must be a static"):
      self._call(name, 4.0)

  @parameterized.product(
    name=("concrete", "straight_through"),
    tau=(0.0, -0.5, np.inf, np.nan),
  )
  def test_bad_temperature(self, name, tau):
    with self.assertRaisesRegex(ValueError, "temperature must be positive"):
      self._call(name, temperature=tau)

  def test_temperature_must_be_scalar(self):
    with self.assertRaisesRegex(ValueError, "temperature must be a scalar"):
      self._call("concrete", temperature=jnp.ones(3))
    with self.assertRaisesRegex(TypeError, "temperature must be a real"):
      self._call("concrete", temperature="hot")

  @parameterized.parameters(
    ("arm", "uniform_noise"),
    ("disarm", "uniform_noise"),
    ("concrete", "relaxation"),
    ("straight_through", "relaxation"),
  )
  def test_missing_capability(self, name, capability):
    # Normal has no binary uniform noise nor a relaxation; Categorical's
    # integer draws have no relaxation; OneHotCategorical no uniform noise.
    builders = {
      "Normal": lambda p: distributions.Normal(p["logits"], 1.0),
      "Categorical": lambda p: distributions.Categorical(p["logits"]),
      "OneHotCategorical": lambda p: distributions.OneHotCategorical(
        p["logits"]
      ),
    }
    if capability == "relaxation":
      del builders["OneHotCategorical"]
    for dist, builder in builders.items():
      with self.assertRaisesRegex(
        TypeError,
        f"lacks '{capability}'.*{dist}|{dist}, which lacks '{capability}'",
      ):
        self._call(name, builder=builder)

  def test_vimco_needs_two_samples(self):
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2"):
      rgrad.vimco_jacobians(
        _vimco_log_joint, jnp.zeros(2), distributions.Bernoulli,
        jax.random.key(0), 1,
      )  # fmt: skip
    with self.assertRaisesRegex(TypeError, "lacks 'score'"):
      rgrad.vimco_jacobians(
        _vimco_log_joint, jnp.zeros(2),
        lambda p: _Sampler(), jax.random.key(0), 2,
      )  # fmt: skip

  def test_pathwise_on_bernoulli_names_reparameterized(self):
    with self.assertRaisesRegex(
      ValueError, r"Bernoulli has no pathwise sampler \(reparameterized=False"
    ):
      rgrad.pathwise_jacobians(
        _cost, self._PARAMS, _bernoulli, jax.random.key(0), 4
      )

  @parameterized.parameters("arm", "disarm", "concrete", "straight_through")
  def test_non_scalar_cost_and_non_finite_costs(self, name):
    fn = getattr(rgrad, f"{name}_jacobians")
    args = (self._PARAMS, _bernoulli, jax.random.key(0), 4)
    with self.assertRaisesRegex(ValueError, "function must return a scalar"):
      fn(lambda b: b, *args)
    with self.assertRaisesRegex(ValueError, "4 of 4 costs are non-finite"):
      fn(lambda b: jnp.sum(b) * jnp.nan, *args)

  def test_pairs_poisoned_together_under_jit(self):
    def cost(b):  # NaN at the draws with b_0 = 1 only
      return jnp.where(b[0] > 0.5, jnp.nan, jnp.sum(b))

    jac = jax.jit(
      functools.partial(rgrad.arm_jacobians, cost, num_samples=64),
      static_argnums=(1,),
    )(self._PARAMS, _bernoulli, jax.random.key(0))["logits"]
    bad = np.isnan(jac).all(1)
    self.assertTrue(bad.any() and not bad.all())
    np.testing.assert_array_equal(bad[:32], bad[32:])
    self.assertTrue(np.isfinite(jac[~bad]).all())


class _Sampler:
  """Draws, no scores."""

  def sample(self, key, sample_shape=()):
    return jax.random.normal(key, tuple(sample_shape) + (2,))

  def log_prob(self, x):
    return jnp.zeros(x.shape[:-1])


class RegistryTest(absltest.TestCase):
  def test_entries(self):
    for name, unbiased, rows in (
      ("arm", True, "pairs"),
      ("disarm", True, "pairs"),
      ("concrete", False, "iid"),
      ("straight_through", False, "iid"),
      ("vimco", True, "groups"),
    ):
      spec = rgrad.get_estimator(name)
      self.assertEqual((spec.unbiased, spec.rows), (unbiased, rows), name)
      self.assertEqual(spec.num_cost_evaluations(3), 1, name)
    self.assertEqual(rgrad.get_estimator("vimco").min_num_samples, 2)
    self.assertEqual(rgrad.get_estimator("arm").min_num_samples, 2)
    self.assertEqual(
      rgrad.get_estimator("concrete").fn.keywords, {"temperature": 2.0 / 3.0}
    )
    self.assertEqual(
      rgrad.get_estimator("straight_through").fn.keywords, {"temperature": 1.0}
    )
    for name in ("arm", "disarm", "concrete", "straight_through", "vimco"):
      self.assertIn(f"{name}_jacobians", rgrad.__all__)


if __name__ == "__main__":
  absltest.main()
