"""Tests for rgrad.chain_rule: compositions against jax autodiff."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import chain_rule
from rgrad import primitives

_TOL = 1e-10

# Hand-picked chains, outermost first: scalar and vector, short and long, with
# the vector primitives in the middle and at the end.
_CHAINS = (
  ("f_of_g", ("sin", "exp")),
  ("log_softmax", ("log", "softmax")),
  ("after_reduction", ("sigmoid", "square", "logsumexp", "cos")),
  (
    "long",
    ("softplus", "tanh", "sin", "sqrt", "exp", "sigmoid", "relu", "cos"),
  ),
  ("softmax_twice", ("cube", "softmax", "softmax", "reciprocal", "exp")),
)


def _assert_close(actual, expected, tol=_TOL):
  actual, expected = np.asarray(actual), np.asarray(expected)
  np.testing.assert_equal(actual.shape, expected.shape)
  assert np.all(np.isfinite(actual)) and np.all(np.isfinite(expected))
  np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


class SeedExampleTest(absltest.TestCase):
  def test_car_is_eight_times_the_walker(self):
    value, derivative = chain_rule.car_bike_walker(3.0)
    self.assertEqual(float(value), 24.0)
    self.assertEqual(float(derivative), 8.0)
    self.assertEqual(float(jax.grad(lambda x: 2.0 * (4.0 * x))(3.0)), 8.0)

  def test_jacobian_product_of_scalars(self):
    self.assertEqual(float(chain_rule.jacobian_product(2.0, 4.0, ())), 8.0)


class ChainTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    kx, kt, kv = jax.random.split(jax.random.key(0), 3)
    # Inputs in (0.1, 1.5): inside every domain of the chains above.
    self.x = jax.random.uniform(kx, (5,), jnp.float64, 0.1, 1.5)
    self.t = jax.random.normal(kt, (5,), jnp.float64)
    self.key_v = kv

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_CHAINS)
  def test_forward_mode(self, names):
    chain = chain_rule.compose(*names)
    fn = lambda x: chain_rule.chain_value(chain, x)
    y, jvp = self.variant(lambda x, t: chain_rule.chain_jvp(chain, x, t))(
      self.x, self.t
    )
    y_ref, jvp_ref = jax.jvp(fn, (self.x,), (self.t,))
    _assert_close(y, y_ref)
    _assert_close(jvp, jvp_ref)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_CHAINS)
  def test_reverse_mode(self, names):
    chain = chain_rule.compose(*names)
    fn = lambda x: chain_rule.chain_value(chain, x)
    y_ref, pullback_ref = jax.vjp(fn, self.x)
    v = jax.random.normal(self.key_v, y_ref.shape, jnp.float64)

    def value_and_vjp(x, v):
      y, pullback = chain_rule.chain_vjp(chain, x)
      return y, pullback(v)

    y, vjp = self.variant(value_and_vjp)(self.x, v)
    _assert_close(y, y_ref)
    _assert_close(vjp, pullback_ref(v)[0])

  @parameterized.named_parameters(*_CHAINS)
  def test_full_jacobian(self, names):
    chain = chain_rule.compose(*names)
    fn = lambda x: chain_rule.chain_value(chain, x)
    y, jac = chain_rule.chain_jacobian(chain, self.x)
    _assert_close(y, fn(self.x))
    _assert_close(jac, jax.jacfwd(fn)(self.x))
    _assert_close(jac, jax.jacrev(fn)(self.x))

  @chex.variants(with_jit=True, without_jit=True)
  def test_scalar_chain_grad(self):
    chain = chain_rule.compose("log", "softplus", "sin", "exp")
    x = jnp.asarray(0.7, jnp.float64)
    y, g = self.variant(lambda x: chain_rule.chain_grad(chain, x))(x)
    fn = lambda x: chain_rule.chain_value(chain, x)
    _assert_close(y, fn(x))
    _assert_close(g, jax.grad(fn)(x))
    _, jac = chain_rule.chain_jacobian(chain, x)
    _assert_close(jac, g)

  def test_vector_to_scalar_grad(self):
    chain = chain_rule.compose("logsumexp", "sin")
    _, g = chain_rule.chain_grad(chain, self.x)
    _assert_close(
      g, jax.grad(lambda x: chain_rule.chain_value(chain, x))(self.x)
    )

  def test_vmap_over_points(self):
    chain = chain_rule.compose("tanh", "exp", "sin")
    xs = jnp.linspace(-1.0, 1.0, 7, dtype=jnp.float64)
    _, g = jax.vmap(lambda x: chain_rule.chain_grad(chain, x))(xs)
    fn = lambda x: chain_rule.chain_value(chain, x)
    _assert_close(g, jax.vmap(jax.grad(fn))(xs))

  def test_accepts_primitive_objects(self):
    chain = chain_rule.compose(primitives.power_primitive(1.5), "exp")
    _, g = chain_rule.chain_grad(chain, 0.3)
    _assert_close(g, 1.5 * np.exp(0.3) ** 0.5 * np.exp(0.3))

  def test_composites_compose_again(self):
    inner = chain_rule.as_primitive(chain_rule.compose("sin", "exp"))
    outer_vec = chain_rule.as_primitive(chain_rule.compose("softmax", "tanh"))
    chain = chain_rule.compose("logsumexp", outer_vec, inner)
    fn = lambda x: jnp.log(
      jnp.sum(jnp.exp(jax.nn.softmax(jnp.tanh(jnp.sin(jnp.exp(x))))))
    )
    _, g = chain_rule.chain_grad(chain, self.x)
    _assert_close(chain_rule.chain_value(chain, self.x), fn(self.x))
    _assert_close(g, jax.grad(fn)(self.x))
    _assert_close(
      inner.derivative(self.x), jax.vmap(jax.grad(inner.fn))(self.x)
    )
    _, jac = chain_rule.chain_jacobian(chain, self.x)
    _assert_close(jac, g)

  def test_jacobian_product_contracts_the_intermediate(self):
    a = jnp.arange(6.0).reshape(2, 3)  # df/dg, f in R^2, g in R^3
    b = jnp.arange(12.0).reshape(3, 4)  # dg/dx, x in R^4
    _assert_close(chain_rule.jacobian_product(a, b, (3,)), a @ b)
    # [n] x [m] with a scalar g is an outer product, with a vector g a dot.
    u, v = jnp.arange(3.0), jnp.arange(3.0) + 1.0
    _assert_close(chain_rule.jacobian_product(u, v, ()), jnp.outer(u, v))
    _assert_close(chain_rule.jacobian_product(u, v, (3,)), u @ v)


class SampleChainTest(absltest.TestCase):
  def test_random_chains_match_autodiff(self):
    # Chains of depth 6 drawn from the whole registry, inputs in [-2, 2].
    for i in range(3):
      chain = chain_rule.sample_chain(jax.random.key(i), depth=6, dim=3)
      x = jax.random.uniform(jax.random.key(100 + i), (3,), jnp.float64, -2, 2)
      fn = lambda x, chain=chain: chain_rule.chain_value(chain, x)
      _, jac = chain_rule.chain_jacobian(chain, x)
      _assert_close(jac, jax.jacrev(fn)(x))

  def test_deterministic_given_key(self):
    a = chain_rule.sample_chain(jax.random.key(3), depth=5)
    b = chain_rule.sample_chain(jax.random.key(3), depth=5)
    self.assertEqual(a.name, b.name)
    self.assertLen(a.primitives, 5)

  def test_respects_domains(self):
    # Only positive-domain primitives and exp: every chain must start with exp.
    chain = chain_rule.sample_chain(
      jax.random.key(0), 3, names=("log", "sqrt", "exp"), interval=(-1, 1)
    )
    self.assertEqual(chain.primitives[-1].name, "exp")

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "depth and dim must be >= 1"):
      chain_rule.sample_chain(jax.random.key(0), 0)
    with self.assertRaisesRegex(ValueError, "Unknown primitive 'nope'"):
      chain_rule.sample_chain(jax.random.key(0), 2, names=("nope",))
    with self.assertRaisesRegex(ValueError, "no primitive accepts inputs"):
      chain_rule.sample_chain(jax.random.key(0), 1, names=("log",))


class BadInputTest(absltest.TestCase):
  def test_unknown_name(self):
    with self.assertRaisesRegex(
      ValueError, "Unknown primitive 'expp'; known primitives: cos, cube"
    ):
      chain_rule.compose("sin", "expp")

  def test_empty_chain(self):
    with self.assertRaisesRegex(ValueError, "at least one primitive"):
      chain_rule.compose()

  def test_not_a_primitive(self):
    with self.assertRaisesRegex(TypeError, "expected a Primitive"):
      chain_rule.compose("sin", jnp.sin)
    with self.assertRaisesRegex(TypeError, "Expected a Chain"):
      chain_rule.chain_value(("sin",), 1.0)

  def test_vector_primitive_after_reduction(self):
    with self.assertRaisesRegex(ValueError, "'softmax' acts on vectors"):
      chain_rule.compose("softmax", "logsumexp")

  def test_shape_mismatches(self):
    chain = chain_rule.compose("sin", "exp")
    with self.assertRaisesRegex(ValueError, r"tangent shape \(2,\) differs"):
      chain_rule.chain_jvp(chain, jnp.ones(3), jnp.ones(2))
    _, pullback = chain_rule.chain_vjp(chain, jnp.ones(3))
    with self.assertRaisesRegex(ValueError, r"cotangent shape \(\) differs"):
      pullback(jnp.ones(()))
    with self.assertRaisesRegex(ValueError, "needs a scalar output"):
      chain_rule.chain_grad(chain, jnp.ones(3))
    with self.assertRaisesRegex(ValueError, "scalar or a vector"):
      chain_rule.chain_jacobian(chain, jnp.ones((2, 2)))
    with self.assertRaisesRegex(ValueError, "do not share the intermediate"):
      chain_rule.jacobian_product(jnp.ones((2, 3)), jnp.ones((4, 2)), (3,))


if __name__ == "__main__":
  absltest.main()
