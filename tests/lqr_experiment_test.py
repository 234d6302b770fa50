"""Tests for experiments/lqr with a tiny config: runs, schema, determinism.

Two radii (0.9 and 1.1) and horizons (1, 3), every estimator, 512 rollouts:
the run writes results.json (valid against the schema), results.csv and
lqr_variance.png; a second run with the same seed gives the same numbers,
and so does a run killed part-way and restarted (finished cells are read
back); the exact means are recomputable from the problem block alone; every
|z| of the four exactly unbiased estimators is below 5 (a wiring check: over
their 48 coordinates correct estimators exceed it with probability < 3e-5;
the power statements are tests/rl_unbiased_test.py's). The batch-weighted
total propagation (O(1/N) bias by construction) is left out of it.
"""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from experiments import lqr
from experiments.common import config as config_lib
from experiments.configs import lqr as lqr_config
from rgrad import exact
from rgrad import rl
from tests import workdirs


def _tiny(**overrides):
  config = lqr_config.get_config()
  config.spectral_radii = (0.9, 1.1)
  config.horizons = (1, 3)
  config.num_samples = 512
  config.chunk_size = 256
  config.batch_size = 8
  config.plot = False
  for k, v in overrides.items():
    config[k] = v
  return config


class LQRExperimentTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = workdirs.class_tempdir(cls)
    cls.results = lqr.run(_tiny(plot=True), cls.workdir)

  def test_outputs_and_schema(self):
    for f in (
      "results.json",
      "results.csv",
      "timings.json",
      "lqr_variance.png",
    ):
      self.assertTrue(os.path.exists(os.path.join(self.workdir, f)), f)
    with open(os.path.join(self.workdir, "results.json")) as f:
      loaded = json.load(f)
    lqr.validate(loaded)
    self.assertLen(loaded["records"], 5 * 2 * 2 * 3)
    self.assertEqual(
      set(loaded["checks"]),
      {
        "score_function_grows_with_T",
        "bptt_explodes_past_one",
        "total_propagation_near_better",
        "total_propagation_batch_near_better",
        "all_unbiased",
        "bptt_below_score_function",
      },
    )
    for r in loaded["records"]:
      self.assertEqual(r["num_samples"], 512)
      self.assertGreater(r["variance"], 0.0)
      self.assertGreater(r["variance_stderr"], 0.0)

  def test_z_scores_small(self):
    z = [
      abs(r["z"])
      for r in self.results["records"]
      if r["estimator"] not in lqr.outputs.BIASED
    ]
    self.assertLess(max(z), 5.0)

  def test_exact_mean_recomputable_from_problem_block(self):
    for rho, block in self.results["config"]["problems"].items():
      fields = {f: jnp.asarray(block[f]) for f in rl.LQR._fields}
      params = {
        "K": jnp.asarray(block["K"]),
        "log_sigma": jnp.asarray(math.log(block["sigma"])),
      }
      for horizon in self.results["horizons"]:
        g = exact.lqr_policy_gradient(rl.LQR(**fields), params, horizon)
        want = np.concatenate([np.ravel(g["K"]), [g["log_sigma"]]])
        got = [
          r["exact_mean"]
          for r in self.results["records"]
          if r["estimator"] == "bptt"
          and r["horizon"] == horizon
          and str(r["spectral_radius"]) == rho
        ]
        np.testing.assert_allclose(got, want, rtol=1e-12)

  def test_deterministic(self):
    again = lqr.run(_tiny(), workdirs.tempdir(self))
    self.assertEqual(again["records"], self.results["records"])

  def test_resume(self):
    # Killed after 5 of the 16 cells, restarted with the same flags: only
    # the other 15 are measured, and the records are the uninterrupted
    # run's, bit for bit.
    workdir = workdirs.tempdir(self)
    self.assertIsNone(lqr.run(_tiny(), workdir, stop_after_cells=5))
    self.assertLen(os.listdir(os.path.join(workdir, "cells")), 5)
    resumed = lqr.run(_tiny(), workdir)
    self.assertEqual(resumed["records"], self.results["records"])
    self.assertLen(os.listdir(os.path.join(workdir, "cells")), 20)
    with self.assertRaisesRegex(config_lib.ConfigError, "seed"):
      lqr.run(_tiny(seed=1), workdir)

  def test_bad_config(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "batch_size"):
      lqr.validate_config(_tiny(batch_size=6, chunk_size=256))
    with self.assertRaisesRegex(config_lib.ConfigError, "estimators"):
      lqr.validate_config(_tiny(estimators="nope"))


if __name__ == "__main__":
  absltest.main()
