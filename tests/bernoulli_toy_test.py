"""Tests for experiments/bernoulli_toy/: a tiny run, its outputs, bad flags."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import rgrad
from experiments import bernoulli_toy
from experiments.bernoulli_toy import references
from experiments.common import config as config_lib
from experiments.configs import bernoulli_toy as toy_config
from tests import workdirs

# The smoke run trains the stateful REBAR (its state carried through the
# scan, its exact moments from that state): the costliest path, ~13 CPU-s
# to compile. The other estimators' rows and units are checked without a
# run, and leave-one-out's exact moments by one jitted call.
_SMOKE = "rebar"


def _tiny_config(**overrides):
  config = toy_config.get_config("matched")  # 2 draws per iid step
  config.estimators = _SMOKE
  config.targets = (0.45, 0.499)
  config.num_seeds = 2
  config.num_steps = 20
  config.log_every = 10
  config.num_variance_draws = 16
  config.theta_grid = (-1.0, 1.0, 0)  # off: one more compile per estimator
  config.update(overrides)
  return config


class BernoulliToyRunTest(absltest.TestCase):
  """One tiny run, shared by the tests below."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = workdirs.class_tempdir(cls)
    cls.config = _tiny_config()
    cls.results = bernoulli_toy.run(cls.config, cls.workdir)

  def test_results_file_matches_schema_and_return(self):
    with open(os.path.join(self.workdir, "results.json")) as f:
      on_disk = json.load(f)
    bernoulli_toy.validate(on_disk)
    self.assertEqual(on_disk, self.results)
    self.assertEqual(on_disk["steps"], [0, 10, 20])
    names = self.config.estimators.split(",")
    self.assertEqual(on_disk["estimators"], names)
    self.assertLen(on_disk["runs"], 2 * len(names))
    self.assertLen(on_disk["final"], 2 * len(names))
    self.assertCountEqual(
      on_disk["checks"],
      (
        "reinforce_stalls",
        "control_variates_converge",
        "rebar_stalls",
        "disarm_le_arm",
        "relaxations_biased",
        "equal_evaluations",
      ),
    )

  def test_a_broken_file_fails_the_schema(self):
    broken = json.loads(json.dumps(self.results))
    del broken["runs"][0]["grad_variance"]
    broken["final"][0]["target"] = "0.45"
    with self.assertRaises(ValueError) as caught:
      bernoulli_toy.validate(broken)
    self.assertIn("$.runs[0]: missing ['grad_variance']", str(caught.exception))
    self.assertIn("$.final[0].target: expected float", str(caught.exception))

  def test_curves_have_seed_by_log_shape_and_start_at_theta_0(self):
    for run in self.results["runs"]:
      for field in ("theta", "p", "loss", "grad_variance", "exact_gradient"):
        self.assertEqual(
          np.shape(run[field]), (2, 3), (run["estimator"], field)
        )
      np.testing.assert_array_equal(np.asarray(run["p"])[:, 0], 0.5)
      t = run["target"]
      # E[f] at p: (1 - p) t^2 + p (1 - t)^2.
      p = np.asarray(run["p"])
      np.testing.assert_allclose(
        run["loss"], (1 - p) * t**2 + p * (1 - t) ** 2, rtol=1e-12
      )
      if run["exact_note"] is None:
        self.assertEqual(np.shape(run["exact_variance"]), (2, 3))

  def test_rebar_state_and_exact_mean(self):
    init = rgrad.get_estimator("rebar").fn.init(np.zeros(1)).control
    for run in self.results["runs"]:
      state = {k: np.asarray(v) for k, v in run["state"].items()}
      np.testing.assert_allclose(
        state["temperature"][:, 0], np.exp(init.log_temperature), rtol=1e-12
      )
      np.testing.assert_array_equal(state["scale"][:, 0], init.scale)
      self.assertTrue(np.all(state["temperature"] > 0))
      # REBAR is unbiased: its exact mean is the true gradient, at theta_0
      # (1 - 2t)/4 and along the run.
      np.testing.assert_allclose(
        run["exact_mean"], run["exact_gradient"], rtol=1e-8, atol=1e-15
      )
      np.testing.assert_allclose(
        np.asarray(run["exact_gradient"])[:, 0],
        (1 - 2 * run["target"]) / 4,
        rtol=1e-12,
      )
      # "matched": two draws per step, so the step variance is half the
      # unit's.
      self.assertEqual((run["num_rows"], run["units"]), (2, 2))

  def test_csv_and_figures(self):
    with open(os.path.join(self.workdir, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, len(self.results["runs"]) * 2 * 3)
    self.assertEqual(tuple(rows[0]), bernoulli_toy.outputs.CSV_COLUMNS)
    for name in ("probability.png", "variance.png"):
      self.assertTrue(os.path.exists(os.path.join(self.workdir, name)), name)


class ReferencesTest(absltest.TestCase):
  def test_leave_one_out_unit_moments_at_one_half(self):
    # K = 2 at p = 1/2: f(b) = t^2 + (1 - 2t) b, so the batch mean
    # (f_1 - f_2)(b_1 - b_2) / 2 = (1 - 2t) / 2 * 1[b_1 != b_2], a scaled
    # Bernoulli(1/2): mean (1 - 2t)/4 (the true gradient), variance
    # (1 - 2t)^2 / 16.
    moments = references.exact_moments_fn("leave_one_out", 2)
    targets = np.array([0.45, 0.499])
    mean, variance = jax.jit(
      jax.vmap(lambda t: moments(jnp.zeros(1), None, t))
    )(targets)
    c = 1 - 2 * targets
    np.testing.assert_allclose(mean[:, 0], c / 4, rtol=1e-9)
    np.testing.assert_allclose(variance[:, 0], c**2 / 16, rtol=1e-9)

  def test_which_estimators_have_exact_curves(self):
    for name in toy_config.ESTIMATORS:
      self.assertTrue(references.has_exact(name), name)
      self.assertIsNone(references.exact_note(name))
    note = references.exact_note("score_function_moving_average")
    self.assertIn("no exact reference", note)


class BernoulliToyConfigTest(absltest.TestCase):
  def test_bad_configs_name_the_field(self):
    cases = {
      "config.estimators": {"estimators": "score_function,pathwise"},
      "config.num_steps": {"num_steps": 25},
      "config.targets": {"targets": (0.45, 1.5)},
      "config.num_group_samples": {"num_group_samples": 1},
      "config.num_variance_draws": {"num_variance_draws": 1},
    }
    for field, overrides in cases.items():
      with self.subTest(field):
        with self.assertRaisesRegex(config_lib.ConfigError, field):
          bernoulli_toy.validate_config(_tiny_config(**overrides))

  def test_rows_and_units_per_step(self):
    parsed = bernoulli_toy.validate_config(
      _tiny_config(estimators="score_function,leave_one_out")
    )
    # "matched": 2 draws of the score function = 2 units; K = 2 is one unit.
    self.assertEqual(parsed.num_rows, {"score_function": 2, "leave_one_out": 2})
    self.assertEqual(parsed.units, {"score_function": 2, "leave_one_out": 1})
    parsed = bernoulli_toy.validate_config(
      _tiny_config(estimators="disarm", num_pairs=3)
    )
    self.assertEqual(
      (parsed.num_rows, parsed.units), ({"disarm": 6}, {"disarm": 3})
    )

  def test_presets(self):
    self.assertEqual(toy_config.get_config().num_samples, 1)
    self.assertEqual(toy_config.get_config("matched").num_samples, 2)
    with self.assertRaisesRegex(ValueError, "preset"):
      toy_config.get_config("nope")


if __name__ == "__main__":
  absltest.main()
