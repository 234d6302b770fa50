r"""The pathwise policy gradient of LQR rollouts, by hand through time.

Each rollout of :func:`rgrad.rl.lqr_rollout` is a deterministic function of
its standard noise :math:`(z_0, \zeta_t, \epsilon_t)`, so its total cost

.. math::

  L = \sum_{t<T} \big(x_t^\top Q x_t + u_t^\top R u_t\big)
      + x_T^\top Q_T x_T,\qquad
  u_t = K x_t + \sigma\epsilon_t,\quad
  x_{t+1} = A x_t + B u_t + W^{1/2}\zeta_t,

is differentiable in :math:`(K, \log\sigma)` with the noise held fixed, and
:math:`E\,\nabla L = \nabla J` (the pathwise, or reparameterization,
gradient; backpropagation through time, BPTT). Its variance grows with the
horizon like :math:`\|(A + BK)^t\|^2`: geometrically for a closed loop of
spectral radius above one (Parmas et al., 2018), which is where the score
function wins.

The gradient is the adjoint recursion of the rollout (as
:func:`rgrad.backprop.rnn_loss_and_grads` for an RNN). With
:math:`\lambda_t = \partial L / \partial x_t` and :math:`\mu_t = \partial L
/ \partial u_t` the total derivatives (through every later step), from
:math:`\lambda_T = 2 Q_T x_T` backwards:

.. math::

  \mu_t = 2 R u_t + B^\top \lambda_{t+1},\qquad
  \lambda_t = 2 Q x_t + A^\top \lambda_{t+1} + K^\top \mu_t,

since :math:`x_t` reaches :math:`L` through its own cost, through
:math:`x_{t+1}` directly (:math:`A`) and through :math:`u_t` (:math:`K`),
and :math:`u_t` through its cost and :math:`x_{t+1}` (:math:`B`). The
parameters enter only through :math:`u_t = K x_t + \sigma\epsilon_t`, so

.. math::

  \nabla_K L = \sum_{t<T} \mu_t x_t^\top,\qquad
  \partial L / \partial\log\sigma = \sigma \sum_{t<T} \mu_t^\top \epsilon_t.

One forward pass (the rollout, which stores :math:`x_t, u_t`) and one
reverse ``lax.scan``, O(T) sequential steps, vmapped over rollouts.

References:
  Parmas, Rasmussen, Peters, Doya. PIPPS: Flexible Model-Based Policy Search
  Robust to the Curse of Chaos. ICML 2018, https://arxiv.org/abs/1902.01240.
  Werbos, Backpropagation through time: what it does and how to do it,
  Proc. IEEE 1990.
"""

import jax
import jax.numpy as jnp

from rgrad.rl import _lqr
from rgrad.rl import _problems


def _sym(matrix: jax.Array) -> jax.Array:
  # x' Q x = x' sym(Q) x, so the gradient uses the symmetric part.
  return 0.5 * (matrix + matrix.T)


def _one_backward(problem, params, states, actions, eps):
  """Gradients of one rollout: states [T + 1, n], actions, eps [T, m]."""
  a, b, k = problem.A, problem.B, params["K"]
  q, r = _sym(problem.Q), _sym(problem.R)
  sigma = jnp.exp(params["log_sigma"])
  lam_T = 2.0 * _sym(problem.Q_T) @ states[-1]

  def step(carry, inputs):
    lam_next, d_k, d_sigma = carry  # lam_next = dL/dx_{t+1}
    x, u, e = inputs
    mu = 2.0 * r @ u + b.T @ lam_next  # dL/du_t
    lam = 2.0 * q @ x + a.T @ lam_next + k.T @ mu  # dL/dx_t
    return (lam, d_k + jnp.outer(mu, x), d_sigma + mu @ e), None

  init = (lam_T, jnp.zeros_like(k), jnp.zeros_like(sigma))
  (_, d_k, d_sigma), _ = jax.lax.scan(
    step, init, (states[:-1], actions, eps), reverse=True
  )
  return {"K": d_k, "log_sigma": sigma * d_sigma}  # d sigma/d log sigma


@jax.jit
def _gradients(problem, params, noise):
  trajectory = _lqr.lqr_rollout(problem, params, noise)
  backward = jax.vmap(_one_backward, in_axes=(None, None, 0, 0, 0))
  return backward(
    problem, params, trajectory.states, trajectory.actions, noise.eps
  )


def _check_noise(noise, problem, name):
  if not isinstance(noise, _lqr.LQRNoise):
    raise TypeError(
      f"{name}: noise must be an LQRNoise (sample_lqr_noise), got "
      f"{type(noise).__name__}."
    )
  n, m = problem.state_dim, problem.action_dim
  z0, zeta, eps = (jnp.shape(x) for x in noise)
  if len(z0) != 2 or len(zeta) != 3 or len(eps) != 3:
    raise ValueError(
      f"{name}: noise must have z0 [N, n], zeta [N, T, n], eps [N, T, m], got "
      f"shapes {z0}, {zeta}, {eps}."
    )
  num, horizon = z0[0], zeta[1]
  if z0 != (num, n) or zeta != (num, horizon, n) or eps != (num, horizon, m):
    raise ValueError(
      f"{name}: noise must have z0 [N, n], zeta [N, T, n], eps [N, T, m] with "
      f"n={n}, m={m}, got shapes {z0}, {zeta}, {eps}."
    )


def lqr_bptt_gradients(
  problem: _problems.LQR, params: dict, noise: _lqr.LQRNoise
) -> dict[str, jax.Array]:
  r"""Per-rollout pathwise gradients of the total cost, by hand (module docs).

  Equal (to rounding) to ``jax.grad`` of ``lqr_rollout(problem, params,
  noise).costs.sum()`` taken one rollout at a time, without calling
  ``jax.grad``. Their mean over rollouts is an unbiased estimate of
  ``rgrad.exact.lqr_policy_gradient(problem, params, T)``.

  Args:
    problem: an :class:`LQR`.
    params: ``{"K": [m, n], "log_sigma": []}``.
    noise: an :class:`LQRNoise` of :math:`N` rollouts of :math:`T` steps
      (:func:`sample_lqr_noise`).

  Returns:
    ``{"K": [N, m, n], "log_sigma": [N]}``: one gradient per rollout.

  Raises:
    TypeError, ValueError: a problem, policy or noise that is not valid
      (the message names it).
  """
  name = "lqr_bptt_gradients"
  _problems.check_lqr(problem, name)
  _problems.check_policy(params, problem, name)
  _check_noise(noise, problem, name)
  return _gradients(problem, params, noise)
