r"""One episode per environment, from reset, as a fixed-length ``lax.scan``.

gymnax's ``step`` resets an environment as soon as it is done. The
experiments here want *complete, independent* episodes (one per
environment, so that per-environment gradient estimates are i.i.d. and the
return of an episode is its undiscounted sum of rewards), so every rollout
starts from ``reset`` and runs ``horizon`` steps, and an ``alive`` mask keeps
the first episode only: :math:`m_t = \prod_{s < t} (1 - d_s)`, one at every
step of the first episode (its last step included) and zero after it. A
rollout of ``horizon`` = the environment's ``max_steps_in_episode`` steps
therefore holds every episode in full; the price is that the steps after an
early termination are computed and masked out.

The policy is any ``sample(params, obs, key) -> action``; the rollout is a
pure function of its keys, vmapped over environments, scanned over time.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class Episodes(NamedTuple):
  """A batch of first episodes; every field is ``[num_envs, horizon, ...]``."""

  obs: jax.Array  # [E, T, obs_dim] observation before the action at t
  actions: jax.Array  # [E, T] (discrete) or [E, T, act_dim]
  rewards: jax.Array  # [E, T] reward of step t, 0 after the first episode
  dones: jax.Array  # [E, T] float, 1 where the episode ended after step t
  alive: jax.Array  # [E, T] float mask of the first episode's steps


def episodes(
  env: Any,
  env_params: Any,
  sample: Callable[[Any, jax.Array, chex.PRNGKey], jax.Array],
  params: Any,
  key: chex.PRNGKey,
  num_envs: int,
  horizon: int,
) -> Episodes:
  """Rolls out `num_envs` independent first episodes of `horizon` steps.

  Args:
    env: a gymnax environment (``reset``/``step`` with auto-reset).
    env_params: its parameters.
    sample: ``(params, obs [obs_dim], key) -> action`` for one environment.
    params: the policy's parameters.
    key: consumed; split into the reset and the per-step keys.
    num_envs: environments, vmapped (static).
    horizon: steps, scanned (static).

  Returns:
    The episodes (see :class:`Episodes`); rewards and dones are zero outside
    the first episode.
  """
  reset_key, steps_key = jax.random.split(key)
  del key
  obs, state = jax.vmap(env.reset, (0, None))(
    jax.random.split(reset_key, num_envs), env_params
  )

  def one_step(obs, state, key):
    action_key, env_key = jax.random.split(key)
    action = sample(params, obs, action_key)
    next_obs, next_state, reward, terminated, truncated, _ = env.step(
      env_key, state, action, env_params
    )
    return next_obs, next_state, action, reward, terminated | truncated

  def body(carry, key):
    obs, state, alive = carry
    next_obs, next_state, action, reward, done = jax.vmap(one_step)(
      obs, state, jax.random.split(key, num_envs)
    )
    done = done.astype(reward.dtype) * alive
    out = (obs, action, reward * alive, done, alive)
    return (next_obs, next_state, alive * (1.0 - done)), out

  alive = jnp.ones((num_envs,), obs.dtype)
  _, out = jax.lax.scan(
    body, (obs, state, alive), jax.random.split(steps_key, horizon)
  )
  # Time-major from the scan -> environment-major.
  out = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)
  result = Episodes(*out)
  chex.assert_shape(result.rewards, (num_envs, horizon))
  return result
