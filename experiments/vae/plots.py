"""The figures: bounds, gradient variance and SNR, reconstructions, samples.

* ``elbo.png``: test (solid) and train (dashed) ELBO against the step, and the
  test ELBO against the training wall-clock;
* ``grad_variance.png``: encoder-gradient variance and SNR against the step
  (log scale);
* ``reconstructions.png``: test digits and each estimator's reconstructions
  (decoder mean at the encoder mean);
* ``samples.png``: decoder means of the same prior draws, one row per
  estimator.

Colours follow :mod:`experiments.common.plotting` (by registry name), so an
estimator looks the same here as in the other experiments' figures.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.common import plotting
from experiments.vae import gradients
from experiments.vae import model as model_lib


def _color(name: str) -> str | None:
  return plotting.color(gradients.registry_name(name))


def plot_all(
  metrics: dict[str, Any],
  params: dict[str, model_lib.Params],
  model: model_lib.Model,
  test_np: np.ndarray,
  config: ml_collections.ConfigDict,
  workdir: str,
) -> None:
  """Writes the four figures to `workdir` (on process 0)."""
  plot_bounds(metrics, config, os.path.join(workdir, "elbo.png"))
  plot_gradient_variance(
    metrics, config, os.path.join(workdir, "grad_variance.png")
  )
  names = metrics["estimators"]
  num = min(config.num_display, len(test_np))
  side = int(round(np.sqrt(test_np.shape[1])))
  # Jitted: one compilation for every estimator's parameters.
  encode = jax.jit(model.encode)
  decoder_mean = jax.jit(lambda p, z: jax.nn.sigmoid(model.decode(p, z)))
  x = jnp.asarray(test_np[:num])
  rows = [("test data", test_np[:num])]
  for n in names:
    loc, _ = encode(params[n]["encoder"], x)
    rows.append((n, np.asarray(decoder_mean(params[n]["decoder"], loc))))
  plotting.image_grid(
    rows,
    side,
    "reconstructions (decoder mean at the encoder mean)",
    os.path.join(workdir, "reconstructions.png"),
  )
  z = jax.random.normal(
    jax.random.key(config.seed + 1), (num, config.latent_dim)
  )
  rows = [(n, np.asarray(decoder_mean(params[n]["decoder"], z))) for n in names]
  plotting.image_grid(
    rows,
    side,
    "samples: decoder mean of z ~ N(0, I), same z per row",
    os.path.join(workdir, "samples.png"),
  )


def plot_bounds(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  plt = plotting.pyplot()
  names, hist = metrics["estimators"], metrics["history"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  for n in names:
    steps = [r["step"] for r in hist[n]]
    axes[0].plot(
      steps,
      [r["test_elbo"] for r in hist[n]],
      color=_color(n),
      label=f"{n} (test)",
    )
    axes[0].plot(
      steps,
      [r["train_elbo"] for r in hist[n]],
      color=_color(n),
      ls="--",
      alpha=0.6,
    )
    axes[1].plot(
      [r["wall_time_s"] for r in hist[n]],
      [r["test_elbo"] for r in hist[n]],
      color=_color(n),
      label=n,
    )
  # The first rows (at initialization) would squash the curves.
  all_elbos = [r["test_elbo"] for n in names for r in hist[n][1:]]
  if all_elbos:
    low, high = np.percentile(all_elbos, 2), max(all_elbos)
    axes[0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
  axes[0].set(
    xlabel="step",
    ylabel="ELBO (nats / image)",
    title="test (solid) and train (dashed) ELBO vs step",
  )
  axes[1].set(xlabel="training wall-clock (s)", title="test ELBO vs time")
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(
    f"VAE on binarized 8x8 digits, K={config.num_samples} "
    f"samples, latent dim {config.latent_dim}"
  )
  fig.tight_layout()
  plotting.save(fig, path)


def plot_gradient_variance(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  plt = plotting.pyplot()
  names, hist = metrics["estimators"], metrics["history"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for n in names:
    steps = [r["step"] for r in hist[n]]
    axes[0].semilogy(
      steps, [r["grad_variance"] for r in hist[n]], color=_color(n), label=n
    )
    axes[1].semilogy(
      steps, [r["grad_snr"] for r in hist[n]], color=_color(n), label=n
    )
  axes[0].set(
    xlabel="step",
    ylabel="trace of covariance",
    title="encoder-gradient variance (sum over encoder params)",
  )
  axes[1].set(
    xlabel="step",
    ylabel="sqrt(max(||mean||^2 - trace cov / R, 0) / trace cov)",
    title="encoder-gradient signal-to-noise ratio",
  )
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  fig.suptitle(
    f"{config.num_variance_replicates} independent estimates on "
    f"{config.variance_batch_size} training images, "
    f"K={config.num_samples}"
  )
  fig.tight_layout()
  plotting.save(fig, path)
