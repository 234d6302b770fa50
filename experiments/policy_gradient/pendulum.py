r"""Pendulum-v1: BPTT through gymnax's own ``step`` against the score function.

Pendulum's dynamics are smooth (gymnax implements them in JAX and, with
``with_transition_gradients()``, keeps their derivatives), so the policy
gradient of the expected cost :math:`J(\theta) = E[\sum_{t<T} c_t]` has a
pathwise estimate, backpropagation through time, beside the score function.
Their variances behave in opposite ways as the horizon grows (Parmas et
al., 2018): the score function's grows with the number of steps whose noise
it correlates with the return, roughly polynomially; BPTT's carries the
product of the dynamics' Jacobians :math:`\prod_t \partial x_{t+1}/\partial
x_t`, which for a pendulum swinging through its unstable upright position
grows geometrically (Metz et al., 2021). Total propagation (PIPPS) mixes
the two at every step.

The policy is Gaussian and linear in the observation
:math:`o = (\cos\theta, \sin\theta, \dot\theta)`,
:math:`u_t = w^\top o_t + b + \sigma\epsilon_t` (the environment clips the
torque to [-2, 2]), at fixed parameters given per named policy in the
config (``policies``: :math:`(w_1, w_2, w_3, b)`). For each policy, horizon
T and estimator (``config.estimators``: REINFORCE with reward-to-go and no
baseline, with the leave-one-out baseline, BPTT by ``jax.grad`` through the
environment, total propagation with cross-fitted weights and with its own
batch's weights, PIPPS's original), the moments
engine measures the per-coordinate mean and the per-rollout variance, with
the fourth-moment standard error of the variance; batch estimators
(leave-one-out, total propagation) run in independent batches of
``batch_size`` rollouts (:mod:`experiments.common.policy_moments`).

Cross-fitting makes total propagation exactly unbiased, but on this
environment it costs robustness: BPTT's per-step terms are heavy-tailed
(a rare rollout through the top carries a huge Jacobian), a half-batch
without such a rollout gives a small pathwise variance and so a large
pathwise weight, and that weight then multiplies the other half's outlier.
With the batch's own weights an outlier inflates the variance of its own
batch and is down-weighted: O(1/N) bias, bounded variance. Both are
measured.

There is no exact gradient here. Every estimator but the batch-weighted
total propagation is unbiased for the same
:math:`\nabla J` (the clipped dynamics and the cost are continuous and
piecewise smooth in the parameters, so the pathwise gradient is too), so
the means must agree: each cell uses its own key (no common random
numbers), and every estimator's mean is compared with the lowest-variance
estimator's by :math:`z = (\hat m - \hat m_{ref}) / \sqrt{se^2 +
se_{ref}^2}`. Pendulum episodes last 200 steps (``max_steps_in_episode``),
so T is at most 200: every rollout is one episode from reset, with no
automatic reset inside it.

Resuming: each finished (estimator, policy, T) cell is kept in
``<workdir>/cells/`` (:func:`experiments.common.checkpoints.cached_cell`).

References:
  Parmas, Rasmussen, Peters, Doya. PIPPS: Flexible Model-Based Policy Search
  Robust to the Curse of Chaos. ICML 2018,
  https://proceedings.mlr.press/v80/parmas18a.html.
  Metz, Freeman, Schoenholz, Kachman. Gradients are Not All You Need, 2021,
  https://arxiv.org/abs/2111.05803.
  Lange. gymnax: A JAX-based Reinforcement Learning Environment Library,
  2022, https://github.com/RobertTLange/gymnax.
"""

import functools
import time
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import horizon_variance
from experiments.common import policy_moments
from experiments.policy_gradient import pendulum_outputs as outputs
from rgrad import rl

ENV_NAME = "Pendulum-v1"
ESTIMATORS = (
  "score_function",
  "leave_one_out",
  "bptt",
  "total_propagation",
  "total_propagation_batch",
)
# Estimators whose rows share their batch (one group per batch).
BATCHED = ("leave_one_out", "total_propagation", "total_propagation_batch")


@functools.cache
def environment() -> rl.Environment:
  """gymnax's Pendulum-v1 as an :class:`rgrad.rl.Environment` (made once)."""
  return rl.gymnax_environment(*gymnax.make(ENV_NAME))


def max_episode_steps() -> int:
  return int(gymnax.make(ENV_NAME)[1].max_steps_in_episode)


def mean_fn(params: dict, obs: jax.Array) -> jax.Array:
  """The action mean :math:`w^\top o + b`, shape ``[1]``."""
  return jnp.reshape(params["w"] @ obs + params["b"], (1,))


def policy_params(weights, sigma) -> dict[str, jax.Array]:
  """``{"w": [3], "b": [], "log_sigma": []}`` from ``(w1, w2, w3, b)``."""
  weights = jnp.asarray(weights, jnp.float64)
  return {
    "w": weights[:3],
    "b": weights[3],
    "log_sigma": jnp.log(jnp.asarray(sigma, jnp.float64)),
  }


