"""Tests for the example problems of `experiments/compare/` and their exact
gradients (experiments/configs/compare_problems.py, issue 16)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from experiments.configs import compare_problems as problems
from experiments.logistic_regression import data as logistic_data

_PROBLEMS = ("gaussian_quadratic", "logistic_elbo", "bernoulli_latent")


def _leaf(path):
  return path.strip("[]'\"")


def _z_scores(stats, reference):
  """Per leaf, (mean - exact) / stderr from the comparison's own fields."""
  return {
    _leaf(s.leaf): (np.asarray(s.mean) - np.ravel(reference[_leaf(s.leaf)]))
    / np.asarray(s.stderr)
    for s in stats.leaves
  }


class ProblemsBuildTest(parameterized.TestCase):
  @parameterized.parameters(*_PROBLEMS)
  def test_cost_is_a_finite_scalar_and_gradient_like_params(self, name):
    # The cost's vmap over draws is exercised by rgrad.compare below.
    function, params, dist_builder = getattr(problems, name)()
    draw = dist_builder(params).sample(jax.random.key(0))
    value = jax.jit(function)(draw)
    self.assertEqual(value.shape, ())
    self.assertTrue(np.isfinite(value))
    # Shapes only (the values are checked below).
    gradient = jax.eval_shape(getattr(problems, name + "_gradient"), params)
    self.assertEqual(jax.tree.structure(gradient), jax.tree.structure(params))
    for g, p in zip(
      jax.tree.leaves(gradient), jax.tree.leaves(params), strict=True
    ):
      self.assertEqual((g.shape, g.dtype), (p.shape, p.dtype))


class ExactGradientsTest(parameterized.TestCase):
  """Each exact gradient against an independent computation, float64."""

  @parameterized.parameters(100, 7)
  def test_gaussian_quadratic_by_sigma_points(self, dim):
    # The 2d sigma points mu +- sqrt(d) sigma_j e_j (weights 1/2d) have the
    # mean and covariance of N(mu, diag sigma^2), so their average of a
    # quadratic is its exact expectation as a function of (mu, sigma):
    # jax.grad of it is the exact gradient, with no closed form shared.
    function, params, _ = problems.gaussian_quadratic(dim)
    params = {
      "loc": params["loc"] * jnp.linspace(-1.0, 2.0, dim),
      "scale": params["scale"] * jnp.linspace(0.5, 1.5, dim),
    }

    def expectation(p):
      offsets = math.sqrt(dim) * jnp.diag(p["scale"])  # [d, d]
      points = jnp.concatenate([p["loc"] + offsets, p["loc"] - offsets])
      return jnp.mean(jax.vmap(function)(points))

    want = jax.jit(jax.grad(expectation))(params)
    got = problems.gaussian_quadratic_gradient(params)
    for leaf in ("loc", "scale"):
      np.testing.assert_allclose(got[leaf], want[leaf], rtol=1e-10, atol=0)

  def test_logistic_elbo_by_grad_of_the_quadrature_value(self):
    # jax.grad of the quadrature value (rgrad.exact) plus the closed-form
    # prior term, against the function's hand-written gradients.
    _, params, _ = problems.logistic_elbo()
    split = logistic_data.load_breast_cancer()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)

    def expectation(p):
      value, _ = rgrad.exact.logistic_expected_log_likelihood(
        p["loc"], p["log_scale"], x, y
      )
      prior = -0.5 * jnp.sum(p["loc"] ** 2 + jnp.exp(2 * p["log_scale"]))
      return value + prior

    want = jax.jit(jax.grad(expectation))(params)
    got = jax.jit(problems.logistic_elbo_gradient)(params)
    for leaf in ("loc", "log_scale"):
      scale = np.max(np.abs(want[leaf]))
      np.testing.assert_allclose(got[leaf], want[leaf], atol=1e-10 * scale)

  @parameterized.parameters(10, 3)
  def test_bernoulli_latent_by_enumeration(self, dim):
    function, params, _ = problems.bernoulli_latent(dim)
    # rgrad.exact sums over the 2^d states (no closed form shared).
    value, want = rgrad.exact.bernoulli_expectation(function, params["logits"])
    got = problems.bernoulli_latent_gradient(params)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)

    def expectation(eta):
      # On the cube f is multilinear of degree 2: f(b) = f(0) + sum_j l_j b_j
      # + sum_{j<k} c_jk b_j b_k, read off f at the vertices 0, e_j and
      # e_j + e_k (not from the problem's constants); under independence
      # E f = f(0) + p.l + p^T W p with W = c / 2, zero diagonal.
      p = jax.nn.sigmoid(eta)
      f0 = function(jnp.zeros(dim))
      linear = jax.vmap(function)(jnp.eye(dim)) - f0
      pairs = jax.vmap(jax.vmap(function))(
        jnp.eye(dim)[:, None, :] + jnp.eye(dim)[None, :, :]
      )
      w = 0.5 * (pairs - linear[:, None] - linear[None, :] - f0)
      w = w * (1.0 - jnp.eye(dim))
      return f0 + p @ linear + p @ (w @ p)

    value_and_grad = jax.jit(jax.value_and_grad(expectation))
    closed_value, closed_grad = value_and_grad(params["logits"])
    np.testing.assert_allclose(closed_value, value, rtol=1e-12)
    np.testing.assert_allclose(closed_grad, got, rtol=1e-10, atol=1e-14)


