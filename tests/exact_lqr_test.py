"""Tests for rgrad.exact's LQR references: Monte Carlo, identities, limits.

Every check here would catch a wrong reference: the cost against Monte
Carlo means of sampled rollouts (sized to detect a 1% error) and against the
exact mean of the rollout's total cost as a quadratic form in its standard
noise; the hand adjoint against ``jax.grad`` and central differences; and
the infinite-horizon closed forms (Fazel et al., 2018, Lemma 1, with noise)
against long discounted finite horizons, which share no code with them.
"""

import functools
import math
from typing import NamedTuple

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import diagnostics
from rgrad import exact
from rgrad import rl
from tests import lqr_reference as ref
from tests import power

_TOL = 1e-10
# Two-sided z-test at false-alarm rate 1e-3, power 0.95.
_Z_ALARM = 3.2905267314919255  # z_{1 - 0.001 / 2}
_Z_POWER = 1.6448536269514722  # z_{0.95}
_DETECT = 0.01  # the relative cost error the Monte Carlo test detects
_MC_HORIZON = 10
_MC_CHUNK = 8192
_MC_SIZE = 24 * _MC_CHUNK  # 196,608 rollouts
# One compilation per shape and horizon, shared by the tests.
_AUTODIFF_GRADIENT = jax.jit(
  jax.grad(exact.lqr_cost, argnums=1), static_argnames="horizon"
)


def _problem(kind):
  if kind == "example_stable":
    return rl.example_lqr(0.9, dtype=jnp.float64)
  if kind == "example_unstable":
    return rl.example_lqr(1.2, dtype=jnp.float64)
  if kind == "random_stable":
    return ref.random_lqr(0, 3, 2, 0.8)
  if kind == "random_unstable":
    return ref.random_lqr(1, 3, 2, 1.1)
  raise ValueError(kind)


_KINDS = (
  "example_stable",
  "example_unstable",
  "random_stable",
  "random_unstable",
)


def _assert_close(actual, expected, tol=_TOL, what=""):
  """Leafwise |a - e| <= tol * max(1, max |e|) (relative to the scale)."""
  chex.assert_trees_all_equal_structs(actual, expected)
  for a, e in zip(
    jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True
  ):
    a, e = np.asarray(a), np.asarray(e)
    scale = max(1.0, float(np.max(np.abs(e))))
    err = float(np.max(np.abs(a - e)))
    assert np.all(np.isfinite(a)), (what, a)
    assert err <= tol * scale, (what, err, scale, a, e)


@functools.partial(jax.jit, static_argnames="horizon")
def _quadratic_form(problem, params, horizon):
  """Exact mean and variance of one rollout's total cost.

  The rollout is affine in its standard noise xi (z0, zeta, eps stacked):
  its states and actions are x_t = xbar_t + G_t xi, u_t = ubar_t + H_t xi
  (values and Jacobians at xi = 0). The total cost is then exactly
  L = c + b'xi + xi'M xi with M = sum_t G_t'Q_t G_t + H_t'R H_t (Q_T at t =
  T), b = 2 sum_t G_t'Q_t xbar_t + H_t'R ubar_t and c = L(0), so that
  E L = c + tr M and Var L = b'b + 2 tr(M^2). This uses only the rollout,
  nothing of rgrad.exact.
  """
  n, m = problem.state_dim, problem.action_dim

  def trajectory(xi):
    noise = rl.LQRNoise(
      xi[:n][None],
      xi[n : n + horizon * n].reshape(1, horizon, n),
      xi[n + horizon * n :].reshape(1, horizon, m),
    )
    out = rl.lqr_rollout(problem, params, noise)
    return out.states[0], out.actions[0], out.costs[0].sum()

  zero = jnp.zeros(n + horizon * (n + m), jnp.float64)
  xbar, ubar, c = trajectory(zero)
  g, h, _ = jax.jacfwd(trajectory)(zero)  # [T + 1, n, d], [T, m, d]
  q = jnp.concatenate(
    [jnp.broadcast_to(problem.Q, (horizon, n, n)), problem.Q_T[None]]
  )
  qg = jnp.einsum("tij,tjd->tid", q, g)
  rh = jnp.einsum("ij,tjd->tid", problem.R, h)
  quad = jnp.einsum("tid,tie->de", g, qg) + jnp.einsum("tid,tie->de", h, rh)
  slope = 2.0 * (
    jnp.einsum("tid,ti->d", qg, xbar) + jnp.einsum("tid,ti->d", rh, ubar)
  )
  mean = c + jnp.trace(quad)
  variance = slope @ slope + 2.0 * jnp.sum(quad * quad.T)
  return mean, variance


