r"""Differentiable environments and Gaussian policies: what a rollout needs.

The policy-gradient estimators of :mod:`rgrad.rl` run on any environment
given as four pure functions (an :class:`Environment`) and a Gaussian policy
with a learned mean and one exploration scale,

.. math::

  x_0 = \mathrm{reset}(k_0),\qquad
  u_t = \mu_\theta(o_t) + \sigma\,\epsilon_t,\quad
  o_t = \mathrm{observe}(x_t),\quad \epsilon_t \sim N(0, I_m),

  (x_{t+1}, c_t) = \mathrm{step}(k_{t+1}, x_t, u_t),\qquad
  c_T = \mathrm{terminal\_cost}(x_T),

with :math:`\sigma = \exp(\texttt{params["log\_sigma"]})` and
:math:`\mu_\theta` = ``mean_fn(params, obs)``. Every rollout is a
deterministic function of its noise (:class:`RolloutNoise`: a reset key,
one key per step, the exploration noise), so that the score function, the
pathwise gradient and total propagation all see the same trajectories, and
the pathwise gradient is ``jax.grad`` of that function. ``step`` must be
differentiable in the state's floating leaves and the action for the
pathwise gradient and total propagation; the score function needs only
samples. States may be any pytree; integer leaves (a step counter) are
carried along and never differentiated.

Two environments are provided: :func:`lqr_environment` (the LQR of
:mod:`rgrad.rl._problems`, reproducing :func:`rgrad.rl.lqr_rollout`) and
:func:`gymnax_environment`, an adapter for a gymnax environment object
(duck-typed: rgrad does not import gymnax).

References:
  Parmas, Rasmussen, Peters, Doya. PIPPS: Flexible Model-Based Policy Search
  Robust to the Curse of Chaos. ICML 2018,
  https://arxiv.org/abs/1902.01240.
  Lange. gymnax: A JAX-based Reinforcement Learning Environment Library,
  2022, https://github.com/RobertTLange/gymnax.
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.rl import _lqr
from rgrad.rl import _problems


class Environment(NamedTuple):
  """An environment as pure functions (see the module docstring).

  Attributes:
    reset: ``key -> state``, the initial state (any pytree).
    step: ``(key, state, action [m]) -> (next_state, cost)``, the cost a
      scalar; differentiable in the state's floating leaves and the action
      for the pathwise gradient and total propagation.
    observe: ``state -> obs``, what the policy sees.
    action_dim: :math:`m`, the length of an action (a static int).
    terminal_cost: ``state -> scalar`` cost of the final state
      :math:`x_T`, or None for none.
  """

  reset: Callable[[jax.Array], Any]
  step: Callable[[jax.Array, Any, jax.Array], tuple[Any, jax.Array]]
  observe: Callable[[Any], Any]
  action_dim: int
  terminal_cost: Callable[[Any], jax.Array] | None = None


class RolloutNoise(NamedTuple):
  """The noise of a batch of rollouts (every rollout is a function of it).

  Attributes:
    reset_keys: [num_rollouts] keys of the initial states.
    step_keys: [num_rollouts, T] keys of the environment's steps.
    eps: [num_rollouts, T, m] standard-normal exploration noise.
  """

  reset_keys: jax.Array
  step_keys: jax.Array
  eps: jax.Array


class Trajectory(NamedTuple):
  """A batch of rollouts.

  Attributes:
    states: pytree of leaves ``[num_rollouts, T + 1, ...]``, x_0 ... x_T.
    observations: pytree of leaves ``[num_rollouts, T + 1, ...]``.
    actions: [num_rollouts, T, m] the actions u_0 ... u_{T-1}.
    eps: [num_rollouts, T, m] their exploration noise.
    costs: [num_rollouts, T + 1] c_0 ... c_{T-1} and the terminal c_T (0
      without a terminal cost).
  """

  states: Any
  observations: Any
  actions: jax.Array
  eps: jax.Array
  costs: jax.Array


def linear_mean(params: dict, obs: jax.Array) -> jax.Array:
  r"""The linear policy mean :math:`\mu = K o` of the LQR (``params["K"]``).

  Raises:
    ValueError: ``params["K"]`` is not ``[m, len(obs)]``.
  """
  k = params["K"]
  if jnp.ndim(k) != 2 or jnp.shape(k)[1] != jnp.shape(obs)[-1]:
    raise ValueError(
      f"linear_mean: params['K'] must have shape (m, {jnp.shape(obs)[-1]}) "
      f"(actions, observations), got {tuple(jnp.shape(k))}."
    )
  return k @ obs


def lqr_environment(problem: _problems.LQR) -> Environment:
  r"""The LQR as an :class:`Environment`, with :func:`linear_mean` its policy.

  ``reset(k) = m_0 + S_0^{1/2} z`` with ``z = normal(k, (n,))``,
  ``step(k, x, u) = (A x + B u + W^{1/2} normal(k, (n,)), x'Qx + u'Ru)``,
  ``observe(x) = x`` and ``terminal_cost(x) = x' Q_T x``: with the same
  standard normals as an :class:`rgrad.rl.LQRNoise` it reproduces
  :func:`rgrad.rl.lqr_rollout` exactly (tested). Built from traced arrays it
  works under ``jit`` and ``vmap`` over problems.
  """
  name = "lqr_environment"
  _problems.check_lqr(problem, name)
  n = problem.state_dim
  dtype = problem.A.dtype
  w_half, s0_half = _lqr.psd_sqrt(problem.W), _lqr.psd_sqrt(problem.S0)

  def reset(key):
    return problem.m0 + s0_half @ jax.random.normal(key, (n,), dtype)

  def step(key, x, u):
    cost = x @ problem.Q @ x + u @ problem.R @ u
    noise = w_half @ jax.random.normal(key, (n,), dtype)
    return problem.A @ x + problem.B @ u + noise, cost

  def terminal_cost(x):
    return x @ problem.Q_T @ x

  return Environment(
    reset=reset,
    step=step,
    observe=lambda x: x,
    action_dim=problem.action_dim,
    terminal_cost=terminal_cost,
  )


def gymnax_environment(env: Any, env_params: Any = None) -> Environment:
  """A gymnax environment object as an :class:`Environment`, cost = -reward.

  Duck-typed on gymnax's API: ``env.reset(key, params) -> (obs, state)``,
  ``env.step(key, state, action, params) -> (obs, state, reward, ...)``,
  ``env.get_obs(state, params=...)`` (or ``env.observe(key, state, action,
  params)``) and ``env.action_space(params).shape``. Where the environment
  can preserve transition gradients (gymnax >= 1.0:
  ``with_transition_gradients()``) they are switched on; an environment
  that says it cannot is refused. Observations are recomputed from the
  state, so they stay differentiable. ``env.step`` resets automatically at
  the end of an episode: keep the horizon within
  ``env_params.max_steps_in_episode`` (200 for Pendulum-v1) to stay in one
  episode.

  Args:
    env: e.g. the first value of ``gymnax.make("Pendulum-v1")``.
    env_params: its parameters; None for ``env.default_params``.

  Raises:
    ValueError: `env` does not support transition gradients.
    TypeError: `env` lacks the methods above.
  """
  name = "gymnax_environment"
  for method in ("reset", "step", "action_space"):
    _internal.check_callable(getattr(env, method, None), f"env.{method}", name)
  if callable(getattr(env, "with_transition_gradients", None)):
    if not getattr(env, "supports_transition_gradients", True):
      raise ValueError(
        f"{name}: env ({getattr(env, 'name', type(env).__name__)}) does not "
        "support transition gradients; only the score function would apply."
      )
    env = env.with_transition_gradients()
  params = env.default_params if env_params is None else env_params
  action_shape = tuple(env.action_space(params).shape)
  action_dim = int(np.prod(action_shape, dtype=int))

  def observe(state):
    if callable(getattr(env, "get_obs", None)):
      return env.get_obs(state, params=params)
    return env.observe(None, state, None, params)

  def step(key, state, action):
    out = env.step(key, state, jnp.reshape(action, action_shape), params)
    return out[1], -jnp.reshape(out[2], ())

  return Environment(
    reset=lambda key: env.reset(key, params)[1],
    step=step,
    observe=observe,
    action_dim=action_dim,
  )


# ---------------------------------------------------------------------------
# Rollouts.
# ---------------------------------------------------------------------------


def check_environment(environment: Any, name: str) -> Environment:
  if not isinstance(environment, Environment):
    raise TypeError(
      f"{name}: environment must be an rgrad.rl.Environment (lqr_environment, "
      f"gymnax_environment), got {type(environment).__name__}."
    )
  for field in ("reset", "step", "observe"):
    _internal.check_callable(
      getattr(environment, field), f"environment.{field}", name
    )
  if environment.terminal_cost is not None:
    _internal.check_callable(
      environment.terminal_cost, "environment.terminal_cost", name
    )
  _internal.check_int(environment.action_dim, name, what="action_dim")
  return environment


def check_policy_params(params: Any, name: str) -> None:
  if not isinstance(params, dict) or "log_sigma" not in params:
    got = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(
      f"{name}: params must be a dict with a scalar 'log_sigma' (the log "
      f"exploration scale) and the mean's parameters, got {got}."
    )
  if jnp.shape(params["log_sigma"]) != ():
    raise ValueError(
      f"{name}: params['log_sigma'] must be a scalar, got shape "
      f"{tuple(jnp.shape(params['log_sigma']))}."
    )


def check_rollout_args(
  environment, mean_fn, params, key, horizon, num_rollouts, name
):
  """Checks every rollout argument, from shapes alone; returns the ints."""
  check_environment(environment, name)
  _internal.check_callable(mean_fn, "mean_fn", name)
  check_policy_params(params, name)
  horizon = _internal.check_int(horizon, name, what="horizon")
  num_rollouts = _internal.check_int(num_rollouts, name, what="num_rollouts")
  m = environment.action_dim
  state = jax.eval_shape(environment.reset, key)
  obs = jax.eval_shape(environment.observe, state)
  try:
    mean = jax.eval_shape(mean_fn, params, obs)
  except (ValueError, TypeError, KeyError, IndexError) as e:
    raise ValueError(
      f"{name}: params do not fit mean_fn; mean_fn(params, obs) raised "
      f"{type(e).__name__}: {e}"
    ) from e
  if getattr(mean, "shape", None) != (m,):
    raise ValueError(
      f"{name}: mean_fn(params, obs) must return the action mean of shape "
      f"({m},) (environment.action_dim), got "
      f"{getattr(mean, 'shape', type(mean).__name__)}; check params' shapes."
    )
  action = jax.ShapeDtypeStruct((m,), params["log_sigma"].dtype)
  next_state, cost = jax.eval_shape(environment.step, key, state, action)
  if jax.tree.structure(next_state) != jax.tree.structure(state):
    raise ValueError(
      f"{name}: environment.step must return a state of the structure reset "
      "returns."
    )
  if cost.shape != ():
    raise ValueError(
      f"{name}: environment.step must return a scalar cost, got shape "
      f"{cost.shape}."
    )
  return horizon, num_rollouts


def sample_rollout_noise(
  key: jax.Array,
  horizon: int,
  num_rollouts: int,
  action_dim: int,
  dtype: Any = None,
) -> RolloutNoise:
  """Draws the noise of `num_rollouts` rollouts of `horizon` steps."""
  name = "sample_rollout_noise"
  horizon = _internal.check_int(horizon, name, what="horizon")
  num_rollouts = _internal.check_int(num_rollouts, name, what="num_rollouts")
  action_dim = _internal.check_int(action_dim, name, what="action_dim")
  dtype = jnp.result_type(float) if dtype is None else dtype
  k_reset, k_step, k_eps = jax.random.split(key, 3)
  del key
  return RolloutNoise(
    reset_keys=jax.random.split(k_reset, num_rollouts),
    step_keys=jax.random.split(k_step, (num_rollouts, horizon)),
    eps=jax.random.normal(k_eps, (num_rollouts, horizon, action_dim), dtype),
  )


def rollout_one(environment, mean_fn, params, reset_key, step_keys, eps):
  """One rollout (unbatched) driven by its noise; see :func:`rollout`."""
  sigma = jnp.exp(params["log_sigma"])

  def body(x, noise):
    key, e = noise
    obs = environment.observe(x)
    u = mean_fn(params, obs) + sigma * e
    x_next, cost = environment.step(key, x, u)
    return x_next, (x, obs, u, jnp.reshape(cost, ()))

  x_final, (xs, obs, us, costs) = jax.lax.scan(
    body, environment.reset(reset_key), (step_keys, eps)
  )

  def append(history, last):
    return jnp.concatenate([history, jnp.asarray(last)[None]], axis=0)

  if environment.terminal_cost is None:
    final_cost = jnp.zeros((), costs.dtype)
  else:
    final_cost = jnp.reshape(environment.terminal_cost(x_final), ())
  return Trajectory(
    states=jax.tree.map(append, xs, x_final),
    observations=jax.tree.map(append, obs, environment.observe(x_final)),
    actions=us,
    eps=eps,
    costs=append(costs, final_cost.astype(costs.dtype)),
  )


def rollout(
  environment: Environment,
  mean_fn: Callable[[dict, Any], jax.Array],
  params: dict,
  noise: RolloutNoise,
) -> Trajectory:
  """The rollouts that `noise` drives under the policy (module docstring).

  Differentiable in `params` and vmapped over rollouts (``lax.scan`` over
  time).
  """
  name = "rollout"
  check_environment(environment, name)
  check_policy_params(params, name)
  if not isinstance(noise, RolloutNoise):
    raise TypeError(
      f"{name}: noise must be a RolloutNoise (sample_rollout_noise), got "
      f"{type(noise).__name__}."
    )
  one = functools.partial(rollout_one, environment, mean_fn)
  batched = jax.vmap(one, in_axes=(None, 0, 0, 0))
  return batched(params, noise.reset_keys, noise.step_keys, noise.eps)
