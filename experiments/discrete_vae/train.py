r"""Training: the state, one jitted Adam step, and the loop with checkpoints.

One step draws a minibatch and every random number from
``fold_in(train_key, step)``, estimates the encoder gradient with the
configured estimator and the decoder and prior gradient exactly at sampled
latents (:mod:`experiments.discrete_vae.gradients`), takes an Adam step on
all of them, folds the batch's costs into the moving-average baseline (read
by the score function only; it stays 0 for the others) and, for REBAR and
RELAX, takes an Adam step on their control. The loop
(:mod:`experiments.common.training`, run for each estimator by
:func:`experiments.common.vae.train_estimators`, shared with the Gaussian
VAE) logs the diagnostics of :mod:`experiments.discrete_vae.evaluation`
(:func:`evaluator`) every ``log_every`` steps and checkpoints (orbax) every
``checkpoint_every`` steps; a killed run resumes bit for bit.
"""

import functools
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from experiments.common import vae as common_vae
from experiments.discrete_vae import evaluation
from experiments.discrete_vae import gradients
from experiments.discrete_vae import model as model_lib
from rgrad import control_variates

Params = model_lib.Params


class TrainState(NamedTuple):
  """Everything a step reads and writes; what a checkpoint holds."""

  params: Params
  opt_state: optax.OptState
  # Moving average of the batch-mean cost: the score function's baseline.
  baseline: control_variates.MovingAverageBaselineState
  # REBAR's/RELAX's learned control and its Adam state (a 0.0 placeholder
  # for the other estimators).
  control: Any
  control_opt_state: optax.OptState
  step: jax.Array  # int32 scalar: optimizer steps taken.
  key: jax.Array  # uint32 key data of the train key (`jax.random.key_data`).


class ModelSpec(NamedTuple):
  """The static (hashable) description of the model.

  Passed as a static argument, so the bounds compile once per model, for
  every estimator.
  """

  kind: str
  latent_dim: int
  hidden_dim: int
  activation: str
  learn_prior: bool
  data_dim: int

  @property
  def model(self) -> model_lib.Model:
    return model_lib.make_model(
      self.kind,
      self.latent_dim,
      self.hidden_dim,
      self.data_dim,
      self.activation,
      self.learn_prior,
    )


class Hyper(NamedTuple):
  """The static (hashable) part of the config that the compiled steps use.

  Passed as a static argument, so each distinct `Hyper` compiles once per
  process and repeated runs with the same config reuse the executable.
  """

  estimator: str
  model_spec: ModelSpec
  num_samples: int  # The encoder estimator's, per data point.
  generative_samples: int  # Draws per data point of the generative gradient.
  batch_size: int
  learning_rate: float
  baseline_decay: float
  control_learning_rate: float
  num_eval_samples: int
  eval_batch_size: int
  num_variance_replicates: int
  variance_batch_size: int

  @classmethod
  def from_config(cls, config, estimator: str, data_dim: int) -> "Hyper":
    return cls(
      estimator=estimator,
      model_spec=ModelSpec(
        kind=config.model,
        latent_dim=config.latent_dim,
        hidden_dim=config.hidden_dim,
        activation=config.activation,
        learn_prior=config.learn_prior,
        data_dim=data_dim,
      ),
      num_samples=gradients.num_samples_for(
        estimator, config.num_samples, config.relaxed_num_samples
      ),
      generative_samples=config.num_samples,
      control_learning_rate=config.control_learning_rate,
      eval_batch_size=config.eval_batch_size,
      **common_vae.hyper_fields(config),
    )

  @property
  def model(self) -> model_lib.Model:
    return self.model_spec.model

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)

  @property
  def control_optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.control_learning_rate)


def init_state(
  hyper: Hyper, params: Params, train_key: chex.PRNGKey
) -> TrainState:
  control = gradients.initial_control(hyper.estimator)
  return TrainState(
    **common_vae.initial_fields(hyper, params, train_key),
    control=control,
    control_opt_state=hyper.control_optimizer.init(control),
  )


@functools.partial(jax.jit, static_argnames="hyper")
def train_step(
  state: TrainState, train_data: jax.Array, hyper: Hyper
) -> TrainState:
  """One Adam step on a minibatch drawn with `fold_in(train_key, step)`."""
  model = hyper.model
  x, baseline, encoder_key, generative_key = common_vae.minibatch(
    state, train_data, hyper.batch_size
  )  # x: [batch, D]

  def encoder_gradient(control):
    return gradients.encoder_gradient(
      hyper.estimator,
      model,
      hyper.num_samples,
      state.params,
      baseline,
      x,
      encoder_key,
      control if hyper.estimator in gradients.RELAXED else None,
    )

  control, control_opt_state = state.control, state.control_opt_state
  if hyper.estimator in gradients.RELAXED:
    # The estimate at the current control, and the gradient in the control
    # of its squared norm: d Var / d control, unbiased (gradients docs).
    def squared_norm(control):
      grad, costs = encoder_gradient(control)
      norm = sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grad))
      return norm, (grad, costs)

    (_, (encoder_grad, costs)), control_grad = jax.value_and_grad(
      squared_norm, has_aux=True
    )(control)
    control_updates, control_opt_state = hyper.control_optimizer.update(
      control_grad, control_opt_state, control
    )
    control = optax.apply_updates(control, control_updates)
  else:
    encoder_grad, costs = encoder_gradient(None)
  generative_grad = jax.grad(
    functools.partial(
      gradients.generative_loss,
      hyper.estimator,
      model,
      hyper.generative_samples,
    )
  )(
    model_lib.generative(state.params),
    state.params["encoder"],
    x,
    generative_key,
  )
  grads = {"encoder": encoder_grad, **generative_grad}
  return common_vae.adam_step(
    state,
    grads,
    costs,
    hyper,
    control=control,
    control_opt_state=control_opt_state,
  )


def evaluator(hyper: Hyper, keys: dict[str, jax.Array], train_data, test_data):
  """`state -> history-row metrics`, by :func:`evaluation.evaluate`."""
  eval_data = jnp.concatenate([train_data, test_data])
  return lambda state: evaluation.evaluate(
    state,
    eval_data,
    train_data.shape[0],
    keys["eval"],
    keys["measure"],
    hyper,
  )


def describe(row: dict[str, float]) -> str:
  """The end of a history row's log line (after the bounds and variance)."""
  return f" +- {row['grad_variance_se']:.1e}"
