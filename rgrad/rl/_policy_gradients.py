r"""Policy gradients by the score function and by backpropagation through time.

For the Gaussian policy :math:`u_t = \mu_\theta(o_t) + \sigma\epsilon_t` of
:mod:`rgrad.rl._environments` and the expected total cost
:math:`J(\theta) = E[\sum_{t<T} c_t + c_T]`:

* the **score function** (REINFORCE with reward-to-go; Williams, 1992)

  .. math::

    \hat g = \sum_{t<T} \nabla_\theta \log\pi(u_t \mid x_t)\,(G_t - b_t),
    \qquad G_t = \sum_{s \ge t} c_s,

  where for this policy :math:`\nabla_\mu \log\pi = \epsilon_t/\sigma` and
  :math:`\partial_{\log\sigma}\log\pi = \|\epsilon_t\|^2 - m`. It needs no
  derivative of the environment; the baseline :math:`b_t` may depend on
  anything but :math:`u_t, u_{t+1}, \ldots` and their consequences (Sutton &
  Barto, 2018, Sec. 13.4);
* the **pathwise** gradient (backpropagation through time): ``jax.grad`` of
  one rollout's total cost with its noise held fixed (Parmas et al., 2018,
  Sec. 2), whose variance can grow geometrically with the horizon when the
  closed loop is unstable or chaotic.

Every estimator returns per-rollout estimates, a pytree like ``params``
whose leaves have a leading ``num_rollouts`` axis (their mean is the
estimate), as every rgrad estimator does. The rows are independent except
with the leave-one-out baseline, whose rows share the batch: estimate the
standard error of their mean from independent calls (batch means).

References:
  Williams. Simple statistical gradient-following algorithms for
  connectionist reinforcement learning. Machine Learning 8, 1992.
  Sutton, Barto. Reinforcement Learning: An Introduction, 2nd ed., 2018.
  Parmas, Rasmussen, Peters, Doya. PIPPS. ICML 2018,
  https://proceedings.mlr.press/v80/parmas18a.html.
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import control_variates
from rgrad.rl import _environments as _env
from rgrad.rl import _problems
from rgrad.rl import _returns

BASELINES = ("none", "constant", "leave_one_out", "value")


def as_environment(environment: Any) -> _env.Environment:
  """An :class:`Environment`; an :class:`rgrad.rl.LQR` is converted."""
  if isinstance(environment, _problems.LQR):
    return _env.lqr_environment(environment)
  return environment


def checked_args(
  environment, mean_fn, params, key, horizon, num_rollouts, name
):
  """Every estimator's argument checks: ``(environment, horizon, N)``."""
  environment = as_environment(environment)
  horizon, num_rollouts = _env.check_rollout_args(
    environment, mean_fn, params, key, horizon, num_rollouts, name
  )
  return environment, horizon, num_rollouts


def policy_noise(environment, params, key, horizon, num_rollouts):
  """The rollouts' noise, in the dtype of the policy's parameters."""
  return _env.sample_rollout_noise(
    key,
    horizon,
    num_rollouts,
    environment.action_dim,
    params["log_sigma"].dtype,
  )


# ---------------------------------------------------------------------------
# Baselines.
# ---------------------------------------------------------------------------


class Baseline(NamedTuple):
  """A checked baseline specification (see :func:`check_baseline`)."""

  name: str
  values: jax.Array | None = None
  value_fn: Callable[..., jax.Array] | None = None
  value_params: Any = None


def check_baseline(
  baseline, baseline_values, value_fn, value_params, horizon, num_rollouts, name
) -> Baseline:
  """Checks a baseline's name and its arguments; returns a :class:`Baseline`.

  Raises:
    ValueError: an unknown name, missing or misshapen arguments.
  """
  if baseline not in BASELINES:
    raise ValueError(
      f"{name}: baseline must be one of {BASELINES}, got {baseline!r}."
    )
  if baseline == "constant":
    if baseline_values is None:
      raise ValueError(
        f"{name}: baseline='constant' needs baseline_values (a scalar or "
        f"[horizon={horizon}] per-step values)."
      )
    values = jnp.asarray(baseline_values)
    if values.shape not in ((), (horizon,)):
      raise ValueError(
        f"{name}: baseline_values must be a scalar or have shape "
        f"({horizon},) (one per step), got {tuple(values.shape)}."
      )
    return Baseline(baseline, values=values)
  if baseline_values is not None:
    raise ValueError(
      f"{name}: baseline_values is only for baseline='constant', got "
      f"baseline={baseline!r}."
    )
  if baseline == "value":
    _internal.check_callable(value_fn, "value_fn", name)
    return Baseline(baseline, value_fn=value_fn, value_params=value_params)
  if value_fn is not None:
    raise ValueError(
      f"{name}: value_fn is only for baseline='value', got "
      f"baseline={baseline!r}."
    )
  if baseline == "leave_one_out":
    _internal.check_int(
      num_rollouts,
      f"{name} (baseline='leave_one_out')",
      what="num_rollouts",
      minimum=2,
    )
  return Baseline(baseline)


