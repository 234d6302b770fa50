r"""REINFORCE with reward-to-go and a learned value baseline on CartPole-v1.

The policy :math:`\pi_\theta(a \mid s)` is categorical over the two pushes,
its logits an MLP of the observation. Each update rolls out one complete
episode in each of ``num_envs`` environments (:mod:`.rollout`) and ascends

.. math:: \hat g = \frac{1}{E} \sum_{i=1}^{E} g_i, \qquad
          g_i = \sum_{t} m_{it} \nabla_\theta \log \pi_\theta(a_{it} \mid
          s_{it}) \, \bigl(G_{it} - b(s_{it})\bigr),
          \qquad G_{it} = \sum_{u \ge t} \gamma^{u-t} r_{iu}

(``rgrad.rl.reward_to_go`` with the episode's ``dones``), with Adam. The
baseline is a value MLP :math:`b = V_\phi(s_t, t)`, fitted by ``value_steps``
full-batch Adam steps per update on :math:`\sum m_{it} (V_\phi(s_{it}, t)
- G_{it})^2` over the same batch, *after* the policy gradient has used the
value from before those steps.

Bias. Any :math:`b(s_t, t)` that does not depend on :math:`a_t` or later
draws leaves :math:`E[g_i]` unchanged, because :math:`E[\nabla \log \pi(a_t
\mid s_t) \mid s_t] = 0`; :math:`V_\phi` is fitted on earlier batches only,
so with :math:`\gamma = 1` (the default) each :math:`g_i` is an unbiased
estimate of :math:`\nabla_\theta E[\sum_t r_t]`, the gradient of the
expected undiscounted, 500-step-capped return (Williams, 1992; Sutton &
Barto, 2018, Sec. 13.4). With :math:`\gamma < 1` and no :math:`\gamma^t`
weight it is the usual estimator, which is the gradient of no objective
(Nota & Thomas, 2020), though it trains well. ``normalize_advantages`` (off
by default) standardises :math:`G - b` by the batch's own mean and standard
deviation: that mean and scale depend on every action in the batch, so the
estimate is then *not* exactly unbiased (the bias is :math:`O(1/E)` in
direction and the scale changes), which is why it is off.

Measurement (:func:`evaluate`): at the current parameters, a separate
stochastic rollout of ``num_eval_envs`` full 500-step episodes (every
episode complete) gives the mean undiscounted return and its standard
error; on the first ``num_variance_envs`` of those episodes, the
per-episode estimates :math:`g_i` (``vmap`` of ``grad``) with :math:`b =
V_\phi` and with :math:`b = 0`, *on the same episodes*, give the trace of
their covariance and its jackknife standard error
(:func:`experiments.common.gradient_stats.total_variance`). These are the
variances of one episode's estimate; the update averages ``num_envs`` of
them, so its variance is that divided by ``num_envs``.

References:
  Williams, Simple statistical gradient-following algorithms for
  connectionist reinforcement learning, Machine Learning 1992.
  Sutton and Barto, Reinforcement Learning: An Introduction, 2nd ed. 2018,
  Sections 13.3-13.4.
  Nota and Thomas, Is the Policy Gradient a Gradient?, AAMAS 2020,
  https://arxiv.org/abs/1906.07073.
"""

import functools
from typing import Any
from typing import NamedTuple

import chex
import gymnax
import jax
import jax.numpy as jnp
import optax

from experiments.common import gradient_stats
from experiments.common import training
from experiments.policy_gradient import networks
from experiments.policy_gradient import rollout
from rgrad import rl

ENV_NAME = "CartPole-v1"
Params = Any


@functools.cache
def make_env(name: str = ENV_NAME) -> tuple[Any, Any]:
  """``gymnax.make(name)``, made once per process (the env is static)."""
  return gymnax.make(name)


def max_episode_steps(name: str = ENV_NAME) -> int:
  return int(make_env(name)[1].max_steps_in_episode)


class TrainState(NamedTuple):
  """Everything an update reads and writes; what a checkpoint holds."""

  policy_params: Params
  value_params: Params
  policy_opt_state: optax.OptState
  value_opt_state: optax.OptState
  step: jax.Array  # int32 scalar: updates taken.
  key: jax.Array  # uint32 key data of the train key (`jax.random.key_data`).


class Hyper(NamedTuple):
  """The static (hashable) part of the config that the compiled steps use."""

  hidden_dims: tuple[int, ...]
  num_envs: int
  horizon: int
  discount: float
  learning_rate: float
  value_learning_rate: float
  value_steps: int
  normalize_advantages: bool
  num_eval_envs: int
  num_variance_envs: int

  @classmethod
  def from_config(cls, config) -> "Hyper":
    return cls(
      hidden_dims=tuple(config.hidden_dims),
      num_envs=config.num_envs,
      horizon=config.horizon,
      discount=config.discount,
      learning_rate=config.learning_rate,
      value_learning_rate=config.value_learning_rate,
      value_steps=config.value_steps,
      normalize_advantages=config.normalize_advantages,
      num_eval_envs=config.num_eval_envs,
      num_variance_envs=config.num_variance_envs,
    )

  @property
  def policy(self) -> networks.MLP:
    return networks.MLP(self.hidden_dims, make_env()[0].num_actions)

  @property
  def value(self) -> networks.MLP:
    return networks.MLP(self.hidden_dims, 1)

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)

  @property
  def value_optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.value_learning_rate)


