"""Checkpoints (orbax) and the config record that makes resuming safe.

Shared by the model experiments (``experiments.vae``,
``experiments.discrete_vae``). Each estimator's run keeps its own checkpoints
in ``<workdir>/<estimator>/checkpoints/``: the training state (a NamedTuple
of arrays: parameters, optimizer state, estimator state, step, key) and the
progress so far (the metrics history and the training wall time), the last
two kept. Training draws its randomness from ``fold_in(train_key, step)``
with no hidden state, so a run resumed from a checkpoint retraces the
uninterrupted run bit for bit (:mod:`experiments.common.training`).
``<workdir>/config.json`` records the config the checkpoints belong to.

The measurement experiments (``experiments.lqr``, the Pendulum part of
``experiments.policy_gradient``) have no training state: each of their cells
(one estimator's moments at one setting) is a deterministic function of the
config and the seed, so :func:`cached_cell` keeps every finished cell as JSON
in ``<workdir>/cells/`` and a restarted run reads those back instead of
measuring them again; its results equal the uninterrupted run's (JSON
round-trips floats exactly).
"""

import json
import os
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from experiments.common import config as config_lib
from experiments.common import outputs


def manager(directory: str) -> ocp.CheckpointManager:
  """An orbax manager keeping the last two checkpoints in `directory`."""
  return ocp.CheckpointManager(
    os.path.abspath(directory),
    options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
    item_names=("state", "progress"),
  )


def save(
  checkpoints: ocp.CheckpointManager,
  step: int,
  state: NamedTuple,
  progress: dict[str, Any],
) -> None:
  """Saves `state` (a pytree of arrays) and `progress` (JSON) at `step`."""
  checkpoints.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      progress=ocp.args.JsonSave(progress),
    ),
  )


def restore(
  checkpoints: ocp.CheckpointManager, step: int, like: NamedTuple
) -> tuple[NamedTuple, dict[str, Any]]:
  """The state (of the type and structure of `like`) and progress at `step`."""
  restored = checkpoints.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(like),
      progress=ocp.args.JsonRestore(),
    ),
  )
  # Restored arrays are committed to a device, the train step's outputs are
  # not; a host round trip (exact) keeps the jit cache at one entry.
  state = jax.tree.map(
    lambda a: jnp.asarray(np.asarray(a)), type(like)(*restored["state"])
  )
  return state, restored["progress"]


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records the config in `workdir`; refuses to resume under another one.

  Checkpoints are only meaningful for the config that wrote them;
  `num_steps` may change (to extend a run), nothing else may.

  Raises:
    ConfigError: `workdir` holds a run with another config.
  """
  path = os.path.join(workdir, "config.json")
  # As read back from JSON (tuples become lists), so that a config with a
  # tuple field compares equal to its own record.
  current = outputs.as_json(config.to_dict())
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = sorted(
      k
      for k in set(previous) | set(current)
      if k != "num_steps" and previous.get(k) != current.get(k)
    )
    if changed:
      raise config_lib.ConfigError(
        f"{workdir} holds a run with a different config (fields "
        f"{', '.join(changed)}); use another --workdir or the same flags."
      )
  outputs.make_workdir(workdir)
  outputs.write_json(path, current)


def cached_cell(
  workdir: str, cell: str, compute: Callable[[], Any]
) -> tuple[Any, bool]:
  """The JSON value of `cell`: read back if a run already measured it.

  Call :func:`record_config` first, so that the cells belong to this config.
  Every process computes a missing cell (the moments engine needs all of
  them); only the writer process writes it.

  Args:
    workdir: the run's directory.
    cell: the cell's name, a valid file name (e.g. ``"bptt_T=20_r=0.95"``).
    compute: ``() ->`` the cell's value, JSON-serialisable.

  Returns:
    ``(value, resumed)``: `resumed` is True when the value was read back.
  """
  path = os.path.join(workdir, "cells", f"{cell}.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f), True
  value = compute()
  if outputs.is_writer():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Written whole then renamed: a run killed mid-write leaves no half cell.
    outputs.write_json(path + ".tmp", value)
    os.replace(path + ".tmp", path)
  return value, False