def gradients(name, args, key, horizon, num_rollouts) -> Any:
  """Per-rollout gradients (a GradientsFn of experiments.common)."""
  (params,) = args
  env = environment()
  common = dict(mean_fn=mean_fn)
  if name == "score_function":
    return rl.score_function_policy_gradients(
      env, params, key, horizon, num_rollouts, **common
    )
  if name == "leave_one_out":
    return rl.score_function_policy_gradients(
      env, params, key, horizon, num_rollouts, baseline="leave_one_out",
      **common,
    )  # fmt: skip
  if name == "bptt":
    return rl.pathwise_policy_gradients(
      env, params, key, horizon, num_rollouts, **common
    )
  if name in ("total_propagation", "total_propagation_batch"):
    weights = "batch" if name.endswith("_batch") else "cross_fit"
    return rl.total_propagation_policy_gradients(
      env, params, key, horizon, num_rollouts, weights=weights,
      baseline="leave_one_out", **common,
    )  # fmt: skip
  raise ValueError(f"unknown estimator {name!r}")


def validate_config(
  config: ml_collections.ConfigDict, max_steps: int
) -> dict[str, Any]:
  """Checked fields; raises ``ConfigError`` naming the bad one."""
  names = config_lib.names(config.estimators, "estimators", ESTIMATORS)
  config_lib.integer(config.seed, "seed", minimum=0)
  horizons = tuple(config_lib.integer(t, "horizons") for t in config.horizons)
  if not horizons:
    raise config_lib.ConfigError("config.horizons must not be empty.")
  if max(horizons) > max_steps:
    raise config_lib.ConfigError(
      f"config.horizons reach {max(horizons)}, beyond Pendulum-v1's "
      f"{max_steps}-step episodes (a rollout is one episode)."
    )
  policies = {}
  for policy, weights in dict(config.policies).items():
    if not isinstance(weights, (tuple, list)) or len(weights) != 4:
      raise config_lib.ConfigError(
        f"config.policies.{policy} must be 4 numbers (w_cos, w_sin, w_dot, "
        f"b), got {weights!r}."
      )
    policies[policy] = tuple(
      config_lib.real(w, f"policies.{policy}[{i}]")
      for i, w in enumerate(weights)
    )
  if not policies:
    raise config_lib.ConfigError("config.policies must not be empty.")
  num_samples, chunk_size, batch = horizon_variance.batching(config)
  return {
    "estimators": names,
    "horizons": horizons,
    "policies": policies,
    "sigma": config_lib.real(config.sigma, "sigma", positive=True),
    "num_samples": num_samples,
    "chunk_size": chunk_size,
    "batch_size": batch,
  }


def _records(name, policy, horizon, params, key, parsed):
  """The records of one (estimator, policy, T)."""
  m = policy_moments.moments(
    gradients,
    name,
    horizon,
    (params,),
    key,
    num_samples=parsed["num_samples"],
    chunk_size=parsed["chunk_size"],
    batch_size=parsed["batch_size"] if name in BATCHED else 1,
  )
  return outputs.records(name, policy, horizon, m)


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  stop_after_cells: int | None = None,
) -> dict[str, Any] | None:
  """Measures every cell, writes results.json, results.csv and the figure.

  Args:
    config: the ``pendulum`` preset of `experiments/configs/policy_gradient.py`.
    workdir: output directory; cells a run with the same config measured
      there are read back.
    stop_after_cells: test hook: abandon the run after this many newly
      measured cells, as if it were killed (no outputs are written).

  Returns:
    The contents of ``results.json``; None when stopped by the test hook.
  """
  parsed = validate_config(config, max_episode_steps())
  # Float64: BPTT's variance reaches ~1e15 at T = 200.
  jax.config.update("jax_enable_x64", True)
  checkpoints.record_config(config, workdir)
  start = time.perf_counter()
  key = jax.random.key(config.seed)
  # Horizon outermost, policy innermost: each (estimator, T) compiles once
  # and is reused for every policy (the parameters are traced). Every cell
  # has its own key: the estimators' means are compared independently.
  cells = (
    (
      f"{name}/T={horizon}",
      f"{name}_T={horizon}_{policy}",
      functools.partial(
        horizon_variance.timed_cell,
        name,
        horizon,
        policy,
        functools.partial(
          _records,
          name,
          policy,
          horizon,
          policy_params(weights, parsed["sigma"]),
          jax.random.fold_in(
            jax.random.fold_in(jax.random.fold_in(key, i), j), e
          ),
          parsed,
        ),
      ),
    )
    for j, horizon in enumerate(parsed["horizons"])
    for e, name in enumerate(parsed["estimators"])
    for i, (policy, weights) in enumerate(parsed["policies"].items())
  )
  measured = horizon_variance.measure_cells(workdir, cells, stop_after_cells)
  if measured is None:
    logging.info("stopped by the test hook")
    return None
  records, timings = measured
  results = outputs.results(config, parsed, records)
  horizon_variance.finish(config, workdir, results, timings, start, outputs)
  return results
