"""End-to-end test of experiments/chain_rule.py on a tiny config."""

import csv
import json
import os
import tempfile

import pytest
from absl.testing import absltest

from experiments import chain_rule
from experiments.configs import chain_rule as chain_rule_config

_CHECK_KEYS = {
  "group",
  "name",
  "passed",
  "num_points",
  "autodiff_max_abs",
  "autodiff_max_rel",
  "fd_max_abs",
  "fd_max_rel",
  "report",
}


def _tiny_config():
  config = chain_rule_config.get_config()
  config.num_points = 3
  config.primitive_names = ("relu", "softmax")
  config.multi_argument = False  # covered by primitives_test
  config.compositions.num_chains = 1
  config.compositions.max_depth = 3
  config.mlp.layer_sizes = (2, 3, 2)
  config.mlp.batch_size = 3
  config.rnn.hidden_size = 3
  config.rnn.num_steps = 6
  config.rnn.grad_norm_steps = (1, 4, 6)
  config.rnn.grad_norm_scales = (0.5, 2.0)
  config.timing.num_warmup = 1
  config.timing.num_repeats = 2
  config.lock()
  return config


@pytest.mark.slow
class ChainRuleExperimentTest(absltest.TestCase):
  def test_run_writes_results(self):
    # tempfile rather than self.create_tempdir: under pytest absl flags are
    # not parsed.
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    workdir = os.path.join(tmp.name, "chain_rule")  # run() creates it
    results = chain_rule.run(_tiny_config(), workdir)

    with open(os.path.join(workdir, "results.json")) as f:
      on_disk = json.load(f)  # strict JSON: no NaN was written
    self.assertEqual(
      set(on_disk),
      {"all_passed", "config", "checks", "rnn_h0_grad_norm", "timing"},
    )
    self.assertEqual(on_disk["all_passed"], results["all_passed"])
    self.assertTrue(on_disk["all_passed"])
    self.assertEqual(on_disk["config"]["rnn"]["num_steps"], 6)

    groups = {c["group"] for c in on_disk["checks"]}
    self.assertEqual(groups, {"primitive", "composition", "mlp", "rnn"})
    for check in on_disk["checks"]:
      self.assertEqual(set(check), _CHECK_KEYS, check["name"])
      self.assertIsInstance(check["passed"], bool)
      self.assertLessEqual(check["autodiff_max_rel"], 1e-10, check["name"])
      self.assertIn("leaves", check["report"])
    names = [c["name"] for c in on_disk["checks"]]
    for expected in (
      "relu/edge",
      "softmax/vjp",
      "mlp/relu/2-3-2",
    ):
      self.assertIn(expected, names)
    self.assertIn("rnn/T=6/H=3", names)
    # One chain: a finite-difference check and three modes.
    self.assertLen([n for n in names if n.startswith("[")], 4)

    norms = on_disk["rnn_h0_grad_norm"]
    self.assertLen(norms, 6)
    for row in norms:
      self.assertEqual(
        set(row),
        {"num_steps", "recurrent_scale", "last_step_norm", "all_steps_norm"},
      )
      self.assertGreater(row["all_steps_norm"], 0.0)
    # With one step, the last step is the only step.
    first = norms[0]
    self.assertEqual(first["num_steps"], 1)
    self.assertAlmostEqual(first["last_step_norm"], first["all_steps_norm"])

    self.assertEqual([t["model"] for t in on_disk["timing"]], ["mlp", "rnn"])
    for t in on_disk["timing"]:
      self.assertGreater(t["hand_seconds"], 0.0)
      self.assertAlmostEqual(t["ratio"], t["hand_seconds"] / t["jax_seconds"])

    with open(os.path.join(workdir, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, len(on_disk["checks"]))
    self.assertEqual(set(rows[0]), _CHECK_KEYS - {"report"})
    with open(os.path.join(workdir, "rnn_h0_grad_norm.csv")) as f:
      self.assertLen(list(csv.DictReader(f)), 6)


if __name__ == "__main__":
  absltest.main()
