"""Tests for the discrete distributions' noise and relaxations.

Bernoulli's uniform route (``u -> b = 1[u > sigmoid(-logits)]``), its
relaxed logits and their conditional draw given ``b`` (REBAR's
``p(z | b)``), the concrete relaxations at small temperature, and
OneHotCategorical's score. The reference laws are written with NumPy and
SciPy, sharing no code with rgrad.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from scipy import stats

import rgrad
from rgrad import distributions
from tests import power

_LOGITS = np.array([-2.0, -0.3, 0.0, 0.8, 3.0])
_N = 2**14


def _logistic_cdf(z, loc):
  return 1.0 / (1.0 + np.exp(-(z - loc)))


@functools.cache
def _relaxation_draws():
  """One compiled program: b, z(u) and the conditional z~ at `_LOGITS`."""

  @jax.jit
  def draws(logits):
    dist = distributions.Bernoulli(logits)
    k_u, k_v, k_w = jax.random.split(jax.random.key(0), 3)
    b, u = dist.sample_with_noise(k_u, (_N,))
    v = jax.random.uniform(k_v, (_N,) + logits.shape, minval=1e-300)
    # z~ given b drawn from the model (mixture over b) and given forced
    # values b = 1, b = 0 everywhere (the two conditional laws).
    z_tilde = dist.conditional_relaxed_logits(b, v)
    w = jax.random.uniform(k_w, (_N,) + logits.shape, minval=1e-300)
    ones = jnp.ones_like(b)
    return {
      "b": b,
      "u": u,
      "z": dist.relaxed_logits(u),
      "z_tilde": z_tilde,
      "z_given_1": dist.conditional_relaxed_logits(ones, w),
      "z_given_0": dist.conditional_relaxed_logits(0.0 * ones, w),
    }

  return jax.tree.map(np.asarray, draws(jnp.asarray(_LOGITS)))


class BernoulliNoiseTest(parameterized.TestCase):
  def test_draw_is_step_of_relaxed_logits(self):
    out = _relaxation_draws()
    np.testing.assert_array_equal(out["b"], out["z"] > 0)
    self.assertTrue(np.all((out["u"] > 0) & (out["u"] < 1)))
    self.assertTrue(np.all(np.isfinite(out["z"])))

  def test_frequencies(self):
    # 5 SE of a frequency at n = 2^14: <= 5 * 0.5 / 128 = 0.02 absolute.
    b = _relaxation_draws()["b"]
    p = 1.0 / (1.0 + np.exp(-_LOGITS))
    stderr = np.sqrt(p * (1 - p) / _N)
    power.assert_unbiased(b.mean(0), stderr, p, what="Bernoulli frequency")

  def test_relaxed_logits_are_logistic(self):
    # KS at alpha = 1e-4 on n = 2^14: critical D = sqrt(ln(2e4) / 2n) =
    # 0.0174; the empirical CDF's SD is <= 0.5 / sqrt(n) = 0.0039, so a law
    # whose CDF is off by 0.03 anywhere is rejected with probability
    # > 0.9995 (3.3 SD above the critical value).
    z = _relaxation_draws()["z"]
    for i, eta in enumerate(_LOGITS):
      result = stats.kstest(z[:, i], lambda t, eta=eta: _logistic_cdf(t, eta))
      self.assertGreater(result.pvalue, 1e-4, f"logit {eta}")

  def test_conditional_matches_its_draw(self):
    out = _relaxation_draws()
    np.testing.assert_array_equal(out["z_tilde"] > 0, out["b"] > 0.5)
    self.assertTrue(np.all(out["z_given_1"] > 0))
    self.assertTrue(np.all(out["z_given_0"] < 0))
    for key in ("z_tilde", "z_given_1", "z_given_0"):
      self.assertTrue(np.all(np.isfinite(out[key])), key)

  def test_conditional_laws(self):
    """z~ | b is the logistic law truncated to the side of b; mixed, logistic.

    Same KS power as above (n = 2^14 per law and logit, alpha = 1e-4): a CDF
    off by 0.03 anywhere is rejected with probability > 0.9995.
    """
    out = _relaxation_draws()
    for i, eta in enumerate(_LOGITS):
      f0 = _logistic_cdf(0.0, eta)  # P(z < 0) = P(b = 0)
      laws = {
        "z_tilde": lambda t, eta=eta: _logistic_cdf(t, eta),
        "z_given_1": lambda t, eta=eta, f0=f0: np.clip(
          (_logistic_cdf(t, eta) - f0) / (1 - f0), 0, 1
        ),
        "z_given_0": lambda t, eta=eta, f0=f0: np.clip(
          _logistic_cdf(t, eta) / f0, 0, 1
        ),
      }
      for key, cdf in laws.items():
        result = stats.kstest(out[key][:, i], cdf)
        self.assertGreater(result.pvalue, 1e-4, f"{key}, logit {eta}")

  def test_conditional_against_naive_formula_and_gradient(self):
    """The log1p form equals eta + logit(u') and differentiates through p."""
    eta = np.array([-1.5, 0.4, 2.0, -0.2])
    b = np.array([1.0, 0.0, 1.0, 0.0])
    v = np.array([0.3, 0.9, 0.05, 0.5])

    def naive(eta):
      p = 1.0 / (1.0 + np.exp(-eta))
      u = np.where(b > 0.5, (1 - p) + v * p, v * (1 - p))
      return eta + np.log(u) - np.log(1 - u)

    dist = distributions.Bernoulli(eta)
    np.testing.assert_allclose(
      dist.conditional_relaxed_logits(b, v), naive(eta), rtol=1e-12
    )
    # Central differences of the NumPy formula, coordinatewise (the map is
    # diagonal): step 1e-6 gives ~1e-9 accuracy.
    h = 1e-6
    numeric = (naive(eta + h) - naive(eta - h)) / (2 * h)
    auto = jax.grad(
      lambda e: (
        distributions.Bernoulli(e).conditional_relaxed_logits(b, v).sum()
      )
    )(jnp.asarray(eta))
    np.testing.assert_allclose(auto, numeric, rtol=1e-7)
    # The unconditional relaxed logits move one-for-one with eta.
    grad_z = jax.grad(
      lambda e: distributions.Bernoulli(e).relaxed_logits(v).sum()
    )
    np.testing.assert_array_equal(grad_z(jnp.asarray(eta)), np.ones(4))

  def test_relaxed_sample_and_its_gradient(self):
    out = _relaxation_draws()
    u, b, z = out["u"][:64], out["b"][:64], out["z"][:64]
    dist = distributions.Bernoulli(_LOGITS)
    for tau in (0.5, 2.0):
      s = 1.0 / (1.0 + np.exp(-z / tau))
      np.testing.assert_allclose(dist.relaxed_sample(u, tau), s, rtol=1e-12)
      # d sigma(z / tau) / d eta = sigma (1 - sigma) / tau.
      grad = jax.grad(
        lambda e, tau=tau: (
          distributions.Bernoulli(e).relaxed_sample(u, tau).sum()
        )
      )(jnp.asarray(_LOGITS))
      np.testing.assert_allclose(grad, (s * (1 - s) / tau).sum(0), rtol=1e-10)
    # tau -> 0: the relaxed sample tends to the draw, |sigma(z/tau) - H(z)|
    # = sigma(-|z|/tau) <= e^{-|z|/tau}; at tau = 1e-3 that is < 1e-20 for
    # |z| > 0.05, and every draw is within 0.5.
    u, b, z = out["u"], out["b"], out["z"]
    relaxed = np.asarray(dist.relaxed_sample(u, 1e-3))
    error = np.abs(relaxed - b)
    self.assertLess(error[np.abs(z) > 0.05].max(), 1e-20)
    self.assertLessEqual(error.max(), 0.5)

  def test_sample_from_uniform_is_the_antithetic_map(self):
    dist = distributions.Bernoulli(_LOGITS)
    u = _relaxation_draws()["u"][:100]
    p = 1.0 / (1.0 + np.exp(-_LOGITS))
    np.testing.assert_array_equal(
      dist.sample_from_uniform(1 - u), (1 - u) > 1 - p
    )

  @parameterized.parameters(0.0, -1.0, np.inf, np.nan)
  def test_bad_temperature(self, tau):
    u = np.full(5, 0.5)
    with self.assertRaisesRegex(ValueError, "temperature must be positive"):
      distributions.Bernoulli(_LOGITS).relaxed_sample(u, tau)
    with self.assertRaisesRegex(ValueError, "temperature must be positive"):
      distributions.OneHotCategorical(_LOGITS).relaxed_sample(u, tau)

  def test_bad_noise_shapes(self):
    dist = distributions.Bernoulli(_LOGITS)
    with self.assertRaisesRegex(
      ValueError, r"u must have shape \[\.\.\., \*\[5\]\]"
    ):
      dist.relaxed_logits(np.full(4, 0.5))
    with self.assertRaisesRegex(ValueError, "b and v must have the same shape"):
      dist.conditional_relaxed_logits(np.ones(5), np.full((2, 5), 0.5))
    with self.assertRaisesRegex(ValueError, "temperature must be a scalar"):
      dist.relaxed_sample(np.full(5, 0.5), np.ones(5))


class OneHotCategoricalTest(absltest.TestCase):
  _LOGITS = np.array([[0.5, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])

  def test_draws_scores_and_relaxation(self):
    dist = distributions.OneHotCategorical(self._LOGITS)
    probs = np.exp(self._LOGITS) / np.exp(self._LOGITS).sum(-1, keepdims=True)

    @jax.jit
    def run(dist):
      x, g = dist.sample_with_noise(jax.random.key(2), (_N,))
      scores = dist.score_from_noise(g).logits
      return x, g, scores, dist.relaxed_sample(g, 1e-3)

    x, g, scores, relaxed = jax.tree.map(np.asarray, run(dist))
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    # Frequencies and score means (x - probs), 5 SE at n = 2^14: an absolute
    # error <= 5 * 0.5 / 128 = 0.02 is detected.
    stderr = np.sqrt(probs * (1 - probs) / _N)
    power.assert_unbiased(x.mean(0), stderr, probs, what="frequencies")
    power.assert_unbiased(scores.mean(0), stderr, 0.0, what="score mean")
    # tau -> 0: softmax((eta + g)/tau) -> the one-hot draw wherever the top
    # two perturbed logits are 0.05 apart (error <= (k - 1) e^{-50}).
    perturbed = np.sort(self._LOGITS + g, -1)
    gap = perturbed[..., -1] - perturbed[..., -2]
    error = np.abs(relaxed - x).max(-1)
    self.assertLess(error[gap > 0.05].max(), 1e-20)
    self.assertTrue(np.all(np.isfinite(relaxed)))

  def test_relaxed_gradient_is_softmax_jacobian(self):
    g = np.array([0.3, -0.2, 1.1, 0.0])
    eta = self._LOGITS[0]
    tau = 0.7
    weights = np.array([1.0, -2.0, 0.5, 3.0])
    s = np.exp((eta + g) / tau)
    s /= s.sum()
    # d (w . softmax(a / tau)) / d eta = s * (w - w . s) / tau.
    expected = s * (weights - weights @ s) / tau
    got = jax.grad(
      lambda e: (
        distributions.OneHotCategorical(e).relaxed_sample(g, tau) @ weights
      )
    )(jnp.asarray(eta))
    np.testing.assert_allclose(got, expected, rtol=1e-12)

  def test_capabilities(self):
    bernoulli = distributions.Bernoulli(_LOGITS)
    one_hot = distributions.OneHotCategorical(self._LOGITS)
    for cap in ("score", "log_prob", "relaxation"):
      for dist in (bernoulli, one_hot):
        methods = rgrad.CAPABILITIES[cap].methods
        self.assertTrue(all(callable(getattr(dist, m)) for m in methods))
    for cap in ("uniform_noise", "conditional_relaxation"):
      methods = rgrad.CAPABILITIES[cap].methods
      self.assertTrue(all(callable(getattr(bernoulli, m)) for m in methods))
      self.assertFalse(
        all(callable(getattr(one_hot, m, None)) for m in methods)
      )

  def test_bad_logits(self):
    with self.assertRaisesRegex(ValueError, "logits must have shape"):
      distributions.OneHotCategorical(1.0)
    with self.assertRaisesRegex(ValueError, "logits must be finite"):
      distributions.OneHotCategorical([0.0, -np.inf])
    dist = distributions.OneHotCategorical(self._LOGITS)
    with self.assertRaisesRegex(ValueError, "x must have shape"):
      dist.log_prob(np.zeros(4))


if __name__ == "__main__":
  absltest.main()
