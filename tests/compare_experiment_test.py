"""Tests for experiments/compare/ (issue 16's command)."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest

from experiments import compare as compare_experiment
from experiments.common.config import ConfigError
from experiments.configs import compare as config_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config():
  config = config_lib.get_config()
  config.problem = "experiments.configs.compare_problems:gaussian_quadratic"
  config.estimators = "pathwise,score_function"
  config.num_samples = 2_000
  config.chunk_size = 500
  config.reference = "none"
  return config


def _run_user_problem(config, module: str, source: str):
  """Runs the command on ``module:make_problem``, a user's file of `source`."""
  with tempfile.TemporaryDirectory() as d:
    with open(os.path.join(d, module + ".py"), "w") as f:
      f.write(source)
    sys.path.insert(0, d)
    try:
      config.problem = f"{module}:make_problem"
      return compare_experiment.run(config, os.path.join(d, "workdir"))
    finally:
      sys.path.remove(d)
      sys.modules.pop(module, None)


class FourDevicesTest(absltest.TestCase):
  def test_command_on_four_devices_gives_the_one_device_numbers(self):
    # The command line, as a user runs it, in a subprocess with four CPU
    # devices (XLA flags are read when JAX starts); the chunks are sharded
    # over them and the sums merged in device order, so the moments are
    # those of the one-device run here, to roundoff.
    config = _tiny_config()
    with tempfile.TemporaryDirectory() as d:
      env = dict(os.environ)
      env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
      env["JAX_PLATFORMS"] = "cpu"
      env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
      four = subprocess.run(
        [
          sys.executable,
          "-m",
          "experiments.compare",
          f"--workdir={d}/four",
          f"--config.problem={config.problem}",
          f"--config.estimators={config.estimators}",
          f"--config.num_samples={config.num_samples}",
          f"--config.chunk_size={config.chunk_size}",
          "--config.reference=none",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
      )
      self.assertEqual(four.returncode, 0, four.stderr[-3000:])
      self.assertIn("pathwise", four.stdout)
      with open(os.path.join(d, "four", "compare.json")) as f:
        got = json.load(f)
      want = compare_experiment.run(config, os.path.join(d, "one"))
    self.assertEqual((got["num_devices"], want["num_devices"]), (4, 1))
    for a, b in zip(got["estimators"], want["estimators"], strict=True):
      self.assertEqual(a["name"], b["name"])
      for la, lb in zip(a["leaves"], b["leaves"], strict=True):
        for field in ("mean", "variance", "variance_stderr"):
          np.testing.assert_allclose(la[field], lb[field], rtol=1e-10)


class CompareExperimentTest(absltest.TestCase):
  def test_run_writes_outputs(self):
    with tempfile.TemporaryDirectory() as workdir:
      result = compare_experiment.run(_tiny_config(), workdir)
      for name in ("compare.json", "compare.csv", "compare.png"):
        self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
      with open(os.path.join(workdir, "compare.json")) as f:
        self.assertEqual(json.load(f)["num_samples"], 2_000)
    self.assertEqual(
      {e["name"] for e in result["estimators"]}, {"pathwise", "score_function"}
    )

  def test_problem_that_cannot_be_imported(self):
    config = _tiny_config()
    config.problem = "no_such_package.module:make_problem"
    with self.assertRaisesRegex(ConfigError, "cannot import 'no_such_package"):
      compare_experiment.run(config, "/tmp/unused")

  def test_problem_without_make_problem(self):
    config = _tiny_config()
    config.problem = "experiments.configs.compare_problems:nope"
    with self.assertRaisesRegex(ConfigError, "no callable 'nope'"):
      compare_experiment.run(config, "/tmp/unused")

  def test_malformed_problem_spec(self):
    config = _tiny_config()
    config.problem = "just_a_module"
    with self.assertRaisesRegex(ConfigError, "package.module:make_problem"):
      compare_experiment.run(config, "/tmp/unused")

  def test_reference_at_100x(self):
    config = _tiny_config()
    config.estimators = "pathwise"
    config.reference = "lowest_variance_100x"
    with tempfile.TemporaryDirectory() as workdir:
      result = compare_experiment.run(config, workdir)
    self.assertEqual(result["reference"], "pathwise at 200000 samples")
    self.assertLess(result["estimators"][0]["max_abs_bias_z"], 5.0)

  def test_exact_reference_from_the_problem_module(self):
    config = _tiny_config()
    config.reference = "exact"
    with tempfile.TemporaryDirectory() as workdir:
      result = compare_experiment.run(config, workdir)
    self.assertEqual(result["reference"], "exact")
    for e in result["estimators"]:
      self.assertLess(e["max_abs_bias_z"], 5.0, e["name"])

  def test_exact_reference_missing(self):
    source = (
      "from experiments.configs import compare_problems\n"
      "def make_problem():\n"
      "  return compare_problems.gaussian_quadratic(dim=3)\n"
    )
    config = _tiny_config()
    config.reference = "exact"
    with self.assertRaisesRegex(
      ConfigError, "needs make_problem_gradient.*'lowest_variance_100x'"
    ):
      _run_user_problem(config, "no_gradient_problem", source)

  def test_reference_that_cannot_be_imported(self):
    config = _tiny_config()
    config.reference = "no_such_package.module:gradient"
    with self.assertRaisesRegex(
      ConfigError, "config.reference: cannot import 'no_such_package"
    ):
      compare_experiment.run(config, "/tmp/unused")

  def test_problem_that_fails_on_import(self):
    # A user's file with an error in it: the error is named, not hidden.
    source = "import numpy\nraise RuntimeError('typo in my problem')\n"
    with self.assertRaisesRegex(
      ConfigError, "cannot import 'broken_problem'.*typo in my problem"
    ):
      _run_user_problem(_tiny_config(), "broken_problem", source)

  def test_cost_that_is_not_scalar(self):
    source = (
      "import jax.numpy as jnp\nimport rgrad\n"
      "def make_problem():\n"
      "  return (lambda x: x, {'loc': jnp.zeros(3), 'scale': jnp.ones(3)},"
      " lambda p: rgrad.Normal(p['loc'], p['scale']))\n"
    )
    with self.assertRaisesRegex(ValueError, "must return a scalar"):
      _run_user_problem(_tiny_config(), "vector_problem", source)

  def test_unknown_estimator(self):
    config = _tiny_config()
    config.estimators = "pathwise,nope"
    with self.assertRaisesRegex(ConfigError, "config.estimators"):
      compare_experiment.run(config, "/tmp/unused")


if __name__ == "__main__":
  absltest.main()
