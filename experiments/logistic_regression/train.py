r"""Training: the state, the jitted SGD steps, and the loop with checkpoints.

One step draws its minibatch and every random number from
``fold_in(train_key, step)``, estimates the gradient of the negative ELBO
with the configured estimator (:mod:`~experiments.logistic_regression.
gradients`) and takes an SGD step whose learning rate is cosine-decayed
from ``learning_rate`` to 0 over ``num_steps`` (optax). The compiled unit is
a block of ``variance_every`` steps (a ``lax.scan``): between blocks the
loop measures the gradient variance and, every ``eval_every`` steps,
evaluates the posterior (:mod:`~experiments.logistic_regression.
evaluation`), so each estimator compiles one block and one measurement, and
the evaluation compiles once for all.

The loop is this experiment's own rather than
:func:`experiments.common.training.train_loop`, which runs and times one
step per call and writes one history row per evaluation; here a call is a
block, and two kinds of rows (variance, evaluation) come at two intervals.
It uses the same checkpoints (:mod:`experiments.common.checkpoints`, orbax):
the state and the rows so far, every ``checkpoint_every`` steps and at the
end. Since a step's randomness depends on its index only, a resumed run
retraces the uninterrupted one bit for bit. Only the blocks are timed
(``wall_time_s``, synchronised after every block), not the compilation,
the measurements or the evaluations.
"""

import functools
import os
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import outputs
from experiments.logistic_regression import gradients
from experiments.logistic_regression import model

Params = model.Params


class Interrupted(Exception):
  """Raised by the `stop_after_step` test hook to simulate a killed run."""


class TrainState(NamedTuple):
  """Everything a step reads and writes; what a checkpoint holds."""

  params: Params
  opt_state: optax.OptState
  estimator_state: Any  # () or gradients.OnlineCoefficientState
  step: jax.Array  # int32 scalar: SGD steps taken.
  key: jax.Array  # uint32 key data of the train key.


class Hyper(NamedTuple):
  """The static (hashable) part of the config that the compiled steps use."""

  estimator: str
  num_train: int
  batch_size: int
  num_samples: int
  learning_rate: float
  num_steps: int
  variance_every: int
  options: gradients.Options

  @classmethod
  def from_config(cls, config, estimator: str, num_train: int) -> "Hyper":
    return cls(
      estimator=estimator,
      num_train=num_train,
      batch_size=config.batch_size,
      num_samples=config.num_samples,
      learning_rate=config.learning_rate,
      num_steps=config.num_steps,
      variance_every=config.variance_every,
      options=gradients.Options(
        num_coefficient_samples=config.num_coefficient_samples,
        online_decay=config.online_decay,
      ),
    )

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.sgd(
      optax.cosine_decay_schedule(self.learning_rate, self.num_steps)
    )

  @property
  def scale(self) -> float:
    """N / batch: the minibatch sum estimates the sum over N points."""
    return self.num_train / self.batch_size


def init_state(
  hyper: Hyper, params: Params, train_key: chex.PRNGKey
) -> TrainState:
  return TrainState(
    params=params,
    opt_state=hyper.optimizer.init(params),
    estimator_state=gradients.init_state(hyper.estimator, params),
    step=jnp.zeros((), jnp.int32),
    key=jax.random.key_data(train_key),
  )


def step_keys(key_data: jax.Array, step: jax.Array) -> tuple[jax.Array, ...]:
  """(batch key, gradient key) of `step`: split from fold_in(key, step)."""
  key = jax.random.fold_in(jax.random.wrap_key_data(key_data), step)
  return tuple(jax.random.split(key))


def minibatch(
  key_data: jax.Array,
  step: jax.Array,
  x: jax.Array,
  y: jax.Array,
  batch_size: int,
) -> tuple[jax.Array, jax.Array]:
  """The minibatch of `step`, without replacement: ``([B, d], [B])``."""
  batch_key, _ = step_keys(key_data, step)
  index = jax.random.choice(batch_key, x.shape[0], (batch_size,), replace=False)
  return x[index], y[index]


def train_step(
  state: TrainState, x: jax.Array, y: jax.Array, hyper: Hyper
) -> TrainState:
  """One SGD step on the negative ELBO."""
  xb, yb = minibatch(state.key, state.step, x, y, hyper.batch_size)
  _, grad_key = step_keys(state.key, state.step)
  grads, estimator_state = gradients.negative_elbo_gradient(
    hyper.estimator,
    state.params,
    xb,
    yb,
    hyper.scale,
    grad_key,
    hyper.num_samples,
    state.estimator_state,
    hyper.options,
  )
  updates, opt_state = hyper.optimizer.update(
    grads, state.opt_state, state.params
  )
  return TrainState(
    params=optax.apply_updates(state.params, updates),
    opt_state=opt_state,
    estimator_state=estimator_state,
    step=state.step + 1,
    key=state.key,
  )


