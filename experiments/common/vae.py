"""What the two VAE experiments share: step, training runs, checks, outputs.

:mod:`experiments.vae` (Gaussian latents) and :mod:`experiments.discrete_vae`
(binary latents) train one model with several encoder-gradient estimators
the same way; the pieces that do not depend on the latents are here:

* :func:`hyper_fields`: what a static ``Hyper`` takes from the config as
  it is;
* :func:`initial_fields`: a step-0 training state;
* :func:`minibatch` and :func:`adam_step`: the start and the end of a
  jitted training step (the batch and keys from ``fold_in(train_key,
  step)``; the Adam update and the moving-average baseline);
* :func:`moving_average_score_function`: the stateful score function's
  jacobians, its baseline held by the VAE per batch;
* :func:`encoder_gradient_replicates`: R independent encoder-gradient
  estimates, for :mod:`experiments.common.gradient_stats`;
* :func:`train_estimators`: each estimator's run of
  :func:`experiments.common.training.train_loop`, in order, stopped by the
  test hook;
* :func:`check_counts`, :func:`check_rates`, :func:`check_num_samples`
  and :func:`check_data_sizes`: the config checks both make;
* :func:`write_metrics`: ``metrics.json`` and ``metrics.csv``.

The figures they share are :mod:`experiments.common.vae_plots`'.
"""

import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from experiments.common import config as config_lib
from experiments.common import outputs
from experiments.common import training
from rgrad import control_variates
from rgrad import estimators

# ---------------------------------------------------------------------------
# The training step.
# ---------------------------------------------------------------------------

# The fields of both VAEs' static `Hyper` that are the config's as they are.
HYPER_FIELDS = (
  "batch_size",
  "learning_rate",
  "baseline_decay",
  "num_eval_samples",
  "num_variance_replicates",
  "variance_batch_size",
)


def hyper_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`{field: config[field]}` for the `HYPER_FIELDS`."""
  return {field: config[field] for field in HYPER_FIELDS}


def initial_fields(
  hyper: Any, params: Any, train_key: chex.PRNGKey
) -> dict[str, Any]:
  """The fields of a step-0 `TrainState` both VAEs have.

  The parameters and their `hyper.optimizer` state, a fresh moving-average
  baseline, step 0 and the train key's data (``jax.random.key_data``).
  """
  return {
    "params": params,
    "opt_state": hyper.optimizer.init(params),
    "baseline": control_variates.moving_average_baseline_init(),
    "step": jnp.zeros((), jnp.int32),
    "key": jax.random.key_data(train_key),
  }


def minibatch(
  state: Any, train_data: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array, chex.PRNGKey, chex.PRNGKey]:
  """`(x, baseline, encoder_key, other_key)` of the step `state.step`.

  The batch (drawn without replacement) and both keys come from
  ``fold_in(train_key, step)``, split in three; `baseline` is the value of
  the state's moving-average baseline.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  batch_key, encoder_key, other_key = jax.random.split(key, 3)
  del key
  index = jax.random.choice(
    batch_key, train_data.shape[0], (batch_size,), replace=False
  )
  x = train_data[index]  # [batch, dim]
  baseline = control_variates.moving_average_baseline_value(state.baseline)
  return x, baseline, encoder_key, other_key


def adam_step(state: Any, grads: Any, costs: jax.Array, hyper: Any, **fields):
  """`state` after one `hyper.optimizer` step on `grads`, and `fields`.

  The baseline takes one update per batch, from all the batch's costs; the
  step counter moves on by one.
  """
  updates, opt_state = hyper.optimizer.update(
    grads, state.opt_state, state.params
  )
  return state._replace(
    params=optax.apply_updates(state.params, updates),
    opt_state=opt_state,
    baseline=control_variates.moving_average_baseline_update(
      state.baseline, costs, hyper.baseline_decay
    ),
    step=state.step + 1,
    **fields,
  )


