r"""Tests for the Pendulum-v1 part of experiments/policy_gradient.

* A tiny run (two policies, horizons 1 and 5, 512 rollouts, every
  estimator): results.json follows its schema, results.csv and the figure
  exist, a second run gives the same records, and a run killed after 3 of
  its 20 cells and restarted gives them bit for bit.
* Bad configs are refused before any work, naming the field.
* BPTT through gymnax's ``step`` is unbiased (:class:`PathwiseBiasTest`).
  The pathwise gradient's mean is the gradient of the expectation when the
  cost is continuous in the parameters along every noise path; a jump (a
  discontinuity the derivative cannot see) or a dropped term would make
  :math:`E[\nabla_\theta C] \ne \nabla_\theta E[C]`. Over the *same*
  rollouts (common noise), the central difference of the batch's mean cost,
  :math:`(\bar C(\theta + h e_j) - \bar C(\theta - h e_j)) / 2h`, converges
  to :math:`\nabla_\theta E[C]` including any jump's contribution, while
  the mean of the pathwise rows misses it; their per-rollout difference
  :math:`d_i` has mean zero exactly when the pathwise gradient is unbiased
  (up to the difference quotient's systematic :math:`O(h^2)` error, allowed
  up to :math:`10^{-8}|\nabla J|`) and, since the two share
  their noise, a small variance. The test asserts :math:`|\bar d_j| < 5\,
  \mathrm{SE}_j` and that this detects a bias of 1% of the gradient's norm
  on every coordinate (``power.assert_detects``), at T = 20 with the
  pumping policy, where the pendulum swings over the top.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from experiments import policy_gradient
from experiments.common import config as config_lib
from experiments.configs import policy_gradient as pg_config
from experiments.policy_gradient import pendulum
from experiments.policy_gradient import pendulum_outputs
from rgrad import rl
from tests import power
from tests import workdirs


def _tiny(**overrides):
  config = pg_config.get_config("pendulum")
  config.horizons = (1, 5)
  config.policies = {
    "passive": (0.0, 0.0, 0.0, 0.0),
    "pumping": (0.0, 0.0, 0.5, 0.0),
  }
  config.num_samples = 512
  config.chunk_size = 256
  config.batch_size = 8
  config.plot = False
  config.update(overrides)
  return config


class PendulumRunTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = workdirs.class_tempdir(cls)
    cls.results = policy_gradient.run(_tiny(plot=True), cls.workdir)["results"]

  def test_outputs_and_schema(self):
    for f in ("results.json", "results.csv", "timings.json"):
      self.assertTrue(os.path.exists(os.path.join(self.workdir, f)), f)
    self.assertTrue(
      os.path.exists(os.path.join(self.workdir, "pendulum_variance.png"))
    )
    with open(os.path.join(self.workdir, "results.json")) as f:
      loaded = json.load(f)
    pendulum_outputs.validate(loaded)
    self.assertEqual(loaded["env"], "Pendulum-v1")
    self.assertLen(loaded["records"], 5 * 2 * 2 * 5)
    self.assertLen(loaded["summary"], 5 * 2 * 2)
    self.assertEqual(
      set(loaded["checks"]),
      {
        "score_function_grows_with_T",
        "bptt_wins_short_horizons",
        "bptt_explodes",
        "total_propagation_near_better",
        "total_propagation_batch_near_better",
        "means_agree",
      },
    )
    # One reference per cell, its own z null, every other z finite.
    for r in loaded["records"]:
      if r["estimator"] == r["reference_estimator"]:
        self.assertIsNone(r["z"])
      else:
        self.assertTrue(np.isfinite(r["z"]))
    # A wiring check, not a power statement (that is PathwiseBiasTest and
    # tests/rl_unbiased_test.py): the 60 z's of the three unbiased
    # non-reference estimators per cell under 5.
    self.assertTrue(loaded["checks"]["means_agree"]["holds"])
    # At T <= 5 the pathwise gradient wins by orders of magnitude.
    self.assertTrue(loaded["checks"]["bptt_wins_short_horizons"]["holds"])

  def test_deterministic(self):
    again = policy_gradient.run(_tiny(), workdirs.tempdir(self))["results"]
    self.assertEqual(again["records"], self.results["records"])

  def test_resume(self):
    workdir = workdirs.tempdir(self)
    stopped = policy_gradient.run(_tiny(), workdir, stop_after_step=3)
    self.assertIsNone(stopped["results"])
    self.assertLen(os.listdir(os.path.join(workdir, "cells")), 3)
    resumed = policy_gradient.run(_tiny(), workdir)["results"]
    self.assertEqual(resumed["records"], self.results["records"])
    self.assertLen(os.listdir(os.path.join(workdir, "cells")), 20)
    with self.assertRaisesRegex(config_lib.ConfigError, "sigma"):
      policy_gradient.run(_tiny(sigma=0.5), workdir)


class PendulumBadConfigTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("horizon", {"horizons": (1, 201)}, "beyond Pendulum-v1's 200-step"),
    ("estimator", {"estimators": "bptt,nope"}, "estimators"),
    ("policy", {"policies": {"p": (0.0, 1.0)}}, r"config.policies.p must be"),
    ("sigma", {"sigma": 0.0}, "config.sigma must be > 0"),
    ("batch", {"batch_size": 6}, r"config.batch_size \(6\) must be even"),
    ("samples", {"num_samples": 8, "chunk_size": 8}, "at least two batches"),
  )
  def test_rejected_before_any_work(self, overrides, message):
    config = _tiny()
    with config.unlocked():
      for field, value in overrides.items():
        config[field] = value
    workdir = os.path.join(workdirs.tempdir(self), "out")
    with self.assertRaisesRegex(config_lib.ConfigError, message):
      policy_gradient.run(config, workdir)
    self.assertFalse(os.path.exists(workdir))


class PathwiseBiasTest(absltest.TestCase):
  def test_bptt_through_gymnax_is_unbiased(self):
    jax.config.update("jax_enable_x64", True)
    env = pendulum.environment()
    params = pendulum.policy_params((0.0, 0.0, 0.5, 0.0), 1.0)
    horizon, n, h = 20, 4096, 1e-5
    noise = rl.sample_rollout_noise(jax.random.key(7), horizon, n, 1)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def costs(theta):  # [n] total costs on the fixed noise.
      traj = rl.rollout(env, pendulum.mean_fn, unravel(theta), noise)
      return jnp.sum(traj.costs, axis=1)

    @jax.jit
    def differences():
      grads = jax.jacrev(costs)(flat)  # [n, 5]: the pathwise rows.
      basis = jnp.eye(flat.size, dtype=flat.dtype)
      fd = jax.vmap(lambda e: costs(flat + h * e) - costs(flat - h * e))(basis)
      return grads, fd.T / (2 * h)

    grads, fd = differences()
    d = np.asarray(fd - grads)
    se = d.std(axis=0, ddof=1) / np.sqrt(n)
    gradient = np.asarray(fd.mean(axis=0))
    # 5 SE detects 1% of |grad| on every coordinate.
    power.assert_detects(
      d.var(axis=0, ddof=1),
      np.linalg.norm(gradient),
      n,
      power.PATHWISE_POWER,
      what="BPTT bias through Pendulum-v1",
    )
    # Plus the difference quotient's own O(h^2) error, which is systematic
    # (~1e-10 here), allowed up to 1e-8 |grad|: far below the 1% detected.
    tol = 1e-8 * np.linalg.norm(gradient)
    np.testing.assert_array_less(np.abs(d.mean(axis=0)), 5 * se + tol)


if __name__ == "__main__":
  absltest.main()