class _TotalCosts(NamedTuple):
  """Chunk function of the moments engine: per-rollout total costs."""

  horizon: int

  def __call__(self, key, size, args):
    problem, params = args
    noise = rl.sample_lqr_noise(problem, key, self.horizon, size)
    return rl.lqr_rollout(problem, params, noise).costs.sum(axis=-1)


class CostTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("example_stable", "example_stable", 0),
    ("example_unstable", "example_unstable", 1),
    ("random_unstable", "random_unstable", 2),
  )
  def test_matches_monte_carlo(self, kind, seed):
    problem, params = _problem(kind)
    cost = float(exact.lqr_cost(problem, params, _MC_HORIZON))
    _, variance = _quadratic_form(problem, params, _MC_HORIZON)
    # A true error of 1% of J shifts the z-score by 0.01 J / SE, SE =
    # sd / sqrt(N): it then exceeds the alarm threshold 3.29 (false alarm
    # 1e-3, two-sided) with probability >= 0.95 when 0.01 J / SE >= 3.29 +
    # 1.64. One N for every case (one compilation); each needs <= N:
    # example_stable 0.90e5 rollouts, example_unstable 1.15e5,
    # random_unstable 1.58e5 (sd / J = 0.61, 0.69, 0.81 at T = 10).
    detectable = (_Z_ALARM + _Z_POWER) * math.sqrt(variance / _MC_SIZE) / cost
    self.assertLessEqual(detectable, _DETECT)
    moments = diagnostics.moments(
      _TotalCosts(_MC_HORIZON),
      jax.random.key(seed),
      _MC_SIZE,
      (problem, params),
      chunk_size=_MC_CHUNK,
      higher_moments=True,
    )
    z_score = (float(moments.mean) - cost) / float(moments.stderr)
    self.assertLess(abs(z_score), _Z_ALARM, (kind, moments.mean, cost))
    # The sample variance agrees with the exact one, within 5 of its own
    # standard errors (fourth moment): checks the variance that sized the
    # test.
    power.assert_variance(
      moments.variance, moments.variance_stderr, variance, what=kind
    )

  @parameterized.parameters(*_KINDS)
  def test_quadratic_form_mean(self, kind):
    # An exact identity, independent of the moment recursion: E L of the
    # rollout's cost as a quadratic form in its noise.
    problem, params = _problem(kind)
    for horizon in (1, _MC_HORIZON):
      mean, _ = _quadratic_form(problem, params, horizon)
      cost = float(exact.lqr_cost(problem, params, horizon))
      self.assertLessEqual(abs(cost - mean), _TOL * abs(mean), (kind, horizon))

  def test_one_step_by_hand(self):
    problem, params = rl.example_lqr(0.9, dtype=jnp.float64)
    k, s2 = np.asarray(params["K"]), float(np.exp(2 * params["log_sigma"]))
    a, b = np.asarray(problem.A), np.asarray(problem.B)
    m0, s0 = np.asarray(problem.m0), np.asarray(problem.S0)
    q, r, q_t = (np.asarray(x) for x in (problem.Q, problem.R, problem.Q_T))
    p = q + k.T @ r @ k
    f = a + b @ k
    m1 = f @ m0
    s1 = f @ s0 @ f.T + s2 * b @ b.T + np.asarray(problem.W)
    want = (
      m0 @ p @ m0
      + np.trace(p @ s0)
      + s2 * np.trace(r)
      + 0.9 * (m1 @ q_t @ m1 + np.trace(q_t @ s1))
    )
    got = exact.lqr_cost(problem, params, 1, discount=0.9)
    np.testing.assert_allclose(got, want, rtol=1e-14)

  def test_jit(self):
    problem, params = _problem("random_stable")
    fn = jax.jit(exact.lqr_cost, static_argnames="horizon")
    np.testing.assert_allclose(
      fn(problem, params, horizon=9, discount=0.9),
      exact.lqr_cost(problem, params, 9, discount=0.9),
      rtol=1e-14,
    )


