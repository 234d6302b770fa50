"""Estimators on OneHotCategorical against rgrad.exact's categorical references.

The reference, rgrad.exact.one_hot_categorical_estimator_moments, is first
checked on its own (enumeration identities, the K-tuple sum, k = 2 against
the binary references, grid convergence, NumPy Monte Carlo); the registered
estimators "score_function", "leave_one_out" (K = 4), "concrete" (tau =
2/3) and "straight_through" (tau = 1) are then tested against it with
rgrad.testing at k = 3 and on a batch of two categoricals: every mean within
its standard error of the exact (biased, for the relaxations) mean, sized to
detect a 5% bias with probability 0.95 (false-alarm rate 1e-3), and every
variance against the exact variance.
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
from rgrad import distributions
from rgrad import exact
from rgrad import testing
from rgrad.exact import _categorical
from tests import discrete_reference as ref

_ETA = np.array([0.8, -0.2, -0.5])
_W = np.array([0.9, -0.6, -0.3])
_BATCH_ETA = np.array([[0.8, -0.2, -0.5], [-0.4, 0.5, 0.1]])
_REGISTRY_KW = {
  "score_function": {},
  "leave_one_out": {"num_samples": 4},
  "concrete": {"temperature": 2.0 / 3.0},
  "straight_through": {"temperature": 1.0},
}
_em = exact.one_hot_categorical_estimator_moments


def _cost(x):  # one unit, x [3]: non-linear off the vertices
  return jnp.sum(_W * x) + 0.5 * jnp.sin(2.0 * x[0] + x[1]) + 0.4 * x[2] ** 2


def _batch_cost(x):  # x [2, 3]: couples the units
  return (
    jnp.sum(_W * x)
    + 0.5 * jnp.sin(2.0 * x[0, 0] + x[1, 1])
    + 0.6 * x[0, 2] * x[1, 0]
  )


def _rel(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class ReferenceTest(parameterized.TestCase):
  """The categorical reference against independent computations."""

  @parameterized.parameters(
    ("score_function", {}),
    ("leave_one_out", {"num_samples": 2}),
    ("leave_one_out", {"num_samples": 5}),
  )
  def test_unbiased_means_equal_the_enumerated_gradient(self, name, kw):
    for cost, eta in ((_cost, _ETA), (_batch_cost, _BATCH_ETA)):
      _, grad = exact.one_hot_categorical_expectation(cost, eta)
      m = _em(name, cost, eta, **kw)
      np.testing.assert_allclose(m.mean, grad, atol=1e-15)
      self.assertEqual(m.variance.shape, eta.shape)

  @parameterized.parameters(2, 3)
  def test_leave_one_out_against_tuple_enumeration(self, k_batch):
    # All 3^K tuples of K draws, the batch mean (1/(K-1)) sum (f - mean f) s.
    pi = np.exp(_ETA) / np.exp(_ETA).sum()
    eye = np.eye(3)
    f = np.asarray(jax.vmap(_cost)(jnp.asarray(eye)))
    estimates, weights = [], []
    for t in itertools.product(range(3), repeat=k_batch):
      fs = f[list(t)]
      s = eye[list(t)] - pi
      estimates.append(((fs - fs.mean())[:, None] * s).sum(0) / (k_batch - 1))
      weights.append(np.prod(pi[list(t)]))
    estimates, weights = np.array(estimates), np.array(weights)
    mean = weights @ estimates
    var = weights @ (estimates - mean) ** 2
    m = _em("leave_one_out", _cost, _ETA, num_samples=k_batch)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(m.variance, var, rtol=1e-12)

  def test_two_categories_are_the_binary_relaxation(self):
    # softmax((eta + G)/tau)_1 = sigmoid((eta_1 - eta_2 + logistic)/tau): the
    # binary reference (quadrature over the logistic noise, another rule).
    # Concrete checks the piece rule; straight-through's enumeration is
    # checked by Monte Carlo below.
    name, tau = "concrete", 0.3
    eta = np.array([0.7, -0.4])

    def cost(x):
      return (x[0] - 0.45) ** 2 + jnp.cos(x[1])

    def binary(b):
      b = jnp.reshape(b, ())
      return cost(jnp.stack([b, 1.0 - b]))

    m = _em(name, cost, eta, temperature=tau)
    b = exact.bernoulli_estimator_moments(
      name, binary, np.array([eta[0] - eta[1]]), temperature=tau
    )
    np.testing.assert_allclose(m.mean, [b.mean[0], -b.mean[0]], rtol=1e-10)
    np.testing.assert_allclose(m.variance, [b.variance[0]] * 2, rtol=1e-10)

  def test_rule_masses_and_grid_convergence(self):
    eta = jnp.asarray(_ETA[None])
    for tau in (0.3, 1.0):
      _, w = _categorical.piece_rules(eta, jnp.asarray(tau), 8)
      pi = jax.nn.softmax(eta, -1)
      np.testing.assert_allclose(w.sum(-1), pi, rtol=1e-10)
    # The default rule (8 panels per axis) against 16 agrees to 1e-9 (2e-11
    # measured) for straight-through at tau = 0.3, the slower to converge of
    # the two (concrete: 1e-12).
    a = _em("straight_through", _cost, _ETA, temperature=0.3)
    b = _em("straight_through", _cost, _ETA, temperature=0.3, num_panels=16)
    self.assertLess(_rel(a.mean, b.mean), 1e-9)
    self.assertLess(_rel(a.variance, b.variance), 1e-9)

  def test_batch_additive_and_joint(self):
    def f(x):  # one unit
      return jnp.sum(_W * x) + 0.5 * jnp.sin(2.0 * x[0] + x[1])

    kw = {"temperature": 2.0 / 3.0}
    for name in ("concrete", "straight_through"):
      # Independent units of an additive cost: each unit's own moments.
      both = _em(name, f, _BATCH_ETA, additive=True, **kw)
      for i in range(2):
        one = _em(name, f, _BATCH_ETA[i], **kw)
        np.testing.assert_allclose(both.mean[i], one.mean, rtol=1e-12)
        np.testing.assert_allclose(both.variance[i], one.variance, rtol=1e-12)
    # The joint enumeration (any cost) gives the same for the same sum.
    joint = _em("straight_through", lambda x: f(x[0]) + f(x[1]), _BATCH_ETA,
                **kw)  # fmt: skip
    np.testing.assert_allclose(joint.mean, both.mean, rtol=1e-12)
    np.testing.assert_allclose(joint.variance, both.variance, rtol=1e-12)

  @pytest.mark.slow
  def test_relaxations_against_numpy_monte_carlo(self):
    # 2^19 NumPy draws of the Gumbel noise, the estimates written out from
    # Jang et al.: g = J^T grad f at y (concrete) or at the one-hot draw
    # (straight-through), J = (diag y - y y^T)/tau. ref.check_mc asserts
    # that 5 SE is at most 2% of the largest |mean| and 3% of each variance
    # (k = 3).
    n, tau = 2**19, 0.5
    rng = np.random.default_rng(3)
    z = _ETA + rng.gumbel(size=(n, 3))
    y = np.exp((z - z.max(1, keepdims=True)) / tau)
    y /= y.sum(1, keepdims=True)
    x = np.eye(3)[np.argmax(z, 1)]

    def grad_f(v):
      c = 0.5 * np.cos(2.0 * v[:, 0] + v[:, 1])
      return _W + np.stack([2.0 * c, c, 0.8 * v[:, 2]], 1)

    def pull(v):
      return y * (v - np.sum(y * v, 1, keepdims=True)) / tau

    em = functools.partial(_em, cost=_cost, logits=_ETA, temperature=tau)
    ref.check_mc(pull(grad_f(y)), em("concrete"), 0.02, 0.03, "concrete")
    ref.check_mc(
      pull(grad_f(x)), em("straight_through"), 0.02, 0.03, "straight_through"
    )
    # k = 4 (three-dimensional pieces, the default 4 panels per axis):
    # straight-through with a cost coupling the categories; 5 SE <= 3% of
    # the largest |mean|, 3% of each variance.
    eta4 = np.array([0.3, -0.2, 0.1, 0.5])
    z = eta4 + rng.gumbel(size=(n, 4))
    y = np.exp((z - z.max(1, keepdims=True)) / tau)
    y /= y.sum(1, keepdims=True)
    x = np.eye(4)[np.argmax(z, 1)]
    w4 = np.array([0.7, -0.4, 0.2, -0.5])

    def cost4(v):
      return jnp.sum(w4 * v) + 0.8 * v[1] * v[3]

    grad4 = w4 + 0.8 * np.stack([0 * x[:, 0], x[:, 3], 0 * x[:, 0], x[:, 1]], 1)
    m4 = _em("straight_through", cost4, eta4, temperature=tau)
    ref.check_mc(pull(grad4), m4, 0.03, 0.03, "straight_through k=4")


@pytest.mark.slow
class EstimatorTest(parameterized.TestCase):
  """The registered estimators on OneHotCategorical against the reference."""

  def _case(self, name, batch):
    eta, cost = (_BATCH_ETA, _batch_cost) if batch else (_ETA, _cost)
    kw = _REGISTRY_KW[name]
    m = _em(name, cost, eta, **kw)
    k_batch = kw.get("num_samples", 1)
    # gradient_moments' variance is the effective per-row one: K x unit's.
    return eta, cost, m.mean, m.variance * k_batch, k_batch

  @parameterized.parameters(
    ("score_function", False),
    ("leave_one_out", False),
    ("concrete", False),
    ("straight_through", False),
    ("straight_through", True),
  )
  def test_mean_and_variance(self, name, batch):
    """Mean: sized to detect a 5% bias with probability 0.95 (asserted).

    The run's size comes from the exact variance (5% of each |exact mean|,
    false-alarm rate 1e-3 over the coordinates, Holm). Variance: 2^16 rows
    (2^14 K-draw batches for leave-one-out); the detectable relative error
    of the variance, from the sample fourth moment, is asserted below 20%.
    """
    eta, cost, mean, variance, k_batch = self._case(name, batch)
    args = (name, cost, jnp.asarray(eta), distributions.OneHotCategorical)
    # One K-draw batch per call for "leave_one_out" (its unit).
    chunk = k_batch if k_batch > 1 else 1024
    report = testing.assert_unbiased(
      *args,
      jax.random.key(1),
      exact=jnp.asarray(mean),
      exact_variance=jnp.asarray(variance),
      detectable_bias=0.05,
      chunk_size=chunk,
    )
    self.assertLessEqual(report.max_detectable, 0.0501)
    report = testing.assert_variance(
      *args,
      jax.random.key(2),
      exact_variance=jnp.asarray(variance),
      num_samples=2**16,
      chunk_size=chunk,
    )
    self.assertLess(report.max_detectable, 0.2)


class EstimatorBiasAndShapeTest(absltest.TestCase):
  """The relaxations' bias is visible; shapes under jit and vmap."""

  def test_relaxations_are_biased_detectably(self):
    # The exact relaxed means differ from the gradient by far more than the
    # 5% EstimatorTest resolves: they would catch an estimator that
    # silently became the score function (or the reverse).
    _, grad = exact.one_hot_categorical_expectation(_cost, _ETA)
    for name in ("concrete", "straight_through"):
      m = _em(name, _cost, _ETA, **_REGISTRY_KW[name])
      self.assertGreater(_rel(m.mean, grad), 0.14)

  def test_jit_vmap_and_batch_shapes(self):
    # Leave-one-out (the score-function pipeline with a batch baseline)
    # through jit(vmap) on a [2, 3] batch, against the unmapped call at the
    # first key; concrete and straight-through on a OneHotCategorical batch
    # under jit and vmap: discrete_estimators_test.py; all four under jit:
    # test_mean_and_variance (rgrad.gradient_moments).
    keys = jax.random.split(jax.random.key(0), 3)
    eta = jnp.asarray(_BATCH_ETA)
    builder = distributions.OneHotCategorical

    def all_four(key):
      return {
        name: rgrad.get_estimator(name).fn(_batch_cost, eta, builder, key, 4)
        for name in ("leave_one_out",)
      }

    # One compilation holds both: the vmapped call and the single one.
    many, one = jax.jit(lambda k: (jax.vmap(all_four)(k), all_four(k[0])))(keys)
    for name in many:
      self.assertEqual(many[name].shape, (3, 4, 2, 3))
      np.testing.assert_allclose(many[name][0], one[name], rtol=1e-12)


