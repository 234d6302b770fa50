"""Tests for experiments/policy_gradient/: tiny runs, outputs, resume."""

import csv
import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from experiments import policy_gradient
from experiments.common import config as config_lib
from experiments.common import outputs
from experiments.configs import policy_gradient as pg_config
from experiments.policy_gradient import cartpole
from tests import workdirs


def _tiny_config(**overrides):
  config = pg_config.get_config()
  config.num_steps = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.num_envs = 4
  config.horizon = 50
  config.hidden_dims = (8,)
  config.value_steps = 2
  config.num_eval_envs = 6
  config.num_variance_envs = 4
  config.update(overrides)
  return config


class PolicyGradientRunTest(absltest.TestCase):
  """One tiny uninterrupted run, shared by the tests below."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = workdirs.class_tempdir(cls)
    cls.config = _tiny_config()
    cls.compiled_before = (
      cartpole.train_step._cache_size(),
      cartpole.evaluate._cache_size(),
    )
    cls.result = policy_gradient.run(cls.config, cls.workdir)
    cls.compiled_after = (
      cartpole.train_step._cache_size(),
      cartpole.evaluate._cache_size(),
    )

  def test_update_and_evaluation_compile_once(self):
    # Four updates and three evaluations: one compilation of each.
    self.assertEqual(
      [
        a - b
        for a, b in zip(self.compiled_after, self.compiled_before, strict=True)
      ],
      [1, 1],
    )

  def test_trains_and_measures(self):
    rows = self.result["results"]["history"]
    self.assertEqual([r["step"] for r in rows], [0, 2, 4])
    for row in rows:
      for field in policy_gradient.HISTORY_FIELDS:
        self.assertTrue(np.isfinite(row[field]), msg=field)
      # CartPole pays 1 per step, from 1 to 500 steps.
      self.assertBetween(row["mean_return"], 1.0, 500.0)
      self.assertGreater(row["grad_variance_baseline"], 0.0)
      self.assertGreater(row["grad_variance_no_baseline"], 0.0)
    self.assertEqual(int(self.result["state"].step), 4)

  def test_output_schema(self):
    with open(os.path.join(self.workdir, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(results["schema_version"], policy_gradient.SCHEMA_VERSION)
    self.assertEqual(
      set(results),
      {
        "schema_version",
        "config",
        "env",
        "estimator",
        "evaluation",
        "history",
        "final",
        "solved",
      },
    )
    self.assertEqual(results["config"], outputs.as_json(self.config.to_dict()))
    self.assertEqual(results["env"], "CartPole-v1")
    for row in results["history"]:
      self.assertEqual(set(row), set(policy_gradient.HISTORY_FIELDS))
    self.assertEqual(results["final"], results["history"][-1])
    self.assertEqual(
      set(results["solved"]), {"threshold", "step", "wall_time_s"}
    )
    self.assertEqual(results["solved"]["threshold"], 475.0)

    with open(os.path.join(self.workdir, "results.csv")) as f:
      rows = list(csv.reader(f))
    self.assertEqual(tuple(rows[0]), policy_gradient.HISTORY_FIELDS)
    self.assertLen(rows, 1 + 3)
    first = dict(zip(rows[0], rows[1], strict=True))
    self.assertEqual(
      float(first["mean_return"]), results["history"][0]["mean_return"]
    )
    for png in ("learning_curve", "grad_variance"):
      with open(os.path.join(self.workdir, f"{png}.png"), "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", msg=png)

  def test_resume_after_kill_is_bitwise_identical(self):
    workdir = workdirs.tempdir(self)
    # "Kill" after step 3: the checkpoint of step 2 survives, step 3 is lost.
    killed = policy_gradient.run(self.config, workdir, stop_after_step=3)
    self.assertIsNone(killed["results"])
    self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))
    compiled = cartpole.train_step._cache_size()
    with mock.patch.object(
      cartpole, "train_step", wraps=cartpole.train_step
    ) as step:
      resumed = policy_gradient.run(self.config, workdir)
    # From step 2: one warm-up call plus steps 3 and 4; nothing recompiled.
    self.assertEqual(step.call_count, 3)
    self.assertEqual(cartpole.train_step._cache_size(), compiled)
    for a, b in zip(
      workdirs.leaves(resumed["state"]),
      workdirs.leaves(self.result["state"]),
      strict=True,
    ):
      np.testing.assert_array_equal(a, b)
    self.assertEqual(
      workdirs.drop_time(resumed["results"]["history"]),
      workdirs.drop_time(self.result["results"]["history"]),
    )

  def test_refuses_to_resume_under_another_config(self):
    config = _tiny_config(discount=0.9)
    with mock.patch.object(cartpole, "train_step") as step:
      with self.assertRaisesRegex(
        config_lib.ConfigError, "different config.*discount"
      ):
        policy_gradient.run(config, self.workdir)
    step.assert_not_called()


class BadConfigTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("env", {"env": "Acrobot-v1"}, "Unknown environment 'Acrobot-v1'"),
    ("num_envs", {"num_envs": 0}, r"config.num_envs must be >= 1, got 0"),
    ("horizon", {"horizon": 501}, r"config.horizon \(501\) exceeds"),
    ("discount", {"discount": 1.5}, r"config.discount must be in \[0, 1\]"),
    ("lr", {"learning_rate": -1.0}, "config.learning_rate must be > 0"),
    ("hidden", {"hidden_dims": ()}, "config.hidden_dims must be a non-empty"),
    ("width", {"hidden_dims": (8, 0)}, r"config.hidden_dims\[1\] must be >="),
    ("variance_envs", {"num_variance_envs": 2}, "num_variance_envs must be >="),
    (
      "variance_subset",
      {"num_variance_envs": 8, "num_eval_envs": 6},
      r"num_variance_envs \(8\) exceeds config.num_eval_envs \(6\)",
    ),
    ("log_every", {"log_every": 0}, "config.log_every must be >= 1"),
    ("value_steps", {"value_steps": 0}, "config.value_steps must be >= 1"),
  )
  def test_rejected_before_any_work(self, overrides, message):
    config = _tiny_config()
    with config.unlocked():
      for field, value in overrides.items():
        config[field] = value
    workdir = os.path.join(workdirs.tempdir(self), "out")
    with mock.patch.object(cartpole, "train_step") as step:
      with self.assertRaisesRegex(config_lib.ConfigError, message):
        policy_gradient.run(config, workdir)
    step.assert_not_called()
    self.assertFalse(os.path.exists(workdir))


class EstimatorTest(absltest.TestCase):
  def test_value_baseline_leaves_the_mean_unchanged(self):
    # E[sum_t grad log pi(a_t|s_t) V(s_t)] = 0 for any V of the state: the
    # paired difference of the per-episode estimates with and without an
    # (untrained, random) value baseline has mean 0 in every coordinate.
    # 4096 episodes; |mean| < 5 SE per coordinate (per-coordinate false
    # alarm 6e-7, ~1e-4 over the 66 parameters).
    hyper = cartpole.Hyper.from_config(_tiny_config(num_envs=4096))
    state = cartpole.init_state(hyper, jax.random.key(1), jax.random.key(2))
    # A value far from 0 (so the baseline term is large) and not constant.
    value_params = jax.tree.map(lambda x: 30.0 * x, state.value_params)

    @jax.jit
    def differences(key):
      episodes = cartpole._rollout(
        hyper, state.policy_params, key, hyper.num_envs, hyper.horizon
      )
      _, values = cartpole.returns_and_values(hyper, value_params, episodes)
      values = values + 100.0
      return cartpole.per_episode_gradients(
        hyper, state.policy_params, episodes, -values
      )

    for leaf in workdirs.leaves(differences(jax.random.key(3))):
      leaf = leaf.reshape(leaf.shape[0], -1)
      mean = leaf.mean(axis=0)
      se = leaf.std(axis=0, ddof=1) / np.sqrt(leaf.shape[0])
      self.assertTrue(np.all(se > 0))
      np.testing.assert_array_less(np.abs(mean), 5 * se)

  def test_rollout_keeps_one_complete_episode(self):
    hyper = cartpole.Hyper.from_config(_tiny_config())
    state = cartpole.init_state(hyper, jax.random.key(1), jax.random.key(2))
    episodes = cartpole._rollout(
      hyper, state.policy_params, jax.random.key(0), 16, 500
    )
    alive = np.asarray(episodes.alive)
    # The mask is 1 then 0, ends with a done, and the return is its length.
    self.assertTrue(np.all(np.diff(alive, axis=1) <= 0))
    lengths = alive.sum(axis=1)
    np.testing.assert_array_equal(np.asarray(episodes.dones).sum(axis=1), 1)
    np.testing.assert_array_equal(
      np.asarray(episodes.rewards).sum(axis=1), lengths
    )
    last = np.asarray(episodes.dones)[np.arange(16), lengths.astype(int) - 1]
    np.testing.assert_array_equal(last, 1)
    self.assertTrue(jnp.all(jnp.isfinite(episodes.obs)))


if __name__ == "__main__":
  absltest.main()
