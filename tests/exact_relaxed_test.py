"""Tests for rgrad.exact's relaxed references: concrete, straight-through,
REBAR and RELAX, by identities, refinement, limits and NumPy Monte Carlo
(the estimators written out in tests/discrete_reference.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import exact
from tests import discrete_reference as ref


class RelaxedMomentsTest(parameterized.TestCase):
  @parameterized.product(theta=(-3.0, 0.0, 1.7), tau=(0.05, 2 / 3, 4.0))
  def test_concrete_mean_is_the_relaxed_gradient(self, theta, tau):
    # The pathwise integrand against the score identity in z and against
    # finite differences of the relaxed value.
    cost = ref.toy(0.45)
    m = exact.bernoulli_estimator_moments(
      "concrete", cost, np.array([theta]), temperature=tau
    )
    value, grad = exact.relaxed_bernoulli_expectation(
      cost, np.array([theta]), temperature=tau
    )
    np.testing.assert_allclose(m.mean, grad, rtol=1e-10)
    h = 1e-5
    fd = (
      exact.relaxed_bernoulli_expectation(cost, theta + h, temperature=tau)[0]
      - exact.relaxed_bernoulli_expectation(cost, theta - h, temperature=tau)[0]
    ) / (2 * h)
    np.testing.assert_allclose(m.mean, [fd], rtol=1e-7)

  def test_quadrature_refinement(self):
    # Doubling twice (64 -> 256 panels) changes nothing beyond 1e-11, on the
    # toy at logits from -8 to 2.5 and temperatures from 0.01 to 10.
    grid = np.meshgrid(
      ref.TOY_TARGETS, (-8.0, 0.0, 2.5), (0.01, 0.5, 10.0), indexing="ij"
    )
    t, theta, tau = (jnp.ravel(x) for x in grid)

    def run(num_panels):
      def one(t, theta, tau):
        kw = {"temperature": tau, "num_panels": num_panels}
        return [
          ref.moments(e, ref.toy(t), theta[None], **kw)
          for e in ("concrete", "straight_through")
        ] + [exact.rebar_moments(ref.toy(t), theta, scale=0.8, **kw)]

      return jax.jit(jax.vmap(one))(t, theta, tau)

    for a, b in zip(run(64), run(256), strict=True):
      np.testing.assert_allclose(a.variance, b.variance, rtol=1e-11)
      np.testing.assert_allclose(
        a.mean, b.mean, rtol=1e-11, atol=1e-12 * np.sqrt(np.min(b.variance))
      )

  def test_concrete_at_low_temperature(self):
    # tau -> 0, with w = z / tau: mean = int f'(sigmoid w) sigmoid'(w)
    # rho(tau w - eta) dw = g + tau rho'(-eta) int_0^1 f'(y) logit(y) dy +
    # O(tau^2), and int 2 (y - t) logit(y) dy = 1, rho'(-eta) = p(1-p)(2p-1):
    # the bias is tau p (1-p)(2p-1) to first order. tau Var tends to
    # p (1-p) 4 int_0^1 (y - t)^2 y (1-y) dy = p (1-p)(1/5 - 2t/3 + 2t^2/3).
    t, theta = 0.45, 0.8
    p = ref.sigmoid(theta)
    grad = p * (1 - p) * (1 - 2 * t)
    slope = p * (1 - p) * (2 * p - 1)
    limit = p * (1 - p) * (0.2 - 2 * t / 3 + 2 * t**2 / 3)
    for tau, rtol in ((0.01, 2e-3), (0.001, 2e-4)):
      m = exact.bernoulli_estimator_moments(
        "concrete", ref.toy(t), np.array([theta]), temperature=tau
      )
      np.testing.assert_allclose((m.mean[0] - grad) / tau, slope, rtol=rtol)
      np.testing.assert_allclose(tau * m.variance[0], limit, rtol=rtol * 2)

  def test_rebar_is_unbiased(self):
    # For every scale and temperature (an identity that needs every term of
    # the written-out law); scale 0 is the score function.
    grid = np.meshgrid(
      ref.TOY_TARGETS,
      (-1.5, 0.0, 2.0),
      (0.1, 0.5, 2.0),
      (0.0, 0.5, 1.0),
      indexing="ij",
    )
    t, theta, tau, scale = (jnp.ravel(x) for x in grid)

    def one(t, theta, tau, scale):
      return exact.rebar_moments(
        ref.toy(t), theta, temperature=tau, scale=scale
      )

    m = jax.jit(jax.vmap(one))(t, theta, tau, scale)
    p = ref.sigmoid(theta)
    np.testing.assert_allclose(m.mean, p * (1 - p) * (1 - 2 * t), rtol=1e-10)
    sf = ref.toy_grid("score_function", t, theta)
    zero = scale == 0
    np.testing.assert_allclose(m.variance[zero], sf.variance[zero], rtol=1e-12)

  def test_relax_with_a_surrogate(self):
    c = lambda z: 0.3 * z + jnp.sin(z)
    f = lambda x: jnp.cos(2.0 * x) + x
    logits = np.array([0.3, -1.0, 2.2])
    m = exact.relax_moments(f, logits, c, additive=True)
    _, grad = exact.bernoulli_expectation(lambda b: jnp.sum(f(b)), logits)
    np.testing.assert_allclose(m.mean, grad, rtol=1e-10)
    # REBAR is RELAX with c(z) = scale f(sigmoid(z / tau)).
    rebar = exact.rebar_moments(
      f, logits, temperature=0.3, scale=0.7, additive=True
    )
    relax = exact.relax_moments(
      f,
      logits,
      lambda z: 0.7 * f(jax.nn.sigmoid(z / 0.3)),
      additive=True,
      resolution=0.3,
    )
    np.testing.assert_allclose(rebar.variance, relax.variance, rtol=1e-13)

  @pytest.mark.slow
  def test_relaxations_against_numpy_monte_carlo(self):
    # 2^20 draws per estimator; ref.check_mc asserts that 5 SE is at most the
    # stated share of |mean| (concrete 5%, straight-through 3%, REBAR 4%)
    # and 3% of the variance.
    n, t, tau = 2**20, 0.45, 0.5
    rng = np.random.default_rng(2)
    theta = np.array([0.8])
    u = rng.uniform(size=(n, 1))
    z = theta + ref.logit(u)
    y, b = ref.sigmoid(z / tau), (z > 0).astype(float)
    dy = y * (1 - y) / tau
    args = (ref.toy(t), theta)
    kw = {"temperature": tau}
    em = exact.bernoulli_estimator_moments
    ref.check_mc(2 * (y - t) * dy, em("concrete", *args, **kw), 0.05, 0.03, "c")
    ref.check_mc(
      2 * (b - t) * dy, em("straight_through", *args, **kw), 0.03, 0.03, "st"
    )
    f = lambda x: (x - t) ** 2
    df = lambda x: 2 * (x - t)
    g = ref.rebar_np(f, df, theta, 1.0, tau, n, 3)
    m = exact.rebar_moments(*args, temperature=tau, scale=1.0)
    ref.check_mc(g, m, 0.04, 0.03, "rebar")

  @pytest.mark.slow
  def test_additive_and_general_against_numpy_monte_carlo(self):
    # d = 3: additive concrete and REBAR/RELAX (the cross-coordinate
    # terms), and straight-through with the non-additive cost, 2^19 draws.
    # 5 SE of the mean <= (concrete 2%, straight-through 15%, REBAR 3%,
    # RELAX 11%) of the largest |mean|; of the variance <= 3%.
    n, tau = 2**19, 0.4
    logits = np.array([0.3, -1.0, 1.5])
    rng = np.random.default_rng(4)
    z = logits + ref.logit(rng.uniform(size=(n, 3)))
    y, b = ref.sigmoid(z / tau), (z > 0).astype(float)
    dy = y * (1 - y) / tau
    f = lambda x: np.cos(2.0 * x) + x
    df = lambda x: 1.0 - 2.0 * np.sin(2.0 * x)
    fj = lambda x: jnp.cos(2.0 * x) + x

    @jax.jit
    def references(x):
      kw = {"temperature": tau}
      return (
        ref.moments("concrete", fj, x, additive=True, **kw),
        ref.moments("straight_through", ref.general, x, **kw),
        exact.rebar_moments(fj, x, scale=0.6, additive=True, **kw),
        exact.relax_moments(
          fj, x, lambda z: 0.3 * z + jnp.sin(z), additive=True
        ),
      )

    concrete, straight_through, rebar, relax = references(logits)
    ref.check_mc(df(y) * dy, concrete, 0.02, 0.03, "concrete")
    grad_f = np.cos(1.0 + b @ ref.W)[:, None] * ref.W + 0.3 * np.stack(
      [b[:, 1] * b[:, 2], b[:, 0] * b[:, 2], b[:, 0] * b[:, 1]], 1
    )
    ref.check_mc(grad_f * dy, straight_through, 0.15, 0.03, "straight_through")
    g = ref.rebar_np(f, df, logits, 0.6, tau, n, 5)
    ref.check_mc(g, rebar, 0.03, 0.03, "rebar")
    c = (lambda x: 0.3 * x + np.sin(x), lambda x: 0.3 + np.cos(x))
    g = ref.rebar_np(f, df, logits, None, tau, n, 6, surrogate=c)
    m = relax
    ref.check_mc(g, m, 0.11, 0.03, "relax")


if __name__ == "__main__":
  absltest.main()
