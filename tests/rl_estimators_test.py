"""Tests for the policy-gradient estimators of rgrad.rl.

Exact identities in float64 (tolerance ~1e-10 relative to the reference's
scale): lqr_environment reproduces lqr_rollout; total propagation with its
weights fixed at 1 is the pathwise gradient and at 0 the score function with
the same baseline, on the LQR and on gymnax's Pendulum-v1; the moving-average
and value baselines reduce to constant baselines where they must. Cheap
statistical sanity checks (the exact-gradient unbiasedness tests against
rgrad.exact live elsewhere): on the LQR, the score function, total
propagation and the pathwise gradient agree within 5 standard errors of
their difference, and the leave-one-out baseline changes the mean by less
than 5 SE; the standard errors come from independent calls (batch means),
honest for the rows that share a batch (leave-one-out, estimated TP
weights).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import rl

try:
  import gymnax  # Optional (the experiments/test extras); rgrad never imports it.
except ImportError:
  gymnax = None

jax.config.update("jax_enable_x64", True)

T, N = 6, 8
ESTIMATORS = {
  "score_function": rl.score_function_policy_gradients,
  "pathwise": rl.pathwise_policy_gradients,
  "total_propagation": rl.total_propagation_policy_gradients,
}


def _lqr(rho=0.9):
  return rl.example_lqr(rho, dtype=jnp.float64)


def _rel_err(a, b):
  return jax.tree.map(
    lambda x, y: float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))), a, b
  )


def _assert_close(test, a, b, tol=1e-10):
  for path, err in jax.tree_util.tree_leaves_with_path(_rel_err(a, b)):
    test.assertLess(err, tol, msg=f"{jax.tree_util.keystr(path)}")


def _value_fn(value_params, obs, t):
  return value_params["w"] @ obs + value_params["c"][t]


class EnvironmentTest(parameterized.TestCase):
  def test_lqr_environment_reproduces_lqr_rollout(self):
    problem, params = _lqr(1.1)
    noise = rl.sample_rollout_noise(jax.random.key(0), T, N, 1, jnp.float64)
    env = rl.lqr_environment(problem)
    ours = rl.rollout(env, rl.linear_mean, params, noise)
    # The same standard normals as reset/step draw from their keys.
    normal = jax.vmap(lambda k: jax.random.normal(k, (2,), jnp.float64))
    lqr_noise = rl.LQRNoise(
      z0=normal(noise.reset_keys),
      zeta=jax.vmap(normal)(noise.step_keys),
      eps=noise.eps,
    )
    theirs = rl.lqr_rollout(problem, params, lqr_noise)
    chex.assert_shape(ours.costs, (N, T + 1))
    _assert_close(self, ours.states, theirs.states, 1e-12)
    _assert_close(self, ours.actions, theirs.actions, 1e-12)
    _assert_close(self, ours.costs, theirs.costs, 1e-12)  # c_T included.
    _assert_close(self, ours.observations, theirs.states, 1e-12)

  @absltest.skipIf(gymnax is None, "gymnax is not installed")
  def test_gymnax_pendulum(self):
    env = rl.gymnax_environment(*gymnax.make("Pendulum-v1"))
    self.assertEqual(env.action_dim, 1)
    params = {
      "W": jnp.array([[-1.0, 0.3, -0.2]]),
      "log_sigma": jnp.log(jnp.asarray(0.5)),
    }

    def mean_fn(p, obs):
      return 2.0 * jnp.tanh(p["W"] @ obs)

    key = jax.random.key(1)
    args = (env, params, key, 5, 4)
    pathwise = rl.pathwise_policy_gradients(*args, mean_fn=mean_fn)
    score = rl.score_function_policy_gradients(*args, mean_fn=mean_fn)
    tp = rl.total_propagation_policy_gradients
    chex.assert_trees_all_equal_shapes(
      pathwise, jax.tree.map(lambda p: jnp.zeros((4, *p.shape)), params)
    )
    # The state has an int leaf (time): carried, never differentiated.
    _assert_close(self, tp(*args, mean_fn=mean_fn, weights=1.0), pathwise)
    _assert_close(self, tp(*args, mean_fn=mean_fn, weights=0.0), score)
    self.assertTrue(np.all(np.isfinite(np.asarray(pathwise["W"]))))
    self.assertGreater(float(jnp.max(jnp.abs(pathwise["W"]))), 0.0)


class EstimatorTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_shapes_and_vmap(self, name):
    problem, params = _lqr()
    fn = self.variant(ESTIMATORS[name], static_argnums=(3, 4))
    grads = fn(problem, params, jax.random.key(0), T, N)
    chex.assert_shape(grads["K"], (N, 1, 2))
    chex.assert_shape(grads["log_sigma"], (N,))
    chex.assert_tree_all_finite(grads)
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.vmap(lambda k: ESTIMATORS[name](problem, params, k, T, N))
    chex.assert_shape(batched(keys)["K"], (3, N, 1, 2))

  def test_jit_compiles_once(self):
    problem, params = _lqr()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def estimate(problem, params, key):
      return rl.total_propagation_policy_gradients(problem, params, key, T, N)

    for seed in range(3):
      estimate(problem, params, jax.random.key(seed))

  @parameterized.named_parameters(
    ("none", "none", None),
    ("constant_scalar", "constant", 3.0),
    ("constant_per_step", "constant", np.linspace(5.0, 1.0, T)),
    ("leave_one_out", "leave_one_out", None),
    ("value", "value", None),
  )
  def test_total_propagation_limits(self, baseline, values):
    problem, params = _lqr(1.2)
    extra = {"baseline": baseline, "baseline_values": values}
    if baseline == "value":
      extra["value_fn"] = _value_fn
      extra["value_params"] = {"w": jnp.array([0.5, -0.2]), "c": jnp.ones(T)}
    key = jax.random.key(2)
    tp = rl.total_propagation_policy_gradients
    pathwise = rl.pathwise_policy_gradients(problem, params, key, T, N)
    _assert_close(self, tp(problem, params, key, T, N, weights=1.0), pathwise)
    score = rl.score_function_policy_gradients(
      problem, params, key, T, N, **extra
    )
    _assert_close(
      self, tp(problem, params, key, T, N, weights=0.0, **extra), score
    )
    # Per-coordinate weights: 1 on the mean, 0 on log_sigma.
    mixed = tp(problem, params, key, T, N, weights=jnp.array([1.0, 0.0]))
    _assert_close(self, mixed["K"], pathwise["K"])
    _assert_close(
      self,
      mixed["log_sigma"],
      rl.score_function_policy_gradients(problem, params, key, T, N)[
        "log_sigma"
      ],
    )

  def test_value_baseline_that_ignores_the_state_is_constant(self):
    problem, params = _lqr()
    c = jnp.linspace(4.0, 1.0, T)
    key = jax.random.key(3)
    value = rl.score_function_policy_gradients(
      problem,
      params,
      key,
      T,
      N,
      baseline="value",
      value_fn=_value_fn,
      value_params={"w": jnp.zeros(2), "c": c},
    )
    constant = rl.score_function_policy_gradients(
      problem, params, key, T, N, baseline="constant", baseline_values=c
    )
    _assert_close(self, value, constant)

  def test_value_baseline_loss(self):
    problem, params = _lqr()
    _, trajectory = rl.score_function_policy_gradients(
      problem, params, jax.random.key(4), T, 64, return_trajectory=True
    )
    vp = {"w": jnp.zeros(2), "c": jnp.zeros(T)}
    returns = rl.reward_to_go(trajectory.costs)[:, :T]
    loss, grad = jax.value_and_grad(rl.value_baseline_loss, argnums=1)(
      _value_fn, vp, trajectory
    )
    np.testing.assert_allclose(loss, 0.5 * np.mean(returns**2), rtol=1e-12)
    # d/dc_t of 0.5 mean (c_t - G)^2 = -mean_i G_{i,t} / T.
    np.testing.assert_allclose(grad["c"], -returns.mean(0) / T, rtol=1e-12)

  def test_moving_average(self):
    problem, params = _lqr()
    estimator = rl.moving_average_policy_gradient(decay=0.5)
    state = estimator.init(params, T)
    chex.assert_shape(state.value, (T,))
    estimate = jax.jit(estimator.estimate, static_argnums=(3, 4))
    k1, k2 = jax.random.split(jax.random.key(5))
    first, state1 = estimate(problem, params, k1, T, N, state)
    none, trajectory = rl.score_function_policy_gradients(
      problem, params, k1, T, N, return_trajectory=True
    )
    _assert_close(self, first, none)  # Baseline 0 before any update.
    returns = rl.reward_to_go(trajectory.costs)[:, :T]
    _assert_close(self, state1.value, returns.mean(0), 1e-12)  # Debiased.
    second, state2 = estimate(problem, params, k2, T, N, state1)
    constant = rl.score_function_policy_gradients(
      problem,
      params,
      k2,
      T,
      N,
      baseline="constant",
      baseline_values=state1.value,
    )
    _assert_close(self, second, constant)
    np.testing.assert_array_equal(state2.count, 2 * np.ones(T))


class AgreementTest(parameterized.TestCase):
  """Means over independent calls agree within 5 SE of their difference.

  LQR with closed-loop radius 0.9, T = 10, 24 calls of 128 rollouts, all
  estimators on the same noise (so the differences are paired). Measured:
  5 SE of (score function - pathwise) is ~20% of |dJ/dK| and ~8% of
  |dJ/dlog_sigma|; of (total propagation - pathwise) ~2.5% and ~2%.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    problem, params = _lqr(0.9)
    keys = jax.random.split(jax.random.key(6), 24)
    cls.means = {}
    for name, fn in ESTIMATORS.items():
      call = jax.jit(
        lambda k, fn=fn: jax.tree.map(
          lambda g: g.mean(0), fn(problem, params, k, 10, 128)
        )
      )
      cls.means[name] = jax.lax.map(call, keys)
    loo = jax.jit(
      lambda k: jax.tree.map(
        lambda g: g.mean(0),
        rl.score_function_policy_gradients(
          problem, params, k, 10, 128, baseline="leave_one_out"
        ),
      )
    )
    cls.means["leave_one_out"] = jax.lax.map(loo, keys)

  def _assert_agree(self, a, b, max_rel_se):
    for leaf in ("K", "log_sigma"):
      diff = np.asarray(self.means[a][leaf] - self.means[b][leaf])
      diff = diff.reshape(diff.shape[0], -1)
      se = diff.std(0, ddof=1) / np.sqrt(diff.shape[0])
      ref = np.abs(np.asarray(self.means["pathwise"][leaf]).mean(0)).ravel()
      np.testing.assert_array_less(np.abs(diff.mean(0)), 5 * se)
      # The check has power: 5 SE is a modest fraction of the gradient.
      np.testing.assert_array_less(5 * se, max_rel_se * ref)

  def test_score_function_agrees_with_pathwise(self):
    self._assert_agree("score_function", "pathwise", 0.5)

  def test_total_propagation_agrees_with_pathwise(self):
    self._assert_agree("total_propagation", "pathwise", 0.1)

  def test_leave_one_out_changes_nothing_in_expectation(self):
    self._assert_agree("leave_one_out", "score_function", 0.5)


