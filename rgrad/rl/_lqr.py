r"""Sampled LQR trajectories as deterministic functions of standard noise.

Every rollout is a function of standard-normal noise, so that the score
function, the pathwise gradient (backpropagation through time) and total
propagation all see the same trajectories, and the pathwise gradient is the
derivative of the same function:

.. math::

  x_0 = m_0 + S_0^{1/2} z_0,\qquad
  u_t = K x_t + \sigma \epsilon_t,\qquad
  x_{t+1} = A x_t + B u_t + W^{1/2} \zeta_t,

with :math:`z_0, \zeta_t, \epsilon_t` independent standard normals and
:math:`M^{1/2}` the symmetric square root (so a singular, positive
semi-definite :math:`W` or :math:`S_0` is allowed). Costs are
:math:`c_t = x_t^\top Q x_t + u_t^\top R u_t` for :math:`t < T` and
:math:`c_T = x_T^\top Q_T x_T`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad.rl import _problems


class LQRNoise(NamedTuple):
  """The standard-normal noise of a batch of rollouts.

  Attributes:
    z0: [num_rollouts, n] initial-state noise.
    zeta: [num_rollouts, T, n] process noise.
    eps: [num_rollouts, T, m] exploration noise.
  """

  z0: jax.Array
  zeta: jax.Array
  eps: jax.Array


class LQRTrajectory(NamedTuple):
  """A batch of rollouts.

  Attributes:
    states: [num_rollouts, T + 1, n] the states x_0 ... x_T.
    actions: [num_rollouts, T, m] the actions u_0 ... u_{T-1}.
    costs: [num_rollouts, T + 1] the step costs c_0 ... c_{T-1} and the
      terminal cost c_T.
  """

  states: jax.Array
  actions: jax.Array
  costs: jax.Array


def psd_sqrt(matrix: jax.Array) -> jax.Array:
  """The symmetric square root of a positive semi-definite matrix."""
  values, vectors = jnp.linalg.eigh(matrix)
  return (vectors * jnp.sqrt(jnp.clip(values, 0.0))) @ vectors.T


def sample_lqr_noise(
  problem: _problems.LQR, key: jax.Array, horizon: int, num_rollouts: int
) -> LQRNoise:
  """Draws the noise of `num_rollouts` rollouts of `horizon` steps."""
  name = "sample_lqr_noise"
  _problems.check_lqr(problem, name)
  horizon = _internal.check_int(horizon, name, what="horizon")
  num_rollouts = _internal.check_int(num_rollouts, name, what="num_rollouts")
  n, m = problem.state_dim, problem.action_dim
  dtype = problem.A.dtype
  k0, kw, ke = jax.random.split(key, 3)
  return LQRNoise(
    z0=jax.random.normal(k0, (num_rollouts, n), dtype),
    zeta=jax.random.normal(kw, (num_rollouts, horizon, n), dtype),
    eps=jax.random.normal(ke, (num_rollouts, horizon, m), dtype),
  )


def _one_rollout(problem, params, z0, zeta, eps):
  w_half, s0_half = psd_sqrt(problem.W), psd_sqrt(problem.S0)
  sigma = jnp.exp(params["log_sigma"])
  x0 = problem.m0 + s0_half @ z0

  def step(x, noise):
    z, e = noise
    u = params["K"] @ x + sigma * e
    cost = x @ problem.Q @ x + u @ problem.R @ u
    x_next = problem.A @ x + problem.B @ u + w_half @ z
    return x_next, (x, u, cost)

  x_final, (xs, us, costs) = jax.lax.scan(step, x0, (zeta, eps))
  states = jnp.concatenate([xs, x_final[None]], axis=0)
  costs = jnp.concatenate([costs, (x_final @ problem.Q_T @ x_final)[None]])
  return LQRTrajectory(states, us, costs)


def lqr_rollout(
  problem: _problems.LQR, params: dict, noise: LQRNoise
) -> LQRTrajectory:
  """The rollouts that `noise` drives under the policy `params` (module docs).

  Differentiable in `params` (the pathwise gradient is ``jax.grad`` of the
  summed costs) and vmapped over rollouts.
  """
  name = "lqr_rollout"
  _problems.check_lqr(problem, name)
  _problems.check_policy(params, problem, name)
  if not isinstance(noise, LQRNoise):
    raise TypeError(
      f"{name}: noise must be an LQRNoise (sample_lqr_noise), got "
      f"{type(noise).__name__}."
    )
  rollout = jax.vmap(_one_rollout, in_axes=(None, None, 0, 0, 0))
  return rollout(problem, params, noise.z0, noise.zeta, noise.eps)
