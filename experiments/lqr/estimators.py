r"""The estimators as chunk functions of the moments engine.

:func:`rgrad.diagnostics.moments` streams ``chunk_fn(key, size, args)``
with ``args = (problem, params)`` traced, so one compilation serves every
spectral radius: the engine compiles once per (estimator, horizon) and
chunk shape. A chunk of an i.i.d. estimator is ``size`` rollouts' gradients;
a chunk of a batch estimator (leave-one-out, total propagation: rows share
their batch) is ``size`` independent batch means of ``batch_size`` rollouts
each, vmapped (:func:`rgrad.diagnostics.unit_means` for
``group_size="batch"``).
"""

from typing import Any
from typing import NamedTuple

import jax

from rgrad import rl

# Estimators whose rows share their batch (one group per batch).
BATCHED = ("leave_one_out", "total_propagation")


def gradients(name, problem, params, key, horizon, num_rollouts) -> Any:
  """Per-rollout gradients ``{"K": [N, m, n], "log_sigma": [N]}``."""
  if name == "score_function":
    return rl.score_function_policy_gradients(
      problem, params, key, horizon, num_rollouts
    )
  if name == "leave_one_out":
    return rl.score_function_policy_gradients(
      problem, params, key, horizon, num_rollouts, baseline="leave_one_out"
    )
  if name == "bptt":
    noise = rl.sample_lqr_noise(problem, key, horizon, num_rollouts)
    return rl.lqr_bptt_gradients(problem, params, noise)
  if name == "total_propagation":
    return rl.total_propagation_policy_gradients(
      problem,
      params,
      key,
      horizon,
      num_rollouts,
      weights="cross_fit",
      baseline="leave_one_out",
    )
  raise ValueError(f"unknown estimator {name!r}")


class Chunk(NamedTuple):
  """``chunk_fn`` of :func:`rgrad.diagnostics.moments` (hashable: static).

  Attributes:
    estimator: a name of ``experiments.configs.lqr.ESTIMATORS``.
    horizon: T.
    batch_size: rollouts per unit for :data:`BATCHED` estimators (1
      otherwise).
  """

  estimator: str
  horizon: int
  batch_size: int = 1

  def __call__(self, key, size, args):
    problem, params = args
    if self.estimator not in BATCHED:
      return gradients(self.estimator, problem, params, key, self.horizon, size)

    def batch_mean(k):
      g = gradients(
        self.estimator, problem, params, k, self.horizon, self.batch_size
      )
      return jax.tree.map(lambda x: x.mean(axis=0), g)

    return jax.vmap(batch_mean)(jax.random.split(key, size))


def rows_per_unit(name: str, batch_size: int) -> int:
  return batch_size if name in BATCHED else 1
