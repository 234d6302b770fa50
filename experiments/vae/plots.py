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
import ml_collections
import numpy as np

from experiments.common import plotting
from experiments.common import vae_plots
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
  encode = jax.jit(model.encode)
  vae_plots.plot_images(
    metrics,
    params,
    test_np,
    config,
    workdir,
    decode=model.decode,
    code=lambda p, x: encode(p, x)[0],  # The encoder mean.
    noise=jax.random.normal,
    sample=lambda p, z: z,
    titles=(
      "reconstructions (decoder mean at the encoder mean)",
      "samples: decoder mean of z ~ N(0, I), same z per row",
    ),
  )


def plot_bounds(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  vae_plots.plot_bounds(
    metrics,
    path,
    _color,
    lambda n: f"{n} (test)",
    f"VAE on binarized 8x8 digits, K={config.num_samples} "
    f"samples, latent dim {config.latent_dim}",
  )


def plot_gradient_variance(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  vae_plots.plot_gradient_variance(
    metrics,
    path,
    _color,
    "encoder-gradient variance (sum over encoder params)",
    f"{config.num_variance_replicates} independent estimates on "
    f"{config.variance_batch_size} training images, "
    f"K={config.num_samples}",
  )
