"""The figures the two VAE experiments share, by estimator.

* :func:`plot_bounds`: ``elbo.png``, the test and train ELBO against the
  step and the test ELBO against the training wall-clock;
* :func:`plot_gradient_variance`: ``grad_variance.png``, the
  encoder-gradient variance and SNR against the step;
* :func:`plot_images`: ``reconstructions.png`` and ``samples.png``.

Each experiment's ``plots`` module hands in what differs (labels, titles,
how latents are read off the encoder and drawn from the prior); colours
follow :mod:`experiments.common.plotting`. Written on process 0 only.
"""

import os
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.common import plotting


def plot_bounds(
  metrics: dict[str, Any],
  path: str,
  color: Callable[[str], str | None],
  test_label: Callable[[str], str],
  title: str,
  legend_fontsize: float | None = None,
  extra_pad: float = 0.0,
) -> None:
  """``elbo.png``: the ELBO against the step and the training wall-clock.

  Left, each estimator's test (solid, labelled `test_label(name)`) and
  train (dashed) ELBO against the step, the y range from the 2nd
  percentile of the finite test ELBOs after initialization to their
  maximum, padded by 5% of that range plus `extra_pad` (> 0 keeps a flat
  range open); right, the test ELBO against the training time.
  """
  plt = plotting.pyplot()
  names, hist = metrics["estimators"], metrics["history"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  for n in names:
    steps = [r["step"] for r in hist[n]]
    axes[0].plot(
      steps,
      [r["test_elbo"] for r in hist[n]],
      color=color(n),
      label=test_label(n),
    )
    axes[0].plot(
      steps,
      [r["train_elbo"] for r in hist[n]],
      color=color(n),
      ls="--",
      alpha=0.6,
    )
    axes[1].plot(
      [r["wall_time_s"] for r in hist[n]],
      [r["test_elbo"] for r in hist[n]],
      color=color(n),
      label=n,
    )
  # The first rows (at initialization) would squash the curves.
  all_elbos = [r["test_elbo"] for n in names for r in hist[n][1:]]
  all_elbos = [v for v in all_elbos if np.isfinite(v)]
  if all_elbos:
    low, high = np.percentile(all_elbos, 2), max(all_elbos)
    pad = 0.05 * (high - low) + extra_pad
    axes[0].set_ylim(low - pad, high + pad)
  axes[0].set(
    xlabel="step",
    ylabel="ELBO (nats / image)",
    title="test (solid) and train (dashed) ELBO vs step",
  )
  axes[1].set(xlabel="training wall-clock (s)", title="test ELBO vs time")
  axes[0].legend(fontsize=legend_fontsize)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  plotting.save(fig, path)


def plot_gradient_variance(
  metrics: dict[str, Any],
  path: str,
  color: Callable[[str], str | None],
  variance_title: str,
  title: str,
  *,
  band: bool = False,
  title_fontsize: float | None = None,
) -> None:
  """``grad_variance.png``: encoder-gradient variance and SNR vs the step.

  Both on log scales; with `band`, a band of +-2 jackknife standard errors
  (``grad_variance_se``) around the variance, floored at 1e-3 of it.
  """
  plt = plotting.pyplot()
  names, hist = metrics["estimators"], metrics["history"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for n in names:
    steps = np.array([r["step"] for r in hist[n]])
    var = np.array([r["grad_variance"] for r in hist[n]])
    axes[0].semilogy(steps, var, color=color(n), label=n)
    if band:
      se = np.array([r["grad_variance_se"] for r in hist[n]])
      axes[0].fill_between(
        steps,
        np.maximum(var - 2 * se, var * 1e-3),
        var + 2 * se,
        color=color(n),
        alpha=0.2,
        lw=0,
      )
    axes[1].semilogy(
      steps, [r["grad_snr"] for r in hist[n]], color=color(n), label=n
    )
  axes[0].set(xlabel="step", ylabel="trace of covariance", title=variance_title)
  axes[1].set(
    xlabel="step",
    ylabel="sqrt(max(||mean||^2 - trace cov / R, 0) / trace cov)",
    title="encoder-gradient signal-to-noise ratio",
  )
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  # fontsize=None would not be the default suptitle size.
  size = {} if title_fontsize is None else {"fontsize": title_fontsize}
  fig.suptitle(title, **size)
  fig.tight_layout()
  plotting.save(fig, path)


def plot_images(
  metrics: dict[str, Any],
  params: dict[str, Any],
  test_np: np.ndarray,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  decode: Callable[[Any, jax.Array], jax.Array],
  code: Callable[[Any, jax.Array], jax.Array],
  noise: Callable[[chex.PRNGKey, tuple[int, int]], jax.Array],
  sample: Callable[[Any, jax.Array], jax.Array],
  titles: tuple[str, str],
) -> None:
  """``reconstructions.png`` and ``samples.png``, one row per estimator.

  Reconstructions: the decoder mean (the sigmoid of `decode(decoder
  params, latents)`) at `code(encoder params, x)` for the first
  ``num_display`` test images, under a row of the images themselves.
  Samples: the decoder mean at `sample(params, u)`, the same `u = noise(
  key(seed + 1), (num_display, latent_dim))` in every row. `titles` are
  the two figures'.
  """
  names = metrics["estimators"]
  num = min(config.num_display, len(test_np))
  side = int(round(np.sqrt(test_np.shape[1])))
  # Jitted: one compilation for every estimator's parameters.
  decoder_mean = jax.jit(lambda p, z: jax.nn.sigmoid(decode(p, z)))
  x = jnp.asarray(test_np[:num])
  rows = [("test data", test_np[:num])]
  for n in names:
    latents = code(params[n]["encoder"], x)
    rows.append((n, np.asarray(decoder_mean(params[n]["decoder"], latents))))
  plotting.image_grid(
    rows, side, titles[0], os.path.join(workdir, "reconstructions.png")
  )
  u = noise(jax.random.key(config.seed + 1), (num, config.latent_dim))
  rows = []
  for n in names:
    latents = sample(params[n], u)
    rows.append((n, np.asarray(decoder_mean(params[n]["decoder"], latents))))
  plotting.image_grid(
    rows, side, titles[1], os.path.join(workdir, "samples.png")
  )
