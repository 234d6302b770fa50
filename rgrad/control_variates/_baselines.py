r"""Baselines for the score function estimator (Mohamed et al. 2020, 7.4).

A baseline :math:`b` subtracted from the cost leaves the score function
estimator unbiased as long as it is independent of the draws it is used with.
Two such baselines: the zero-debiased moving average of *earlier* costs (a
state with ``init``/``update``/``value``, and the stateful estimator
:func:`moving_average_baseline` built on it), and the leave-one-out baseline,
the mean cost of the other samples of the same batch.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base
from rgrad import estimators

# ---------------------------------------------------------------------------
# Moving-average baseline.
# ---------------------------------------------------------------------------


class MovingAverageBaselineState(NamedTuple):
  """State of a zero-debiased exponential moving average of the cost.

  Attributes:
    value: the *debiased* moving average
      :math:`\\hat m_t = m_t / (1 - \\beta^t)` after `count` updates (0.0 before
      the first update), a float scalar.
    count: the number of updates :math:`t`, an int32 scalar.
  """

  value: jax.Array
  count: jax.Array


def moving_average_baseline_init(
  dtype: jax.typing.DTypeLike | None = None,
) -> MovingAverageBaselineState:
  """Returns the state before any cost has been seen (baseline 0).

  Args:
    dtype: float dtype of the running value; defaults to JAX's default float
      (float64 with ``jax_enable_x64``).
  """
  dtype = jnp.result_type(float) if dtype is None else dtype
  return MovingAverageBaselineState(
    value=jnp.zeros((), dtype), count=jnp.zeros((), jnp.int32)
  )


def moving_average_baseline_update(
  state: MovingAverageBaselineState,
  costs: jax.typing.ArrayLike,
  decay: float = 0.9,
) -> MovingAverageBaselineState:
  r"""Folds the mean of a batch of costs into the moving average.

  The biased average :math:`m_t = \beta m_{t-1} + (1-\beta)\bar c_t`,
  :math:`m_0 = 0`, underestimates the cost scale by the factor
  :math:`1 - \beta^t` early on; Adam divides it out (Kingma & Ba, 2015,
  Section 3). The state keeps the debiased :math:`\hat m_t = m_t/(1-\beta^t)`
  directly, which obeys

  .. math:: \hat m_t = \frac{\beta (1 - \beta^{t-1})\,\hat m_{t-1}
                             + (1 - \beta)\,\bar c_t}{1 - \beta^t},

  so :math:`\hat m_1 = \bar c_1` and the value is a convex combination of the
  batch means seen so far with weights :math:`\propto \beta^{t-s}`. (The former
  ``optax.monte_carlo.moving_avg_baseline`` also offered the heuristic
  :math:`\min(\beta, (1+t)/(10+t))` against the same start-up bias; debiasing
  removes that bias exactly, so it is not needed.) Use the same `decay` for
  every update of one state.

  The costs are wrapped in ``stop_gradient``: the baseline is a statistic of
  past costs, never a path for gradients.

  Args:
    state: the current state.
    costs: costs of the latest batch, any non-empty shape (their mean is used);
      typically the ``costs`` returned with ``return_costs=True``.
    decay: :math:`\beta \in [0, 1)`; 0 keeps only the latest batch mean.

  Returns:
    The new state; `state` is not modified.

  Raises:
    ValueError: if `costs` is empty, or `decay` is concrete and outside
      ``[0, 1)``.
  """
  costs = jnp.asarray(costs)
  if costs.size == 0:
    raise ValueError("costs must be non-empty to update the moving average.")
  concrete_decay = _internal.concrete(decay)
  if concrete_decay is not None and not (0.0 <= concrete_decay < 1.0):
    raise ValueError(f"decay must be in [0, 1), got {decay}.")
  dtype = state.value.dtype
  decay = jnp.asarray(decay, dtype)
  batch_mean = jax.lax.stop_gradient(jnp.mean(costs).astype(dtype))
  count = state.count + 1
  # 1 - beta^(t-1) and 1 - beta^t, the debiasing normalisers before and after.
  previous_mass = 1.0 - decay ** state.count.astype(dtype)
  mass = 1.0 - decay ** count.astype(dtype)
  value = (decay * previous_mass * state.value + (1.0 - decay) * batch_mean) / (
    mass
  )
  return MovingAverageBaselineState(value=value, count=count)


def moving_average_baseline_value(
  state: MovingAverageBaselineState,
) -> jax.Array:
  """The debiased moving average of past costs (0.0 before any update).

  Pass it as ``baseline=`` to :func:`rgrad.estimators.score_function_jacobians`
  *before* updating the state with the costs of that same call, so that the
  baseline stays independent of the samples it is used with.
  """
  return state.value


def moving_average_baseline(
  decay: float = 0.9,
  dtype: jax.typing.DTypeLike | None = None,
) -> base.StatefulEstimator:
  r"""Score function with a moving-average baseline, as a stateful estimator.

  ``state = init(params)``, then per step
  ``jacobians, state = estimate(function, params, dist_builder, key,
  num_samples, state)``: the estimate subtracts the debiased moving average of
  *earlier* calls' costs (:func:`moving_average_baseline_value`), so it stays
  unbiased, and the returned state has this call's costs folded in
  (:func:`moving_average_baseline_update`) after they were used.

  Args:
    decay: :math:`\beta \in [0, 1)` of the moving average.
    dtype: float dtype of the running value (default: JAX's default float).

  Returns:
    A :class:`rgrad.base.StatefulEstimator` whose state is a
    :class:`MovingAverageBaselineState`.

  Raises:
    ValueError: `decay` outside ``[0, 1)``.
  """
  concrete_decay = _internal.concrete(decay)
  if concrete_decay is not None and not (0.0 <= concrete_decay < 1.0):
    raise ValueError(f"decay must be in [0, 1), got {decay}.")

  def init(params: base.Params) -> MovingAverageBaselineState:
    del params
    return moving_average_baseline_init(dtype)

  def estimate(function, params, dist_builder, key, num_samples, state):
    jacobians, costs = estimators.score_function_jacobians(
      function,
      params,
      dist_builder,
      key,
      num_samples,
      baseline=moving_average_baseline_value(state),
      return_costs=True,
    )
    return jacobians, moving_average_baseline_update(state, costs, decay)

  return base.StatefulEstimator(init=init, estimate=estimate)


# ---------------------------------------------------------------------------
# Leave-one-out baseline.
# ---------------------------------------------------------------------------


def leave_one_out_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
) -> base.Params | tuple[base.Params, jax.Array]:
  r"""Score function estimator with the leave-one-out baseline.

  Each sample is baselined with the mean cost of the *other* samples,

  .. math:: \hat\eta_i = (f(x_i) - b_i)\,\nabla_\theta\log p(x_i;\theta),
            \qquad b_i = \frac{1}{K-1}\sum_{j\ne i} f(x_j),

  which is unbiased because :math:`b_i` is independent of :math:`x_i`. Since
  :math:`f(x_i) - b_i = \tfrac{K}{K-1}(f(x_i) - \bar f)`, the mean of the
  :math:`\hat\eta_i` is the familiar "subtract the batch mean" estimator with
  the factor :math:`K/(K-1)` that makes it unbiased. It removes the variance
  that a large constant offset in :math:`f` causes, without state or tuning.

  Args:
    function: one sample of the event shape -> scalar cost.
    params: pytree of parameters of the distribution.
    dist_builder: ``params -> Distribution`` (any distribution with a
      ``score``; no reparameterization needed).
    key: a PRNG key, consumed.
    num_samples: static Python int :math:`K \ge 2`.
    return_costs: also return the costs :math:`f(x_i)`.

  Returns:
    A pytree like `params`, each leaf ``[num_samples, *leaf.shape]``; with
    `return_costs`, a tuple ``(jacobians, costs[num_samples])``. The rows are
    exchangeable but not independent (they share the batch mean), so estimate
    the variance of their mean from independent repetitions, not from the
    spread of the rows.

  Raises:
    ValueError: if `num_samples` is not an int >= 2, or (outside jit)
      non-finite costs; under jit a non-finite cost makes every row NaN (each
      row's baseline reads every cost).

  References:
    Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free!
    ICLR 2019 workshop, https://openreview.net/forum?id=r1lgTGL5DE.
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652 (Section 7.4).
  """
  name = "leave_one_out_jacobians"
  _internal.check_int(num_samples, name, minimum=2)
  # One draw and one evaluation of the costs serve both the baseline and the
  # weights: the baseline of sample i is a function of the other costs only.
  noise, costs = estimators.score_function_draws(
    (function,), params, dist_builder, key, num_samples, name=name
  )
  del key
  (costs,) = costs
  costs = jax.lax.stop_gradient(costs)  # [num_samples]
  # f_i - b_i with b_i = sum_{j != i} f_j / (K - 1) is K/(K - 1) times
  # f_i - mean(f): the same weights, centred first; XLA fuses this form far
  # better than the explicit b_i (the benchmark times leave-one-out against
  # the plain score function).
  weights = (costs - jnp.mean(costs)) * (num_samples / (num_samples - 1))
  jacobians = estimators.noise_score_jacobians(
    params, dist_builder, noise, weights=weights
  )
  # Every baseline reads every cost: one non-finite cost makes every row NaN.
  jacobians = _internal.poison_non_finite(jacobians, costs, rows="batch")
  return (jacobians, costs) if return_costs else jacobians