def moving_average_score_function(
  function: Callable[[jax.Array], jax.Array],
  q_params: Any,
  posterior: Callable[[Any], Any],
  key: chex.PRNGKey,
  num_samples: int,
  baseline: jax.Array,
) -> tuple[Any, jax.Array]:
  """`(jacobians, costs)` of the score function with a given baseline.

  The registry's stateful ``score_function_moving_average`` keeps its
  baseline per call; the VAEs keep it per batch instead, and hand its value
  here.
  """
  return estimators.score_function_jacobians(
    function,
    q_params,
    posterior,
    key,
    num_samples,
    baseline=baseline,
    return_costs=True,
  )


def encoder_gradient_replicates(
  encoder_gradient: Callable[..., tuple[Any, jax.Array]],
  state: Any,
  x: jax.Array,
  key: chex.PRNGKey,
  hyper: Any,
  *extra: Any,
) -> Any:
  """`hyper.num_variance_replicates` independent encoder gradients on `x`.

  Each is `encoder_gradient(estimator, model, num_samples, params,
  baseline, x, key, *extra)` at the state's parameters and baseline, from
  the keys `split(key, R)`; the leaves are `[R, ...]`.
  """
  baseline = control_variates.moving_average_baseline_value(state.baseline)

  def one_estimate(k):
    grad, _ = encoder_gradient(
      hyper.estimator,
      hyper.model,
      hyper.num_samples,
      state.params,
      baseline,
      x,
      k,
      *extra,
    )
    return grad

  keys = jax.random.split(key, hyper.num_variance_replicates)
  return jax.vmap(one_estimate)(keys)


# ---------------------------------------------------------------------------
# The training runs.
# ---------------------------------------------------------------------------


def train_estimators(
  train_lib: Any,
  config: ml_collections.ConfigDict,
  names: Sequence[str],
  init_params: Any,
  keys: dict[str, jax.Array],
  data: tuple[jax.Array, jax.Array],
  workdir: str,
  stop_after_step: int | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]], bool]:
  """Trains (or resumes) each estimator in turn, from the same parameters.

  Args:
    train_lib: the experiment's ``train`` module: its ``Hyper`` (with
      ``from_config(config, estimator, data_dim)``), ``init_state(hyper,
      params, train_key)``, jitted ``train_step(state, train_data, hyper)``
      (looked up at each call: tests wrap it), ``evaluator(hyper, keys,
      train_data, test_data)`` (-> ``state -> {metric: scalar}``) and
      ``describe(row)`` (the end of a log line).
    config: the validated config (``num_steps``, ``log_every``,
      ``checkpoint_every``).
    names: the estimators, in order.
    init_params: the initial parameters (shared by every estimator).
    keys: `{"train", "eval", "measure"}` keys.
    data: the train and test images, `[n_train, dim]` and `[n_test, dim]`.
    workdir: checkpoints go to `<workdir>/<estimator>/checkpoints`.
    stop_after_step: test hook: abandon each run after this step, as if it
      were killed (`training.Interrupted`).

  Returns:
    `(states, histories, interrupted)`: the final state and the history
    rows of each estimator trained to the end, and whether the test hook
    stopped a run (the estimators after it are not trained).

  Raises:
    ConfigError: `workdir` holds a checkpoint past `config.num_steps`.
  """
  train_data, test_data = data
  states, histories = {}, {}
  for name in names:
    hyper = train_lib.Hyper.from_config(config, name, train_data.shape[-1])
    try:
      states[name], histories[name] = training.train_loop(
        name,
        train_lib.init_state(hyper, init_params, keys["train"]),
        lambda state, hyper=hyper: train_lib.train_step(
          state, train_data, hyper
        ),
        train_lib.evaluator(hyper, keys, train_data, test_data),
        lambda row: (
          f"train ELBO {row['train_elbo']:.3f}  test ELBO "
          f"{row['test_elbo']:.3f}  test IWAE {row['test_iwae']:.3f}  grad "
          f"var {row['grad_variance']:.3e}{train_lib.describe(row)}"
        ),
        workdir,
        num_steps=config.num_steps,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        stop_after_step=stop_after_step,
      )
    except training.Interrupted:
      logging.info("[%s] interrupted by the test hook", name)
      return states, histories, True
  return states, histories, False


