r"""Default configuration of the policy-gradient experiment on gymnax.

Launch (REINFORCE with reward-to-go and a learned value baseline on
CartPole-v1, a few CPU-minutes):

  python -m experiments.policy_gradient --workdir=/tmp/rgrad/policy_gradient

with overrides:

  python -m experiments.policy_gradient --config.num_envs=512 \
    --config.num_steps=100 --config.seed=1 --workdir=/tmp/rgrad/pg_512

``get_config(env)`` takes the environment's preset name after a colon; a
preset per environment module of ``experiments.policy_gradient``
(``config.env`` picks the module). Pendulum-v1, the variance of BPTT
through gymnax's dynamics against the score function and total propagation
as the horizon grows (a few CPU-minutes)::

  python -m experiments.policy_gradient \
    --config=experiments/configs/policy_gradient.py:pendulum \
    --workdir=/tmp/rgrad/pendulum

A run killed mid-way and restarted with the same flags resumes from its last
checkpoint (CartPole) or its finished cells (Pendulum) and ends with bitwise
the same parameters and results.

References:
  Williams, Simple statistical gradient-following algorithms for
  connectionist reinforcement learning, Machine Learning 1992.
  Sutton and Barto, Reinforcement Learning: An Introduction, 2nd ed. 2018,
  Section 13.4 (REINFORCE with baseline).
  Lange, gymnax: A JAX-based Reinforcement Learning Environment Library,
  2022, https://github.com/RobertTLange/gymnax.
"""

import ml_collections


def _cartpole() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.env = "CartPole-v1"  # gymnax name; selects the module.
  config.seed = 0

  # Networks: tanh MLPs for the categorical policy and the value baseline.
  config.hidden_dims = (32, 32)

  # REINFORCE: each update rolls out one episode (from reset) per
  # environment, `horizon` steps (500 = CartPole-v1's cap, so every episode
  # is complete), all vmapped and scanned in one compiled update.
  config.num_envs = 1024
  config.horizon = 500
  # 1: the estimate is unbiased for the gradient of the (500-step-capped)
  # expected return that the evaluation reports.
  config.discount = 1.0
  config.learning_rate = 1e-2  # Adam, policy.
  config.value_learning_rate = 3e-2  # Adam, value baseline.
  config.value_steps = 5  # Full-batch Adam steps on the value per update.
  # Standardising the advantages by batch statistics makes the estimate
  # slightly biased (see experiments.policy_gradient.cartpole); off.
  config.normalize_advantages = False
  config.num_steps = 40

  # Evaluation every `log_every` updates: `num_eval_envs` fresh stochastic
  # episodes of the full 500 steps (mean undiscounted return); per-episode
  # gradient estimates on the first `num_variance_envs` of them, with and
  # without the value baseline, for the trace of their covariance.
  config.log_every = 5
  config.num_eval_envs = 1024
  config.num_variance_envs = 256
  # The environment's "solved" threshold for the mean return.
  config.solved_return = 475.0

  # Checkpoints (orbax) every `checkpoint_every` updates and at the end.
  config.checkpoint_every = 20
  return config


def _pendulum() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.env = "Pendulum-v1"  # gymnax name; selects the module.
  config.seed = 0
  # Comma-separated, from experiments.policy_gradient.pendulum.ESTIMATORS:
  # REINFORCE with reward-to-go (no baseline; leave-one-out), BPTT by
  # jax.grad through gymnax's step, total propagation (cross-fitted
  # weights: exactly unbiased; the batch's own weights: PIPPS's original),
  # with leave-one-out in its score part.
  config.estimators = (
    "score_function,leave_one_out,bptt,total_propagation,"
    "total_propagation_batch"
  )
  config.horizons = (1, 2, 5, 10, 20, 50, 100, 200)  # <= 200, one episode.
  # Fixed Gaussian policies u = w . (cos th, sin th, th_dot) + b + sigma eps,
  # as (w_cos, w_sin, w_dot, b): no feedback (the pendulum driven by the
  # exploration noise alone), damping (u = -th_dot: it settles hanging
  # down), and energy pumping (u = +0.5 th_dot: it swings over the unstable
  # top, where nearby trajectories separate geometrically).
  config.policies = ml_collections.ConfigDict(
    {
      "passive": (0.0, 0.0, 0.0, 0.0),
      "damping": (0.0, 0.0, -1.0, 0.0),
      "pumping": (0.0, 0.0, 0.5, 0.0),
    }
  )
  config.sigma = 1.0
  # Rollouts per (estimator, policy, T), streamed in chunks; leave-one-out
  # and total propagation run in independent batches of `batch_size`
  # rollouts (their effective per-rollout variance is reported).
  config.num_samples = 8192
  config.chunk_size = 1024
  config.batch_size = 64
  # Write pendulum_variance.png (matplotlib).
  config.plot = True
  return config


_PRESETS = {"cartpole": _cartpole, "pendulum": _pendulum}


def get_config(preset: str = "cartpole") -> ml_collections.ConfigDict:
  """Returns the config of the preset (one per environment)."""
  if preset not in _PRESETS:
    raise ValueError(
      f"Unknown policy_gradient preset {preset!r}; choose one of "
      f"{', '.join(_PRESETS)}."
    )
  return _PRESETS[preset]()