@pytest.mark.slow
class CompareOnProblemsTest(parameterized.TestCase):
  """rgrad.compare on each problem, its means against the exact gradient.

  One estimator per problem (each costs two compiles; compile time, not the
  sample size, dominates), at sizes chosen for the power stated below.
  Every check is on all coordinates at 5 SE: over at most 200 coordinates
  a false alarm has probability < 1.2e-4.
  """

  def _compare(self, name, estimator, num_samples, chunk_size):
    function, params, dist_builder = getattr(problems, name)()
    reference = getattr(problems, name + "_gradient")(params)
    result = rgrad.compare(
      function,
      params,
      dist_builder,
      jax.random.key(0),
      estimators=(estimator,),
      num_samples=num_samples,
      chunk_size=chunk_size,
      reference=reference,
      num_timing_repeats=1,
    )
    (stats,) = result.estimators
    self.assertEqual(stats.name, estimator)
    self.assertEqual(stats.num_nonfinite, 0)
    for field in ("trace_variance", "snr", "seconds_per_sample"):
      self.assertTrue(math.isfinite(getattr(stats, field)), field)
    self.assertGreater(stats.seconds_per_sample, 0.0)
    self.assertIn(estimator, result.table())
    z = _z_scores(stats, reference)
    self.assertAlmostEqual(
      stats.max_abs_bias_z, max(np.max(np.abs(v)) for v in z.values())
    )
    return stats, z

  def test_gaussian_quadratic_pathwise(self):
    # Through the moments engine alone (one compile; rgrad.compare on this
    # problem is run by tests/compare_experiment_test.py). Pathwise at
    # n = 10^5: one row's variance is 3.1 to 5.3 (loc) and 185 to 725
    # (scale), so 5 SE is at most 0.036 in loc (0.3% of |g| >= 13.9) and
    # 0.43 in scale (43% of g = 1): the scale is weakly checked here, and
    # exactly by the sigma points above.
    function, params, dist_builder = problems.gaussian_quadratic()
    reference = problems.gaussian_quadratic_gradient(params)
    m = rgrad.gradient_moments(
      "pathwise",
      function,
      params,
      dist_builder,
      jax.random.key(0),
      100_000,
      chunk_size=10_000,
    )
    for leaf in ("loc", "scale"):
      z = (m.mean[leaf] - reference[leaf]) / m.stderr[leaf]
      self.assertLess(np.max(np.abs(z)), 5.0, leaf)

  def test_logistic_elbo_pathwise(self):
    # Pathwise at n = 5 * 10^4: one row's variance is 17 to 136 (loc) and
    # 3.6 to 37 (log_scale), so 5 SE is at most 0.26 in loc (|g| up to 3.5;
    # the prior's -mu, up to 1.3, would be seen) and 0.14 in log_scale (8%
    # to 15% of |g|, 0.89 to 1.65).
    _, z = self._compare("logistic_elbo", "pathwise", 50_000, 5_000)
    for leaf, values in z.items():
      self.assertLess(np.max(np.abs(values)), 5.0, leaf)

  def test_bernoulli_latent_disarm(self):
    # DisARM (antithetic pairs: the SE is of pair means) at n = 2 * 10^5
    # rows: one row's effective variance is 0.27 to 0.59 per coordinate
    # (rgrad.exact.bernoulli_estimator_moments agrees), so 5 SE is at most
    # 0.0086, 2% of the largest |g| (0.40) and 11% of the median (0.078).
    _, z = self._compare("bernoulli_latent", "disarm", 200_000, 10_000)
    self.assertLess(np.max(np.abs(z["logits"])), 5.0)


if __name__ == "__main__":
  absltest.main()
