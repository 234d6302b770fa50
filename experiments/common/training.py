"""The training loop of the model experiments: steps, logs, checkpoints.

:func:`train_loop` runs a jitted ``step(state) -> state`` from the state's
``step`` field to ``num_steps``, calls ``evaluate(state, step)`` every
``log_every`` steps (and at step 0 and the end) for one history row, and
checkpoints the state and the history every ``checkpoint_every`` steps and
at the end (:mod:`experiments.common.checkpoints`). A run that finds a
checkpoint resumes from it; since every step draws its randomness from
``fold_in(train_key, step)``, the resumed run retraces the uninterrupted one
bit for bit. Only the steps are timed (``wall_time_s``), not the compilation
nor the evaluations.
"""

import os
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib


class Interrupted(Exception):
  """Raised by the `stop_after_step` test hook to simulate a killed run."""


def train_loop(
  name: str,
  state: NamedTuple,
  step_fn: Callable[[NamedTuple], NamedTuple],
  evaluate: Callable[[NamedTuple], dict[str, Any]],
  describe: Callable[[dict[str, float]], str],
  workdir: str,
  *,
  num_steps: int,
  log_every: int,
  checkpoint_every: int,
  stop_after_step: int | None = None,
) -> tuple[NamedTuple, list[dict[str, float]]]:
  """Trains (or resumes) one run; returns the final state and history.

  Args:
    name: the run's name (an estimator): checkpoints go to
      `<workdir>/<name>/checkpoints`, and log lines start with `[name]`.
    state: the initial state, a NamedTuple of arrays with an int `step`.
    step_fn: one (jitted) training step. It is called once on `state` before
      the loop, outside the timing, so that it compiles there.
    evaluate: `state -> {metric: scalar}`, a history row's metrics.
    describe: a history row -> the rest of its log line.
    workdir: the experiment's output directory.
    num_steps: train up to this step.
    log_every: steps between history rows.
    checkpoint_every: steps between checkpoints.
    stop_after_step: test hook: raise `Interrupted` after this step.

  Returns:
    The final state and the history rows, each `{"step", "wall_time_s",
    **evaluate(state)}`.

  Raises:
    ConfigError: `workdir` holds a checkpoint past `num_steps`.
    Interrupted: from the test hook.
  """
  jax.block_until_ready(step_fn(state))

  history: list[dict[str, float]] = []
  wall_time = 0.0
  with checkpoints.manager(
    os.path.join(workdir, name, "checkpoints")
  ) as manager:
    latest = manager.latest_step()
    if latest is not None and latest > num_steps:
      raise config_lib.ConfigError(
        f"[{name}] the workdir holds a checkpoint at step {latest}, past "
        f"config.num_steps={num_steps}; use another --workdir."
      )
    if latest is not None:
      state, progress = checkpoints.restore(manager, latest, state)
      history, wall_time = progress["history"], progress["wall_time_s"]
      logging.info("[%s] resumed from step %d", name, latest)

    def log(step):
      metrics = {k: float(v) for k, v in evaluate(state).items()}
      row = {"step": step, "wall_time_s": wall_time, **metrics}
      history.append(row)
      logging.info(
        "[%s] step %5d  %s  (%.1fs)", name, step, describe(row), wall_time
      )

    step = int(state.step)
    if step == 0:
      log(0)
    while step < num_steps:
      start = time.perf_counter()
      state = step_fn(state)
      step += 1
      is_last = step == num_steps
      should_log = step % log_every == 0 or is_last
      should_save = step % checkpoint_every == 0 or is_last
      if should_log or should_save:
        jax.block_until_ready(state)
      # Dispatch is asynchronous: between syncs this adds dispatch time only,
      # and the compute time lands at the next sync.
      wall_time += time.perf_counter() - start
      if should_log:
        log(step)
      if should_save:
        checkpoints.save(
          manager, step, state, {"history": history, "wall_time_s": wall_time}
        )
      if stop_after_step is not None and step >= stop_after_step:
        raise Interrupted(f"stopped after step {step} (test hook)")
    manager.wait_until_finished()
  return state, history