def init_state(hyper: Hyper, init_key: chex.PRNGKey, train_key) -> TrainState:
  policy_key, value_key = jax.random.split(init_key)
  del init_key
  obs = jnp.zeros(make_env()[0].observation_space(make_env()[1]).shape)
  policy_params = hyper.policy.init(policy_key, obs)
  value_params = hyper.value.init(value_key, jnp.zeros((obs.shape[0] + 1,)))
  return TrainState(
    policy_params=policy_params,
    value_params=value_params,
    policy_opt_state=hyper.optimizer.init(policy_params),
    value_opt_state=hyper.value_optimizer.init(value_params),
    step=jnp.zeros((), jnp.int32),
    key=jax.random.key_data(train_key),
  )


def _rollout(hyper, policy_params, key, num_envs, horizon):
  env, env_params = make_env()

  def sample(params, obs, key):
    return jax.random.categorical(key, hyper.policy.apply(params, obs))

  return rollout.episodes(
    env, env_params, sample, policy_params, key, num_envs, horizon
  )


def returns_and_values(
  hyper: Hyper, value_params: Params, episodes: rollout.Episodes
) -> tuple[jax.Array, jax.Array]:
  """:math:`G_{it}` (reward-to-go) and :math:`V_\\phi(s_{it})`, `[E, T]`."""
  returns = rl.reward_to_go(
    episodes.rewards, discount=hyper.discount, dones=episodes.dones
  )
  values = value_fn(hyper, value_params, episodes.obs)
  return returns, values


def value_fn(hyper: Hyper, value_params: Params, obs: jax.Array) -> jax.Array:
  r""":math:`V_\phi(s_t, t)`, `[..., T]`, from obs `[..., T, obs_dim]`.

  The 500-step cap makes the return to go depend on the time left, which
  the observation does not show, so the baseline also sees :math:`t /
  500`: a baseline may depend on anything but :math:`a_t` and later draws.
  Rollouts start at reset, so the time index is the step's position. The
  network's output is in units of the largest return,
  :math:`\sum_{t < 500} \gamma^t`, so that its targets lie in [0, 1] and
  Adam's step size means the same for every discount.
  """
  cap = max_episode_steps()
  scale = (
    float(cap)
    if hyper.discount == 1.0
    else (1.0 - hyper.discount**cap) / (1.0 - hyper.discount)
  )
  time = jnp.arange(obs.shape[-2], dtype=obs.dtype) / cap
  time = jnp.broadcast_to(time[:, None], (*obs.shape[:-1], 1))
  inputs = jnp.concatenate([obs, time], axis=-1)
  return scale * hyper.value.apply(value_params, inputs)[..., 0]


def score_surrogate(
  hyper: Hyper,
  policy_params: Params,
  obs: jax.Array,
  actions: jax.Array,
  weights: jax.Array,
) -> jax.Array:
  r""":math:`\sum_t w_t \log \pi_\theta(a_t \mid s_t)`; its gradient is `g_i`.

  Args:
    obs: `[..., T, obs_dim]`; actions, weights: `[..., T]` (weights are
      masked advantages, held constant).
  """
  log_probs = jax.nn.log_softmax(hyper.policy.apply(policy_params, obs))
  chosen = jnp.take_along_axis(log_probs, actions[..., None], axis=-1)
  return jnp.sum(chosen[..., 0] * jax.lax.stop_gradient(weights))


def per_episode_gradients(
  hyper: Hyper,
  policy_params: Params,
  episodes: rollout.Episodes,
  advantages: jax.Array,
) -> Params:
  r"""One estimate :math:`g_i` per episode (``vmap`` of ``grad``).

  Args:
    advantages: `[E, T]` the weights :math:`G_{it} - b(s_{it})` (masked here
      by the episodes' ``alive``).

  Returns:
    A pytree like `policy_params` whose leaves have a leading `E` axis.
  """
  return jax.vmap(
    jax.grad(functools.partial(score_surrogate, hyper)),
    in_axes=(None, 0, 0, 0),
  )(policy_params, episodes.obs, episodes.actions, advantages * episodes.alive)


