"""Tests for the quadrature rules of rgrad.exact, to 1,000 nodes.

The Gauss--Hermite rule is computed by Golub--Welsch: NumPy's `hermgauss`
returns NaN weights from 375 nodes on, which made every exact reference NaN
(`exact_gradient(..., num_points=500)` among them). Here: the rule's own
properties (finite, non-negative, normalized, symmetric, exact moments), its
agreement with `hermgauss` where that is finite, exact references at many
nodes against closed forms, and the ValueError a non-finite reference raises.
"""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from experiments.estimator_variance import records
from rgrad import exact

_SIZES = (2, 3, 10, 100, 374, 375, 500, 1000)


def _double_factorial(m: int) -> int:
  """(2m - 1)!! = E[eps^(2m)] for eps ~ N(0, 1)."""
  return math.prod(range(2 * m - 1, 0, -2))


def _cosine_gradient(k, loc, scale):
  # E cos(kX) = cos(k mu) exp(-k^2 sigma^2 / 2) for X ~ N(mu, sigma^2).
  damp = math.exp(-0.5 * (k * scale) ** 2)
  return (
    -k * math.sin(k * loc) * damp,
    -(k**2) * scale * math.cos(k * loc) * damp,
  )


class NormalRuleTest(parameterized.TestCase):
  @parameterized.parameters(*_SIZES)
  def test_weights_are_a_probability_vector(self, n):
    nodes, weights = exact.normal_rule(n)
    self.assertEqual(nodes.shape, (n,))
    self.assertEqual(weights.shape, (n,))
    self.assertTrue(np.all(np.isfinite(nodes)))
    self.assertTrue(np.all(np.isfinite(weights)))
    self.assertTrue(np.all(weights >= 0.0))
    self.assertAlmostEqual(math.fsum(weights), 1.0, delta=1e-14)
    self.assertTrue(np.all(np.diff(nodes) > 0.0))
    # Symmetric: odd functions integrate to 0 exactly.
    np.testing.assert_array_equal(nodes, -nodes[::-1])
    np.testing.assert_array_equal(weights, weights[::-1])
    # The largest zero of He_n is below 2 sqrt(n) (and near it).
    self.assertLess(nodes[-1], 2.0 * math.sqrt(n))

  @parameterized.parameters(*_SIZES)
  def test_even_moments_are_exact(self, n):
    # Exact for degree < 2n: E eps^(2m) = (2m - 1)!! for m < n (m <= 20).
    nodes, weights = exact.normal_rule(n)
    for m in range(1, min(n, 21)):
      moment = math.fsum(weights * nodes ** (2 * m))
      self.assertAlmostEqual(
        moment / _double_factorial(m), 1.0, delta=1e-12, msg=f"m={m}"
      )

  @parameterized.parameters(5, 50, 200, 370)
  def test_matches_hermgauss_where_it_is_finite(self, n):
    t, w = np.polynomial.hermite.hermgauss(n)
    t, w = math.sqrt(2.0) * t, w / math.sqrt(math.pi)
    nodes, weights = exact.normal_rule(n)
    np.testing.assert_allclose(nodes, t, rtol=0, atol=1e-13)
    # Weights relative to themselves, down to 1e-290: a weight's relative
    # error is |x| times its node's absolute error, <= 40 * 1e-14.
    big = w > 1e-290
    np.testing.assert_allclose(weights[big], w[big], rtol=1e-11)
    np.testing.assert_allclose(weights[~big], w[~big], rtol=0, atol=1e-290)

  def test_rules_are_cached(self):
    self.assertIs(exact.normal_rule(400), exact.normal_rule(400))
    self.assertIs(exact.laguerre_rule(400), exact.laguerre_rule(400))

  def test_laguerre_rule_to_1000_nodes(self):
    # The Rayleigh rule combines both; the Laguerre half must hold too.
    nodes, weights = exact.laguerre_rule(1000)
    self.assertTrue(np.all(np.isfinite(nodes)) and np.all(weights >= 0.0))
    self.assertAlmostEqual(math.fsum(weights), 1.0, delta=1e-14)
    # int u^m e^{-u} du = m!.
    for m in range(1, 15):
      moment = math.fsum(weights * nodes**m)
      self.assertAlmostEqual(moment / math.factorial(m), 1.0, delta=1e-12)


