"""Tests for experiments/discrete_vae/: a tiny run, outputs, resume, flags."""

import csv
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from experiments import discrete_vae
from experiments.common import data
from experiments.common import gradient_stats
from experiments.configs import discrete_vae as dvae_config
from experiments.discrete_vae import gradients as dvae_gradients
from experiments.discrete_vae import model as dvae_model
from experiments.discrete_vae import train as dvae_train
from tests import vae_checks
from tests import workdirs

# The smoke run trains rebar, whose state has the most to checkpoint (a
# learned control and its Adam state besides the parameters). Each estimator
# compiles its own step (~10 CPU-s for rebar, which differentiates its
# estimate in the control); the others' gradients are checked, without
# training, by ExactGradientTest.
_SMOKE = ("rebar",)


def _tiny_config(**overrides):
  config = vae_checks.tiny_config(dvae_config.get_config())
  config.update(latent_dim=3, num_final_samples=4, eval_batch_size=128)
  config.update(overrides)
  return config


_tempdir, _leaves = workdirs.tempdir, workdirs.leaves


class DiscreteVaeRunTest(vae_checks.RunChecks, parameterized.TestCase):
  """One tiny run, shared by the tests below."""

  estimators = ",".join(_SMOKE)
  experiment = discrete_vae
  train_lib = dvae_train
  make_config = staticmethod(_tiny_config)
  # rebar carries its control and the control's Adam state as well.
  resume_estimator = "rebar"
  trained = staticmethod(
    lambda result, name: (result["params"][name], result["controls"][name])
  )

  def test_every_estimator_trains(self):
    metrics = self.result["metrics"]
    self.assertEqual(metrics["estimators"], list(_SMOKE))
    histories = metrics["history"]
    for name in _SMOKE:
      rows = histories[name]
      self.assertEqual([r["step"] for r in rows], [0, 2, 4, 6])
      for row in rows:
        for field in discrete_vae.METRIC_FIELDS:
          self.assertTrue(np.isfinite(row[field]), msg=f"{name} {field}")
        self.assertGreater(row["grad_variance"], 0.0)
        self.assertGreater(row["grad_variance_se"], 0.0)
        # Bounds on log-likelihoods of binary pixels are negative, and the
        # IWAE bound (same draws) is at least the ELBO.
        self.assertLess(row["test_elbo"], 0.0)
        self.assertGreaterEqual(row["test_iwae"], row["test_elbo"])
      # Training moved every parameter array (the learned prior's too) and
      # the control.
      for initial_leaf, final_leaf in zip(
        _leaves(self.result["initial_params"]),
        _leaves(self.result["params"][name]),
        strict=True,
      ):
        self.assertFalse(np.array_equal(initial_leaf, final_leaf), msg=name)
      for initial_leaf, final_leaf in zip(
        _leaves(dvae_gradients.initial_control(name)),
        _leaves(self.result["controls"][name]),
        strict=True,
      ):
        self.assertFalse(np.array_equal(initial_leaf, final_leaf), msg=name)
      # Two evaluations per image per step; rebar's one draw takes three.
      self.assertEqual(
        metrics["cost_evaluations"][name], 3 if name == "rebar" else 2
      )
      final = metrics["final"][name]
      self.assertLess(final["test_iwae_final"], 0.0)

  def test_output_schema(self):
    with open(os.path.join(self.workdir, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertEqual(metrics["schema_version"], discrete_vae.SCHEMA_VERSION)
    self.assertEqual(
      set(metrics),
      {
        "schema_version",
        "config",
        "estimators",
        "data",
        "cost_evaluations",
        "history",
        "final",
      },
    )
    self.assertEqual(metrics["config"], self.config.to_dict())
    self.assertEqual(
      metrics["data"],
      {
        "source": "sklearn_digits",
        "num_train": 1438,
        "num_test": 359,
        "dim": 64,
      },
    )
    for name in _SMOKE:
      for row in metrics["history"][name]:
        self.assertEqual(set(row), set(discrete_vae.METRIC_FIELDS))
      last = dict(metrics["final"][name])
      last.pop("test_iwae_final")
      self.assertEqual(last, metrics["history"][name][-1])

    with open(os.path.join(self.workdir, "metrics.csv")) as f:
      rows = list(csv.reader(f))
    self.assertEqual(tuple(rows[0]), ("estimator", *discrete_vae.METRIC_FIELDS))
    self.assertLen(rows, 1 + 4 * len(_SMOKE))
    with open(os.path.join(self.workdir, "final.csv")) as f:
      table = list(csv.DictReader(f))
    self.assertEqual([r["estimator"] for r in table], list(_SMOKE))
    self.assertEqual(tuple(table[0]), discrete_vae.FINAL_FIELDS)
    self.assertEqual(
      float(table[0]["test_iwae_final"]),
      metrics["final"][_SMOKE[0]]["test_iwae_final"],
    )
    for png in ("elbo", "grad_variance", "reconstructions", "samples"):
      path = os.path.join(self.workdir, f"{png}.png")
      with open(path, "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", msg=path)


class ExactGradientTest(absltest.TestCase):
  """Every estimator's encoder gradient against an enumerated exact one."""

  @pytest.mark.slow
  def test_mean_is_the_exact_gradient(self):
    # L = 3 latents, two images: the negative ELBO (and the K = 2 IWAE bound
    # for vimco) is a finite sum over the 2^3 states (2^6 pairs), whose
    # jax.grad in the encoder parameters is exact; it shares no estimator
    # code (log q is written out here). R = 2^15 independent batch gradients
    # per estimator: with sigma = sqrt(sum_j SE_j^2), E||mean - exact||^2 =
    # sigma^2, and ||mean - exact|| < 5 sigma fails by chance with
    # probability < 6e-7 (the tail of the worst case, one chi^2_1). A bias of
    # norm 7 sigma fails it; 7 sigma < 10% of ||exact|| is asserted, so any
    # bias of 10% of the gradient is caught.
    latent_dim, num_replicates = 3, 2**15
    model = discrete_vae.make_model("linear", latent_dim, 8, 64)
    x_np = data.load_digits_binarized()[0][:2]
    params = jax.tree.map(
      lambda a: jnp.asarray(a, jnp.float64),
      model.init(jax.random.key(0), x_np.mean(0)),
    )
    params["prior"]["logits"] = jnp.array([0.3, -0.5, 1.0])
    x = jnp.asarray(x_np, jnp.float64)
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=3)))
    pairs = jnp.asarray(list(itertools.product(range(8), repeat=2)))

    def exact_objective(encoder, iwae):
      p = {**params, "encoder": encoder}

      def one(image):
        eta = model.encode(encoder, image)
        log_q = jnp.sum(states * eta - jax.nn.softplus(eta), -1)  # [8]
        log_p = jax.vmap(
          lambda b: dvae_model.log_joint(
            model, dvae_model.generative(p), image, b
          )
        )(states)
        if not iwae:
          return -jnp.sum(jnp.exp(log_q) * (log_p - log_q))
        log_w = (log_p - log_q)[pairs]  # [64, 2]
        bound = jax.nn.logsumexp(log_w, -1) - jnp.log(2.0)
        return -jnp.sum(jnp.exp(log_q[pairs].sum(-1)) * bound)

      return jnp.mean(jax.vmap(one)(x))

    flatten = lambda tree, lead: jnp.concatenate(
      [a.reshape(*lead, -1) for a in jax.tree.leaves(tree)], -1
    )
    # A constant baseline near the mean cost (independent of the draws).
    baseline = exact_objective(params["encoder"], False)
    for name in discrete_vae.ESTIMATORS:
      iwae = dvae_gradients.get_spec(name).objective == "negative_iwae_bound"
      # REBAR/RELAX are unbiased at any control: take one away from the
      # initial one (RELAX's network starts with a zero output layer, where
      # RELAX is REBAR), so that every term of the surrogate is exercised.
      control = None
      if name in dvae_gradients.RELAXED:
        control = dvae_gradients.initial_control(name)._replace(
          log_temperature=jnp.log(0.4), scale=jnp.asarray(0.9)
        )
      if name == "relax":
        leaves, tree = jax.tree.flatten(control.network)
        keys = jax.random.split(jax.random.key(5), len(leaves))
        control = control._replace(
          network=jax.tree.unflatten(
            tree,
            [
              a + 0.05 * jax.random.normal(k, a.shape, a.dtype)
              for a, k in zip(leaves, keys, strict=True)
            ],
          )
        )
      exact = np.asarray(
        flatten(jax.grad(exact_objective)(params["encoder"], iwae), ())
      )
      estimate = jax.jit(
        jax.vmap(
          lambda k, name=name, control=control: flatten(
            discrete_vae.encoder_gradient(
              name,
              model,
              2,
              params,
              baseline,
              x,
              k,
              control,
            )[0],
            (),
          )
        )
      )(
        jax.random.split(
          jax.random.fold_in(jax.random.key(1), 7), num_replicates
        )
      )
      estimate = np.asarray(estimate)
      mean = estimate.mean(0)
      se = estimate.std(0, ddof=1) / np.sqrt(num_replicates)
      # Weights of pixels that are 0 in both images get exactly 0.
      noisy = se > 0
      self.assertGreater(noisy.sum(), 50, msg=name)
      np.testing.assert_array_equal(mean[~noisy], 0.0, err_msg=name)
      np.testing.assert_array_equal(exact[~noisy], 0.0, err_msg=name)
      sigma = np.sqrt(np.sum(se**2))
      self.assertLess(7 * sigma, 0.1 * np.linalg.norm(exact), msg=name)
      self.assertLess(np.linalg.norm(mean - exact), 5 * sigma, msg=name)