# ---------------------------------------------------------------------------
# The config checks.
# ---------------------------------------------------------------------------


# The counts both VAEs' configs hold (ints >= 1).
POSITIVE_INTS = (
  "num_samples",
  "num_steps",
  "latent_dim",
  "hidden_dim",
  "batch_size",
  "log_every",
  "checkpoint_every",
  "num_eval_samples",
  "variance_batch_size",
  "num_display",
)


def check_counts(
  config: ml_collections.ConfigDict,
  positive_ints: Sequence[str],
  min_replicates: int,
) -> None:
  """The `POSITIVE_INTS`, then the `positive_ints`, are ints >= 1, the seeds
  ints >= 0, and ``num_variance_replicates`` an int >= `min_replicates`.

  Raises:
    ConfigError: naming the offending field.
  """
  for field in (*POSITIVE_INTS, *positive_ints):
    config_lib.integer(config[field], field)
  for field in ("seed", "data_seed"):
    config_lib.integer(config[field], field, minimum=0)
  config_lib.integer(
    config.num_variance_replicates,
    "num_variance_replicates",
    minimum=min_replicates,
  )


def check_rates(config: ml_collections.ConfigDict) -> None:
  """The data's ``test_fraction`` and ``binarize_threshold``, and the
  ``baseline_decay`` and ``learning_rate``.

  Raises:
    ConfigError: naming the offending field.
  """
  config_lib.real(config.test_fraction, "test_fraction", positive=True, high=1)
  config_lib.real(
    config.binarize_threshold, "binarize_threshold", low=0.0, high=1.0
  )
  config_lib.real(config.baseline_decay, "baseline_decay", low=0.0, high=1.0)
  config_lib.real(config.learning_rate, "learning_rate", positive=True)


def check_num_samples(
  config: ml_collections.ConfigDict, name: str, spec: Any
) -> None:
  """``config.num_samples`` is enough for the estimator `name` (`spec`).

  Raises:
    ConfigError: fewer than the registry entry's ``min_num_samples``.
  """
  if config.num_samples < spec.min_num_samples:
    raise config_lib.ConfigError(
      f"config.num_samples must be >= {spec.min_num_samples} for the "
      f"{name} estimator ({spec.summary}), got {config.num_samples}."
    )


def check_data_sizes(config: ml_collections.ConfigDict, num_train: int) -> None:
  """The batches fit in the `num_train` training images.

  Raises:
    ConfigError: a batch larger than the training set.
  """
  config_lib.batches_fit(
    config, ("batch_size", "variance_batch_size"), num_train, "images"
  )


# ---------------------------------------------------------------------------
# The outputs.
# ---------------------------------------------------------------------------

# The first columns of a history row: the step, the training time, and the
# bounds; then each VAE's variance statistics, the SNR and the baseline.
BOUND_FIELDS = ("step", "wall_time_s", "train_elbo", "test_elbo", "test_iwae")
SNR_FIELDS = ("grad_snr_sq", "grad_snr")


def write_metrics(
  metrics: dict[str, Any], workdir: str, fields: Sequence[str]
) -> None:
  """metrics.json, and the history rows as metrics.csv (on process 0).

  The CSV has one row per (estimator, step), with the columns
  ``estimator`` and `fields`.
  """
  # Not strict: a diverged run's NaNs are written (as NaN) rather than lost.
  outputs.write_json(
    os.path.join(workdir, "metrics.json"), metrics, strict=False
  )
  rows = [
    {"estimator": name, **row}
    for name in metrics["estimators"]
    for row in metrics["history"][name]
  ]
  outputs.write_csv(
    os.path.join(workdir, "metrics.csv"), rows, ("estimator", *fields)
  )