def _values(value_fn, value_params, observations, horizon):
  """value_fn(value_params, o_t, t) for every rollout and t < T: [N, T]."""
  obs = jax.tree.map(lambda o: o[:, :horizon], observations)
  steps = jnp.arange(horizon)
  per_step = jax.vmap(value_fn, in_axes=(None, 0, 0))
  values = jax.vmap(per_step, in_axes=(None, 0, None))(value_params, obs, steps)
  if values.shape != (jax.tree.leaves(obs)[0].shape[0], horizon):
    raise ValueError(
      "value_fn(value_params, obs, t) must return a scalar, got shape "
      f"{values.shape[2:]}."
    )
  return values


def advantages(
  trajectory: _env.Trajectory, baseline: Baseline, num_groups: int = 1
) -> jax.Array:
  r""":math:`G_{i,t} - b_{i,t}` [num_rollouts, T], free of gradients.

  ``"leave_one_out"``: :math:`b_{i,t} = \frac{1}{N-1}\sum_{j\ne i} G_{j,t}`,
  independent of rollout :math:`i` (unbiased), in the centred form
  :math:`\frac{N}{N-1}(G_{i,t} - \bar G_t)`; with `num_groups` > 1, within
  each of that many contiguous groups of rollouts.
  """
  horizon = trajectory.actions.shape[1]
  returns = _returns.reward_to_go(jax.lax.stop_gradient(trajectory.costs))
  returns = returns[:, :horizon]  # [N, T]; G_t includes c_T.
  if baseline.name == "none":
    adv = returns
  elif baseline.name == "constant":
    adv = returns - baseline.values.astype(returns.dtype)
  elif baseline.name == "leave_one_out":
    n, horizon = returns.shape
    grouped = returns.reshape(num_groups, n // num_groups, horizon)
    k = n // num_groups
    adv = (grouped - jnp.mean(grouped, axis=1, keepdims=True)) * (k / (k - 1))
    adv = adv.reshape(n, horizon)
  else:
    adv = returns - _values(
      baseline.value_fn,
      baseline.value_params,
      trajectory.observations,
      horizon,
    )
  return jax.lax.stop_gradient(adv)


def value_baseline_loss(
  value_fn: Callable[..., jax.Array],
  value_params: Any,
  trajectory: _env.Trajectory,
) -> jax.Array:
  r"""The regression loss of a learned state-value baseline.

  .. math:: L(\phi) = \frac{1}{2NT}\sum_{i,t}
            \big(V_\phi(o_{i,t}, t) - G_{i,t}\big)^2,

  minimized by :math:`V_\phi(o, t) = E[G_t \mid o_t = o]`, the baseline
  that (among functions of the state) nearly minimizes the score function's
  variance. Fit :math:`\phi` on one call's ``trajectory`` and use it as
  ``baseline="value"`` on later calls: any :math:`\phi` fixed before a
  batch's actions are drawn keeps the estimate unbiased.

  Args:
    value_fn: ``(value_params, obs, t) -> scalar``.
    value_params: its parameters (the loss is differentiable in them).
    trajectory: a :class:`Trajectory` (``return_trajectory=True``).
  """
  horizon = trajectory.actions.shape[1]
  returns = _returns.reward_to_go(jax.lax.stop_gradient(trajectory.costs))
  values = _values(value_fn, value_params, trajectory.observations, horizon)
  return 0.5 * jnp.mean((values - returns[:, :horizon]) ** 2)


# ---------------------------------------------------------------------------
# Estimators.
# ---------------------------------------------------------------------------


def policy_pullback(mean_fn, params, obs, g_mu, g_log_sigma):
  r"""One rollout's :math:`\sum_t (\partial\mu_t/\partial\theta)^\top
  g_{\mu,t}`, plus :math:`\sum_t g_{\log\sigma,t}` on ``log_sigma``.

  `obs` has leaves ``[T, ...]``, `g_mu` is ``[T, m]``, `g_log_sigma`
  ``[T]``; the trajectory itself carries no gradient.
  """
  obs, g_mu = jax.lax.stop_gradient((obs, g_mu))

  def surrogate(p):
    return jnp.sum(jax.vmap(mean_fn, in_axes=(None, 0))(p, obs) * g_mu)

  grads = jax.grad(surrogate)(params)
  grads["log_sigma"] = grads["log_sigma"] + jnp.sum(g_log_sigma)
  return grads


def likelihood_ratio_terms(eps, log_sigma, adv):
  r"""Per-step score terms :math:`(\epsilon_t/\sigma)A_t` [N, T, m] and
  :math:`(\|\epsilon_t\|^2 - m)A_t` [N, T]."""
  m = eps.shape[-1]
  g_mu = eps / jnp.exp(log_sigma) * adv[..., None]
  g_log_sigma = (jnp.sum(eps**2, axis=-1) - m) * adv
  return g_mu, g_log_sigma


def _score_function(
  environment, params, key, horizon, num_rollouts, mean_fn, baseline
):
  noise = policy_noise(environment, params, key, horizon, num_rollouts)
  del key
  trajectory = _env.rollout(environment, mean_fn, params, noise)
  adv = advantages(trajectory, baseline)
  g_mu, g_log_sigma = likelihood_ratio_terms(
    trajectory.eps, params["log_sigma"], adv
  )
  obs = jax.tree.map(lambda o: o[:, :horizon], trajectory.observations)
  pullback = functools.partial(policy_pullback, mean_fn, params)
  grads = jax.vmap(pullback)(obs, g_mu, g_log_sigma)
  return grads, jax.lax.stop_gradient(trajectory)


def score_function_policy_gradients(
  environment: _env.Environment | _problems.LQR,
  params: dict,
  key: jax.Array,
  horizon: int,
  num_rollouts: int,
  *,
  mean_fn: Callable[[dict, Any], jax.Array] = _env.linear_mean,
  baseline: str = "none",
  baseline_values: jax.typing.ArrayLike | None = None,
  value_fn: Callable[..., jax.Array] | None = None,
  value_params: Any = None,
  return_trajectory: bool = False,
) -> Any:
  r"""REINFORCE with reward-to-go and a baseline (module docstring).

  Args:
    environment: an :class:`Environment`, or an :class:`rgrad.rl.LQR`
      (converted by :func:`lqr_environment`).
    params: ``{"log_sigma": [], ...}``, the mean's parameters beside it
      (``{"K": [m, n], "log_sigma": []}`` for :func:`linear_mean`).
    key: PRNG key, consumed.
    horizon: :math:`T \ge 1`, static.
    num_rollouts: :math:`N \ge 1` (:math:`\ge 2` for leave-one-out), static.
    mean_fn: ``(params, obs) -> [m]`` action mean.
    baseline: ``"none"``; ``"constant"``, :math:`b_t` = `baseline_values`
      (a scalar or ``[T]``, fixed before the call, e.g. a moving average of
      earlier calls); ``"leave_one_out"``, :math:`b_{i,t}` the mean return
      from :math:`t` of the other rollouts (unbiased; rows share the batch);
      ``"value"``, :math:`b_{i,t}` = ``value_fn(value_params, o_{i,t}, t)``
      (unbiased for any fixed `value_params`; fit them with
      :func:`value_baseline_loss`).
    baseline_values, value_fn, value_params: see `baseline`.
    return_trajectory: also return the :class:`Trajectory`.

  Returns:
    A pytree like `params`, leaves ``[num_rollouts, *leaf.shape]`` (rows
    i.i.d., except ``"leave_one_out"``: one group, the batch); with
    `return_trajectory`, ``(grads, trajectory)``.

  Raises:
    ValueError, TypeError: bad arguments (named in the message).
  """
  name = "score_function_policy_gradients"
  environment, horizon, num_rollouts = checked_args(
    environment, mean_fn, params, key, horizon, num_rollouts, name
  )
  spec = check_baseline(
    baseline,
    baseline_values,
    value_fn,
    value_params,
    horizon,
    num_rollouts,
    name,
  )
  grads, trajectory = _score_function(
    environment, params, key, horizon, num_rollouts, mean_fn, spec
  )
  return (grads, trajectory) if return_trajectory else grads


def pathwise_policy_gradients(
  environment: _env.Environment | _problems.LQR,
  params: dict,
  key: jax.Array,
  horizon: int,
  num_rollouts: int,
  *,
  mean_fn: Callable[[dict, Any], jax.Array] = _env.linear_mean,
  return_trajectory: bool = False,
) -> Any:
  r"""BPTT: :math:`\nabla_\theta \sum_t c_t` per rollout.

  With the rollout's noise held fixed, ``jax.grad`` of its total cost
  :math:`\sum_{t<T} c_t + c_T` through the policy and the environment
  (reparameterization through time; Parmas et al., 2018). Needs
  ``environment.step`` differentiable in state and action. Arguments as
  :func:`score_function_policy_gradients`.

  Returns:
    A pytree like `params`, leaves ``[num_rollouts, *leaf.shape]``, rows
    i.i.d.; with `return_trajectory`, ``(grads, trajectory)``.
  """
  name = "pathwise_policy_gradients"
  environment, horizon, num_rollouts = checked_args(
    environment, mean_fn, params, key, horizon, num_rollouts, name
  )
  noise = policy_noise(environment, params, key, horizon, num_rollouts)
  del key

  def total_cost(p, reset_key, step_keys, eps):
    trajectory = _env.rollout_one(
      environment, mean_fn, p, reset_key, step_keys, eps
    )
    return jnp.sum(trajectory.costs), trajectory

  grad = jax.grad(total_cost, has_aux=True)
  grads, trajectory = jax.vmap(grad, in_axes=(None, 0, 0, 0))(
    params, noise.reset_keys, noise.step_keys, noise.eps
  )
  trajectory = jax.lax.stop_gradient(trajectory)
  _internal.check_finite(trajectory.costs, "pathwise_policy_gradients", "costs")
  # Under jit: a rollout with a non-finite cost has no meaningful gradient
  # (a cost written with jnp.where can have a finite one), so its row is NaN.
  grads = _internal.poison_non_finite(grads, trajectory.costs)
  return (grads, trajectory) if return_trajectory else grads


# ---------------------------------------------------------------------------
# The moving-average baseline, a stateful estimator.
# ---------------------------------------------------------------------------


class StatefulPolicyGradient(NamedTuple):
  """A policy-gradient estimator with state, in the shape of
  :class:`rgrad.base.StatefulEstimator` (pure ``init`` and ``estimate``; the
  state a NamedTuple that ``estimate`` returns updated).

  Attributes:
    init: ``(params, horizon) -> state``.
    estimate: ``(environment, params, key, horizon, num_rollouts, state, *,
      mean_fn=linear_mean) -> (grads, state)``.
  """

  init: Callable[..., Any]
  estimate: Callable[..., tuple[Any, Any]]


def moving_average_policy_gradient(
  decay: float = 0.9,
) -> StatefulPolicyGradient:
  r"""The score function with a per-step moving-average baseline.

  The state is a :class:`rgrad.control_variates.MovingAverageBaselineState`
  with leaves ``[T]``: per step :math:`t`, the zero-debiased exponential
  moving average of the batch-mean return :math:`\bar G_t` of *earlier*
  calls (:func:`rgrad.control_variates.moving_average_baseline_update`,
  vmapped over steps). ``estimate`` uses it as the constant baseline
  :math:`b_t` (0 before any update) and returns the state with this call's
  returns folded in after use, so every estimate is unbiased and the rows
  of one call are i.i.d.

  Args:
    decay: :math:`\beta \in [0, 1)`.

  Returns:
    A :class:`StatefulPolicyGradient`.
  """
  control_variates.moving_average_baseline_update(
    control_variates.moving_average_baseline_init(), 0.0, decay
  )  # Checks `decay` now, not at the first estimate.
  name = "moving_average_policy_gradient"

  def init(params, horizon):
    _env.check_policy_params(params, f"{name}.init")
    horizon = _internal.check_int(horizon, f"{name}.init", what="horizon")
    dtype = params["log_sigma"].dtype
    state = control_variates.moving_average_baseline_init(dtype)
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (horizon,)), state)

  def estimate(
    environment,
    params,
    key,
    horizon,
    num_rollouts,
    state,
    *,
    mean_fn=_env.linear_mean,
  ):
    environment, horizon, num_rollouts = checked_args(
      environment,
      mean_fn,
      params,
      key,
      horizon,
      num_rollouts,
      f"{name}.estimate",
    )
    if jnp.shape(state.value) != (horizon,):
      raise ValueError(
        f"{name}.estimate: state must be init(params, horizon={horizon}), got "
        f"state.value of shape {tuple(jnp.shape(state.value))}."
      )
    spec = Baseline("constant", values=state.value)
    grads, trajectory = _score_function(
      environment, params, key, horizon, num_rollouts, mean_fn, spec
    )
    returns = _returns.reward_to_go(trajectory.costs)[:, :horizon]
    update = jax.vmap(
      control_variates.moving_average_baseline_update, in_axes=(0, 1, None)
    )
    return grads, update(state, returns, decay)

  return StatefulPolicyGradient(init=init, estimate=estimate)