@functools.partial(jax.jit, static_argnames="hyper")
def train_block(
  state: TrainState, x: jax.Array, y: jax.Array, hyper: Hyper
) -> TrainState:
  """`hyper.variance_every` steps in one ``lax.scan``.

  The data are arguments, not closed-over constants, which XLA would embed
  in the program.
  """

  def body(state, _):
    return train_step(state, x, y, hyper), None

  state, _ = jax.lax.scan(body, state, None, length=hyper.variance_every)
  return state


def train_estimator(
  config,
  name: str,
  state: TrainState,
  data: tuple[jax.Array, jax.Array],
  measure: Callable[[TrainState], dict[str, float]],
  evaluate: Callable[[TrainState], dict[str, float]],
  workdir: str,
  stop_after_step: int | None = None,
) -> tuple[TrainState, dict[str, list[dict[str, float]]], float]:
  """Trains (or resumes) one estimator; returns its state, rows and time.

  Args:
    config: the validated config.
    name: the estimator; checkpoints go to `<workdir>/<name>/checkpoints`.
    state: the initial state.
    data: the training set `(x, y)`.
    measure: state -> a variance row's metrics.
    evaluate: state -> an evaluation row's metrics.
    workdir: the experiment's output directory.
    stop_after_step: test hook: raise `Interrupted` after this step's
      checkpoint would have been written.

  Returns:
    ``(state, {"variance": rows, "evaluation": rows}, wall_time_s)``; each
    row is ``{"step", "wall_time_s", **metrics}``.

  Raises:
    ConfigError: `workdir` holds a checkpoint past `config.num_steps`.
    Interrupted: from the test hook.
  """
  hyper = Hyper.from_config(config, name, data[0].shape[0])
  block = lambda s: train_block(s, *data, hyper)  # noqa: E731
  # Compile outside the timing (the result is discarded).
  jax.block_until_ready(block(state))
  rows: dict[str, list[dict[str, float]]] = {"variance": [], "evaluation": []}
  wall_time = 0.0
  path = os.path.join(workdir, name, "checkpoints")
  with checkpoints.manager(path) as manager:
    latest = manager.latest_step()
    if latest is not None and latest > config.num_steps:
      raise config_lib.ConfigError(
        f"[{name}] the workdir holds a checkpoint at step {latest}, past "
        f"config.num_steps={config.num_steps}; use another --workdir."
      )
    if latest is not None:
      state, progress = checkpoints.restore(manager, latest, state)
      rows, wall_time = progress["rows"], progress["wall_time_s"]
      logging.info("[%s] resumed from step %d", name, latest)
    step = int(state.step)
    while True:
      # Rows at `step` come before the block that leaves it, so a checkpoint
      # at `step` holds the rows of the steps before it only.
      row = {"step": step, "wall_time_s": wall_time}
      rows["variance"].append({**row, **measure(state)})
      if step % config.eval_every == 0 or step == config.num_steps:
        rows["evaluation"].append({**row, **evaluate(state)})
      if step % config.log_every == 0 or step == config.num_steps:
        _log(name, rows, wall_time)
      if step == config.num_steps:
        break
      start = time.perf_counter()
      state = jax.block_until_ready(block(state))
      wall_time += time.perf_counter() - start
      step += config.variance_every
      if step % config.checkpoint_every == 0 or step == config.num_steps:
        # A copy: orbax writes asynchronously, after more rows are appended.
        progress = {"rows": outputs.as_json(rows), "wall_time_s": wall_time}
        checkpoints.save(manager, step, state, progress)
      if stop_after_step is not None and step >= stop_after_step:
        manager.wait_until_finished()
        raise Interrupted(f"stopped after step {step} (test hook)")
    manager.wait_until_finished()
  return state, rows, wall_time


def _log(name, rows, wall_time):
  v, e = rows["variance"][-1], rows["evaluation"][-1]
  logging.info(
    "[%s] step %5d  ELBO %.2f (exact %.2f)  test log-lik %.4f  accuracy "
    "%.3f  grad var loc %.3e log-scale %.3e  (%.1fs)",
    name,
    v["step"],
    e["elbo"],
    e["elbo_exact"],
    e["test_log_likelihood"],
    e["test_accuracy"],
    v["variance_loc"],
    v["variance_log_scale"],
    wall_time,
  )