class GradientTest(parameterized.TestCase):
  @parameterized.product(kind=_KINDS, horizon=(1, 5, 50), discount=(1.0, 0.9))
  def test_hand_matches_jax_grad(self, kind, horizon, discount):
    problem, params = _problem(kind)
    hand = exact.lqr_policy_gradient(
      problem, params, horizon, discount=discount
    )
    auto = _AUTODIFF_GRADIENT(
      problem, params, horizon=horizon, discount=discount
    )
    _assert_close(hand, auto, what=(kind, horizon, discount))

  @parameterized.product(kind=_KINDS, horizon=(3, 30))
  def test_against_finite_differences(self, kind, horizon):
    problem, params = _problem(kind)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    cost = lambda x: exact.lqr_cost(problem, unravel(x), horizon, discount=0.95)
    grad = exact.lqr_policy_gradient(problem, params, horizon, discount=0.95)
    want = jax.flatten_util.ravel_pytree(grad)[0]
    h = 1e-5
    eye = np.eye(flat.size)
    fd = np.array(
      [(cost(flat + h * e) - cost(flat - h * e)) / (2 * h) for e in eye]
    )
    scale = max(1.0, float(np.max(np.abs(want))))
    self.assertLessEqual(float(np.max(np.abs(fd - want))), 1e-7 * scale)


class InfiniteHorizonTest(parameterized.TestCase):
  @parameterized.parameters("example_stable", "random_stable")
  def test_limit_of_finite_horizon(self, kind):
    # rho(A + BK) = 0.9 (0.8) and gamma = 0.95: the tail beyond T = 2000
    # is ~ gamma^T = 1e-45 of the cost.
    problem, params = _problem(kind)
    gamma, horizon = 0.95, 2000
    cost = exact.lqr_infinite_horizon_cost(problem, params, gamma)
    finite = exact.lqr_cost(problem, params, horizon, discount=gamma)
    _assert_close(cost, finite, what=kind)
    grad = exact.lqr_infinite_horizon_gradient(problem, params, gamma)
    finite_grad = exact.lqr_policy_gradient(
      problem, params, horizon, discount=gamma
    )
    _assert_close(grad, finite_grad, what=kind)

  @parameterized.parameters("example_stable", "random_stable")
  def test_gradient_against_autodiff_and_fd(self, kind):
    problem, params = _problem(kind)
    gamma = 0.9
    grad = exact.lqr_infinite_horizon_gradient(problem, params, gamma)
    auto = jax.jit(jax.grad(exact.lqr_infinite_horizon_cost, argnums=1))(
      problem, params, gamma
    )
    _assert_close(grad, auto, what=kind)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    cost = lambda x: exact.lqr_infinite_horizon_cost(problem, unravel(x), gamma)
    want = jax.flatten_util.ravel_pytree(grad)[0]
    h = 1e-5
    fd = np.array(
      [
        (cost(flat + h * e) - cost(flat - h * e)) / (2 * h)
        for e in np.eye(flat.size)
      ]
    )
    scale = max(1.0, float(np.max(np.abs(want))))
    self.assertLessEqual(float(np.max(np.abs(fd - want))), 1e-7 * scale)

  def test_noiseless_is_fazel(self):
    # W = 0, S0 = 0, sigma -> 0: C = m0' P_K m0 (Fazel et al., Lemma 1),
    # P_K the fixed point of P = Q + K'RK + gamma F'PF, by iteration here.
    problem, params = _problem("random_stable")
    zero = jnp.zeros_like(problem.W)
    problem = problem._replace(W=zero, S0=zero)
    params = dict(params, log_sigma=jnp.asarray(-40.0, jnp.float64))
    gamma = 0.9
    f = np.asarray(problem.A + problem.B @ params["K"])
    k, r = np.asarray(params["K"]), np.asarray(problem.R)
    c = np.asarray(problem.Q) + k.T @ r @ k
    p = c
    for _ in range(2000):
      p = c + gamma * f.T @ p @ f
    m0 = np.asarray(problem.m0)
    np.testing.assert_allclose(
      exact.lqr_infinite_horizon_cost(problem, params, gamma),
      m0 @ p @ m0,
      rtol=1e-12,
    )


class BadInputTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.problem, self.params = rl.example_lqr(0.9, dtype=jnp.float64)

  @parameterized.parameters(exact.lqr_cost, exact.lqr_policy_gradient)
  def test_finite_horizon(self, fn):
    problem, params = self.problem, self.params
    with self.assertRaisesRegex(ValueError, "horizon must be >= 1, got 0"):
      fn(problem, params, 0)
    with self.assertRaisesRegex(TypeError, "horizon must be a static"):
      fn(problem, params, 3.0)
    with self.assertRaisesRegex(ValueError, r"discount must be in \[0, 1\]"):
      fn(problem, params, 3, discount=1.5)
    with self.assertRaisesRegex(ValueError, r"discount must be in \[0, 1\]"):
      fn(problem, params, 3, discount=-0.1)
    with self.assertRaisesRegex(ValueError, "discount must be a scalar"):
      fn(problem, params, 3, discount=np.ones(2))
    with self.assertRaisesRegex(ValueError, r"params\['K'\] must have shape"):
      fn(problem, dict(params, K=jnp.zeros((2, 2))), 3)
    with self.assertRaisesRegex(ValueError, "log_sigma'\\] must be a scalar"):
      fn(problem, dict(params, log_sigma=jnp.zeros(1)), 3)
    with self.assertRaisesRegex(ValueError, "keys 'K' and 'log_sigma'"):
      fn(problem, {"K": params["K"]}, 3)
    with self.assertRaisesRegex(ValueError, r"problem.W must have shape"):
      fn(problem._replace(W=jnp.eye(3)), params, 3)
    with self.assertRaisesRegex(TypeError, "problem must be an rgrad.rl.LQR"):
      fn(tuple(problem), params, 3)

  @parameterized.parameters(
    exact.lqr_infinite_horizon_cost, exact.lqr_infinite_horizon_gradient
  )
  def test_infinite_horizon(self, fn):
    problem, params = self.problem, self.params
    with self.assertRaisesRegex(ValueError, r"discount must be in \[0, 1\)"):
      fn(problem, params, 1.0)
    with self.assertRaisesRegex(ValueError, r"discount must be in \[0, 1\)"):
      fn(problem, params, -0.5)
    unstable, unstable_params = rl.example_lqr(1.2, dtype=jnp.float64)
    with self.assertRaisesRegex(ValueError, "discounted cost is infinite"):
      fn(unstable, unstable_params, 0.9)
    # sqrt(0.6) * 1.2 < 1: converges.
    self.assertTrue(
      np.all(
        np.isfinite(jax.tree.leaves(fn(unstable, unstable_params, 0.6))[0])
      )
    )
    with self.assertRaisesRegex(ValueError, r"params\['K'\] must have shape"):
      fn(problem, dict(params, K=jnp.zeros((1, 3))), 0.9)


if __name__ == "__main__":
  absltest.main()
