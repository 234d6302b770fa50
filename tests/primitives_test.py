"""Tests for rgrad.primitives: every hand derivative against jax autodiff."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import primitives

_TOL = 1e-10
_ELEMENTWISE = tuple(
  n for n, p in primitives.PRIMITIVES.items() if p.elementwise
)
_ALL = tuple(primitives.PRIMITIVES)


def _random_points(prim, key, shape):
  """Uniform points well inside the primitive's domain, float64."""
  lo, hi = prim.domain
  lo, hi = max(lo, -3.0), min(hi, 3.0)
  if lo == 0.0:
    lo = 0.1  # Stay away from the boundary of log, sqrt and 1/x.
  return jax.random.uniform(key, shape, jnp.float64, lo, hi)


def _assert_close(actual, expected, tol=_TOL):
  """|a - e| <= tol * (1 + |e|), elementwise, and both finite."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  np.testing.assert_equal(actual.shape, expected.shape)
  assert np.all(np.isfinite(actual)), actual
  assert np.all(np.isfinite(expected)), expected
  np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


class ElementwiseTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_ELEMENTWISE)
  def test_derivative_matches_grad(self, name):
    # Random points inside the domain, then the registry's edge points (0,
    # +-1e4, domain boundaries) where value and derivative are still finite.
    prim = primitives.get_primitive(name)
    self.assertNotEmpty(prim.edge_points)
    x = jnp.concatenate(
      [
        _random_points(prim, jax.random.key(0), (16,)),
        jnp.asarray(prim.edge_points, jnp.float64),
      ]
    )
    expected = jax.jit(jax.vmap(jax.grad(prim.fn)))(x)
    _assert_close(self.variant(prim.derivative)(x), expected)

  @parameterized.parameters(*_ELEMENTWISE)
  def test_jvp_vjp_and_jacobian_match_autodiff(self, name):
    prim = primitives.get_primitive(name)
    kx, kt = jax.random.split(jax.random.key(1))
    x = _random_points(prim, kx, (5,))
    t = jax.random.normal(kt, (5,), jnp.float64)
    _, expected_jvp = jax.jvp(prim.fn, (x,), (t,))
    _, pullback = jax.vjp(prim.fn, x)
    _assert_close(prim.jvp(x, t), expected_jvp)
    _assert_close(prim.vjp(x, t), pullback(t)[0])
    _assert_close(prim.jacobian(x), jax.jacfwd(prim.fn)(x))
    # A scalar input has a scalar Jacobian.
    _assert_close(prim.jacobian(x[0]), jax.grad(prim.fn)(x[0]))

  def test_relu_uses_subgradient_zero_at_the_kink(self):
    self.assertEqual(float(primitives.relu_derivative(0.0)), 0.0)
    self.assertEqual(float(jax.grad(primitives.relu)(0.0)), 0.0)
    self.assertEqual(float(primitives.relu_derivative(1e-300)), 1.0)

  @parameterized.parameters(0.5, 2.0, 3.0, -1.0, -2.5)
  def test_power_rule(self, p):
    x = jnp.linspace(0.2, 4.0, 9, dtype=jnp.float64)
    expected = jax.vmap(jax.grad(lambda y: primitives.power(y, p)))(x)
    _assert_close(primitives.power_derivative(x, p), expected)

  def test_image_contains_values(self):
    # The interval images drive the random chains of the experiment; a wrong
    # one would let them leave a domain.
    x = jnp.linspace(-2.0, 2.0, 101, dtype=jnp.float64)
    for prim in primitives.PRIMITIVES.values():
      if not prim.elementwise:
        continue
      lo, hi = max(prim.domain[0], -2.0), min(prim.domain[1], 2.0)
      lo = 0.1 if lo == 0.0 else lo
      pts = jnp.linspace(lo, hi, 101, dtype=jnp.float64)
      img_lo, img_hi = prim.image(lo, hi, 1)
      y = prim.fn(pts)
      self.assertGreaterEqual(float(y.min()), img_lo - 1e-12, prim.name)
      self.assertLessEqual(float(y.max()), img_hi + 1e-12, prim.name)
    del x


class Float32StabilityTest(parameterized.TestCase):
  """Finite values and derivatives up to |x| = 1e4 in float32."""

  def setUp(self):
    super().setUp()
    self.x = jnp.asarray(
      [-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], jnp.float32
    )

  def _assert_finite_float32(self, *arrays):
    for a in arrays:
      self.assertEqual(a.dtype, jnp.float32)
      self.assertTrue(bool(jnp.all(jnp.isfinite(a))), a)

  def test_sigmoid(self):
    v, d = primitives.sigmoid(self.x), primitives.sigmoid_derivative(self.x)
    self._assert_finite_float32(v, d)
    np.testing.assert_array_equal(np.asarray(v)[[0, -1]], [0.0, 1.0])
    # sigma'(20) = e^-20 / (1 + e^-20)^2 ~ 2.06e-9: kept, not rounded to 0.
    np.testing.assert_allclose(d[4], np.exp(-20.0), rtol=1e-6)
    np.testing.assert_allclose(d[2], np.exp(-20.0), rtol=1e-6)

  def test_softplus(self):
    v, d = primitives.softplus(self.x), primitives.softplus_derivative(self.x)
    self._assert_finite_float32(v, d)
    np.testing.assert_allclose(np.asarray(v)[[0, -1]], [0.0, 1e4])
    np.testing.assert_allclose(v[3], np.log(2.0), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(d)[[0, 3, -1]], [0.0, 0.5, 1.0])

  def test_tanh(self):
    v, d = primitives.tanh(self.x), primitives.tanh_derivative(self.x)
    self._assert_finite_float32(v, d)
    np.testing.assert_array_equal(np.asarray(v)[[0, -1]], [-1.0, 1.0])
    # sech^2(20) ~ 4 e^-40 = 1.7e-17; 1 - tanh^2 would give exactly 0.
    np.testing.assert_allclose(d[4], 4.0 * np.exp(-40.0), rtol=1e-5)

  def test_logsumexp_and_softmax(self):
    v = primitives.logsumexp(self.x)
    s = primitives.logsumexp_grad(self.x)
    jac = primitives.softmax_jacobian(self.x)
    vjp = primitives.softmax_vjp(self.x, jnp.ones_like(self.x))
    self._assert_finite_float32(v, s, jac, vjp)
    np.testing.assert_allclose(v, 1e4, rtol=1e-7)
    np.testing.assert_allclose(s[-1], 1.0)
    # Also for every entry at -1e4 (a shift of +1e4 would overflow e^x).
    self._assert_finite_float32(
      primitives.logsumexp(jnp.full((3,), -1e4, jnp.float32))
    )

  def test_cross_entropy(self):
    logits = jnp.stack([self.x, -self.x])  # [2, 7]
    labels = jax.nn.one_hot(jnp.asarray([0, 0]), 7, dtype=jnp.float32)
    loss = primitives.softmax_cross_entropy(logits, labels)
    grads = primitives.softmax_cross_entropy_grads(logits, labels)
    self._assert_finite_float32(loss, grads.logits, grads.labels)
    # Label on the smallest logit: loss = 1e4 - (-1e4); on the largest: 0.
    np.testing.assert_allclose(loss, [2e4, 0.0], atol=1e-3)
    np.testing.assert_allclose(
      np.asarray(grads.logits)[0, [0, -1]], [-1.0, 1.0]
    )


class VectorPrimitivesTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    self.x = jax.random.normal(jax.random.key(2), (6,), jnp.float64) * 3.0
    self.v = jax.random.normal(jax.random.key(3), (6,), jnp.float64)

  @chex.variants(with_jit=True, without_jit=True)
  def test_softmax_jacobian(self):
    jac = self.variant(primitives.softmax_jacobian)(self.x)
    _assert_close(jac, jax.jacrev(primitives.softmax)(self.x))
    s = primitives.softmax(self.x)
    _assert_close(jac, jnp.diag(s) - jnp.outer(s, s))

  @chex.variants(with_jit=True, without_jit=True)
  def test_softmax_vjp_without_jacobian(self):
    _, pullback = jax.vjp(primitives.softmax, self.x)
    got = self.variant(primitives.softmax_vjp)(self.x, self.v)
    _assert_close(got, pullback(self.v)[0])

  def test_softmax_batched(self):
    x = jnp.stack([self.x, -self.x])  # [2, 6]
    v = jnp.stack([self.v, self.v])
    _assert_close(
      primitives.softmax_jacobian(x),
      jax.vmap(jax.jacrev(primitives.softmax))(x),
    )
    _assert_close(
      primitives.softmax_vjp(x, v),
      jax.vjp(primitives.softmax, x)[1](v)[0],
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_logsumexp_grad(self):
    got = self.variant(primitives.logsumexp_grad)(self.x)
    _assert_close(got, jax.grad(primitives.logsumexp)(self.x))
    _assert_close(
      primitives.logsumexp(self.x), jax.scipy.special.logsumexp(self.x)
    )

  def test_logsumexp_at_edge_points(self):
    x = jnp.asarray([1e4, -1e4, 0.0, 1e4], jnp.float64)
    _assert_close(
      primitives.logsumexp_grad(x), jax.grad(primitives.logsumexp)(x)
    )
    _assert_close(primitives.logsumexp(x), 1e4 + np.log(2.0))


class AffineTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    kx, kw, kb, kc = jax.random.split(jax.random.key(4), 4)
    self.x = jax.random.normal(kx, (4, 3), jnp.float64)  # [batch, in]
    self.w = jax.random.normal(kw, (2, 3), jnp.float64)  # [out, in]
    self.b = jax.random.normal(kb, (2,), jnp.float64)
    self.ct = jax.random.normal(kc, (4, 2), jnp.float64)

  def test_value(self):
    _assert_close(
      primitives.affine(self.x, self.w, self.b),
      jnp.einsum("oi,ni->no", self.w, self.x) + self.b,
    )

  def test_jacobians(self):
    got = primitives.affine_jacobians(self.x[0], self.w, self.b)
    expected = jax.jacrev(primitives.affine, argnums=(0, 1, 2))(
      self.x[0], self.w, self.b
    )
    for g, e in zip(got, expected, strict=True):
      _assert_close(g, e)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vjp_batched(self):
    got = self.variant(primitives.affine_vjp)(self.x, self.w, self.b, self.ct)
    _, pullback = jax.vjp(primitives.affine, self.x, self.w, self.b)
    for g, e in zip(got, pullback(self.ct), strict=True):
      _assert_close(g, e)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r"w must be \[out, in\]"):
      primitives.affine(self.x, self.w[0], self.b)
    with self.assertRaisesRegex(ValueError, "in = w.shape"):
      primitives.affine(self.x[:, :2], self.w, self.b)
    with self.assertRaisesRegex(ValueError, r"b must be \[out\]"):
      primitives.affine(self.x, self.w, self.b[:1])
    with self.assertRaisesRegex(ValueError, "cotangent must be"):
      primitives.affine_vjp(self.x, self.w, self.b, self.ct[:, :1])
    with self.assertRaisesRegex(ValueError, r"x must be \[in\]"):
      primitives.affine_jacobians(self.x, self.w, self.b)


class LossesTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
    self.pred = jax.random.normal(k1, (4, 3), jnp.float64)
    self.target = jax.random.normal(k2, (4, 3), jnp.float64)
    self.soft = jax.nn.softmax(jax.random.normal(k3, (4, 3), jnp.float64))

  @chex.variants(with_jit=True, without_jit=True)
  def test_mse_grads(self):
    got = self.variant(primitives.mean_squared_error_grads)(
      self.pred, self.target
    )
    expected = jax.grad(primitives.mean_squared_error, argnums=(0, 1))(
      self.pred, self.target
    )
    _assert_close(got.predictions, expected[0])
    _assert_close(got.targets, expected[1])

  def test_mse_bad_input(self):
    with self.assertRaisesRegex(
      ValueError, "mean_squared_error: shapes differ"
    ):
      primitives.mean_squared_error(self.pred, self.target[:, :2])
    with self.assertRaisesRegex(ValueError, "shapes differ"):
      primitives.mean_squared_error_grads(self.pred, self.target.T)
    with self.assertRaisesRegex(ValueError, "empty"):
      primitives.mean_squared_error(jnp.zeros((0,)), jnp.zeros((0,)))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("one_hot", True), ("soft", False))
  def test_cross_entropy_grads(self, one_hot):
    labels = (
      jax.nn.one_hot(jnp.asarray([0, 2, 1, 2]), 3, dtype=jnp.float64)
      if one_hot
      else self.soft
    )
    got = self.variant(primitives.softmax_cross_entropy_grads)(
      self.pred * 5.0, labels
    )

    def total(logits, lab):
      return jnp.sum(primitives.softmax_cross_entropy(logits, lab))

    expected = jax.grad(total, argnums=(0, 1))(self.pred * 5.0, labels)
    _assert_close(got.logits, expected[0])
    _assert_close(got.labels, expected[1])

  def test_cross_entropy_unnormalised_labels(self):
    # The general formula s * sum(p) - p also holds off the simplex.
    labels = 2.0 * self.soft
    got = primitives.softmax_cross_entropy_grads(self.pred, labels)
    expected = jax.grad(
      lambda z: jnp.sum(primitives.softmax_cross_entropy(z, labels))
    )(self.pred)
    _assert_close(got.logits, expected)

  def test_cross_entropy_matches_reference_value(self):
    labels = jax.nn.one_hot(jnp.asarray([0, 2, 1, 2]), 3, dtype=jnp.float64)
    expected = -jnp.sum(labels * jax.nn.log_softmax(self.pred), axis=-1)
    _assert_close(primitives.softmax_cross_entropy(self.pred, labels), expected)

  def test_cross_entropy_bad_input(self):
    with self.assertRaisesRegex(ValueError, "softmax_cross_entropy: shapes"):
      primitives.softmax_cross_entropy(self.pred, self.soft[:, :2])
    with self.assertRaisesRegex(ValueError, "shapes differ"):
      primitives.softmax_cross_entropy_grads(self.pred, self.soft[:2])


class NormalLogProbTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_grads_match_autodiff(self):
    k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
    x = jax.random.normal(k1, (7,), jnp.float64) * 2.0
    loc = jax.random.normal(k2, (7,), jnp.float64)
    scale = jnp.exp(jax.random.normal(k3, (7,), jnp.float64))
    got = self.variant(primitives.normal_log_prob_grads)(x, loc, scale)
    dx, dloc, dscale = jax.vmap(
      jax.grad(primitives.normal_log_prob, argnums=(0, 1, 2))
    )(x, loc, scale)
    _assert_close(got.x, dx)
    _assert_close(got.loc, dloc)
    _assert_close(got.scale, dscale)
    d_log_scale = jax.vmap(
      jax.grad(lambda a, m, s: primitives.normal_log_prob(a, m, jnp.exp(s)), 2)
    )(x, loc, jnp.log(scale))
    _assert_close(got.log_scale, d_log_scale)

  def test_value_matches_scipy_reference(self):
    x = jnp.asarray([-1.0, 0.0, 2.5], jnp.float64)
    _assert_close(
      primitives.normal_log_prob(x, 0.5, 1.5),
      jax.scipy.stats.norm.logpdf(x, 0.5, 1.5),
    )

  def test_broadcasts(self):
    got = primitives.normal_log_prob_grads(jnp.zeros((3, 2)), 1.0, 2.0)
    for leaf in got:
      self.assertEqual(leaf.shape, (3, 2))


class RegistryTest(parameterized.TestCase):
  @parameterized.parameters(*_ALL)
  def test_lookup(self, name):
    prim = primitives.get_primitive(name)
    self.assertEqual(prim.name, name)
    self.assertIsInstance(prim, primitives.Primitive)

  def test_unknown_name_lists_known_ones(self):
    with self.assertRaisesRegex(
      ValueError, r"Unknown primitive 'tanhh'; known primitives: .*tanh"
    ):
      primitives.get_primitive("tanhh")
    with self.assertRaisesRegex(ValueError, "Unknown primitive 3"):
      primitives.get_primitive(3)

  def test_registry_is_read_only(self):
    with self.assertRaises(TypeError):
      primitives.PRIMITIVES["exp"] = primitives.PRIMITIVES["log"]

  def test_covers_the_spec(self):
    for name in ("exp", "log", "sin", "cos", "tanh", "sigmoid", "softplus"):
      self.assertIn(name, primitives.PRIMITIVES)
    for name in ("relu", "square", "sqrt", "softmax", "logsumexp"):
      self.assertIn(name, primitives.PRIMITIVES)


if __name__ == "__main__":
  absltest.main()
