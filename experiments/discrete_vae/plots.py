"""The figures: bounds, gradient variance, reconstructions, samples.

* ``elbo.png``: test (solid) and train (dashed) ELBO against the step, and
  the test ELBO against the training wall-clock;
* ``grad_variance.png``: the encoder-gradient variance (trace, log scale)
  with a band of +-2 jackknife standard errors, and the SNR, against the
  step;
* ``reconstructions.png``: test digits and each estimator's reconstructions
  (decoder mean at the mode of q(b | x));
* ``samples.png``: decoder means at draws b ~ p(b) of each estimator's
  prior, from the same uniforms, one row per estimator.

The image figures are drawn for square images only (8x8 digits, MNIST).

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
from experiments.common import vae_plots
from experiments.discrete_vae import gradients
from experiments.discrete_vae import model as model_lib


def _color(name: str) -> str | None:
  return plotting.color(gradients.registry_name(name))


def _title(config: ml_collections.ConfigDict, metrics: dict[str, Any]) -> str:
  data = metrics["data"]
  return (
    f"{config.model} binary VAE, {config.latent_dim} latents, "
    f"{data['source']} ({data['dim']} pixels), {config.num_samples} cost "
    "evaluations per image per step"
  )


def plot_all(
  metrics: dict[str, Any],
  params: dict[str, model_lib.Params],
  model: model_lib.Model,
  test_np: np.ndarray,
  config: ml_collections.ConfigDict,
  workdir: str,
) -> None:
  """Writes the figures to `workdir` (on process 0)."""
  plot_bounds(metrics, config, os.path.join(workdir, "elbo.png"))
  plot_gradient_variance(
    metrics, config, os.path.join(workdir, "grad_variance.png")
  )
  side = int(round(np.sqrt(test_np.shape[1])))
  if side * side != test_np.shape[1]:
    return  # Not square images: nothing to draw.
  encode = jax.jit(model.encode)
  dtype = jnp.asarray(test_np[:1]).dtype

  def sample(p, uniforms):
    # Each estimator's own prior, driven by the same uniforms.
    prior = jax.nn.sigmoid(model.prior_logits(p))
    return (uniforms < prior).astype(dtype)

  vae_plots.plot_images(
    metrics,
    params,
    test_np,
    config,
    workdir,
    decode=model.decode,
    code=lambda p, x: (encode(p, x) > 0).astype(x.dtype),  # The mode.
    noise=jax.random.uniform,
    sample=sample,
    titles=(
      "reconstructions (decoder mean at the mode of q(b | x))",
      "samples: decoder mean at b ~ p(b), the same uniforms in every row",
    ),
  )


def plot_bounds(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  final = lambda n: metrics["final"][n]["test_iwae_final"]
  vae_plots.plot_bounds(
    metrics,
    path,
    _color,
    lambda n: f"{n} (test; final L_{config.num_final_samples} {final(n):.2f})",
    _title(config, metrics),
    legend_fontsize=8,
    extra_pad=1e-6,
  )


def plot_gradient_variance(
  metrics: dict[str, Any], config: ml_collections.ConfigDict, path: str
) -> None:
  vae_plots.plot_gradient_variance(
    metrics,
    path,
    _color,
    "encoder-gradient variance (+-2 jackknife SE)",
    f"{config.num_variance_replicates} independent estimates on "
    f"{config.variance_batch_size} training images; " + _title(config, metrics),
    band=True,
    title_fontsize=9,
  )
