"""Tests of rgrad.testing: the reference problems and the assertions.

The reference problems' closed forms are checked against rgrad.exact's
quadrature (an independent method) and against Stein's identity; the
assertions are checked to fail on wrong estimators, with tables naming the
coordinates, and calibrated over many seeds (slow): false alarms at the
nominal rate, and a 5%-biased estimator caught at >= 95% with the default
sizes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import exact
from rgrad import testing

_ONE_D = {
  "quadratic": lambda k: lambda x: (x - k) ** 2,
  "bump": lambda k: lambda x: jnp.exp(-k * x * x),
  "cosine": lambda k: lambda x: jnp.cos(k * x),
}


class ProblemsTest(parameterized.TestCase):
  @parameterized.product(cost=testing.COSTS, k=(0.5, 1.7))
  def test_closed_forms_match_quadrature(self, cost, k):
    loc, scale = np.array([0.4, -0.3, 1.1]), np.array([0.8, 1.2, 0.5])
    p = testing.gaussian_problem(cost, k, loc, scale)
    f = _ONE_D[cost](k)
    # 400 nodes: the bump's variance integrand at k sigma^2 = 2.4 needs more
    # than the default 100 (an error of 4e-6 there).
    for i in range(3):
      g = exact.exact_gradient(f, loc[i], scale[i], num_points=400)
      pv = exact.pathwise_variance(f, loc[i], scale[i], num_points=400)
      np.testing.assert_allclose(
        [p.gradient["loc"][i], p.gradient["scale"][i]], g, rtol=1e-9, atol=1e-12
      )
      np.testing.assert_allclose(
        [
          p.variances["pathwise"]["loc"][i],
          p.variances["pathwise"]["scale"][i],
        ],
        pv,
        rtol=1e-9,
        atol=1e-12,
      )
    # The d-dimensional score-function variance: the additive decomposition
    # by quadrature (equal coordinates, so that rgrad.exact applies).
    p3 = testing.gaussian_problem(cost, k, [0.4] * 3, [0.8] * 3)
    sv = exact.additive_score_function_variance(f, 0.4, 0.8, 3, num_points=400)
    np.testing.assert_allclose(
      [
        p3.variances["score_function"]["loc"][0],
        p3.variances["score_function"]["scale"][0],
      ],
      np.ravel(sv),
      rtol=1e-9,
    )

  @parameterized.parameters(*testing.COSTS)
  def test_gradient_is_the_derivative_of_the_value(self, cost):
    # The gradient (in score form) against central differences of the
    # closed-form value: Stein's identity, checked numerically.
    p = testing.gaussian_problem(cost, 0.9, [0.2, -0.7], [0.6, 1.3])
    eps = 1e-6
    for leaf in ("loc", "scale"):
      for i in range(2):
        up = {k: np.array(v) for k, v in p.params.items()}
        down = {k: np.array(v) for k, v in p.params.items()}
        up[leaf][i] += eps
        down[leaf][i] -= eps
        fd = (
          testing.gaussian_problem(cost, 0.9, up["loc"], up["scale"]).value
          - testing.gaussian_problem(
            cost, 0.9, down["loc"], down["scale"]
          ).value
        ) / (2 * eps)
        np.testing.assert_allclose(
          p.gradient[leaf][i], fd, rtol=1e-7, atol=1e-9
        )

  def test_bad_problems_name_the_argument(self):
    with self.assertRaisesRegex(ValueError, "cost must be one of"):
      testing.gaussian_problem("sine", 1.0, 0.0, 1.0)
    with self.assertRaisesRegex(ValueError, "scale must be positive"):
      testing.gaussian_problem("cosine", 1.0, [0.0], [-1.0])
    with self.assertRaisesRegex(ValueError, "loc must be finite"):
      testing.gaussian_problem("cosine", 1.0, [np.nan], [1.0])
    with self.assertRaisesRegex(ValueError, "objective"):
      testing.conjugate_gaussian_problem("elbo", [0.0], [0.0], [0.0])
    with self.assertRaisesRegex(ValueError, "d = 1"):
      testing.conjugate_gaussian_problem(
        "negative_iwae_bound", [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]
      )


_COSINE = testing.gaussian_problem("cosine", 1.0, [0.7, -0.8], [0.8, 0.6])


def _scaled_pathwise(factor):
  def estimator(function, params, dist_builder, key, num_samples):
    jac = rgrad.pathwise_jacobians(
      function, params, dist_builder, key, num_samples
    )
    return jax.tree.map(lambda j: factor * j, jac)

  return estimator


def _run(estimator, key, report=testing.unbiasedness_report, **kw):
  p = _COSINE
  return report(
    estimator, p.function, p.params, p.dist_builder, key, exact=p.gradient, **kw
  )


class AssertUnbiasedTest(absltest.TestCase):
  def test_passes_a_correct_estimator_and_states_its_power(self):
    r = testing.assert_unbiased(
      "pathwise",
      _COSINE.function,
      _COSINE.params,
      _COSINE.dist_builder,
      jax.random.key(0),
      exact=_COSINE.gradient,
      exact_variance=_COSINE.variances["pathwise"],
    )
    self.assertTrue(r.passed)
    self.assertLessEqual(r.max_detectable, 0.05 * 1.001)
    self.assertEqual(len(r.coordinates), 4)
    self.assertIn("['scale'][1]", r.table())

  def test_fails_a_5_percent_bias_with_a_table(self):
    with self.assertRaises(AssertionError) as raised:
      _run(_scaled_pathwise(1.05), jax.random.key(1), testing.assert_unbiased)
    message = str(raised.exception)
    self.assertIn("FAILED", message)
    self.assertIn("REJECTED", message)
    self.assertIn("['loc'][0]", message)

  def test_non_finite_estimates_fail(self):
    def nan_estimator(function, params, dist_builder, key, num_samples):
      jac = rgrad.pathwise_jacobians(
        function, params, dist_builder, key, num_samples
      )
      return jax.tree.map(lambda j: j.at[0].set(jnp.nan), jac)

    r = _run(nan_estimator, jax.random.key(2), num_samples=4096)
    self.assertFalse(r.passed)
    self.assertGreater(r.num_nonfinite, 0)

  def test_too_large_a_size_is_refused(self):
    with self.assertRaisesRegex(ValueError, "max_num_samples"):
      _run(
        "score_function",
        jax.random.key(3),
        detectable_bias=1e-4,
        exact_variance=_COSINE.variances["score_function"],
      )

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "false_alarm_rate"):
      _run("pathwise", jax.random.key(4), num_samples=64, false_alarm_rate=0)
    with self.assertRaisesRegex(ValueError, "exact must be a pytree"):
      testing.unbiasedness_report(
        "pathwise",
        _COSINE.function,
        _COSINE.params,
        _COSINE.dist_builder,
        jax.random.key(0),
        exact={"loc": _COSINE.gradient["loc"]},
        num_samples=64,
      )

  def test_variance(self):
    p = _COSINE
    kw = dict(num_samples=200_000, exact_variance=p.variances["pathwise"])
    r = testing.assert_variance(
      "pathwise", p.function, p.params, p.dist_builder, jax.random.key(5), **kw
    )
    self.assertTrue(r.passed)
    # The variance of a wrong (scaled by 1.1: variance x 1.21) estimator fails.
    with self.assertRaisesRegex(AssertionError, "REJECTED"):
      testing.assert_variance(
        _scaled_pathwise(1.1),
        p.function,
        p.params,
        p.dist_builder,
        jax.random.key(6),
        **kw,
      )


@pytest.mark.slow
class CalibrationTest(parameterized.TestCase):
  """Over many seeds: false alarms at the nominal rate, biases caught.

  Measured with the default sizes (from the exact variance, 5% detectable
  at power 0.95). Binomial errors: 400 seeds at alpha = 0.05 give a
  standard error of 1.1% on the false-alarm rate; the test allows 3 of
  them above nominal (Holm guarantees <= alpha; with nearly independent
  coordinates it is close to alpha).
  """

  @parameterized.parameters("pathwise", "antithetic_pathwise")
  def test_false_alarms_and_detection(self, name):
    seeds = 400
    variance = _COSINE.variances["pathwise"] if name == "pathwise" else None
    kw = dict(exact_variance=variance, pilot_num_samples=50_000)
    alarms_05 = [
      not _run(name, jax.random.key(s), false_alarm_rate=0.05, **kw).passed
      for s in range(seeds)
    ]
    alarms_default = [
      not _run(name, jax.random.key(10_000 + s), **kw).passed
      for s in range(seeds)
    ]
    spec = rgrad.get_estimator(name)
    mutant = spec._replace(
      fn=lambda *a: jax.tree.map(lambda j: 1.05 * j, spec.fn(*a))
    )
    caught = [
      not _run(mutant, jax.random.key(20_000 + s), **kw).passed
      for s in range(200)
    ]
    rate_05, rate_default = np.mean(alarms_05), np.mean(alarms_default)
    print(
      f"{name}: false alarms {rate_05:.4f} at alpha=0.05, {rate_default:.4f}"
      f" at 1e-3 ({seeds} seeds); 5% bias caught {np.mean(caught):.3f}"
    )
    self.assertLess(rate_05, 0.05 + 3 * np.sqrt(0.05 * 0.95 / seeds))
    # At alpha = 1e-3, 4 or more alarms in 400 has probability 8e-4.
    self.assertLessEqual(sum(alarms_default), 3)
    self.assertGreaterEqual(np.mean(caught), 0.95)


if __name__ == "__main__":
  absltest.main()
