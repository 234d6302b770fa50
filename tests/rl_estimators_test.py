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

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import rl

try:
  import gymnax  # The test extras have it; rgrad itself never imports it.
except ImportError:
  gymnax = None

jax.config.update("jax_enable_x64", True)

T, N = 6, 8
NUM_CALLS = 256
ESTIMATORS = {
  "score_function": rl.score_function_policy_gradients,
  "pathwise": rl.pathwise_policy_gradients,
  "total_propagation": rl.total_propagation_policy_gradients,
}
PROBLEM, PARAMS = rl.example_lqr(0.9, dtype=jnp.float64)
# One problem shape, horizon and batch for every test below, each estimator
# configuration compiled once (module-level jit, the problem and params
# traced) and shared by the tests: compilation is this file's cost.
_STATIC = ("horizon", "num_rollouts", "baseline", "value_fn")


def _jit(fn):
  names = set(inspect.signature(fn).parameters)
  return jax.jit(fn, static_argnames=[n for n in _STATIC if n in names])


SCORE = _jit(rl.score_function_policy_gradients)
# Traced once for every test that calls it (test_jit_compiles_once).
PATHWISE = _jit(chex.assert_max_traces(rl.pathwise_policy_gradients, n=1))
CROSS_FIT = _jit(rl.total_propagation_policy_gradients)
# weights: a traced [T, m + 1] array.
FIXED = _jit(rl.total_propagation_policy_gradients)
JITTED = {
  "score_function": SCORE,
  "pathwise": PATHWISE,
  "total_propagation": CROSS_FIT,
}


@jax.jit
def _rollout(problem, params, key):
  noise = rl.sample_rollout_noise(key, T, N, 1, jnp.float64)
  env = rl.lqr_environment(problem)
  return rl.rollout(env, rl.linear_mean, params, noise)


@functools.cache
def _per_call_means(name, baseline="none"):
  """Means of NUM_CALLS independent calls of (T, N) on PROBLEM.

  A Python loop over calls of the shared compiled estimators: dispatching
  64 small calls costs far less than compiling a vmapped copy.
  """
  keys = jax.random.split(jax.random.key(6), NUM_CALLS)
  extra = {} if baseline == "none" else {"baseline": baseline}
  means = [
    jax.tree.map(
      lambda g: g.mean(0),
      JITTED[name](PROBLEM, PARAMS, k, horizon=T, num_rollouts=N, **extra),
    )
    for k in keys
  ]
  return jax.tree.map(lambda *m: np.stack(m), *means)


def _rel_err(a, b):
  return jax.tree.map(
    lambda x, y: float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))), a, b
  )


def _assert_close(test, a, b, tol=1e-10):
  for path, err in jax.tree_util.tree_leaves_with_path(_rel_err(a, b)):
    test.assertLess(err, tol, msg=f"{jax.tree_util.keystr(path)}")


def _value_fn(value_params, obs, t):
  return value_params["w"] @ obs + value_params["c"][t]


def _weights(mean, log_sigma):
  return jnp.broadcast_to(jnp.array([mean, log_sigma]), (T, 2))


class EnvironmentTest(parameterized.TestCase):
  def test_lqr_environment_reproduces_lqr_rollout(self):
    problem, params = rl.example_lqr(1.1, dtype=jnp.float64)
    key = jax.random.key(0)
    noise = rl.sample_rollout_noise(key, T, N, 1, jnp.float64)
    ours = _rollout(problem, params, key)
    # The same standard normals as reset/step draw from their keys.
    normal = jax.vmap(lambda k: jax.random.normal(k, (2,), jnp.float64))
    lqr_noise = rl.LQRNoise(
      z0=normal(noise.reset_keys),
      zeta=jax.vmap(normal)(noise.step_keys),
      eps=noise.eps,
    )
    theirs = jax.jit(rl.lqr_rollout)(problem, params, lqr_noise)
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

    @jax.jit
    def all_four(key):
      args = (env, params, key, 3, 4)
      tp = functools.partial(rl.total_propagation_policy_gradients, *args)
      return (
        rl.pathwise_policy_gradients(*args, mean_fn=mean_fn),
        tp(mean_fn=mean_fn, weights=1.0),
        rl.score_function_policy_gradients(*args, mean_fn=mean_fn),
        tp(mean_fn=mean_fn, weights=0.0),
      )

    pathwise, tp1, score, tp0 = all_four(jax.random.key(1))
    chex.assert_trees_all_equal_shapes(
      pathwise, jax.tree.map(lambda p: jnp.zeros((4, *p.shape)), params)
    )
    # The state has an int leaf (time): carried, never differentiated.
    _assert_close(self, tp1, pathwise)
    _assert_close(self, tp0, score)
    chex.assert_tree_all_finite(pathwise)
    self.assertGreater(float(jnp.max(jnp.abs(pathwise["W"]))), 0.0)


