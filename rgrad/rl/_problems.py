r"""The linear-quadratic regulator: the RL problem whose gradient is exact.

.. math::

  x_{t+1} = A x_t + B u_t + w_t,\quad w_t \sim N(0, W),\qquad
  u_t = K x_t + \sigma \epsilon_t,\quad \epsilon_t \sim N(0, I_m),\qquad
  x_0 \sim N(m_0, S_0),

  J(K, \log\sigma) = E\Big[\sum_{t<T} x_t^\top Q x_t + u_t^\top R u_t
    + x_T^\top Q_T x_T\Big].

The state stays Gaussian, so :math:`J` has a closed form by propagating its
mean and covariance (:func:`rgrad.exact.lqr_cost`), and its gradient in
:math:`(K, \log\sigma)` is the exact policy gradient that the Monte Carlo
estimators of :mod:`rgrad.rl` are checked against. This module holds only the
problem's data (shared by both sides: it is the question, not an answer) and
the checks of it; the horizon :math:`T` is a static argument of every
function that takes an :class:`LQR`, not a field, so a pytree of problems
stays all arrays.

Policy parameters are the dict ``{"K": [m, n], "log_sigma": []}``.

References:
  Fazel, Ge, Kakade, Mesbahi. Global Convergence of Policy Gradient Methods
  for the Linear Quadratic Regulator. ICML 2018,
  https://arxiv.org/abs/1801.05039.
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal


class LQR(NamedTuple):
  """A finite-horizon linear-quadratic regulator with Gaussian noise.

  Attributes:
    A: [n, n] state transition.
    B: [n, m] control matrix.
    Q: [n, n] state cost, symmetric positive semi-definite.
    R: [m, m] action cost, symmetric positive semi-definite.
    Q_T: [n, n] terminal state cost, symmetric positive semi-definite.
    W: [n, n] process-noise covariance (positive semi-definite).
    m0: [n] mean of the initial state.
    S0: [n, n] covariance of the initial state (positive semi-definite).
  """

  A: jax.Array
  B: jax.Array
  Q: jax.Array
  R: jax.Array
  Q_T: jax.Array
  W: jax.Array
  m0: jax.Array
  S0: jax.Array

  @property
  def state_dim(self) -> int:
    return self.A.shape[0]

  @property
  def action_dim(self) -> int:
    return self.B.shape[1]


def rotation(angle: float) -> np.ndarray:
  """The 2x2 rotation by `angle` radians."""
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s], [s, c]])


def example_lqr(
  spectral_radius: float = 0.9,
  *,
  angle: float = 0.3,
  gain: tuple[float, float] = (-0.5, -0.3),
  sigma: float = 0.3,
  dtype: Any = None,
) -> tuple[LQR, dict[str, jax.Array]]:
  r"""A 2-state, 1-action LQR and policy whose closed loop has a given radius.

  The closed-loop matrix at the returned policy is
  :math:`A + BK = \rho\,\mathrm{Rot}(\text{angle})`, a scaled rotation, so
  its spectral radius is exactly :math:`\rho` = `spectral_radius` and
  :math:`\|(A + BK)^t\| = \rho^t`: the state's covariance converges for
  :math:`\rho < 1` and grows geometrically for :math:`\rho > 1`, the regime
  where backpropagation through time explodes (Parmas et al., 2018).
  :math:`A = \rho\,\mathrm{Rot} - BK` with :math:`B = (0, 1)^\top`,
  :math:`Q = Q_T = I`, :math:`R = 0.1`, :math:`W = 0.01 I`,
  :math:`m_0 = (1, 0)`, :math:`S_0 = 0.1 I`.

  Args:
    spectral_radius: :math:`\rho > 0`.
    angle: rotation angle of the closed loop, radians.
    gain: the policy's :math:`K` (one row).
    sigma: the policy's exploration scale :math:`\sigma > 0`.
    dtype: the arrays' floating dtype; None for JAX's default.

  Returns:
    ``(problem, params)`` with ``params = {"K": [1, 2], "log_sigma": []}``.
  """
  rho = _internal.check_positive_scalar(
    spectral_radius, "example_lqr", "spectral_radius"
  )
  sigma = _internal.check_positive_scalar(sigma, "example_lqr", "sigma")
  dtype = jnp.result_type(float) if dtype is None else dtype
  b = np.array([[0.0], [1.0]])
  k = np.array([gain], dtype=np.float64)
  a = rho * rotation(angle) - b @ k
  arrays = {
    "A": a,
    "B": b,
    "Q": np.eye(2),
    "R": np.array([[0.1]]),
    "Q_T": np.eye(2),
    "W": 0.01 * np.eye(2),
    "m0": np.array([1.0, 0.0]),
    "S0": 0.1 * np.eye(2),
  }
  problem = LQR(**{n: jnp.asarray(v, dtype) for n, v in arrays.items()})
  params = {
    "K": jnp.asarray(k, dtype),
    "log_sigma": jnp.asarray(np.log(sigma), dtype),
  }
  return problem, params


def check_lqr(problem: Any, name: str) -> LQR:
  """Checks that `problem` is an :class:`LQR` with consistent shapes."""
  if not isinstance(problem, LQR):
    raise TypeError(
      f"{name}: problem must be an rgrad.rl.LQR, got {type(problem).__name__}."
    )
  n, m = problem.state_dim, problem.action_dim
  want = {
    "A": (n, n),
    "B": (n, m),
    "Q": (n, n),
    "R": (m, m),
    "Q_T": (n, n),
    "W": (n, n),
    "m0": (n,),
    "S0": (n, n),
  }
  for field, shape in want.items():
    got = tuple(jnp.shape(getattr(problem, field)))
    if got != shape:
      raise ValueError(
        f"{name}: problem.{field} must have shape {shape} (n={n} states, "
        f"m={m} actions), got {got}."
      )
  return problem


def check_policy(params: Any, problem: LQR, name: str) -> None:
  """Checks ``params = {"K": [m, n], "log_sigma": []}`` against `problem`."""
  if not isinstance(params, dict) or set(params) != {"K", "log_sigma"}:
    keys = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(
      f"{name}: params must be a dict with keys 'K' and 'log_sigma', got "
      f"{keys}."
    )
  want = (problem.action_dim, problem.state_dim)
  if tuple(jnp.shape(params["K"])) != want:
    raise ValueError(
      f"{name}: params['K'] must have shape {want} (actions, states), got "
      f"{tuple(jnp.shape(params['K']))}."
    )
  if jnp.shape(params["log_sigma"]) != ():
    raise ValueError(
      f"{name}: params['log_sigma'] must be a scalar, got shape "
      f"{tuple(jnp.shape(params['log_sigma']))}."
    )


def closed_loop_spectral_radius(problem: LQR, params: dict) -> float:
  """The spectral radius of :math:`A + BK` (concrete values only)."""
  closed = np.asarray(problem.A) + np.asarray(problem.B) @ np.asarray(
    params["K"]
  )
  return float(np.max(np.abs(np.linalg.eigvals(closed))))
