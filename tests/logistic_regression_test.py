"""Tests for experiments/logistic_regression and its exact reference."""

import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

from experiments import logistic_regression as lr
from experiments.common import config as config_lib
from experiments.configs import logistic_regression as lr_config
from experiments.logistic_regression import evaluation
from experiments.logistic_regression import gradients
from experiments.logistic_regression import model
from experiments.logistic_regression import train
from rgrad import exact
from rgrad import testing
from tests import workdirs


def _tiny_config(**overrides):
  config = lr_config.get_config()
  config.estimators = "pathwise,score_function_cv_online"
  config.num_steps = 8
  config.variance_every = 2
  config.eval_every = 4
  config.log_every = 4
  config.checkpoint_every = 4
  config.num_samples = 4
  config.num_coefficient_samples = 3
  config.num_variance_replicates = 4
  config.variance_chunk_size = 2
  config.num_eval_samples = 16
  config.plot = False
  config.update(overrides)
  return config


class RunTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    cls.config = _tiny_config()
    cls.result = lr.run(cls.config, cls.workdir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.workdir, ignore_errors=True)
    super().tearDownClass()

  def test_schema(self):
    with open(os.path.join(self.workdir, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(tuple(results), lr.TOP_LEVEL_KEYS)
    self.assertEqual(results["schema_version"], lr.SCHEMA_VERSION)
    self.assertEqual(
      results["data"], {"num_train": 455, "num_test": 114, "dim": 31}
    )
    for name in results["estimators"]:
      self.assertEqual(
        [r["step"] for r in results["variance"][name]], [0, 2, 4, 6, 8]
      )
      self.assertEqual(
        [r["step"] for r in results["evaluation"][name]], [0, 4, 8]
      )
      for row in results["variance"][name]:
        self.assertEqual(tuple(row), lr.VARIANCE_FIELDS)
        self.assertGreater(row["variance_loc"], 0.0)
        self.assertGreater(row["variance_loc_se"], 0.0)
        self.assertGreater(row["variance_log_scale_se"], 0.0)
      for row in results["evaluation"][name]:
        self.assertEqual(tuple(row), lr.EVALUATION_FIELDS)
      self.assertEqual(tuple(results["final"][name]), lr.FINAL_FIELDS)
    for csv_name in ("variance", "evaluation", "final"):
      self.assertTrue(
        os.path.exists(os.path.join(self.workdir, f"{csv_name}.csv"))
      )

  def test_deterministic(self):
    again = lr.run(self.config, workdirs.tempdir(self))
    for name in self.result["params"]:
      for a, b in zip(
        jax.tree.leaves(again["params"][name]),
        jax.tree.leaves(self.result["params"][name]),
        strict=True,
      ):
        np.testing.assert_array_equal(a, b)

  def test_resume_is_bitwise_identical(self):
    workdir = workdirs.tempdir(self)
    config = _tiny_config(estimators="score_function_cv_online")
    self.assertIsNone(lr.run(config, workdir, stop_after_step=6)["results"])
    resumed = lr.run(config, workdir)
    for a, b in zip(
      jax.tree.leaves(resumed["params"]["score_function_cv_online"]),
      jax.tree.leaves(self.result["params"]["score_function_cv_online"]),
      strict=True,
    ):
      np.testing.assert_array_equal(a, b)
    drop = lambda rows: [
      {k: v for k, v in r.items() if k != "wall_time_s"} for r in rows
    ]
    for section in ("variance", "evaluation"):
      self.assertEqual(
        drop(resumed["results"][section]["score_function_cv_online"]),
        drop(self.result["results"][section]["score_function_cv_online"]),
      )

  def test_refuses_another_num_steps(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "num_steps"):
      lr.run(_tiny_config(num_steps=10), self.workdir)

  def test_exact_elbo_matches_monte_carlo_elbo_roughly(self):
    for name in self.result["results"]["estimators"]:
      row = self.result["results"]["evaluation"][name][0]
      self.assertLess(
        abs(row["elbo"] - row["elbo_exact"]), 0.2 * abs(row["elbo_exact"])
      )


class VarianceRowTest(absltest.TestCase):
  def test_standard_error_of_the_summed_variance(self):
    # One chunk of R replicates: the row must equal, to rounding, the trace
    # of their sample covariance and R/(R-1) SE(mean |g_r - mean g|^2) of
    # the same replicates (drawn here from the key the engine gives chunk 0),
    # which a second pass over other draws, or per-coordinate errors summed
    # as if independent, would not.
    split = lr.load_breast_cancer()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    config = _tiny_config()
    hyper = train.Hyper.from_config(config, "score_function", x.shape[0])
    params = model.init_params(31, 0.0, jnp.float32)
    state = train.init_state(hyper, params, jax.random.key(0))
    measure_key, num = jax.random.key(5), 16
    row = evaluation.gradient_variance(
      state, x, y, measure_key, hyper, num, num
    )
    xb, yb = train.minibatch(state.key, state.step, x, y, hyper.batch_size)
    chunk_key = jax.random.fold_in(
      jax.random.fold_in(measure_key, state.step), 0
    )
    g = evaluation.VarianceChunk(hyper)(
      chunk_key, num, (params, xb, yb, state.estimator_state)
    )
    for part in ("loc", "log_scale"):
      a = np.asarray(g[part], np.float64)
      d = np.sum((a - a.mean(0)) ** 2, axis=1)
      factor = num / (num - 1)
      np.testing.assert_allclose(
        row[f"variance_{part}"], factor * d.mean(), rtol=1e-4
      )
      np.testing.assert_allclose(
        row[f"variance_{part}_se"],
        factor * d.std(ddof=1) / np.sqrt(num),
        rtol=1e-4,
      )


class BadConfigTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("unknown", {"estimators": "reinforce"}, "Unknown name"),
    ("multiple", {"eval_every": 3}, "multiple of config.variance_every"),
    ("chunk", {"variance_chunk_size": 3}, "multiple of config.variance_chunk"),
    ("loo", {"estimators": "leave_one_out", "num_samples": 1}, ">= 2"),
    ("batch", {"batch_size": 1000}, "exceeds"),
  )
  def test_fails_before_training(self, overrides, message):
    workdir = os.path.join(workdirs.tempdir(self), "run")
    with self.assertRaisesRegex(config_lib.ConfigError, message):
      lr.run(_tiny_config(**overrides), workdir)
    self.assertFalse(os.path.exists(workdir))


class ExactReferenceTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    split = lr.load_breast_cancer()
    self.x = jnp.asarray(split.x_train[:64])
    self.y = jnp.asarray(split.y_train[:64])
    rng = np.random.default_rng(0)
    self.loc = jnp.asarray(0.3 * rng.normal(size=31))

  def test_order_convergence_and_hand_gradient(self):
    # Both rules, every regime: 100 -> 400 nodes agree to 1e-12 relative, and
    # the hand-written gradient equals jax.grad of the value to 1e-12.
    for sigma in (3.0, 1.0, 0.3, 1e-3):
      log_scale = jnp.full(31, np.log(sigma))
      results = [
        exact.logistic_expected_log_likelihood(
          self.loc, log_scale, self.x, self.y, num_points=n
        )
        for n in (100, 400)
      ]
      flat = [
        np.concatenate([[v], g["loc"], g["log_scale"]]) for v, g in results
      ]
      scale = np.maximum(np.abs(flat[1]), 1.0)
      np.testing.assert_array_less(np.abs(flat[0] - flat[1]) / scale, 1e-12)
      value = lambda m, s: exact.logistic_expected_log_likelihood(
        m, s, self.x, self.y
      )[0]
      gm, gs = jax.grad(value, (0, 1))(self.loc, log_scale)
      _, g = results[1]
      np.testing.assert_allclose(gm, g["loc"], rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(gs, g["log_scale"], rtol=1e-11, atol=1e-12)

  def test_against_monte_carlo(self):
    # 2^20 float64 draws of w: 5 SE of the value is ~0.3% of |L| here, so
    # this detects a reference error of that size.
    log_scale = jnp.full(31, np.log(0.5))
    value, _ = exact.logistic_expected_log_likelihood(
      self.loc, log_scale, self.x, self.y
    )
    eps = jax.random.normal(jax.random.key(0), (2**20, 31), jnp.float64)
    w = self.loc + jnp.exp(log_scale) * eps
    totals = jnp.sum(model.log_likelihood(w, self.x, self.y), axis=-1)
    se = float(jnp.std(totals) / np.sqrt(totals.size))
    self.assertLess(abs(float(jnp.mean(totals)) - float(value)), 5 * se)
    self.assertLess(5 * se, 0.01 * abs(float(value)))


class UnbiasedTest(parameterized.TestCase):
  """Each estimator's ELBO gradient at a fixed point, against the exact one.

  Holm at family-wise false alarm 1e-3 over the 62 coordinates, sized from a
  pilot run so that a relative bias of `detectable` (of each coordinate's
  scale, max(|g_j|, max|g| / 10)) is caught with probability 0.95.
  """

  @parameterized.parameters(
    ("pathwise", 0.05),
    ("measure_valued", 0.05),
    ("score_function_cv", 0.1),
    ("measure_valued_cv", 0.1),
    ("score_function", 0.5),
    ("leave_one_out", 0.2),
    ("score_function_cv_online", 0.2),
  )
  @pytest.mark.slow
  def test_unbiased(self, name, detectable):
    split = lr.load_breast_cancer()
    x, y = jnp.asarray(split.x_train[:8]), jnp.asarray(split.y_train[:8])
    params = {
      "loc": jnp.asarray(0.2 * np.random.default_rng(1).normal(size=31)),
      "log_scale": jnp.full(31, np.log(0.2)),
    }
    cost = model.negative_log_likelihood_cost(x, y, 2.0)
    _, ell = exact.logistic_expected_log_likelihood(
      params["loc"], params["log_scale"], x, y
    )
    kl = model.kl_gradient(params)
    # Gradient of the negative ELBO = -2 dL + dKL; rows carry the KL part.
    exact_grad = jax.tree.map(lambda g, k: -2.0 * g + k, ell, kl)
    base = gradients.as_estimator(name, gradients.Options(25, 0.9))
    rows, group = gradients.row_structure(name)
    if name == "score_function_cv_online":
      import rgrad  # noqa: PLC0415

      estimator = rgrad.StatefulEstimator(
        base.init,
        lambda f, p, b, k, n, s: (
          lambda out: (
            jax.tree.map(lambda j, c: j + c, out[0], kl),
            out[1],
          )
        )(base.estimate(f, p, b, k, n, s)),
      )
      kwargs = {}
    else:

      def estimator(f, p, b, k, n):
        return jax.tree.map(lambda j, c: j + c, base(f, p, b, k, n), kl)

      kwargs = {"rows": rows, "group_size": group}
    testing.assert_unbiased(
      estimator,
      cost,
      params,
      model.posterior,
      jax.random.key(3),
      exact=exact_grad,
      detectable_bias=detectable,
      chunk_size=50,
      pilot_num_samples=2000,
      max_num_samples=2_000_000,
      **kwargs,
    )


if __name__ == "__main__":
  absltest.main()