class EstimatorTest(chex.TestCase):
  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_shapes_and_jit(self, name):
    grads = JITTED[name](
      PROBLEM, PARAMS, jax.random.key(0), horizon=T, num_rollouts=N
    )
    chex.assert_shape(grads["K"], (N, 1, 2))
    chex.assert_shape(grads["log_sigma"], (N,))
    chex.assert_tree_all_finite(grads)

  def test_vmap_over_keys_and_problems(self):
    keys = jax.random.split(jax.random.key(1), 3)
    problems = jax.tree.map(lambda a: jnp.stack([a, 1.1 * a, 0.9 * a]), PROBLEM)

    @jax.jit
    @jax.vmap
    def both(problem, key):
      return (
        rl.pathwise_policy_gradients(problem, PARAMS, key, T, N),
        rl.total_propagation_policy_gradients(problem, PARAMS, key, T, N),
      )

    pathwise, tp = both(problems, keys)
    chex.assert_shape((pathwise["K"], tp["K"]), (3, N, 1, 2))
    _assert_close(
      self,
      jax.tree.map(lambda g: g[0], pathwise),
      PATHWISE(PROBLEM, PARAMS, keys[0], horizon=T, num_rollouts=N),
    )
    _assert_close(
      self,
      jax.tree.map(lambda g: g[0], tp),
      CROSS_FIT(PROBLEM, PARAMS, keys[0], horizon=T, num_rollouts=N),
    )

  def test_jit_compiles_once(self):
    for seed in range(3):  # PATHWISE raises if traced twice (module level).
      PATHWISE(PROBLEM, PARAMS, jax.random.key(seed), horizon=T, num_rollouts=N)

  @parameterized.named_parameters(
    ("none", "none", None),
    ("constant", "constant", np.linspace(5.0, 1.0, T)),
    ("leave_one_out", "leave_one_out", None),
  )
  def test_total_propagation_limits(self, baseline, values):
    problem, params = rl.example_lqr(1.2, dtype=jnp.float64)
    extra = {"baseline": baseline, "baseline_values": values}
    key = jax.random.key(2)
    args = (problem, params, key)
    sizes = {"horizon": T, "num_rollouts": N}
    score = SCORE(*args, **sizes, **extra)
    _assert_close(
      self, FIXED(*args, **sizes, weights=_weights(0, 0), **extra), score
    )
    if baseline != "none":
      return
    pathwise = PATHWISE(*args, **sizes)
    _assert_close(self, FIXED(*args, **sizes, weights=_weights(1, 1)), pathwise)
    # Per-coordinate weights: 1 on the mean, 0 on log_sigma.
    mixed = FIXED(*args, **sizes, weights=_weights(1, 0))
    _assert_close(self, mixed["K"], pathwise["K"])
    _assert_close(self, mixed["log_sigma"], score["log_sigma"])

  def test_value_baseline_that_ignores_the_state_is_constant(self):
    c = jnp.linspace(4.0, 1.0, T)
    args = (PROBLEM, PARAMS, jax.random.key(3))
    sizes = {"horizon": T, "num_rollouts": N}
    value = SCORE(
      *args,
      **sizes,
      baseline="value",
      value_fn=_value_fn,
      value_params={"w": jnp.zeros(2), "c": c},
    )
    constant = SCORE(*args, **sizes, baseline="constant", baseline_values=c)
    _assert_close(self, value, constant)

  def test_value_baseline_loss(self):
    trajectory = _rollout(PROBLEM, PARAMS, jax.random.key(4))
    vp = {"w": jnp.zeros(2), "c": jnp.zeros(T)}
    returns = rl.reward_to_go(trajectory.costs)[:, :T]
    loss, grad = jax.jit(
      jax.value_and_grad(rl.value_baseline_loss, argnums=1),
      static_argnums=0,
    )(_value_fn, vp, trajectory)
    np.testing.assert_allclose(loss, 0.5 * np.mean(returns**2), rtol=1e-12)
    # d/dc_t of 0.5 mean (c_t - G)^2 = -mean_i G_{i,t} / T.
    np.testing.assert_allclose(grad["c"], -returns.mean(0) / T, rtol=1e-12)

  def test_moving_average(self):
    estimator = rl.moving_average_policy_gradient(decay=0.5)
    state = estimator.init(PARAMS, T)
    chex.assert_shape(state.value, (T,))
    estimate = jax.jit(estimator.estimate, static_argnums=(3, 4))
    k1, k2 = jax.random.split(jax.random.key(5))
    sizes = {"horizon": T, "num_rollouts": N}
    first, state1 = estimate(PROBLEM, PARAMS, k1, T, N, state)
    _assert_close(self, first, SCORE(PROBLEM, PARAMS, k1, **sizes))
    # Debiased after one update: the batch-mean return per step.
    returns = rl.reward_to_go(_rollout(PROBLEM, PARAMS, k1).costs)[:, :T]
    _assert_close(self, state1.value, returns.mean(0), 1e-12)
    second, state2 = estimate(PROBLEM, PARAMS, k2, T, N, state1)
    constant = SCORE(
      PROBLEM,
      PARAMS,
      k2,
      **sizes,
      baseline="constant",
      baseline_values=state1.value,
    )
    _assert_close(self, second, constant)
    np.testing.assert_array_equal(state2.count, 2 * np.ones(T))


