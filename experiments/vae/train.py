r"""Training: the state, one jitted Adam step, and the loop with checkpoints.

One step draws a minibatch and every random number from
``fold_in(train_key, step)``, estimates the encoder gradient with the
configured estimator and the decoder gradient pathwise
(:mod:`experiments.vae.gradients`), takes an Adam step on both, and folds the
batch's costs into the moving-average baseline. The loop logs the
diagnostics of :mod:`experiments.vae.evaluation` every ``log_every`` steps
and checkpoints every ``checkpoint_every`` steps, in the loop that
:mod:`experiments.common.training` shares with the discrete VAE (orbax
checkpoints, :mod:`experiments.common.checkpoints`).
"""

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from experiments.common import training
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
      batch_size=config.batch_size,
      learning_rate=config.learning_rate,
      baseline_decay=config.baseline_decay,
      num_eval_samples=config.num_eval_samples,
      num_variance_replicates=config.num_variance_replicates,
      variance_batch_size=config.variance_batch_size,
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
  return TrainState(
    params=params,
    opt_state=hyper.optimizer.init(params),
    baseline=control_variates.moving_average_baseline_init(),
    step=jnp.zeros((), jnp.int32),
    key=jax.random.key_data(train_key),
  )


@functools.partial(jax.jit, static_argnames="hyper")
def train_step(
  state: TrainState, train_data: jax.Array, hyper: Hyper
) -> TrainState:
  """One Adam step on a minibatch drawn with `fold_in(train_key, step)`.

  The data are an argument, not a closed-over constant: a constant would be
  embedded in the program and slow XLA's compilation down.
  """
  model = hyper.model
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  batch_key, encoder_key, decoder_key = jax.random.split(key, 3)
  del key
  index = jax.random.choice(
    batch_key, train_data.shape[0], (hyper.batch_size,), replace=False
  )
  x = train_data[index]  # [batch, dim]
  baseline = control_variates.moving_average_baseline_value(state.baseline)
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
  updates, opt_state = hyper.optimizer.update(
    grads, state.opt_state, state.params
  )
  return TrainState(
    params=optax.apply_updates(state.params, updates),
    opt_state=opt_state,
    # One update per batch, from all batch_size * num_samples costs.
    baseline=control_variates.moving_average_baseline_update(
      state.baseline, costs, hyper.baseline_decay
    ),
    step=state.step + 1,
    key=state.key,
  )


def train_estimator(
  config,
  estimator: str,
  init_params: Params,
  keys: dict[str, jax.Array],
  train_data: jax.Array,
  test_data: jax.Array,
  workdir: str,
  stop_after_step: int | None = None,
) -> tuple[TrainState, list[dict[str, float]]]:
  """Trains (or resumes) one estimator; returns the final state and history.

  Args:
    config: the validated config.
    estimator: one of `gradients.ESTIMATORS`.
    init_params: the initial parameters (shared by every estimator).
    keys: `{"train", "eval", "measure"}` keys.
    train_data: `[n_train, dim]`.
    test_data: `[n_test, dim]`.
    workdir: checkpoints go to `<workdir>/<estimator>/checkpoints`.
    stop_after_step: test hook: raise `training.Interrupted` after this step.

  Returns:
    The final state and the history rows (see `experiments.vae.outputs`).

  Raises:
    ConfigError: `workdir` holds a checkpoint past `config.num_steps`.
    Interrupted: from the test hook.
  """
  hyper = Hyper.from_config(config, estimator, train_data.shape[-1])
  # `train_step` is looked up at each call (tests wrap it).
  return training.train_loop(
    estimator,
    init_state(hyper, init_params, keys["train"]),
    lambda state: train_step(state, train_data, hyper),
    lambda state: evaluation.evaluate(
      state, train_data, test_data, keys["eval"], keys["measure"], hyper
    ),
    lambda row: (
      f"train ELBO {row['train_elbo']:.3f}  test ELBO {row['test_elbo']:.3f}  "
      f"test IWAE {row['test_iwae']:.3f}  grad var "
      f"{row['grad_variance']:.3e}  SNR {row['grad_snr']:.3f}"
    ),
    workdir,
    num_steps=config.num_steps,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    stop_after_step=stop_after_step,
  )