class BadInputTest(parameterized.TestCase):
  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_counts(self, name):
    problem, params = _lqr()
    fn, key = ESTIMATORS[name], jax.random.key(0)
    with self.assertRaisesRegex(ValueError, "horizon must be >= 1"):
      fn(problem, params, key, 0, N)
    with self.assertRaisesRegex(ValueError, "num_rollouts must be >= "):
      fn(problem, params, key, T, 0)
    with self.assertRaisesRegex(TypeError, "horizon must be a static"):
      fn(problem, params, key, 2.0, N)

  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_params(self, name):
    problem, params = _lqr()
    fn, key = ESTIMATORS[name], jax.random.key(0)
    with self.assertRaisesRegex(ValueError, r"params\['K'\] must have shape"):
      fn(problem, {**params, "K": jnp.zeros((1, 3))}, key, T, N)
    with self.assertRaisesRegex(ValueError, r"mean_fn\(params, obs\) must"):
      fn(problem, {**params, "K": jnp.zeros((2, 2))}, key, T, N)
    with self.assertRaisesRegex(ValueError, r"params\['log_sigma'\] must be"):
      fn(problem, {**params, "log_sigma": jnp.zeros(2)}, key, T, N)
    with self.assertRaisesRegex(ValueError, "'log_sigma'"):
      fn(problem, {"K": params["K"]}, key, T, N)
    with self.assertRaisesRegex(TypeError, "environment must be"):
      fn("pendulum", params, key, T, N)

  @parameterized.named_parameters(
    ("score_function", rl.score_function_policy_gradients),
    ("total_propagation", rl.total_propagation_policy_gradients),
  )
  def test_baselines(self, fn):
    problem, params = _lqr()
    args = (problem, params, jax.random.key(0), T, N)
    with self.assertRaisesRegex(ValueError, "baseline must be one of"):
      fn(*args, baseline="moving_average")
    with self.assertRaisesRegex(ValueError, "needs baseline_values"):
      fn(*args, baseline="constant")
    with self.assertRaisesRegex(ValueError, "baseline_values must be a scalar"):
      fn(*args, baseline="constant", baseline_values=jnp.zeros(T + 1))
    with self.assertRaisesRegex(ValueError, "baseline_values is only for"):
      fn(*args, baseline_values=1.0)
    with self.assertRaisesRegex(TypeError, "value_fn must be callable"):
      fn(*args, baseline="value")
    with self.assertRaisesRegex(ValueError, "num_rollouts must be >= 2"):
      fn(
        problem,
        params,
        jax.random.key(0),
        T,
        1,
        baseline="leave_one_out",
        **({"weights": 0.5} if fn is ESTIMATORS["total_propagation"] else {}),
      )

  def test_total_propagation_weights(self):
    problem, params = _lqr()
    tp = rl.total_propagation_policy_gradients
    args = (problem, params, jax.random.key(0), T)
    with self.assertRaisesRegex(ValueError, "num_rollouts must be even"):
      tp(*args, 7)
    with self.assertRaisesRegex(ValueError, "num_rollouts must be >= 4"):
      tp(*args, 2)
    with self.assertRaisesRegex(ValueError, "num_rollouts must be >= 2"):
      tp(*args, 1, weights="batch")
    with self.assertRaisesRegex(ValueError, "weights must be one of"):
      tp(*args, N, weights="pipps")
    with self.assertRaisesRegex(ValueError, "fixed weights must broadcast"):
      tp(*args, N, weights=jnp.ones(3))

  def test_moving_average(self):
    problem, params = _lqr()
    with self.assertRaisesRegex(ValueError, "decay must be in"):
      rl.moving_average_policy_gradient(decay=1.0)
    estimator = rl.moving_average_policy_gradient()
    with self.assertRaisesRegex(ValueError, "horizon must be >= 1"):
      estimator.init(params, 0)
    with self.assertRaisesRegex(ValueError, "state must be init"):
      estimator.estimate(
        problem, params, jax.random.key(0), T, N, estimator.init(params, T + 1)
      )


if __name__ == "__main__":
  absltest.main()