class AgreementTest(parameterized.TestCase):
  """Means over independent calls agree within 5 SE of their difference.

  The LQR with closed-loop radius 0.9, T = 6, NUM_CALLS = 256 independent
  calls of N = 8 rollouts, every estimator on the same keys (so the
  differences are paired); the SE is that of the mean of the per-call mean
  differences, honest for rows that share a batch. A cheap sanity check,
  not the unbiasedness test (that one uses the exact LQR gradient); its
  power, asserted: 5 SE / |grad| measured 0.59, 0.36 (K) for score function
  - pathwise, 0.06, 0.05 (K) and 0.11 (log_sigma) for total propagation -
  pathwise, 0.41, 0.18 (K) and 0.58 (log_sigma) for leave-one-out - none.
  """

  def _assert_agree(self, a, b, max_rel_se, baseline_a="none"):
    mean_a = _per_call_means(a, baseline_a)
    mean_b = _per_call_means(b)
    ref = _per_call_means("pathwise")
    for leaf in ("K", "log_sigma"):
      diff = np.asarray(mean_a[leaf] - mean_b[leaf]).reshape(NUM_CALLS, -1)
      se = diff.std(0, ddof=1) / np.sqrt(NUM_CALLS)
      scale = np.abs(np.asarray(ref[leaf]).mean(0)).ravel()
      np.testing.assert_array_less(np.abs(diff.mean(0)), 5 * se)
      np.testing.assert_array_less(5 * se, max_rel_se * scale)

  def test_score_function_agrees_with_pathwise(self):
    self._assert_agree("score_function", "pathwise", 0.75)

  def test_total_propagation_agrees_with_pathwise(self):
    self._assert_agree("total_propagation", "pathwise", 0.15)

  def test_leave_one_out_changes_nothing_in_expectation(self):
    self._assert_agree(
      "score_function", "score_function", 0.75, baseline_a="leave_one_out"
    )


class BadInputTest(parameterized.TestCase):
  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_counts(self, name):
    problem, params = PROBLEM, PARAMS
    fn, key = ESTIMATORS[name], jax.random.key(0)
    with self.assertRaisesRegex(ValueError, "horizon must be >= 1"):
      fn(problem, params, key, 0, N)
    with self.assertRaisesRegex(ValueError, "num_rollouts must be >= "):
      fn(problem, params, key, T, 0)
    with self.assertRaisesRegex(TypeError, "horizon must be a static"):
      fn(problem, params, key, 2.0, N)

  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_params(self, name):
    problem, params = PROBLEM, PARAMS
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

  @parameterized.named_parameters(*[(k, k) for k in ESTIMATORS])
  def test_non_finite_costs(self, name):
    # An environment whose cost overflows to inf for large states: eager
    # calls raise and count them; under jit the NaN/inf propagates.
    env = rl.lqr_environment(PROBLEM)

    def step(key, state, u):
      next_state, cost = env.step(key, state, u)
      return next_state, jnp.where(cost > 0.0, jnp.inf, cost)

    broken = env._replace(step=step)
    fn = ESTIMATORS[name]
    with self.assertRaisesRegex(ValueError, "costs are non-finite"):
      fn(broken, PARAMS, jax.random.key(0), T, N)
    jitted = jax.jit(fn, static_argnums=(0, 3, 4))(
      broken, PARAMS, jax.random.key(0), T, N
    )
    self.assertFalse(
      all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jitted))
    )

  @parameterized.named_parameters(
    ("score_function", rl.score_function_policy_gradients),
    ("total_propagation", rl.total_propagation_policy_gradients),
  )
  def test_baselines(self, fn):
    problem, params = PROBLEM, PARAMS
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
    problem, params = PROBLEM, PARAMS
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
    problem, params = PROBLEM, PARAMS
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