@functools.partial(jax.jit, static_argnames="hyper")
def train_step(state: TrainState, hyper: Hyper) -> TrainState:
  """One update: rollout, policy-gradient Adam step, value Adam step."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  episodes = _rollout(
    hyper, state.policy_params, key, hyper.num_envs, hyper.horizon
  )
  del key
  returns, values = returns_and_values(hyper, state.value_params, episodes)
  advantages = returns - values
  if hyper.normalize_advantages:
    count = jnp.sum(episodes.alive)
    mean = jnp.sum(advantages * episodes.alive) / count
    var = jnp.sum(jnp.square(advantages - mean) * episodes.alive) / count
    advantages = (advantages - mean) / (jnp.sqrt(var) + 1e-8)
  weights = advantages * episodes.alive

  # Ascent on the return: descend the negated batch-mean surrogate.
  def policy_loss(params):
    surrogate = score_surrogate(
      hyper, params, episodes.obs, episodes.actions, weights
    )
    return -surrogate / hyper.num_envs

  policy_grad = jax.grad(policy_loss)(state.policy_params)

  def value_loss(params):
    v = value_fn(hyper, params, episodes.obs)
    return jnp.sum(episodes.alive * jnp.square(v - returns)) / jnp.sum(
      episodes.alive
    )

  def value_step(carry, _):
    params, opt_state = carry
    grad = jax.grad(value_loss)(params)
    updates, opt_state = hyper.value_optimizer.update(grad, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  (value_params, value_opt_state), _ = jax.lax.scan(
    value_step,
    (state.value_params, state.value_opt_state),
    length=hyper.value_steps,
  )
  updates, policy_opt_state = hyper.optimizer.update(
    policy_grad, state.policy_opt_state, state.policy_params
  )
  return TrainState(
    policy_params=optax.apply_updates(state.policy_params, updates),
    value_params=value_params,
    policy_opt_state=policy_opt_state,
    value_opt_state=value_opt_state,
    step=state.step + 1,
    key=state.key,
  )


@functools.partial(jax.jit, static_argnames="hyper")
def evaluate(
  state: TrainState, eval_key: chex.PRNGKey, hyper: Hyper
) -> dict[str, jax.Array]:
  """Return and gradient variance at the current parameters (see module doc).

  The episodes are drawn from ``fold_in(eval_key, step)``: a resumed run
  measures what the uninterrupted one did.
  """
  key = jax.random.fold_in(eval_key, state.step)
  episodes = _rollout(
    hyper,
    state.policy_params,
    key,
    hyper.num_eval_envs,
    max_episode_steps(),
  )
  del key
  episode_returns = jnp.sum(episodes.rewards, axis=-1)  # [E], undiscounted
  returns, values = returns_and_values(hyper, state.value_params, episodes)
  num = hyper.num_variance_envs
  sub = jax.tree.map(lambda x: x[:num], episodes)

  with_baseline = gradient_stats.total_variance(
    per_episode_gradients(
      hyper, state.policy_params, sub, returns[:num] - values[:num]
    )
  )
  without_baseline = gradient_stats.total_variance(
    per_episode_gradients(hyper, state.policy_params, sub, returns[:num])
  )
  value_error = jnp.sum(episodes.alive * jnp.square(values - returns)) / (
    jnp.sum(episodes.alive)
  )
  return {
    "mean_return": jnp.mean(episode_returns),
    "mean_return_se": jnp.std(episode_returns, ddof=1)
    / jnp.sqrt(hyper.num_eval_envs),
    "grad_variance_baseline": with_baseline["grad_variance"],
    "grad_variance_baseline_se": with_baseline["grad_variance_se"],
    "grad_variance_no_baseline": without_baseline["grad_variance"],
    "grad_variance_no_baseline_se": without_baseline["grad_variance_se"],
    "value_mse": value_error,
  }


def train(
  config,
  workdir: str,
  stop_after_step: int | None = None,
) -> tuple[TrainState, list[dict[str, float]]]:
  """Trains (or resumes) REINFORCE on CartPole; returns the state, history.

  Raises:
    ConfigError: `workdir` holds a checkpoint past `config.num_steps`.
    Interrupted: from the `stop_after_step` test hook.
  """
  hyper = Hyper.from_config(config)
  key = jax.random.key(config.seed)
  init_key, train_key, eval_key = jax.random.split(key, 3)
  del key
  # `train_step` and `evaluate` are looked up at each call (tests wrap them).
  return training.train_loop(
    "reinforce",
    init_state(hyper, init_key, train_key),
    lambda state: train_step(state, hyper),
    lambda state: evaluate(state, eval_key, hyper),
    lambda row: (
      f"return {row['mean_return']:6.1f} +- {row['mean_return_se']:.1f}  "
      f"grad var {row['grad_variance_baseline']:.3e} (baseline) "
      f"{row['grad_variance_no_baseline']:.3e} (none)  "
      f"value mse {row['value_mse']:.3g}"
    ),
    workdir,
    num_steps=config.num_steps,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    stop_after_step=stop_after_step,
  )
