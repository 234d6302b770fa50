r"""The exact cost and policy gradient of the linear-quadratic regulator.

Under the linear policy :math:`u_t = K x_t + \sigma\epsilon_t` the state of
an :class:`rgrad.rl.LQR` stays Gaussian, :math:`x_t \sim N(m_t, S_t)`, with

.. math::

  m_{t+1} = F m_t,\qquad
  S_{t+1} = F S_t F^\top + \sigma^2 B B^\top + W,\qquad F = A + BK,

from :math:`(m_0, S_0)`. Every cost is a quadratic form, so its mean is
:math:`E[x^\top Q x] = m^\top Q m + \mathrm{tr}(Q S)` and (the cross term
:math:`E[x^\top K^\top R \sigma\epsilon] = 0`)
:math:`E[u^\top R u] = m^\top K^\top R K m + \mathrm{tr}(K^\top R K S) +
\sigma^2 \mathrm{tr} R`. With :math:`P = Q + K^\top R K` and a discount
:math:`\gamma` (1 by default),

.. math::

  J_T(K, \log\sigma) = \sum_{t<T} \gamma^t \big(m_t^\top P m_t
    + \mathrm{tr}(P S_t) + \sigma^2 \mathrm{tr} R\big)
    + \gamma^T \big(m_T^\top Q_T m_T + \mathrm{tr}(Q_T S_T)\big)

(:func:`lqr_cost`, a forward ``lax.scan``). Its gradient
(:func:`lqr_policy_gradient`) is derived by hand as the adjoint of these
moment equations, a reverse ``lax.scan`` (derivation there), and tested
against ``jax.grad`` of :func:`lqr_cost` to 1e-10.

The infinite-horizon discounted cost follows Fazel et al. (2018, Lemma 1),
with the process noise and the exploration added
(:func:`lqr_infinite_horizon_cost`, :func:`lqr_infinite_horizon_gradient`).

Nothing here calls :mod:`rgrad.rl`'s rollouts or estimators: only the
problem container and its argument checks come from there. The cost
matrices :math:`Q, R, Q_T` and the covariances are taken to be symmetric
(the hand gradients use their symmetric parts, which leave the cost
unchanged).

References:
  Fazel, Ge, Kakade, Mesbahi. Global Convergence of Policy Gradient Methods
  for the Linear Quadratic Regulator. ICML 2018,
  https://arxiv.org/abs/1801.05039 (Lemma 1).
  Anderson, Moore. Optimal Control: Linear Quadratic Methods. Prentice Hall,
  1990 (the moment and Lyapunov equations).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad import rl


def _sym(matrix: jax.Array) -> jax.Array:
  return 0.5 * (matrix + matrix.T)


def _check(problem: Any, params: Any, name: str) -> None:
  rl.check_lqr(problem, name)
  rl.check_policy(params, problem, name)


def _check_discount(discount: Any, name: str, *, below_one: bool) -> Any:
  """`discount` in [0, 1] (or [0, 1) with `below_one`), where concrete."""
  discount = _internal.check_real_scalar(discount, name, "discount")
  known = _internal.concrete(discount)
  if known is not None:
    ok = 0.0 <= known < 1.0 if below_one else 0.0 <= known <= 1.0
    if not ok:
      interval = "[0, 1)" if below_one else "[0, 1]"
      raise ValueError(
        f"{name}: discount must be in {interval}, got {float(known)}."
      )
  return discount


def _powers(discount: Any, horizon: int, dtype: Any) -> jax.Array:
  """[T + 1] the weights gamma^0 ... gamma^T (0^0 = 1)."""
  return jnp.power(jnp.asarray(discount, dtype), jnp.arange(horizon + 1))


# ---------------------------------------------------------------------------
# Finite horizon: the moment equations forward, their adjoint backward.
# ---------------------------------------------------------------------------


def _forward(problem, params, horizon, discount):
  """Cost and the moments (m_t, S_t), t < T, and (m_T, S_T)."""
  a, b, k = problem.A, problem.B, params["K"]
  s2 = jnp.exp(2.0 * params["log_sigma"])
  f = a + b @ k
  p = problem.Q + k.T @ problem.R @ k
  noise = s2 * b @ b.T + problem.W
  action_noise_cost = s2 * jnp.trace(problem.R)
  weights = _powers(discount, horizon, a.dtype)

  def step(carry, w):
    m, s = carry
    cost = w * (m @ p @ m + jnp.trace(p @ s) + action_noise_cost)
    return (f @ m, f @ s @ f.T + noise), (cost, m, s)

  (m_T, s_T), (costs, ms, ss) = jax.lax.scan(
    step, (problem.m0, problem.S0), weights[:-1]
  )
  terminal = weights[-1] * (
    m_T @ problem.Q_T @ m_T + jnp.trace(problem.Q_T @ s_T)
  )
  return jnp.sum(costs) + terminal, (ms, ss, m_T, weights)


@functools.partial(jax.jit, static_argnames="horizon")
def _cost(problem, params, horizon, discount):
  return _forward(problem, params, horizon, discount)[0]


@functools.partial(jax.jit, static_argnames="horizon")
def _gradient(problem, params, horizon, discount):
  _, (ms, ss, m_T, weights) = _forward(problem, params, horizon, discount)
  a, b, k = problem.A, problem.B, params["K"]
  q, r, q_T = _sym(problem.Q), _sym(problem.R), _sym(problem.Q_T)
  s2 = jnp.exp(2.0 * params["log_sigma"])
  f = a + b @ k
  p = q + k.T @ r @ k
  bbt = b @ b.T

  def step(carry, inputs):
    g_next, v_next, d_k, d_s2 = carry  # adjoints of m_{t+1}, S_{t+1}
    m, s, w = inputs
    # The step cost w (m'Pm + tr(P S) + s2 tr R), P = Q + K'RK: dP/dK
    # contracts with w (m m' + S) to 2 w R K (m m' + S).
    d_k = d_k + 2.0 * w * r @ k @ (jnp.outer(m, m) + s)
    # m_{t+1} = F m: dJ/dF += g m'; S_{t+1} = F S F' + N: dJ/dF += 2 V F S;
    # F = A + BK, so dJ/dK = B' dJ/dF.
    d_k = d_k + b.T @ (jnp.outer(g_next, m) + 2.0 * v_next @ f @ s)
    # s2 enters the step cost (s2 tr R) and N = s2 BB' + W.
    d_s2 = d_s2 + w * jnp.trace(r) + jnp.sum(v_next * bbt)
    g = 2.0 * w * p @ m + f.T @ g_next
    v = w * p + f.T @ v_next @ f
    return (g, v, d_k, d_s2), None

  init = (
    2.0 * weights[-1] * q_T @ m_T,
    weights[-1] * q_T,
    jnp.zeros_like(k),
    jnp.zeros_like(s2),
  )
  (_, _, d_k, d_s2), _ = jax.lax.scan(
    step, init, (ms, ss, weights[:-1]), reverse=True
  )
  return {"K": d_k, "log_sigma": 2.0 * s2 * d_s2}  # d s2 / d log s = 2 s2


def lqr_cost(
  problem: Any, params: dict, horizon: int, *, discount: Any = 1.0
) -> jax.Array:
  r"""The exact expected cost :math:`J_T(K, \log\sigma)` (module docs).

  .. math::

    J_T = E\Big[\sum_{t<T} \gamma^t (x_t^\top Q x_t + u_t^\top R u_t)
      + \gamma^T x_T^\top Q_T x_T\Big],

  computed by propagating the state's mean and covariance through a
  ``lax.scan`` of `horizon` steps; differentiable in `params` (and in the
  problem's arrays). Under ``jax.jit`` list `horizon` in
  ``static_argnames``.

  Args:
    problem: an :class:`rgrad.rl.LQR`.
    params: ``{"K": [m, n], "log_sigma": []}``.
    horizon: :math:`T`, a static int >= 1.
    discount: :math:`\gamma \in [0, 1]`; the terminal cost is weighted
      :math:`\gamma^T`.

  Returns:
    The scalar :math:`J_T`.

  Raises:
    TypeError, ValueError: a problem, policy, horizon or discount that is
      not valid (the message names it).
  """
  name = "lqr_cost"
  _check(problem, params, name)
  horizon = _internal.check_int(horizon, name, what="horizon")
  discount = _check_discount(discount, name, below_one=False)
  return _cost(problem, params, horizon, discount)


def lqr_policy_gradient(
  problem: Any, params: dict, horizon: int, *, discount: Any = 1.0
) -> dict[str, jax.Array]:
  r"""The exact policy gradient :math:`\nabla_{K, \log\sigma} J_T`, by hand.

  This hand-derived adjoint is the reference (``jax.grad`` of
  :func:`lqr_cost` is its test, agreeing to 1e-10 in float64). Write
  :math:`w_t = \gamma^t`, :math:`M_t = S_t + m_t m_t^\top`,
  :math:`N = \sigma^2 BB^\top + W`, and let :math:`g_t = \partial J /
  \partial m_t` and :math:`V_t = \partial J / \partial S_t` be the adjoints
  of the moment equations. From the terminal cost,
  :math:`g_T = 2 w_T Q_T m_T`, :math:`V_T = w_T Q_T`, and backwards
  (a reverse ``lax.scan``),

  .. math::

    g_t = 2 w_t P m_t + F^\top g_{t+1},\qquad
    V_t = w_t P + F^\top V_{t+1} F,

    \nabla_K J = \sum_{t<T} 2 w_t R K M_t
      + B^\top\big(g_{t+1} m_t^\top + 2 V_{t+1} F S_t\big),

    \partial J / \partial \sigma^2 = \sum_{t<T} w_t \mathrm{tr} R
      + \mathrm{tr}(V_{t+1} B B^\top),

  the first from :math:`P = Q + K^\top R K`, the second from
  :math:`m_{t+1} = F m_t` and :math:`S_{t+1} = F S_t F^\top + N` with
  :math:`F = A + BK`; and :math:`\partial J / \partial \log\sigma =
  2\sigma^2\, \partial J / \partial \sigma^2`. One forward and one backward
  pass, O(T) steps of O(n^3).

  Args:
    problem: an :class:`rgrad.rl.LQR`.
    params: ``{"K": [m, n], "log_sigma": []}``.
    horizon: :math:`T`, a static int >= 1.
    discount: :math:`\gamma \in [0, 1]`.

  Returns:
    ``{"K": [m, n], "log_sigma": []}``, like ``jax.grad(lqr_cost)``.

  Raises:
    TypeError, ValueError: as :func:`lqr_cost`.
  """
  name = "lqr_policy_gradient"
  _check(problem, params, name)
  horizon = _internal.check_int(horizon, name, what="horizon")
  discount = _check_discount(discount, name, below_one=False)
  return _gradient(problem, params, horizon, discount)


# ---------------------------------------------------------------------------
# Infinite horizon, discounted: Lyapunov equations (Fazel et al., Lemma 1).
# ---------------------------------------------------------------------------


def _lyapunov(f: jax.Array, source: jax.Array, gamma: Any) -> jax.Array:
  r"""The solution :math:`X = C + \gamma F X F^\top` (Kronecker solve).

  Row-major :math:`\mathrm{vec}(F X F^\top) = (F \otimes F)\,\mathrm{vec}X`,
  so :math:`\mathrm{vec}X = (I - \gamma F \otimes F)^{-1} \mathrm{vec}C`: an
  :math:`n^2 \times n^2` solve, unique when
  :math:`\sqrt\gamma\,\rho(F) < 1`.
  """
  n = f.shape[0]
  lhs = jnp.eye(n * n, dtype=f.dtype) - gamma * jnp.kron(f, f)
  return _sym(jnp.linalg.solve(lhs, source.reshape(-1)).reshape(n, n))


def _infinite(problem, params, discount):
  """(cost, P_K, Sigma_K, F, s2) of the discounted infinite horizon."""
  a, b, k = problem.A, problem.B, params["K"]
  q, r = _sym(problem.Q), _sym(problem.R)
  s2 = jnp.exp(2.0 * params["log_sigma"])
  gamma = jnp.asarray(discount, a.dtype)
  f = a + b @ k
  noise = s2 * b @ b.T + problem.W
  second_moment = _sym(problem.S0) + jnp.outer(problem.m0, problem.m0)
  # P_K = Q + K'RK + gamma F' P_K F: E[sum_t gamma^t c_t | x_0 = x] for the
  # noiseless loop is x' P_K x (Fazel et al., Lemma 1).
  p_k = _lyapunov(f.T, q + k.T @ r @ k, gamma)
  # Sigma_K = sum_t gamma^t E[x_t x_t'] with E x_{t+1}x_{t+1}' =
  # F E[x_t x_t'] F' + N, so Sigma_K = M_0 + gamma N / (1 - gamma)
  # + gamma F Sigma_K F'.
  sigma_k = _lyapunov(f, second_moment + gamma / (1.0 - gamma) * noise, gamma)
  # C = sum_t gamma^t (tr(P E x_t x_t') + s2 tr R) = tr(P_K Sigma_0)
  # + s2 tr R / (1 - gamma), Sigma_0 the source above.
  cost = (
    jnp.sum(p_k * second_moment)
    + gamma / (1.0 - gamma) * jnp.sum(p_k * noise)
    + s2 * jnp.trace(r) / (1.0 - gamma)
  )
  return cost, p_k, sigma_k, f, s2


def _check_infinite(problem, params, discount, name):
  _check(problem, params, name)
  discount = _check_discount(discount, name, below_one=True)
  known = [_internal.concrete(x) for x in (problem.A, problem.B, params["K"])]
  gamma = _internal.concrete(discount)
  if gamma is not None and all(x is not None for x in known):
    a, b, k = known
    radius = float(np.max(np.abs(np.linalg.eigvals(a + b @ k))))
    if not np.sqrt(gamma) * radius < 1.0:
      raise ValueError(
        f"{name}: the discounted cost is infinite: sqrt(discount) * "
        f"spectral radius of A + BK = sqrt({float(gamma)}) * {radius:.6g} "
        "must be < 1."
      )
  return discount


def lqr_infinite_horizon_cost(
  problem: Any, params: dict, discount: Any
) -> jax.Array:
  r"""The discounted infinite-horizon cost, Fazel et al. (2018), Lemma 1.

  .. math::

    C_\gamma(K, \log\sigma) = E\sum_{t \ge 0} \gamma^t
      (x_t^\top Q x_t + u_t^\top R u_t)
    = \mathrm{tr}(P_K M_0)
      + \tfrac{\gamma}{1 - \gamma}\mathrm{tr}\big(P_K(\sigma^2 BB^\top + W)
      \big) + \tfrac{\sigma^2 \mathrm{tr} R}{1 - \gamma},

  with :math:`M_0 = S_0 + m_0 m_0^\top` and :math:`P_K` solving the
  discrete Lyapunov equation :math:`P_K = Q + K^\top R K + \gamma F^\top P_K
  F`, :math:`F = A + BK`. Without noise (:math:`W = 0`,
  :math:`\sigma \to 0`) it is Fazel et al.'s :math:`E\, x_0^\top P_K x_0`;
  the noise injected at step :math:`s` costs :math:`\gamma^{s+1}
  \mathrm{tr}(P_K N)` from then on, and the exploration adds
  :math:`\sigma^2\mathrm{tr}R` at every step. It is the limit of
  :func:`lqr_cost` with the same `discount` as the horizon grows. The
  terminal cost :math:`Q_T` plays no part.

  Args:
    problem: an :class:`rgrad.rl.LQR`.
    params: ``{"K": [m, n], "log_sigma": []}``.
    discount: :math:`\gamma \in [0, 1)`, with
      :math:`\sqrt\gamma\,\rho(A + BK) < 1` (checked where concrete;
      under ``jit`` an unstable loop gives a meaningless finite number).

  Returns:
    The scalar :math:`C_\gamma`.

  Raises:
    TypeError, ValueError: bad arguments, or a discounted closed loop that
      does not converge.
  """
  name = "lqr_infinite_horizon_cost"
  discount = _check_infinite(problem, params, discount, name)
  return _infinite_cost(problem, params, discount)


@jax.jit
def _infinite_cost(problem, params, discount):
  return _infinite(problem, params, discount)[0]


@jax.jit
def _infinite_gradient(problem, params, discount):
  _, p_k, sigma_k, _, s2 = _infinite(problem, params, discount)
  a, b, k = problem.A, problem.B, params["K"]
  r = _sym(problem.R)
  gamma = jnp.asarray(discount, a.dtype)
  bpb = b.T @ p_k @ b
  d_k = 2.0 * ((r + gamma * bpb) @ k + gamma * b.T @ p_k @ a) @ sigma_k
  d_s2 = (gamma * jnp.trace(bpb) + jnp.trace(r)) / (1.0 - gamma)
  return {"K": d_k, "log_sigma": 2.0 * s2 * d_s2}


def lqr_infinite_horizon_gradient(
  problem: Any, params: dict, discount: Any
) -> dict[str, jax.Array]:
  r"""The gradient of :func:`lqr_infinite_horizon_cost`, in closed form.

  Fazel et al. (2018, Lemma 1), whose proof carries over unchanged with the
  noise (its source :math:`\Sigma_0` does not depend on :math:`K`):

  .. math::

    \nabla_K C_\gamma = 2\big[(R + \gamma B^\top P_K B) K
      + \gamma B^\top P_K A\big] \Sigma_K,\qquad
    \Sigma_K = \sum_{t\ge0} \gamma^t E[x_t x_t^\top],

  where :math:`\Sigma_K` solves :math:`\Sigma_K = M_0 + \tfrac{\gamma}{1 -
  \gamma}(\sigma^2 BB^\top + W) + \gamma F \Sigma_K F^\top`; and

  .. math::

    \partial C_\gamma / \partial\log\sigma = \frac{2\sigma^2}{1 - \gamma}
      \big(\gamma\,\mathrm{tr}(B^\top P_K B) + \mathrm{tr} R\big).

  Checked against ``jax.grad`` and finite differences of the cost, and
  against :func:`lqr_policy_gradient` at long horizons.

  Args:
    problem: an :class:`rgrad.rl.LQR`.
    params: ``{"K": [m, n], "log_sigma": []}``.
    discount: as :func:`lqr_infinite_horizon_cost`.

  Returns:
    ``{"K": [m, n], "log_sigma": []}``.

  Raises:
    TypeError, ValueError: as :func:`lqr_infinite_horizon_cost`.
  """
  name = "lqr_infinite_horizon_gradient"
  discount = _check_infinite(problem, params, discount, name)
  return _infinite_gradient(problem, params, discount)
