"""Tests for rgrad.exact's discrete references: identities and Monte Carlo.

Every check here would catch a wrong reference: closed forms in d = 1,
finite differences of the enumerated value, identities between estimators
(unbiased means equal the gradient, DisARM is ARM conditioned on the pair),
brute-force enumeration of K-tuples, and large NumPy Monte Carlo runs of the
estimators written out from their definitions in this file (sharing no code
with rgrad.exact, nor with rgrad's estimators). The relaxations, REBAR and
RELAX are in exact_relaxed_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import exact
from tests import discrete_reference as ref


class ExpectationTest(parameterized.TestCase):
  @parameterized.product(t=ref.TOY_TARGETS, theta=(-2.0, 0.0, 1.3))
  def test_d1_closed_form(self, t, theta):
    value, grad = exact.bernoulli_expectation(ref.toy(t), np.array([theta]))
    p = ref.sigmoid(theta)
    np.testing.assert_allclose(value, p * (1 - t) ** 2 + (1 - p) * t**2)
    np.testing.assert_allclose(grad, [p * (1 - p) * (1 - 2 * t)], rtol=1e-12)

  def test_gradient_against_finite_differences(self):
    logits = np.array([0.3, -1.2, 2.0])
    _, grad = exact.bernoulli_expectation(ref.general, logits)
    h = 1e-5
    fd = [
      (
        exact.bernoulli_expectation(ref.general, logits + h * e)[0]
        - exact.bernoulli_expectation(ref.general, logits - h * e)[0]
      )
      / (2 * h)
      for e in np.eye(3)
    ]
    np.testing.assert_allclose(grad, fd, atol=1e-9)

  def test_numpy_cost_shapes_and_jit(self):
    logits = np.array([[0.3, -1.2], [2.0, 0.1]])
    w = np.array([[1.0, 2.0], [-1.0, 0.5]])
    jax_cost = lambda b: jnp.sum(b * w) ** 2
    numpy_cost = lambda b: float(np.sum(np.asarray(b) * w) ** 2)
    value, grad = exact.bernoulli_expectation(jax_cost, logits)
    self.assertEqual(grad.shape, (2, 2))
    v2, g2 = exact.bernoulli_expectation(numpy_cost, logits)
    np.testing.assert_allclose([v2, *g2.ravel()], [value, *grad.ravel()])
    v3, g3 = jax.jit(lambda x: exact.bernoulli_expectation(jax_cost, x))(logits)
    np.testing.assert_allclose(g3, grad, rtol=1e-14)
    # NumPy ufuncs as costs (not weak-referenceable) work too.
    np.testing.assert_allclose(
      exact.bernoulli_expectation(np.sum, logits)[1],
      ref.sigmoid(logits) * (1 - ref.sigmoid(logits)),
    )

  def test_one_hot_closed_form_and_finite_differences(self):
    eta = np.array([0.2, -1.0, 0.7])
    f = np.array([1.0, -0.5, 2.0])
    value, grad = exact.one_hot_categorical_expectation(
      lambda x: jnp.sum(x * f), eta
    )
    pi = np.exp(eta) / np.exp(eta).sum()
    np.testing.assert_allclose(value, pi @ f)
    np.testing.assert_allclose(grad, pi * (f - pi @ f), rtol=1e-12)
    logits = np.array([[0.2, -1.0, 0.7], [1.5, 0.0, -0.3]])
    cost = lambda x: jnp.sin(jnp.sum(x * logits[::-1])) * x[0, 1] + x[1, 2]
    h = 1e-5
    shifts = np.concatenate([np.zeros((1, 6)), h * np.eye(6), -h * np.eye(6)])
    values, grads = jax.jit(
      jax.vmap(lambda x: exact.one_hot_categorical_expectation(cost, x))
    )(logits + shifts.reshape(-1, 2, 3))
    fd = (values[1:7] - values[7:]) / (2 * h)
    np.testing.assert_allclose(grads[0].ravel(), fd, atol=1e-9)


class DiscreteMomentsTest(parameterized.TestCase):
  @parameterized.parameters(
    ("score_function", {}),
    ("leave_one_out", {"num_samples": 2}),
    ("leave_one_out", {"num_samples": 5}),
    ("arm", {}),
    ("disarm", {}),
  )
  def test_unbiased_means_equal_the_gradient(self, estimator, kwargs):
    for cost, logits in (
      (ref.general, np.array([0.3, -1.2, 2.0])),
      (ref.general, np.array([0.0, 4.0, -0.5])),
      (ref.toy(0.49), np.array([0.7])),
    ):
      _, grad = exact.bernoulli_expectation(cost, logits)
      m = exact.bernoulli_estimator_moments(estimator, cost, logits, **kwargs)
      np.testing.assert_allclose(m.mean, grad, rtol=1e-11, atol=1e-15)
      self.assertTrue(np.all(np.asarray(m.variance) >= 0))

  def test_d1_closed_forms_and_disarm_below_arm(self):
    # The toy on a grid of (t, theta), one jitted call per estimator.
    t, theta = np.meshgrid(
      ref.TOY_TARGETS, np.linspace(-4, 4, 17), indexing="ij"
    )
    m = {
      e: ref.toy_grid(e, t, theta) for e in ("score_function", "arm", "disarm")
    }
    p = ref.sigmoid(theta)
    lo, hi = np.minimum(p, 1 - p), np.maximum(p, 1 - p)
    f0, f1 = t**2, (1 - t) ** 2
    delta, grad = f1 - f0, p * (1 - p) * (f1 - f0)
    sf = p * ((1 - p) * f1) ** 2 + (1 - p) * (p * f0) ** 2 - grad**2
    # ARM: delta (u - 1/2) on the two outer cells of length lo each.
    arm = 2 * delta**2 * ((lo - 0.5) ** 3 + 0.125) / 3 - grad**2
    # DisARM (Dong et al. 2020): delta hi / 2 with probability 2 lo.
    disarm = lo * hi**2 * delta**2 * (0.5 - lo)
    for name, want in (
      ("score_function", sf),
      ("arm", arm),
      ("disarm", disarm),
    ):
      np.testing.assert_allclose(m[name].mean, grad, rtol=1e-11, err_msg=name)
      np.testing.assert_allclose(
        m[name].variance, want, rtol=1e-9, atol=1e-20, err_msg=name
      )
    # Dong et al. 2020, Thm: DisARM is ARM conditioned on (b, b~), so its
    # variance is at most ARM's, per coordinate.
    self.assertTrue(np.all(m["disarm"].variance <= m["arm"].variance))
    logits = np.random.default_rng(0).normal(size=(4, 3)) * 2
    a, b = (
      jax.jit(jax.vmap(lambda x, e=e: ref.moments(e, ref.general, x)))(logits)
      for e in ("arm", "disarm")
    )
    self.assertTrue(np.all(b.variance <= a.variance * (1 + 1e-12)))

  @parameterized.parameters((2, 3), (3, 2), (4, 2))
  def test_leave_one_out_against_tuple_enumeration(self, k, d):
    logits = np.array([0.4, -1.1, 0.9])[:d]
    f = lambda b: np.sin(1.0 + b @ ref.W[:d]) + 0.2 * b[..., 0]
    states = ref.states(d)
    p = ref.sigmoid(logits)
    prob = np.prod(np.where(states, p, 1 - p), 1)
    tuples = np.stack(np.meshgrid(*[np.arange(2**d)] * k, indexing="ij"), -1)
    tuples = tuples.reshape(-1, k)
    costs = f(states[tuples].astype(float))  # [T, K]
    baseline = (costs.sum(1, keepdims=True) - costs) / (k - 1)
    scores = states[tuples] - p  # [T, K, d]
    g = np.mean((costs - baseline)[..., None] * scores, 1)
    weight = np.prod(prob[tuples], 1)
    mean = weight @ g
    var = weight @ (g - mean) ** 2
    m = exact.bernoulli_estimator_moments(
      "leave_one_out",
      lambda b: jnp.sin(1.0 + b @ ref.W[:d]) + 0.2 * b[0],
      logits[:d],
      num_samples=k,
    )
    np.testing.assert_allclose(m.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(m.variance, var, rtol=1e-11)

  def test_additive_equals_the_explicit_sum_under_jit(self):
    f = lambda x: jnp.cos(2.0 * x) + x
    names = ("score_function", "arm", "disarm")

    @jax.jit
    def both(x):
      return [
        (
          ref.moments(e, f, x, additive=True),
          ref.moments(e, lambda b: jnp.sum(jnp.cos(2.0 * b) + b), x),
        )
        for e in names
      ]

    for a, b in both(np.array([0.3, -1.0, 2.2, 0.0])):
      np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
      np.testing.assert_allclose(a.variance, b.variance, rtol=1e-12)

  @pytest.mark.slow
  def test_pairs_against_numpy_monte_carlo(self):
    # ARM and DisARM written out from their definitions, 2^20 pairs in
    # d = 3 with the non-additive cost; ref.check_mc asserts 5 SE <= 2% of the
    # largest |mean| and 3% of the variance on every coordinate.
    logits = np.array([0.3, -1.2, 2.0])
    p = ref.sigmoid(logits)
    u = np.random.default_rng(1).uniform(size=(2**20, 3))
    b, bt = (u > 1 - p).astype(float), (u < p).astype(float)
    delta = (ref.general_np(b) - ref.general_np(bt))[:, None]
    arm = delta * (u - 0.5)
    disarm = (
      0.5 * delta * (-1.0) ** bt * (b != bt) * ref.sigmoid(np.abs(logits))
    )
    jitted = jax.jit(
      lambda x: [ref.moments(e, ref.general, x) for e in ("arm", "disarm")]
    )(logits)
    for name, g, m_jit in zip(
      ("arm", "disarm"), (arm, disarm), jitted, strict=True
    ):
      m = exact.bernoulli_estimator_moments(name, ref.general, logits)
      ref.check_mc(g, m, 0.02, 0.03, name)
      np.testing.assert_allclose(m_jit.variance, m.variance, rtol=1e-13)


class IwaeTest(parameterized.TestCase):
  def _log_joint(self, z):
    return -jnp.sum((z - jnp.array([0.2, 0.9])[: z.size]) ** 2) * 3.0 + (
      z[0] * z[-1]
    )

  def test_bound_closed_form_and_finite_differences(self):
    logits = np.array([0.5, -0.7])
    states = ref.states(2).astype(float)
    p = ref.sigmoid(logits)
    log_q = np.sum(np.where(states, np.log(p), np.log(1 - p)), 1)
    log_j = np.array([float(self._log_joint(jnp.asarray(s))) for s in states])
    log_w = log_j - log_q
    l2 = np.log(0.5 * (np.exp(log_w)[:, None] + np.exp(log_w)[None, :]))
    closed = {1: np.exp(log_q) @ log_w, 2: np.exp(log_q) @ l2 @ np.exp(log_q)}
    h = 1e-5
    shifts = np.concatenate([np.zeros((1, 2)), h * np.eye(2), -h * np.eye(2)])
    for k in (1, 2, 3):
      values, grads = jax.jit(
        jax.vmap(
          lambda x, k=k: exact.iwae_bound_expectation(self._log_joint, x, k)
        )
      )(logits + shifts)
      if k in closed:
        np.testing.assert_allclose(values[0], closed[k], rtol=1e-13)
      fd = (values[1:3] - values[3:]) / (2 * h)
      np.testing.assert_allclose(grads[0], fd, atol=1e-9)

  def test_vimco_mean_is_minus_the_bound_gradient(self):
    logits = np.array([0.5, -0.7])

    @jax.jit
    def both(x):
      return [
        (
          exact.iwae_bound_expectation(self._log_joint, x, k)[1],
          ref.moments("vimco", self._log_joint, x, num_samples=k).mean,
        )
        for k in (2, 3, 5)
      ]

    for grad, mean in both(logits):
      np.testing.assert_allclose(mean, -grad, rtol=1e-10)

  @pytest.mark.slow
  def test_vimco_against_numpy_monte_carlo(self):
    # K = 3, d = 2, 2^19 batches; 5 SE <= 1% of max |mean|, 3% of variance.
    k, n, logits = 3, 2**19, np.array([0.5, -0.7])
    p = ref.sigmoid(logits)
    z = (np.random.default_rng(7).uniform(size=(n, k, 2)) < p).astype(float)
    lj = (
      -3.0 * np.sum((z - np.array([0.2, 0.9])) ** 2, -1) + z[..., 0] * z[..., 1]
    )
    lw = lj - np.sum(np.where(z > 0, np.log(p), np.log(1 - p)), -1)
    bound = np.log(np.mean(np.exp(lw), 1, keepdims=True))
    tilde = np.exp(lw) / np.exp(lw).sum(1, keepdims=True)
    leave = np.empty_like(lw)
    for j in range(k):  # over the K rows of a batch, not over samples
      others = np.delete(lw, j, 1)
      leave[:, j] = np.log((np.exp(others).sum(1) + np.exp(others.mean(1))) / k)
    g = -np.sum(((bound - leave) - tilde)[..., None] * (z - p), 1)
    m = exact.vimco_moments(self._log_joint, logits, k)
    ref.check_mc(g, m, 0.01, 0.03, "vimco")


class BadInputsTest(parameterized.TestCase):
  def test_errors_name_the_argument(self):
    em = exact.bernoulli_estimator_moments
    cost = ref.toy(0.49)
    one = np.array([0.1])
    cases = (
      (lambda: exact.bernoulli_expectation(jnp.sum, np.zeros(13)), "logits"),
      (lambda: em("arm", jnp.sum, np.zeros(11)), "logits"),
      (lambda: exact.bernoulli_expectation(cost, [np.nan]), "logits"),
      (lambda: em("concrete", cost, one), "temperature"),
      (lambda: em("concrete", cost, one, temperature=0.0), "temperature"),
      (lambda: em("concrete", cost, one, temperature=-1.0), "temperature"),
      (lambda: em("arm", cost, one, temperature=1.0), "temperature"),
      (lambda: em("leave_one_out", cost, one), "num_samples"),
      (lambda: em("leave_one_out", cost, one, num_samples=1), "num_samples"),
      (lambda: em("arm", cost, one, num_samples=2), "num_samples"),
      (lambda: em("reinforce", cost, one), "estimator"),
      (
        lambda: em("concrete", jnp.sum, np.zeros(2), temperature=1.0),
        "additive",
      ),
      (
        lambda: exact.bernoulli_expectation(lambda b: b, one * [1, 1]),
        "scalar",
      ),
      (
        lambda: exact.bernoulli_expectation(lambda b: jnp.log(b[0]), one),
        "cost",
      ),
      (lambda: exact.vimco_moments(jnp.sum, np.zeros(11), 2), "num_importance"),
      (lambda: exact.vimco_moments(jnp.sum, one, 1), "num_importance"),
      (
        lambda: exact.rebar_moments(cost, 0.0, temperature=1.0, scale=np.inf),
        "scale",
      ),
      (
        lambda: exact.one_hot_categorical_expectation(jnp.sum, [[0.0]]),
        "k >= 2",
      ),
      (
        lambda: exact.one_hot_categorical_expectation(
          jnp.sum, np.zeros((17, 2))
        ),
        "logits",
      ),
    )
    for i, (fn, pattern) in enumerate(cases):
      with self.assertRaisesRegex((ValueError, TypeError), pattern, msg=str(i)):
        fn()


if __name__ == "__main__":
  absltest.main()
