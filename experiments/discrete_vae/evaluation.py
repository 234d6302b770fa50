r"""Evaluation: the bounds, and the variance of the encoder gradient.

Every ``log_every`` steps, jitted:

* the train ELBO (whole train set) and the test ELBO and IWAE bound
  :math:`\mathcal{L}_S = E[\log \frac1S \sum_s p(x, b_s) / q(b_s \mid x)]`
  (Burda et al., 2016) from the same :math:`S` = ``num_eval_samples``
  draws per image, with one fixed key, in nats per image (so
  :math:`\mathcal{L}_S` is at least the ELBO draw by draw);
* from :math:`R` = ``num_variance_replicates`` independent estimates of the
  encoder gradient at the current parameters, baseline and control (keys
  ``fold_in(measure_key, step)``, split; the first ``variance_batch_size``
  training images; the training ``num_samples``): the total variance
  :math:`\operatorname{tr} S` summed over all encoder parameters, its
  jackknife standard error, and the signal-to-noise ratio
  (:mod:`experiments.common.gradient_stats`).

At the end of training, the test bound with ``num_final_samples`` (100)
draws per image, :math:`\mathcal{L}_{100}`, the number the DisARM paper
reports.

Images are evaluated in chunks of ``eval_batch_size`` (``jax.lax.map``), so
MNIST-sized data fit in memory; each image draws from its own key
(``fold_in(key, index)``, the index in train-then-test order), so the
numbers do not depend on the chunking. The bounds compile once per model
and data size, for every estimator; the gradient statistics once per
estimator.

References:
  Burda, Grosse and Salakhutdinov, ICLR 2016, https://arxiv.org/abs/1509.00519.
  Dong, Mnih and Tucker, NeurIPS 2020, https://arxiv.org/abs/2006.10680.
"""

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from experiments.common import gradient_stats
from experiments.common import vae as common_vae
from experiments.discrete_vae import gradients
from experiments.discrete_vae import model as model_lib
from rgrad import control_variates


@functools.partial(
  jax.jit, static_argnames=("model_spec", "num_samples", "chunk_size")
)
def image_bounds(
  params: model_lib.Params,
  x: jax.Array,
  key: chex.PRNGKey,
  model_spec: Any,
  num_samples: int,
  chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Per-image ELBO and IWAE bound `[n]` each, from the same draws.

  Args:
    params: the model's parameters.
    x: images `[n, D]`.
    key: image `i` draws from `fold_in(key, i)`.
    model_spec: the `experiments.discrete_vae.train.ModelSpec` (static: one
      compilation per model and size, shared by every estimator).
    num_samples: draws per image (S).
    chunk_size: images per chunk of the `jax.lax.map`.
  """
  model = model_spec.model
  num = x.shape[0]
  chunk_size = min(chunk_size, num)
  num_chunks = -(-num // chunk_size)
  padded = num_chunks * chunk_size
  index = jnp.arange(padded)
  x = jnp.concatenate([x, jnp.zeros((padded - num, x.shape[1]), x.dtype)])

  def one_image(image, i):
    log_w = model_lib.log_weights(
      model, params, image, jax.random.fold_in(key, i), num_samples
    )  # [S]
    return jnp.mean(log_w), jax.nn.logsumexp(log_w) - jnp.log(num_samples)

  elbo, iwae = jax.lax.map(
    lambda args: jax.vmap(one_image)(*args),
    (
      x.reshape(num_chunks, chunk_size, -1),
      index.reshape(num_chunks, chunk_size),
    ),
  )
  # The padding images are dropped.
  return elbo.reshape(-1)[:num], iwae.reshape(-1)[:num]


def test_bound(
  params: model_lib.Params,
  test_data: jax.Array,
  key: chex.PRNGKey,
  hyper: Any,
  num_samples: int,
) -> float:
  """The mean test IWAE bound with `num_samples` draws per image."""
  _, iwae = image_bounds(
    params,
    test_data,
    key,
    hyper.model_spec,
    num_samples,
    hyper.eval_batch_size,
  )
  return float(jnp.mean(iwae))


@functools.partial(jax.jit, static_argnames="hyper")
def gradient_metrics(
  state: Any, x: jax.Array, measure_key: chex.PRNGKey, hyper: Any
) -> dict[str, jax.Array]:
  """Variance, its SE and the SNR of the encoder gradient on x."""
  grads = common_vae.encoder_gradient_replicates(
    gradients.encoder_gradient,
    state,
    x,
    jax.random.fold_in(measure_key, state.step),
    hyper,
    state.control if hyper.estimator in gradients.RELAXED else None,
  )
  return {
    **gradient_stats.signal_to_noise(grads),
    **gradient_stats.total_variance(grads),
  }


def evaluate(
  state: Any,
  eval_data: jax.Array,
  num_train: int,
  eval_key: chex.PRNGKey,
  measure_key: chex.PRNGKey,
  hyper: Any,
) -> dict[str, jax.Array]:
  """Bounds with a fixed key, and the encoder-gradient variance.

  Args:
    state: the `experiments.discrete_vae.train.TrainState`.
    eval_data: the train images, then the test images, `[n, D]`.
    num_train: how many of them are train images.
    eval_key: the key of the bounds' draws, the same at every step.
    measure_key: folded with the step for the replicate estimates.
    hyper: the `experiments.discrete_vae.train.Hyper`.

  Returns:
    Scalars `train_elbo, test_elbo, test_iwae, grad_variance,
    grad_variance_se, grad_snr_sq, grad_snr, baseline`.
  """
  elbo, iwae = image_bounds(
    state.params,
    eval_data,
    eval_key,
    hyper.model_spec,
    hyper.num_eval_samples,
    hyper.eval_batch_size,
  )
  variance_batch = eval_data[: hyper.variance_batch_size]
  return {
    "train_elbo": jnp.mean(elbo[:num_train]),
    "test_elbo": jnp.mean(elbo[num_train:]),
    "test_iwae": jnp.mean(iwae[num_train:]),
    **gradient_metrics(state, variance_batch, measure_key, hyper),
    "baseline": control_variates.moving_average_baseline_value(state.baseline),
  }