class ManyNodesTest(parameterized.TestCase):
  @parameterized.parameters(375, 500, 1000)
  def test_exact_gradient_with_many_nodes(self, n):
    # Regression: with hermgauss's NaN weights this was NaN for n >= 375.
    # cos(kx) at k sigma = 2 converges long before 375 nodes; more nodes
    # must not change it beyond rounding.
    k, loc, scale = 1.3, 0.4, 1.5
    f = lambda x: jnp.cos(k * x)
    grad = exact.exact_gradient(f, loc, scale, num_points=n)
    expected = _cosine_gradient(k, loc, scale)
    np.testing.assert_allclose(grad.loc, expected[0], rtol=1e-12)
    np.testing.assert_allclose(grad.scale, expected[1], rtol=1e-12)

  def test_variances_with_many_nodes(self):
    # Each estimator's single-sample variance at 500 nodes equals its value
    # at 150 nodes (converged there for this cost), and the means equal
    # the closed-form gradient.
    k, loc, scale = 1.3, 0.4, 1.5
    f = lambda x: jnp.cos(k * x)
    expected = _cosine_gradient(k, loc, scale)
    for fn in (
      exact.pathwise_moments,
      exact.score_function_moments,
      exact.measure_valued_moments,
    ):
      n = 150 if fn is exact.measure_valued_moments else 500
      many = fn(f, loc, scale, num_points=n)
      few = fn(f, loc, scale, num_points=100)
      np.testing.assert_allclose(
        np.stack(many.mean), expected, rtol=1e-11, err_msg=fn.__name__
      )
      np.testing.assert_allclose(
        np.stack(many.variance),
        np.stack(few.variance),
        rtol=1e-11,
        err_msg=fn.__name__,
      )
    mean, variance = exact.cost_mean_and_variance(f, loc, scale, num_points=800)
    # Var cos(kX) = (1 + cos(2k mu) e^{-2 k^2 s^2}) / 2 - (E cos kX)^2.
    e1 = math.cos(k * loc) * math.exp(-0.5 * (k * scale) ** 2)
    e2 = 0.5 * (1 + math.cos(2 * k * loc) * math.exp(-2 * (k * scale) ** 2))
    np.testing.assert_allclose(mean, e1, rtol=1e-12)
    np.testing.assert_allclose(variance, e2 - e1**2, rtol=1e-11)


class NonFiniteReferenceTest(absltest.TestCase):
  def test_cost_that_overflows_at_the_nodes(self):
    # exp(4 x^2) has no finite moments under N(0, 1); at the outer nodes of
    # the 100-point rule (|x| up to 19, 4 x^2 > 709) it is inf, and the
    # reference would be inf or NaN.
    f = lambda x: jnp.exp(4.0 * x**2)
    for fn, name in (
      (exact.exact_gradient, "exact_gradient"),
      (exact.pathwise_variance, "pathwise_moments"),
      (exact.score_function_variance, "score_function_moments"),
      (exact.measure_valued_variance, "measure_valued_moments"),
    ):
      with self.assertRaisesRegex(
        ValueError,
        rf"{name}: the exact result is non-finite: .*; f'? is non-finite at "
        r"\d+ of \d+ "
        "quadrature nodes",
      ):
        fn(f, 0.0, 1.0)
    with self.assertRaisesRegex(
      ValueError, r"cost_mean_and_variance: .*non-finite: mean \(inf"
    ):
      exact.cost_mean_and_variance(f, 0.0, 1.0)

  def test_non_finite_loc_and_baseline_are_named(self):
    with self.assertRaisesRegex(
      ValueError, r"exact_gradient: .*non-finite: d/dmu \(nan.*loc is non-f"
    ):
      exact.exact_gradient(jnp.sin, jnp.nan, 1.0)
    with self.assertRaisesRegex(ValueError, "baseline is non-finite"):
      exact.score_function_variance(jnp.sin, 0.0, 1.0, baseline=jnp.inf)

  def test_overflowing_sum_with_finite_integrands(self):
    # Every f(x) is finite, but f^2 overflows: the variance is inf.
    with self.assertRaisesRegex(
      ValueError, r"non-finite: variance \(inf.*weighted sum overflowed"
    ):
      exact.cost_mean_and_variance(lambda x: 1e200 * x, 0.0, 1.0)

  def test_delta_method_names_a_non_finite_coefficient(self):
    with self.assertRaisesRegex(
      ValueError, "delta_method_variance: coefficient is non-finite"
    ):
      exact.delta_method_variance(jnp.sin, 0.0, 1.0, (jnp.nan, 1.0))

  def test_batch_reports_how_many_entries(self):
    with self.assertRaisesRegex(ValueError, r"nan at 1 of 3 entries"):
      exact.exact_gradient(jnp.sin, jnp.asarray([0.0, jnp.nan, 1.0]), 1.0)

  def test_under_jit_values_propagate(self):
    # Traced: no values to check; the NaN is returned, not masked.
    grad = jax.jit(lambda m: exact.exact_gradient(jnp.sin, m, 1.0))(jnp.nan)
    self.assertTrue(np.isnan(grad.loc))


class ExperimentMessageTest(parameterized.TestCase):
  # The estimator_variance experiment computes its references under jit
  # (where nothing can raise) and checks them per record; its message blamed
  # "too few exact_num_points", which makes a value inaccurate, not NaN.

  @parameterized.parameters(
    ("gradient", float("nan"), 1.0), ("variance", 0.5, float("inf"))
  )
  def test_non_finite_reference_is_not_blamed_on_too_few_points(
    self, what, exact_mean, exact_variance
  ):
    one = np.ones((1, 1))
    moments = types.SimpleNamespace(
      mean=one, variance=one, stderr=one, variance_stderr=one, num_samples=10
    )
    with self.assertRaisesRegex(
      ValueError, rf"non-finite exact {what} .* NaN or inf at some quadrature"
    ) as raised:
      records.record(moments, 0, exact_mean, exact_variance, cost="cos")
    self.assertNotIn("too few", str(raised.exception))


if __name__ == "__main__":
  absltest.main()
