r"""Training: the state, one jitted Adam step, and the loop with checkpoints.

One step draws a minibatch and every random number from
``fold_in(train_key, step)``, estimates the encoder gradient with the
configured estimator and the decoder gradient pathwise
(:mod:`experiments.vae.gradients`), takes an Adam step on both, and folds the
batch's costs into the moving-average baseline. The loop logs the
diagnostics of :mod:`experiments.vae.evaluation` every ``log_every`` steps
and checkpoints every ``checkpoint_every`` steps, in the loop that
:mod:`experiments.common.training` shares with the discrete VAE (orbax
checkpoints, :mod:`experiments.common.checkpoints`), run for each estimator
by :func:`experiments.common.vae.train_estimators` with :func:`evaluator`
and :func:`describe`.
"""

import functools
from typing import NamedTuple

import chex
import jax
import optax

from experiments.common import vae as common_vae
from experiments.vae import evaluation
from experiments.vae import gradients
from experiments.vae import model as model_lib
from rgrad import control_variates

Params = model_lib.Params


class TrainState(NamedTuple):
  """Everything a step reads and writes; what a checkpoint holds."""

  params: Params
  opt_state: optax.OptState
  # Moving average of the batch-mean cost: the baseline of the score function
  # (logged for every estimator).
  baseline: control_variates.MovingAverageBaselineState
  step: jax.Array  # int32 scalar: optimizer steps taken.
  key: jax.Array  # uint32 key data of the train key (`jax.random.key_data`).


class Hyper(NamedTuple):
  """The static (hashable) part of the config that the compiled steps use.

  Passed as a static argument, so each distinct `Hyper` compiles once per
  process and repeated runs with the same config reuse the executable.
  """

  estimator: str
  latent_dim: int
  hidden_dim: int
  data_dim: int
  num_samples: int
  batch_size: int
  learning_rate: float
  baseline_decay: float
  num_eval_samples: int
  num_variance_replicates: int
  variance_batch_size: int

  @classmethod
  def from_config(cls, config, estimator: str, data_dim: int) -> "Hyper":
    return cls(
      estimator=estimator,
      latent_dim=config.latent_dim,
      hidden_dim=config.hidden_dim,
      data_dim=data_dim,
      num_samples=config.num_samples,
      **common_vae.hyper_fields(config),
    )

  @property
  def model(self) -> model_lib.Model:
    return model_lib.make_model(self.latent_dim, self.hidden_dim, self.data_dim)

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)


def init_state(
  hyper: Hyper, params: Params, train_key: chex.PRNGKey
) -> TrainState:
  return TrainState(**common_vae.initial_fields(hyper, params, train_key))


@functools.partial(jax.jit, static_argnames="hyper")
def train_step(
  state: TrainState, train_data: jax.Array, hyper: Hyper
) -> TrainState:
  """One Adam step on a minibatch drawn with `fold_in(train_key, step)`.

  The data are an argument, not a closed-over constant: a constant would be
  embedded in the program and slow XLA's compilation down.
  """
  model = hyper.model
  x, baseline, encoder_key, decoder_key = common_vae.minibatch(
    state, train_data, hyper.batch_size
  )
  encoder_grad, costs = gradients.encoder_gradient(
    hyper.estimator,
    model,
    hyper.num_samples,
    state.params,
    baseline,
    x,
    encoder_key,
  )
  decoder_grad = jax.grad(
    functools.partial(
      gradients.decoder_loss, hyper.estimator, model, hyper.num_samples
    )
  )(state.params["decoder"], state.params["encoder"], x, decoder_key)
  grads = {"encoder": encoder_grad, "decoder": decoder_grad}
  return common_vae.adam_step(state, grads, costs, hyper)


def evaluator(hyper: Hyper, keys: dict[str, jax.Array], train_data, test_data):
  """`state -> history-row metrics`, by :func:`evaluation.evaluate`."""
  return lambda state: evaluation.evaluate(
    state, train_data, test_data, keys["eval"], keys["measure"], hyper
  )


def describe(row: dict[str, float]) -> str:
  """The end of a history row's log line (after the bounds and variance)."""
  return f"  SNR {row['grad_snr']:.3f}"
