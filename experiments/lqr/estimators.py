r"""The LQR experiment's estimators, as gradients for the moments engine.

:func:`gradients` is the :data:`experiments.common.policy_moments.GradientsFn`
of the experiment: ``args = (problem, params)`` are traced, so one
compilation serves every spectral radius. Leave-one-out and total
propagation share their batch across its rows (:data:`BATCHED`): they are
measured in independent batches (:mod:`experiments.common.policy_moments`).
"""

from typing import Any

from experiments.common import policy_moments
from rgrad import rl

# Estimators whose rows share their batch (one group per batch).
BATCHED = ("leave_one_out", "total_propagation", "total_propagation_batch")


def gradients(name, args, key, horizon, num_rollouts) -> Any:
  """Per-rollout gradients ``{"K": [N, m, n], "log_sigma": [N]}``."""
  problem, params = args
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
  if name in ("total_propagation", "total_propagation_batch"):
    return rl.total_propagation_policy_gradients(
      problem,
      params,
      key,
      horizon,
      num_rollouts,
      weights="batch" if name.endswith("_batch") else "cross_fit",
      baseline="leave_one_out",
    )
  raise ValueError(f"unknown estimator {name!r}")


def moments(name, horizon, problem, params, key, parsed):
  """Per-rollout moments of `name` at T = `horizon` (config `parsed`)."""
  return policy_moments.moments(
    gradients,
    name,
    horizon,
    (problem, params),
    key,
    num_samples=parsed["num_samples"],
    chunk_size=parsed["chunk_size"],
    batch_size=parsed["batch_size"] if name in BATCHED else 1,
  )
