"""End-to-end test of experiments/chain_rule.py on a tiny config; its checks."""

import csv
import json
import os
import tempfile

import pytest
from absl.testing import absltest
from absl.testing import parameterized

from experiments import chain_rule
from experiments.common import config as config_checks
from experiments.configs import chain_rule as chain_rule_config

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
      norm_rows = list(csv.DictReader(f))
    self.assertLen(norm_rows, 6)
    self.assertEqual(
      list(norm_rows[0]),
      ["num_steps", "recurrent_scale", "last_step_norm", "all_steps_norm"],
    )
    self.assertAlmostEqual(
      float(norm_rows[-1]["all_steps_norm"]), norms[-1]["all_steps_norm"]
    )


def _set(config, field, value):
  """Sets the dotted `field` ("rnn.num_steps") of `config`."""
  *parents, leaf = field.split(".")
  for parent in parents:
    config = config[parent]
  config[leaf] = value


class ConfigErrorsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("num_points", "num_points", 0, r"config\.num_points must be >= 1, got 0"),
    (
      "primitive",
      "primitive_names",
      ("relu", "rleu"),
      r"'rleu' in config\.primitive_names; valid names are: ",
    ),
    (
      "tolerance",
      "tolerances.atol",
      -1e-10,
      r"config\.tolerances\.atol must be >= 0",
    ),
    (
      "num_chains",
      "compositions.num_chains",
      -1,
      r"config\.compositions\.num_chains must be >= 0",
    ),
    (
      "max_depth",
      "compositions.max_depth",
      0,
      r"config\.compositions\.max_depth must be >= 1",
    ),
    (
      "interval",
      "compositions.interval",
      (2.0, -2.0),
      r"config\.compositions\.interval must be \(lo, hi\) with lo < hi",
    ),
    (
      "interval_triple",
      "compositions.interval",
      (-2.0, 0.0, 2.0),
      r"config\.compositions\.interval must be \(lo, hi\) with lo < hi, got "
      r"\(-2\.0, 0\.0, 2\.0\)",
    ),
    (
      "one_layer",
      "mlp.layer_sizes",
      (4,),
      r"config\.mlp\.layer_sizes needs an input and an output size",
    ),
    (
      "empty_layer",
      "mlp.layer_sizes",
      (4, 0, 2),
      r"config\.mlp\.layer_sizes\[1\] must be >= 1",
    ),
    (
      # softmax is a registry primitive, but not an elementwise activation.
      "activation",
      "mlp.activations",
      ("tanh", "softmax"),
      r"'softmax' in config\.mlp\.activations",
    ),
    ("no_activation", "mlp.activations", (), r"mlp\.activations is empty"),
    (
      "hidden_size",
      "rnn.hidden_size",
      0,
      r"config\.rnn\.hidden_size must be >= 1",
    ),
    (
      "grad_norm_steps",
      "rnn.grad_norm_steps",
      (1, 0),
      r"config\.rnn\.grad_norm_steps\[1\] must be >= 1",
    ),
    (
      "grad_norm_scales",
      "rnn.grad_norm_scales",
      (),
      r"config\.rnn\.grad_norm_scales must be a non-empty sequence",
    ),
    (
      "num_repeats",
      "timing.num_repeats",
      0,
      r"config\.timing\.num_repeats must be >= 1",
    ),
  )
  def test_bad_config_fails_before_computation(self, field, value, message):
    config = _tiny_config()
    _set(config, field, value)
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "out")
      with self.assertRaisesRegex(config_checks.ConfigError, message):
        chain_rule.run(config, workdir)
      self.assertFalse(os.path.exists(workdir))

  def test_default_and_tiny_configs_pass(self):
    chain_rule.parse_config(chain_rule_config.get_config())
    chain_rule.parse_config(_tiny_config())


if __name__ == "__main__":
  absltest.main()