class TotalVarianceTest(absltest.TestCase):
  def test_is_the_jackknife_of_the_trace(self):
    # Against leave-one-out traces computed by brute force.
    rng = np.random.default_rng(0)
    grads = {
      "a": 3.0 + rng.normal(size=(6, 4)),
      "b": rng.normal(size=(6, 2, 3)),
    }
    flat = np.concatenate([grads["a"], grads["b"].reshape(6, -1)], 1)
    trace = lambda g: np.sum(np.var(g, axis=0, ddof=1))
    loo = np.array([trace(np.delete(flat, r, 0)) for r in range(6)])
    jackknife = np.sqrt(5 / 6 * np.sum((loo - loo.mean()) ** 2))
    out = gradient_stats.total_variance(jax.tree.map(jnp.asarray, grads))
    np.testing.assert_allclose(out["grad_variance"], trace(flat), rtol=1e-12)
    np.testing.assert_allclose(out["grad_variance_se"], jackknife, rtol=1e-10)
    with self.assertRaisesRegex(ValueError, "R >= 3"):
      gradient_stats.total_variance({"a": jnp.zeros((2, 3))})

  def test_gaussian_calibration(self):
    # Gaussian estimates, R = 8: E[SE^2] = (R-1)/(R-2) Var(tr S) with
    # Var(tr S) = 2 tr Sigma^2 / (R-1) (see total_variance). Over 2000 seeds
    # the ratio's SE is ~0.015: 5 SE ~ 0.077, so this detects an SE^2 off by
    # 7% (a factor for in the formula is 17%).
    seeds, num, dim = 2000, 8, 50
    scale = jnp.sqrt(jnp.linspace(0.1, 3.0, dim))
    draws = 1.0 + scale * jax.random.normal(
      jax.random.key(0), (seeds, num, dim), jnp.float64
    )
    out = jax.vmap(lambda d: gradient_stats.total_variance({"g": d}))(draws)
    true_var = 2 * float(jnp.sum(scale**4)) / (num - 1)
    ratio = np.asarray(out["grad_variance_se"]) ** 2 / true_var
    se = ratio.std(ddof=1) / np.sqrt(seeds)
    self.assertLess(5 * se, 0.085)
    self.assertLess(abs(ratio.mean() - (num - 1) / (num - 2)), 5 * se)
    np.testing.assert_allclose(
      np.mean(out["grad_variance"]), float(jnp.sum(scale**2)), rtol=0.01
    )


class BadFlagsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("unknown_estimator", {"estimator": "reinforce"}, "Unknown estimator"),
    ("unknown_in_list", {"estimator": "arm,nope"}, "Unknown name.*'nope'"),
    ("unknown_model", {"model": "deep"}, "Unknown model 'deep'"),
    ("activation", {"activation": "relu"}, "Unknown activation"),
    ("zero_samples", {"num_samples": 0}, "num_samples must be >= 1, got 0"),
    (
      "loo_one_sample",
      {"estimator": "leave_one_out", "num_samples": 1},
      "num_samples must be >= 2 for the leave_one_out",
    ),
    ("zero_steps", {"num_steps": 0}, "num_steps must be >= 1"),
    ("zero_latent", {"latent_dim": 0}, "latent_dim must be >= 1"),
    ("negative_seed", {"seed": -1}, "config.seed must be >= 0"),
    (
      "two_replicates",
      {"num_variance_replicates": 2},
      "num_variance_replicates must be >= 3",
    ),
    ("test_fraction", {"test_fraction": 1.0}, "test_fraction must be < 1"),
    ("threshold", {"binarize_threshold": 1.5}, "binarize_threshold must be"),
    ("learning_rate", {"learning_rate": 0.0}, "learning_rate must be > 0"),
    ("big_batch", {"batch_size": 5000}, "batch_size .* exceeds"),
    ("no_file", {"data_path": "/nonexistent.npz"}, "data_path.*not a file"),
  )
  def test_fails_before_training(self, overrides, message):
    vae_checks.assert_fails_before_training(
      self, discrete_vae, dvae_train, _tiny_config(**overrides), message
    )


