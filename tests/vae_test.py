"""Tests for experiments/vae/: tiny runs, outputs, resume, bad flags."""

import csv
import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from experiments import vae
from experiments.common import gradient_stats
from experiments.configs import vae as vae_config
from experiments.vae import gradients as vae_gradients
from experiments.vae import train as vae_train
from tests import vae_checks
from tests import workdirs


def _tiny_config(**overrides):
  config = vae_checks.tiny_config(vae_config.get_config())
  config.update(latent_dim=2, hidden_dim=16, num_samples=2)
  config.update(overrides)
  return config


_leaves = workdirs.leaves


@pytest.mark.slow
class VaeRunTest(vae_checks.RunChecks, parameterized.TestCase):
  """One tiny run of every estimator, shared by the tests below."""

  estimators = "all"
  experiment = vae
  train_lib = vae_train
  make_config = staticmethod(_tiny_config)
  # score_function carries a non-trivial baseline state as well.
  resume_estimator = "score_function"
  trained = staticmethod(lambda result, name: result["params"][name])

  def test_every_estimator_trains(self):
    metrics = self.result["metrics"]
    self.assertEqual(metrics["estimators"], list(vae.ESTIMATORS))
    histories = metrics["history"]
    initial = histories["pathwise"][0]
    for name in vae.ESTIMATORS:
      rows = histories[name]
      self.assertEqual([r["step"] for r in rows], [0, 2, 4, 6])
      for row in rows:
        for field in vae.METRIC_FIELDS:
          self.assertTrue(np.isfinite(row[field]), msg=f"{name} {field}")
        self.assertGreater(row["grad_variance"], 0.0)
        # A bound on a log-likelihood of binary pixels is negative, and the
        # IWAE bound (same draws) is at least the ELBO.
        self.assertLess(row["test_elbo"], 0.0)
        self.assertGreaterEqual(row["test_iwae"], row["test_elbo"])
      # Same initialization for every estimator: identical step-0 bounds.
      for field in ("train_elbo", "test_elbo", "test_iwae"):
        self.assertEqual(rows[0][field], initial[field])
      # ... and training moved every parameter array.
      for initial_leaf, final_leaf in zip(
        _leaves(self.result["initial_params"]),
        _leaves(self.result["params"][name]),
        strict=True,
      ):
        self.assertFalse(np.array_equal(initial_leaf, final_leaf), msg=name)

  def test_output_schema(self):
    with open(os.path.join(self.workdir, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertEqual(metrics["schema_version"], vae.SCHEMA_VERSION)
    self.assertEqual(
      set(metrics),
      {"schema_version", "config", "estimators", "data", "history", "final"},
    )
    self.assertEqual(metrics["config"], self.config.to_dict())
    self.assertEqual(
      metrics["data"], {"num_train": 1438, "num_test": 359, "dim": 64}
    )
    for name in vae.ESTIMATORS:
      for row in metrics["history"][name]:
        self.assertEqual(set(row), set(vae.METRIC_FIELDS))
      self.assertEqual(metrics["final"][name], metrics["history"][name][-1])

    with open(os.path.join(self.workdir, "metrics.csv")) as f:
      rows = list(csv.reader(f))
    self.assertEqual(tuple(rows[0]), ("estimator", *vae.METRIC_FIELDS))
    self.assertLen(rows, 1 + 4 * len(vae.ESTIMATORS))
    first = dict(zip(rows[0], rows[1], strict=True))
    self.assertEqual(first["estimator"], "pathwise")
    self.assertEqual(
      float(first["test_elbo"]), metrics["history"]["pathwise"][0]["test_elbo"]
    )

    for png in ("elbo", "grad_variance", "reconstructions", "samples"):
      path = os.path.join(self.workdir, f"{png}.png")
      with open(path, "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", msg=path)


class EncoderGradientTest(absltest.TestCase):
  @pytest.mark.slow
  def test_estimators_agree_on_the_elbo_gradient(self):
    # pathwise, score_function and leave_one_out estimate the same ELBO
    # gradient (with the KL term exact); stl gets there through the Monte
    # Carlo entropy instead, sharing none of that KL code. Independent
    # replicates; per coordinate |mean - mean_pathwise| < 5 combined stderrs.
    model = vae.make_model(latent_dim=2, hidden_dim=4, data_dim=64)
    params = model.init(jax.random.key(0))
    x = jnp.asarray(vae.load_digits_binarized()[0][:3])
    names = ("pathwise", "score_function", "leave_one_out", "stl")
    num_replicates = 3000

    @jax.jit
    def replicates(key):
      keys = jax.random.split(key, num_replicates)
      out = {}
      for i, name in enumerate(names):
        estimate = lambda k, name=name: vae.encoder_gradient(
          name, model, 2, params, jnp.asarray(25.0), x, k
        )[0]
        grads = jax.vmap(estimate)(
          jax.vmap(jax.random.fold_in, (0, None))(keys, i)
        )
        flat = jnp.concatenate(
          [g.reshape(num_replicates, -1) for g in jax.tree.leaves(grads)], 1
        )
        out[name] = (flat.mean(0), flat.var(0, ddof=1) / num_replicates)
      return out

    moments = replicates(jax.random.key(1))
    reference_mean, reference_se2 = moments["pathwise"]
    for name in names[1:]:
      mean, se2 = moments[name]
      # Kernel rows of pixels that are 0 in all three images get an exactly
      # zero gradient from every estimator: compare those exactly.
      noisy = np.asarray(se2 + reference_se2) > 0
      self.assertGreater(noisy.sum(), 100)
      np.testing.assert_allclose(mean[~noisy], reference_mean[~noisy], atol=0)
      z = (
        np.abs(mean - reference_mean)[noisy]
        / np.sqrt(se2 + reference_se2)[noisy]
      )
      self.assertLess(float(z.max()), 5.0, msg=name)


class SignalToNoiseTest(absltest.TestCase):
  """The SNR of R replicate estimates, against draws with a known mean."""

  _SEEDS, _R, _DIM = 400, 16, 200

  def _estimates(self, mean):
    # Per seed: R i.i.d. N(mean, I) draws of a 200-coordinate gradient, as a
    # two-leaf pytree (the sums run over leaves). tr Sigma = 200.
    draws = mean + jax.random.normal(
      jax.random.key(0), (self._SEEDS, self._R, self._DIM), jnp.float64
    )
    grads = {
      "a": draws[..., :150],
      "b": draws[..., 150:].reshape(self._SEEDS, self._R, 10, 5),
    }
    out = jax.vmap(gradient_stats.signal_to_noise)(grads)
    old = jnp.sqrt(
      jnp.sum(jnp.square(draws.mean(1)), -1) / out["grad_variance"]
    )  # the former plug-in ||g_bar|| / sqrt(tr S)
    return jax.tree.map(np.asarray, out), np.asarray(old)

  def test_no_signal_reads_zero(self):
    # E g = 0: SNR = 0. Per seed grad_snr_sq has sd ~ sqrt(2/d)/R = 0.006,
    # so over 400 seeds 5 SE ~ 0.0016, against the old formula's bias of
    # 1/R = 0.0625 in SNR^2 (it read sqrt(1/R) = 0.25).
    out, old = self._estimates(0.0)
    snr_sq = out["grad_snr_sq"]
    se = snr_sq.std(ddof=1) / np.sqrt(self._SEEDS)
    self.assertLess(abs(snr_sq.mean()), 5 * se)
    self.assertLess(5 * se, 0.1 / self._R)
    np.testing.assert_allclose(old.mean(), np.sqrt(1 / self._R), rtol=0.05)
    # The clipped square root is biased up by the estimate's own noise only
    # (~0.03 here), not by sqrt(1/R) = 0.25.
    self.assertLess(out["grad_snr"].mean(), 0.1)
    np.testing.assert_array_equal(
      out["grad_snr"], np.sqrt(np.maximum(snr_sq, 0.0))
    )
    np.testing.assert_allclose(
      out["grad_variance"].mean(), self._DIM, rtol=0.01
    )

  def test_unit_signal(self):
    # E g = 1 in every coordinate: ||E g||^2 / tr Sigma = 1. Per seed sd ~
    # sqrt(4 / (R d)) = 0.035: 5 SE over 400 seeds ~ 0.009, so this detects
    # a 1% bias in SNR^2 (the old formula's is 1/R = 6%).
    out, _ = self._estimates(1.0)
    snr_sq = out["grad_snr_sq"]
    se = snr_sq.std(ddof=1) / np.sqrt(self._SEEDS)
    self.assertLess(abs(snr_sq.mean() - 1.0), 5 * se)


class BadFlagsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("unknown_estimator", {"estimator": "reinforce"}, "Unknown estimator"),
    ("zero_samples", {"num_samples": 0}, "num_samples must be >= 1, got 0"),
    ("negative_samples", {"num_samples": -5}, "num_samples must be >= 1"),
    (
      "loo_one_sample",
      {"estimator": "leave_one_out", "num_samples": 1},
      "num_samples must be >= 2 for the leave_one_out",
    ),
    (
      "all_one_sample",
      {"estimator": "all", "num_samples": 1},
      "num_samples must be >= 2 for the leave_one_out",
    ),
    ("zero_steps", {"num_steps": 0}, "num_steps must be >= 1"),
    ("zero_latent", {"latent_dim": 0}, "latent_dim must be >= 1"),
    ("negative_seed", {"seed": -1}, "config.seed must be >= 0"),
    (
      "one_replicate",
      {"num_variance_replicates": 1},
      "num_variance_replicates must be >= 2",
    ),
    ("test_fraction", {"test_fraction": 1.0}, "test_fraction must be < 1"),
    ("no_test", {"test_fraction": 0.0}, "test_fraction must be > 0"),
    ("threshold", {"binarize_threshold": -0.5}, "binarize_threshold must be"),
    ("decay", {"baseline_decay": 1.0}, "baseline_decay must be < 1"),
    ("learning_rate", {"learning_rate": 0.0}, "learning_rate must be > 0"),
    ("big_batch", {"batch_size": 5000}, "batch_size .* exceeds"),
    (
      "big_variance_batch",
      {"variance_batch_size": 5000},
      "variance_batch_size .* exceeds",
    ),
  )
  def test_fails_before_training(self, overrides, message):
    vae_checks.assert_fails_before_training(
      self, vae, vae_train, _tiny_config(**overrides), message
    )


class RegistryTest(absltest.TestCase):
  def test_estimators_come_from_the_registry(self):
    for name in vae.ESTIMATORS:
      spec = vae_gradients.get_spec(name)
      # The very entry, not a copy: the registry describes each estimator once.
      self.assertIs(
        spec, rgrad.get_estimator(vae_gradients.registry_name(name))
      )
      self.assertEqual(spec.stateful, name == "score_function", msg=name)
    self.assertEqual(
      vae_gradients.registry_name("score_function"),
      "score_function_moving_average",
    )
    objectives = {
      n: vae_gradients.get_spec(n).objective for n in vae.ESTIMATORS
    }
    self.assertEqual(
      objectives,
      {
        "pathwise": "expectation",
        "score_function": "expectation",
        "leave_one_out": "expectation",
        "stl": "negative_elbo",
        "dreg": "negative_iwae_bound",
      },
    )

  def test_refuses_a_stateful_estimator_with_another_state(self):
    class CountState(NamedTuple):
      count: jax.Array

    def estimate(function, params, dist_builder, key, num_samples, state):
      jac = rgrad.get_estimator("score_function").fn(
        function, params, dist_builder, key, num_samples
      )
      return jac, CountState(state.count + 1)

    spec = rgrad.get_estimator("score_function_moving_average")._replace(
      fn=rgrad.StatefulEstimator(lambda p: CountState(jnp.zeros(())), estimate)
    )
    rgrad.register_estimator("vae_test_counting", spec)
    self.addCleanup(rgrad.unregister_estimator, "vae_test_counting")
    with self.assertRaisesRegex(ValueError, "moving-average baseline only"):
      vae_gradients.get_spec("vae_test_counting")

  def test_only_the_stateful_estimator_reads_the_baseline(self):
    # Traced, not compiled: does the estimate's computation read the baseline?
    model = vae.make_model(latent_dim=2, hidden_dim=4, data_dim=64)
    params = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((3, 64), jnp.float32)
    for name in vae.ESTIMATORS:
      estimate = lambda baseline, p, x, name=name: vae.encoder_gradient(
        name, model, 2, p, baseline, x, jax.random.key(1)
      )
      jaxpr = jax.make_jaxpr(estimate)(jnp.asarray(25.0), params, x).jaxpr
      baseline = jaxpr.invars[0]
      reads = any(v is baseline for e in jaxpr.eqns for v in e.invars)
      self.assertEqual(reads, name == "score_function", msg=name)


class DataTest(absltest.TestCase):
  def test_load_digits_binarized(self):
    train, test = vae.load_digits_binarized(test_fraction=0.2, seed=0)
    self.assertEqual(train.shape, (1438, 64))
    self.assertEqual(test.shape, (359, 64))
    self.assertEqual(train.dtype, np.float32)
    both = np.concatenate([train, test])
    self.assertTrue(np.all((both == 0.0) | (both == 1.0)))
    # Fixed by the seed; another seed gives another split of the same images.
    again, _ = vae.load_digits_binarized(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = vae.load_digits_binarized(test_fraction=0.2, seed=1)
    self.assertFalse(np.array_equal(train, other))
    np.testing.assert_array_equal(
      np.sort(both.sum(1)),
      np.sort(np.concatenate(vae.load_digits_binarized(0.2, 1)).sum(1)),
    )


if __name__ == "__main__":
  absltest.main()
