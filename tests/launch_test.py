"""The experiments' command line: a bad config value is one line, exit 1.

One suite over every experiment (`experiments.common.launch.run_app`): a bad
flag value prints exactly one line on stderr, ``<name>: error: <message>``,
nothing on stdout and no traceback, exits with status 1, and creates no
workdir. Each experiment's own tests cover its checks in process; this file
covers the command line's handling of them.
"""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BadFlagTest(parameterized.TestCase):
  @parameterized.named_parameters(
    (
      "estimator_variance_negative_samples",
      "estimator_variance",
      "--config.num_samples=-5",
      "config.num_samples must be >= 2, got -5.",
    ),
    (
      "estimator_variance_unknown_estimator",
      "estimator_variance",
      "--config.estimators=pathwise,reinforce",
      "Unknown name(s) 'reinforce' in config.estimators; valid names are: "
      "pathwise, score_function, score_function_cv, measure_valued.",
    ),
    (
      "vae_unknown_estimator",
      "vae",
      "--config.estimator=reinforce",
      "Unknown estimator 'reinforce' in config.estimator; choose one of "
      "pathwise, score_function, leave_one_out, stl, dreg or 'all'.",
    ),
    (
      "policy_gradient_horizon",
      "policy_gradient",
      "--config.horizon=501",
      "config.horizon (501) exceeds the environment's 500-step episodes; a "
      "rollout holds one episode.",
    ),
    (
      "benchmark_dim",
      "benchmark_estimators",
      "--config.dim=0",
      "config.dim must be >= 1, got 0.",
    ),
    (
      "chain_rule_grad_norm_steps",
      "chain_rule",
      "--config.rnn.grad_norm_steps=(1,0)",
      "config.rnn.grad_norm_steps[1] must be >= 1, got 0.",
    ),
  )
  def test_one_line_and_exit_status_1(self, experiment, flag, message):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "out")
      done = subprocess.run(
        [
          sys.executable,
          "-m",
          f"experiments.{experiment}",
          flag,
          f"--workdir={workdir}",
        ],
        cwd=_REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
      )
      self.assertFalse(os.path.exists(workdir))
    self.assertEqual(done.returncode, 1, done.stderr)
    self.assertEqual(
      done.stderr.splitlines(), [f"{experiment}: error: {message}"]
    )
    self.assertEqual(done.stdout, "")


if __name__ == "__main__":
  absltest.main()
