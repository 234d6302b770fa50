r"""Evaluation: the bounds, and the variance and SNR of the encoder gradient.

Every ``log_every`` steps, jitted:

* the train ELBO (whole train set) and the test ELBO and IWAE bound
  :math:`\mathcal{L}_K = E[\log \frac1K \sum_k p(x, z_k) / q(z_k \mid x)]`
  (Burda et al., 2016), from ``num_eval_samples`` draws per image with one
  fixed key, in nats per image;
* from :math:`R` = ``num_variance_replicates`` independent estimates
  :math:`g_1..g_R` of the encoder gradient at the current parameters and
  baseline (vmapped over the keys ``fold_in(measure_key, step)``, split, on
  the first ``variance_batch_size`` training images, the training
  :math:`K`): the total variance
  :math:`\operatorname{tr} S = \sum_j \widehat{\mathrm{Var}}(g_{\cdot j})`
  summed over all encoder parameters :math:`j` (unbiased, ``ddof=1``), and
  the signal-to-noise ratio :math:`\|E g\| / \sqrt{\operatorname{tr}
  \Sigma}` (see :func:`experiments.common.gradient_stats.signal_to_noise`):
  ``grad_snr_sq``, the unbiased estimate of the squared signal over the
  variance (it can be negative), and ``grad_snr``, its square root clipped
  at 0.

References:
  Burda, Grosse and Salakhutdinov, ICLR 2016, https://arxiv.org/abs/1509.00519.
  Mohamed et al., JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 9.3).
"""

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from experiments.common import gradient_stats
from experiments.common import vae as common_vae
from experiments.vae import gradients
from experiments.vae import model as model_lib
from rgrad import control_variates


def bounds(
  model: model_lib.Model,
  params: model_lib.Params,
  x: jax.Array,
  key: chex.PRNGKey,
  num_samples: int,
) -> tuple[jax.Array, jax.Array]:
  """Mean ELBO and IWAE bound over images x `[n, dim]` (nats per image)."""
  loc, log_scale = model.encode(params["encoder"], x)
  log_p, log_q = model_lib.log_densities(
    model, params["decoder"], loc, log_scale, x, key, num_samples
  )  # [K, n] each
  log_w = log_p - log_q
  elbo = jnp.mean(log_w)
  iwae = jnp.mean(jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples))
  return elbo, iwae


@functools.partial(jax.jit, static_argnames="hyper")
def evaluate(
  state: Any,
  train_data: jax.Array,
  test_data: jax.Array,
  eval_key: chex.PRNGKey,
  measure_key: chex.PRNGKey,
  hyper: Any,
) -> dict[str, jax.Array]:
  """Bounds with a fixed key, and encoder-gradient variance and SNR.

  Args:
    state: the `experiments.vae.train.TrainState`.
    train_data: `[n_train, dim]`.
    test_data: `[n_test, dim]`.
    eval_key: the key of the bounds' draws, the same at every step.
    measure_key: folded with the step for the replicate estimates.
    hyper: the `experiments.vae.train.Hyper` (static).

  Returns:
    Scalars `train_elbo, test_elbo, test_iwae, grad_variance, grad_snr_sq,
    grad_snr, baseline`.
  """
  model = hyper.model
  train_elbo, _ = bounds(
    model, state.params, train_data, eval_key, hyper.num_eval_samples
  )
  test_elbo, test_iwae = bounds(
    model, state.params, test_data, eval_key, hyper.num_eval_samples
  )
  grads = common_vae.encoder_gradient_replicates(
    gradients.encoder_gradient,
    state,
    train_data[: hyper.variance_batch_size],
    jax.random.fold_in(measure_key, state.step),
    hyper,
  )  # leaves [R, *shape]
  return {
    "train_elbo": train_elbo,
    "test_elbo": test_elbo,
    "test_iwae": test_iwae,
    **gradient_stats.signal_to_noise(grads),
    "baseline": control_variates.moving_average_baseline_value(state.baseline),
  }