class BadInputTest(parameterized.TestCase):
  @parameterized.product(
    name=("concrete", "straight_through"), tau=(0.0, -1.0, np.nan)
  )
  def test_temperature_must_be_positive(self, name, tau):
    with self.assertRaisesRegex(ValueError, "temperature must be positive"):
      getattr(rgrad, f"{name}_jacobians")(
        _cost, jnp.asarray(_ETA), distributions.OneHotCategorical,
        jax.random.key(0), 4, temperature=tau,
      )  # fmt: skip
    with self.assertRaisesRegex(ValueError, "temperature must be positive"):
      _em(name, _cost, _ETA, temperature=tau)

  def test_pathwise_names_the_missing_capability(self):
    for call in (
      lambda: rgrad.pathwise_jacobians(
        _cost, jnp.asarray(_ETA), distributions.OneHotCategorical,
        jax.random.key(0), 4,
      ),
      lambda: rgrad.gradient_moments(
        "pathwise", _cost, jnp.asarray(_ETA),
        distributions.OneHotCategorical, jax.random.key(0), 8,
      ),
    ):  # fmt: skip
      with self.assertRaisesRegex(
        ValueError, r"OneHotCategorical has no pathwise sampler"
      ):
        call()

  def test_reference_errors_name_the_argument(self):
    with self.assertRaisesRegex(ValueError, "estimator must be one of"):
      _em("arm", _cost, _ETA)
    with self.assertRaisesRegex(ValueError, "temperature is required"):
      _em("concrete", _cost, _ETA)
    with self.assertRaisesRegex(ValueError, "temperature applies"):
      _em("score_function", _cost, _ETA, temperature=1.0)
    with self.assertRaisesRegex(ValueError, "num_samples .* required"):
      _em("leave_one_out", _cost, _ETA)
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 2"):
      _em("leave_one_out", _cost, _ETA, num_samples=1)
    with self.assertRaisesRegex(ValueError, "k <= 4"):
      _em("concrete", jnp.sum, np.zeros(5), temperature=1.0)
    with self.assertRaisesRegex(ValueError, "k >= 2"):
      _em("score_function", jnp.sum, np.zeros(1))
    with self.assertRaisesRegex(ValueError, "needs an additive cost"):
      _em("concrete", _batch_cost, _BATCH_ETA, temperature=1.0)
    with self.assertRaisesRegex(ValueError, "logits must be finite"):
      _em("score_function", _cost, np.array([0.0, np.inf, 1.0]))


if __name__ == "__main__":
  absltest.main()