class RegistryTest(absltest.TestCase):
  def test_estimators_come_from_the_registry(self):
    relaxed = dvae_gradients.RELAXED
    for name in discrete_vae.ESTIMATORS:
      spec = dvae_gradients.get_spec(name)
      self.assertIs(
        spec, rgrad.get_estimator(dvae_gradients.registry_name(name))
      )
      self.assertEqual(
        spec.stateful, name in ("score_function", *relaxed), msg=name
      )
      # Equal cost: two evaluations per data point per step (pairs, K = 2),
      # three for one draw of REBAR/RELAX.
      samples = dvae_gradients.num_samples_for(name, 2, 1)
      self.assertEqual(
        dvae_gradients.cost_evaluations(name, samples, latent_dim=32),
        3 if name in relaxed else 2,
        msg=name,
      )
    self.assertEqual(
      dvae_gradients.get_spec("vimco").objective, "negative_iwae_bound"
    )
    # The relaxed estimators start from the registry entry's control.
    for name in relaxed:
      control = dvae_gradients.initial_control(name)
      expected = rgrad.get_estimator(name).fn.init(None).control
      for a, b in zip(
        jax.tree.leaves(control), jax.tree.leaves(expected), strict=True
      ):
        np.testing.assert_array_equal(a, b)

  def test_control_is_required_exactly_for_the_relaxed(self):
    model = discrete_vae.make_model("linear", 3, 8, 64)
    params = jax.eval_shape(lambda k: model.init(k, None), jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, 64), jnp.float32)
    estimate = lambda name, control: jax.eval_shape(
      lambda p, x: discrete_vae.encoder_gradient(
        name, model, 2, p, 0.0, x, jax.random.key(1), control
      ),
      params,
      x,
    )
    with self.assertRaisesRegex(ValueError, "'rebar' needs a control"):
      estimate("rebar", None)
    with self.assertRaisesRegex(ValueError, "'disarm' needs a control"):
      estimate("disarm", dvae_gradients.initial_control("rebar"))


class DataTest(absltest.TestCase):
  def test_npz_loader(self):
    # A Keras-style archive: uint8 images [n, 4, 4], scaled by 255.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 4, 4), dtype=np.uint8)
    path = os.path.join(_tempdir(self), "tiny.npz")
    np.savez(path, x_train=images[:5], x_test=images[5:])
    train, test = data.load_npz_binarized(path, threshold=0.5)
    self.assertEqual((train.shape, test.shape), ((5, 16), (2, 16)))
    self.assertEqual(train.dtype, np.float32)
    np.testing.assert_array_equal(
      np.concatenate([train, test]), (images.reshape(7, 16) > 127.5)
    )
    np.savez(path, x_train=images)
    with self.assertRaisesRegex(ValueError, "lacks the array.*x_test"):
      data.load_npz_binarized(path)


if __name__ == "__main__":
  absltest.main()
