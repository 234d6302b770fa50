r"""Variance reduction for Monte Carlo gradient estimators.

All estimators in this module target the same quantity as those of
:mod:`rgrad.estimators`,

.. math:: \eta = \nabla_\theta\, \mathbb{E}_{p(x;\theta)}[f(x)],

share their signature ``(function, params, dist_builder, key, num_samples)``
and return per-sample jacobians: a pytree like ``params`` whose leaves carry a
leading ``num_samples`` axis and whose mean over that axis is the estimate.
They are unbiased; what they change is the variance.

The module follows Mohamed et al. (2020), Section 7:

* **Baselines** (Section 7.4). For the score function estimator any constant
  :math:`b` may be subtracted from the cost, because
  :math:`\mathbb{E}[\nabla_\theta \log p(x;\theta)] = 0`:

  .. math:: \hat\eta = \tfrac1K \textstyle\sum_i (f(x_i) - b)\,
            \nabla_\theta \log p(x_i;\theta).

  A *constant* baseline is the ``baseline=`` argument of
  :func:`rgrad.estimators.score_function_jacobians`. It stays unbiased as long
  as :math:`b` does not depend on the samples it is used with, which is what a
  moving average of *past* costs gives (:class:`MovingAverageBaselineState`)::

    b = moving_average_baseline_value(state)      # from earlier steps only
    jac, costs = score_function_jacobians(
        f, params, dist_builder, key, num_samples, baseline=b,
        return_costs=True)
    state = moving_average_baseline_update(state, costs)   # after use

  The leave-one-out baseline (:func:`leave_one_out_jacobians`) uses the other
  samples of the same batch instead (Kool et al., 2019).

* **Control variates** (Section 7.4). For any :math:`h` with a known
  :math:`\nabla_\theta \mathbb{E}_p[h]`,
  :math:`\hat\eta - c\,(\hat\eta_h - \nabla_\theta \mathbb{E}_p[h])` is
  unbiased for every :math:`c` fixed independently of the samples;
  :func:`control_variate_jacobians` with the delta-method control variate
  (:func:`delta_method_control_variate`, the delta method of Section 7.4).

* **Antithetic sampling** (a coupling of draws, Section 7;
  Owen, *Monte Carlo theory, methods and examples*, Ch. 8.2): draws come in
  pairs :math:`(\mu + \sigma\epsilon, \mu - \sigma\epsilon)`
  (:func:`antithetic_pathwise_jacobians`,
  :func:`antithetic_score_function_jacobians`).

Coming from the former ``optax.monte_carlo`` (removed in optax 0.2.7):
``control_delta_method`` is :func:`delta_method_control_variate`,
``moving_avg_baseline`` the ``moving_average_baseline_*`` functions (passed as
``baseline=`` rather than as a control variate), ``control_variates_jacobians``
is :func:`control_variate_jacobians`, and
``estimate_control_variate_coefficients`` keeps its name (per coordinate now,
and over arbitrary pytrees of parameters).

All functions are pure: keys are explicit and never reused, and states are
returned, not mutated. Sizes (``num_samples``, ``num_coefficient_samples``) and
names (``estimator``, ``control_variate``) are static arguments under
``jax.jit``.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 7).
  Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free!
  ICLR 2019 workshop, https://openreview.net/forum?id=r1lgTGL5DE.
  Paisley, Blei, Jordan. Variational Bayesian Inference with Stochastic Search.
  ICML 2012, https://icml.cc/2012/papers/687.pdf (the delta-method control
  variate).
"""

from collections.abc import Callable
from typing import Any
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
    ValueError: if `num_samples` is not an int >= 2.

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
  return (jacobians, costs) if return_costs else jacobians


# ---------------------------------------------------------------------------
# Control variates.
# ---------------------------------------------------------------------------


class ControlVariate(NamedTuple):
  r"""A control variate :math:`h` with a closed-form expectation.

  Attributes:
    value: ``x -> h(x)``, one sample of the event shape to a scalar. Its
      coefficients are fixed (built at the current parameters and not
      differentiated), so the estimators treat it like any cost.
    expected_value: ``params -> E_{p(x; params)}[h(x)]`` in closed form,
      differentiable in ``params``; its gradient is the
      :math:`\nabla_\theta \mathbb{E}_p[h]` that the control variate adds back.
  """

  value: Callable[[jax.Array], jax.Array]
  expected_value: Callable[[base.Params], jax.Array]


def _mean_and_covariance(dist: Any) -> tuple[jax.Array, jax.Array]:
  """The distribution's mean and flat covariance, via its capability."""
  if _internal.missing_capabilities(dist, ("mean_and_covariance",)):
    raise TypeError(
      "The delta-method control variate needs a Gaussian (its expectation is "
      "known in closed form only there): dist_builder must return a "
      "distribution with the mean_and_covariance capability (Normal, "
      f"LogScaleNormal, MultivariateNormalTriL), got {type(dist).__name__}."
    )
  return dist.mean_and_covariance()


def _delta_method(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  order: int,
) -> ControlVariate:
  """Taylor expansion of `function` at the mean, to first or second order."""
  mean, _ = _mean_and_covariance(dist_builder(params))
  # The expansion point is a constant: h must not depend on the parameters
  # through its coefficients, or the estimators would differentiate them.
  mean = jax.lax.stop_gradient(mean)
  event_shape = mean.shape
  center = mean.reshape(-1)  # [n]

  def flat_function(v):  # [n] -> scalar
    return jnp.asarray(function(v.reshape(event_shape)))

  _internal.check_scalar_output(
    function,
    jax.ShapeDtypeStruct(event_shape, mean.dtype),
    "delta_method_control_variate",
  )
  f0, grad = jax.value_and_grad(flat_function)(center)  # [], [n]
  if order == 2:
    # Forward-over-reverse: n Hessian-vector products, O(n^2) memory.
    hessian = jax.hessian(flat_function)(center)  # [n, n]
  else:
    hessian = jnp.zeros((center.size, center.size), grad.dtype)

  def value(x):
    delta = jnp.reshape(x, -1) - center  # [n]
    return f0 + grad @ delta + 0.5 * delta @ hessian @ delta

  def expected_value(params):
    # E[h] for x ~ N(m', S): with delta = m' - m,
    # f(m) + g.delta + (delta' H delta + tr(H S)) / 2.
    loc, covariance = _mean_and_covariance(dist_builder(params))
    delta = loc.reshape(-1) - center
    return (
      f0
      + grad @ delta
      + 0.5 * (delta @ hessian @ delta + jnp.sum(hessian * covariance))
    )

  return ControlVariate(value=value, expected_value=expected_value)


def delta_method_control_variate(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  *,
  order: int = 2,
) -> ControlVariate:
  r"""The delta-method control variate (Mohamed et al. 2020, Section 7.4).

  The Taylor expansion of the cost around the mean :math:`\mu` of a Gaussian
  :math:`p(x;\theta) = N(\mu, \Sigma)`,

  .. math:: h(x) = f(\mu) + \nabla f(\mu)^\top (x - \mu)
            + \tfrac12 (x-\mu)^\top \nabla^2 f(\mu)\, (x - \mu),

  has the expectation :math:`\mathbb{E}[h] = f(\mu) + \tfrac12\operatorname{tr}
  (\nabla^2 f(\mu)\,\Sigma)`, so that for a diagonal Gaussian

  .. math:: \nabla_\mu \mathbb{E}[h] = \nabla f(\mu), \qquad
            \nabla_{\sigma} \mathbb{E}[h] = \operatorname{diag}(\nabla^2 f(\mu))
            \odot \sigma,

  and for other parameterizations (``log_scale``, a Cholesky factor, any
  ``dist_builder``) the chain rule through ``dist_builder`` gives the rest.
  When :math:`f` is quadratic, :math:`h = f` and the control variate removes
  all the variance; when :math:`f` is close to quadratic over the bulk of
  :math:`p`, most of it.

  Cost: the Hessian is formed once per call with ``jax.hessian``
  (forward-over-reverse), i.e. :math:`n` Hessian-vector products and
  :math:`O(n^2)` memory for an event of :math:`n` coordinates, plus
  :math:`O(n^2)` per sample to evaluate :math:`h`. That is the regime the delta
  method is meant for (small :math:`n`, expensive :math:`f`); ``order=1`` drops
  the Hessian and costs one gradient.

  Args:
    function: one sample of the event shape -> scalar cost; twice
      differentiable.
    params: pytree of parameters, the expansion point is the mean of
      ``dist_builder(params)``.
    dist_builder: ``params -> Normal | LogScaleNormal |
      MultivariateNormalTriL``.
    order: 2 (the delta method) or 1 (first-order Taylor expansion, whose
      expectation is :math:`f(\mu)`; it helps the location gradient only).

  Returns:
    A :class:`ControlVariate`.

  Raises:
    TypeError: if the distribution is not one of the Gaussians above.
    ValueError: if `order` is not 1 or 2, or `function` is not scalar.

  References:
    Paisley, Blei, Jordan. Variational Bayesian Inference with Stochastic
    Search. ICML 2012, https://icml.cc/2012/papers/687.pdf.
  """
  if order not in (1, 2):
    raise ValueError(f"order must be 1 or 2, got {order!r}.")
  return _delta_method(function, params, dist_builder, order)


ControlVariateBuilder = Callable[
  [base.CostFunction, base.Params, base.DistBuilder], ControlVariate
]

_CONTROL_VARIATES: dict[str, ControlVariateBuilder] = {
  "delta": lambda f, p, b: _delta_method(f, p, b, order=2),
  "first_order_delta": lambda f, p, b: _delta_method(f, p, b, order=1),
}


def _estimator_fn(estimator: Any) -> base.Estimator:
  """A callable as is, or the registered estimator of that name."""
  if callable(estimator) and not isinstance(estimator, str):
    return estimator
  # Imported here: the registry lists this module's estimators.
  from rgrad import registry

  names = registry.estimators_for(objective="expectation", stateful=False)
  if not isinstance(estimator, str) or estimator not in names:
    raise ValueError(
      f"Unknown estimator {estimator!r}; valid names are {sorted(names)} (the "
      "stateless expectation estimators of rgrad.ESTIMATORS), or pass a "
      "callable."
    )
  return registry.get_estimator(estimator).fn


def _control_variate_builder(control_variate: Any) -> ControlVariateBuilder:
  if callable(control_variate) and not isinstance(control_variate, str):
    return control_variate
  if control_variate not in _CONTROL_VARIATES:
    raise ValueError(
      f"Unknown control variate {control_variate!r}; valid names are "
      f"{sorted(_CONTROL_VARIATES)} (or pass a callable)."
    )
  return _CONTROL_VARIATES[control_variate]


def _optimal_coefficients(
  f_jacobians: base.Params, h_jacobians: base.Params
) -> base.Params:
  r"""Per-coordinate :math:`c^* = \mathrm{Cov}(g, g_h) / \mathrm{Var}(g_h)`."""

  def coefficient(g, h):  # [num_samples, ...] each
    g = g - jnp.mean(g, axis=0)
    h = h - jnp.mean(h, axis=0)
    covariance = jnp.mean(g * h, axis=0)
    variance = jnp.mean(h * h, axis=0)
    # Where the control variate's estimate does not vary (a coordinate it does
    # not touch, e.g. a pathwise scale gradient of a linear h) the coefficient
    # is irrelevant; 0 there avoids 0/0.
    informative = variance > 0
    safe = jnp.where(informative, variance, 1.0)
    return jax.lax.stop_gradient(jnp.where(informative, covariance / safe, 0.0))

  return jax.tree.map(coefficient, f_jacobians, h_jacobians)


def estimate_control_variate_coefficients(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  estimator: str | base.Estimator = "score_function",
  control_variate: str | ControlVariateBuilder = "delta",
) -> base.Params:
  r"""Estimates the variance-minimizing control-variate coefficients.

  For each coordinate :math:`k` of each parameter, the variance of
  :math:`g_k - c_k (g_{h,k} - \partial_k \mathbb{E}[h])` is minimal at

  .. math:: c_k^* = \mathrm{Cov}(g_k, g_{h,k}) / \mathrm{Var}(g_{h,k}),

  estimated here from `num_samples` draws. Use draws that are independent of
  the ones the coefficients are applied to (a separate key), otherwise the
  estimate correlates with the samples and the gradient becomes biased;
  :func:`control_variate_jacobians` with ``coefficient="estimate"`` does that
  split for you. (The former ``optax`` version pooled one coefficient per
  parameter array; per coordinate is never worse in variance.)

  Args:
    function: one sample -> scalar cost.
    params: pytree of parameters.
    dist_builder: ``params -> Distribution``.
    key: a PRNG key, consumed.
    num_samples: static Python int >= 2.
    estimator: ``"score_function"``, ``"pathwise"`` or an estimator with the
      shared signature.
    control_variate: ``"delta"``, ``"first_order_delta"`` or a callable
      ``(function, params, dist_builder) -> ControlVariate``.

  Returns:
    A pytree like `params` of coefficients (gradients stopped).

  Raises:
    ValueError: for an unknown estimator or control variate, or
      `num_samples` < 2.
  """
  _internal.check_int(
    num_samples, "estimate_control_variate_coefficients", minimum=2
  )
  estimator_fn = _estimator_fn(estimator)
  cv_builder = _control_variate_builder(control_variate)
  cv = cv_builder(function, params, dist_builder)
  return _coefficients(
    estimator_fn, function, cv, params, dist_builder, key, num_samples
  )


def _coefficients(estimator_fn, function, cv, params, dist_builder, key, n):
  f_jacobians, h_jacobians, _ = _paired_jacobians(
    estimator_fn, function, cv, params, dist_builder, key, n
  )
  del key
  return _optimal_coefficients(f_jacobians, h_jacobians)


def _paired_jacobians(
  estimator_fn: base.Estimator,
  function: base.CostFunction,
  cv: ControlVariate,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
) -> tuple[base.Params, base.Params, jax.Array]:
  """Per-sample jacobians of `function` and of ``cv.value`` at the same draws.

  Both are what ``estimator_fn(f, params, dist_builder, key, num_samples)``
  returns for ``f = function`` and ``f = cv.value`` with one key (common
  random numbers: g_i and g_{h,i} at the same draw). For the two named
  estimators the draws, and what depends on them alone, are computed once:

  * score function: one draw, one set of scores pulled back to `params`,
    weighted by both costs (the pull-back is linear);
  * pathwise: one draw per sample key and one VJP of the sampling path,
    applied to both cost gradients at that draw.

  Another estimator callable is called twice with the same key.

  Returns:
    ``(f_jacobians, h_jacobians, costs)``, jacobians like `params` with leaves
    ``[num_samples, *leaf.shape]`` and ``costs = function(x_i)``
    ``[num_samples]`` (None for an estimator callable other than the two).
  """
  if estimator_fn is estimators.score_function_jacobians:
    noise, (costs, h_costs) = estimators.score_function_draws(
      (function, cv.value),
      params,
      dist_builder,
      key,
      num_samples,
      name="score_function_jacobians",
    )
    del key
    scores = estimators.noise_score_jacobians(params, dist_builder, noise)
    f_jacobians = jax.tree.map(
      lambda s: s * _internal.leading(costs, s), scores
    )
    h_jacobians = jax.tree.map(
      lambda s: s * _internal.leading(h_costs, s), scores
    )
    return f_jacobians, h_jacobians, costs
  if estimator_fn is estimators.pathwise_jacobians:
    (costs, f_jacobians), (_, h_jacobians) = (
      estimators.pathwise_value_and_grads(
        (function, cv.value),
        params,
        dist_builder,
        key,
        num_samples,
        name="pathwise_jacobians",
      )
    )
    return f_jacobians, h_jacobians, costs
  f_jacobians = estimator_fn(function, params, dist_builder, key, num_samples)
  h_jacobians = estimator_fn(cv.value, params, dist_builder, key, num_samples)
  del key
  return f_jacobians, h_jacobians, None


def _broadcast_coefficient(
  coefficient: Any, params: base.Params
) -> base.Params:
  """A scalar or a pytree like `params` -> a pytree like `params`."""
  params_tree = jax.tree.structure(params)
  if jax.tree.structure(coefficient) == params_tree:
    return coefficient
  leaves = jax.tree.leaves(coefficient)
  if len(leaves) == 1 and jnp.ndim(leaves[0]) == 0:
    return jax.tree.map(lambda _: leaves[0], params)
  raise ValueError(
    'coefficient must be a scalar, "estimate", or a pytree like params '
    f"({params_tree}); got {coefficient!r}."
  )


def control_variate_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  estimator: str | base.Estimator = "score_function",
  control_variate: str | ControlVariateBuilder = "delta",
  coefficient: float | str | base.Params = 1.0,
  num_coefficient_samples: int = 20,
  return_costs: bool = False,
) -> base.Params | tuple[base.Params, jax.Array]:
  r"""Gradient estimator with a control variate (Mohamed et al. 2020, 7.4).

  With :math:`g_i` the estimator applied to :math:`f` and :math:`g_{h,i}` the
  same estimator at the same draw applied to the control variate :math:`h`,

  .. math:: \hat\eta_i = g_i - c\,\big(g_{h,i} - \nabla_\theta
            \mathbb{E}_{p(x;\theta)}[h(x)]\big).

  :math:`\mathbb{E}[g_{h,i}] = \nabla_\theta \mathbb{E}[h]`, so the correction
  has mean zero and :math:`\hat\eta_i` is unbiased for any :math:`c`
  independent of the draw; its variance per coordinate is
  :math:`\mathrm{Var}(g) - 2c\,\mathrm{Cov}(g, g_h) + c^2\mathrm{Var}(g_h)`,
  minimal at :math:`c^* = \mathrm{Cov}(g, g_h)/\mathrm{Var}(g_h)`.
  ``coefficient="estimate"`` estimates :math:`c^*` per coordinate from
  `num_coefficient_samples` *independent* draws (the key is split), which keeps
  the estimator unbiased.

  For the score function estimator,
  :math:`\hat\eta_i = (f(x_i) - c\,h(x_i))\nabla_\theta\log p(x_i) +
  c\nabla_\theta\mathbb{E}[h]`; for the pathwise estimator,
  :math:`\hat\eta_i = \nabla_\theta [f - c\,h](x(\epsilon_i;\theta)) +
  c\nabla_\theta\mathbb{E}[h]`. With the delta method and a quadratic
  :math:`f`, both are exact with :math:`c = 1` (zero variance).

  Args:
    function: one sample of the event shape -> scalar cost.
    params: pytree of parameters of the distribution.
    dist_builder: ``params -> Distribution`` (a Gaussian for the delta method;
      reparameterized for ``"pathwise"``).
    key: a PRNG key, consumed.
    num_samples: static Python int >= 1.
    estimator: ``"score_function"`` or ``"pathwise"``, or a callable with the
      shared estimator signature ``(function, params, dist_builder, key,
      num_samples)``.
    control_variate: ``"delta"`` (second order, the delta method),
      ``"first_order_delta"``, or a callable ``(function, params,
      dist_builder) -> ControlVariate``.
    coefficient: a scalar :math:`c`, a pytree like `params` of per-coordinate
      coefficients (e.g. from :func:`estimate_control_variate_coefficients` on
      independent draws), or ``"estimate"``.
    num_coefficient_samples: static int >= 2, draws used to estimate the
      coefficients when ``coefficient="estimate"``; otherwise unused.
    return_costs: also return the costs :math:`f(x_i)` (needs an estimator that
      accepts ``return_costs``; both named ones do).

  Returns:
    A pytree like `params`, each leaf ``[num_samples, *leaf.shape]``; with
    `return_costs`, a tuple ``(jacobians, costs[num_samples])``.

  Raises:
    ValueError: for an unknown estimator or control variate name, a bad
      `coefficient` or sample count.
    TypeError: if the delta method gets a non-Gaussian distribution.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652 (Section 7.4).
  """
  _internal.check_int(num_samples, "control_variate_jacobians")
  estimator_fn = _estimator_fn(estimator)
  cv_builder = _control_variate_builder(control_variate)
  estimate = isinstance(coefficient, str)
  if estimate:
    if coefficient != "estimate":
      raise ValueError(
        f'coefficient must be a number, a pytree like params or "estimate", '
        f"got {coefficient!r}."
      )
    _internal.check_int(
      num_coefficient_samples,
      "control_variate_jacobians",
      what="num_coefficient_samples",
      minimum=2,
    )
  else:
    coefficient = _broadcast_coefficient(coefficient, params)

  cv = cv_builder(function, params, dist_builder)
  expected_grads = jax.grad(cv.expected_value)(params)  # like params

  if estimate:
    coefficient_key, key = jax.random.split(key)
    coefficient = _coefficients(
      estimator_fn,
      function,
      cv,
      params,
      dist_builder,
      coefficient_key,
      num_coefficient_samples,
    )
    del coefficient_key

  # The same key for f and h: common random numbers, so that g_i and g_{h,i}
  # are evaluated at the same draw and their difference is small.
  if return_costs and estimator_fn not in (
    estimators.score_function_jacobians,
    estimators.pathwise_jacobians,
  ):
    f_jacobians, costs = estimator_fn(
      function, params, dist_builder, key, num_samples, return_costs=True
    )
    h_jacobians = estimator_fn(cv.value, params, dist_builder, key, num_samples)
  else:
    f_jacobians, h_jacobians, costs = _paired_jacobians(
      estimator_fn, function, cv, params, dist_builder, key, num_samples
    )
  del key

  def combine(g, g_h, expected, c):
    # g, g_h: [num_samples, *leaf.shape]; expected, c: leaf.shape or [].
    return g - c * (g_h - expected)

  jacobians = jax.tree.map(
    combine, f_jacobians, h_jacobians, expected_grads, coefficient
  )
  return (jacobians, costs) if return_costs else jacobians


def delta_method_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  estimator: str | base.Estimator = "score_function",
  coefficient: float | str | base.Params = 1.0,
  num_coefficient_samples: int = 20,
  return_costs: bool = False,
) -> base.Params | tuple[base.Params, jax.Array]:
  """:func:`control_variate_jacobians` with the delta-method control variate.

  See :func:`control_variate_jacobians` and
  :func:`delta_method_control_variate` for the math and the arguments.
  """
  return control_variate_jacobians(
    function,
    params,
    dist_builder,
    key,
    num_samples,
    estimator=estimator,
    control_variate="delta",
    coefficient=coefficient,
    num_coefficient_samples=num_coefficient_samples,
    return_costs=return_costs,
  )


# ---------------------------------------------------------------------------
# Antithetic sampling.
# ---------------------------------------------------------------------------


def _check_reflection(dist: Any) -> None:
  if _internal.missing_capabilities(dist, ("reflection",)):
    raise TypeError(
      "Antithetic sampling reflects draws through the centre of a symmetric "
      "distribution; dist_builder must return one with the reflection "
      "capability (Normal, LogScaleNormal, MultivariateNormalTriL), got "
      f"{type(dist).__name__}."
    )


def antithetic_pathwise_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
) -> base.Params | tuple[base.Params, jax.Array]:
  r"""Pathwise estimator with antithetic pairs of draws.

  Draws come in pairs reflected through the mean,
  :math:`x_i = \mu + \sigma\epsilon_i` and :math:`x_i' = 2\mu - x_i = \mu -
  \sigma\epsilon_i` (for a Cholesky factor, :math:`\mu \mp L\epsilon_i`); both
  have the law of :math:`p`, so each half is an unbiased pathwise estimate.
  Writing :math:`x'` as :math:`2\mu(\theta) - x(\epsilon;\theta)` keeps it a
  differentiable reparameterization, so the gradient flows through both.

  The pair mean has variance :math:`\tfrac12(\mathrm{Var}\,g +
  \mathrm{Cov}(g, g'))`, below the :math:`\tfrac12\mathrm{Var}\,g` of two
  independent draws exactly when :math:`g(\epsilon)` and :math:`g(-\epsilon)`
  are negatively correlated: the part of :math:`g` that is odd in
  :math:`\epsilon` cancels within a pair, the even part's variance per draw
  doubles. In one dimension the location
  gradient is :math:`f'(\mu + \sigma\epsilon)`, which gains when :math:`f'`
  is monotone (Owen, Section 8.2): :math:`f` convex or concave, like
  :math:`(x - k)^2`, whose pair mean :math:`2(\mu - k)` is even exact. The
  scale gradient :math:`f'(\mu + \sigma\epsilon)\,\epsilon` gains when
  :math:`f'` is nearly constant (for a linear :math:`f` it cancels within
  each pair) and loses when it is nearly odd about :math:`\mu`: for
  :math:`(x - \mu)^2` it is :math:`2\sigma\epsilon^2`, even, and its variance
  per draw doubles. So antithetic sampling pays for monotone, near-linear
  costs; check the coordinates you care about with the diagnostics.

  Args:
    function: one sample of the event shape -> scalar cost, differentiable.
    params: pytree of parameters.
    dist_builder: ``params -> Normal | LogScaleNormal |
      MultivariateNormalTriL``.
    key: a PRNG key, consumed.
    num_samples: static even Python int >= 2 (``num_samples // 2`` pairs).
    return_costs: also return the costs, in the same order as the rows.

  Returns:
    A pytree like `params`, each leaf ``[num_samples, *leaf.shape]``: rows
    ``i`` and ``i + num_samples // 2`` form an antithetic pair (``+eps`` then
    ``-eps``). Pair means (``leaf.reshape(2, -1, ...).mean(0)``) are i.i.d.;
    use them, not the rows, to estimate the variance of the estimate. With
    `return_costs`, a tuple ``(jacobians, costs[num_samples])``.

  Raises:
    ValueError: if `num_samples` is not an even int >= 2.
    TypeError: if the distribution is not a symmetric reparameterized one.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652 (Section 7).
    Owen. Monte Carlo theory, methods and examples, 2013, Section 8.2,
    https://artowen.su.domains/mc/.
  """
  name = "antithetic_pathwise_jacobians"
  _internal.check_int(num_samples, name, minimum=2, even=True)
  dist = _internal.build(dist_builder, params, name)
  _check_reflection(dist)
  _internal.check_scalar_cost(function, dist, key, name)
  keys = jax.random.split(key, num_samples // 2)
  del key

  def cost(params, pair_key, reflect):
    dist = dist_builder(params)
    x = dist.sample(pair_key)  # loc + scale * eps, differentiable in params
    # The reflected draw 2 loc - x = loc - scale * eps is still a
    # reparameterization, so gradients flow through loc and x alike.
    return jnp.asarray(function(dist.reflect(x) if reflect else x))

  def pair(pair_key):
    plus = jax.value_and_grad(cost)(params, pair_key, False)
    minus = jax.value_and_grad(cost)(params, pair_key, True)
    return plus, minus

  (cost_plus, jac_plus), (cost_minus, jac_minus) = jax.vmap(pair)(keys)
  jacobians = jax.tree.map(
    lambda a, b: jnp.concatenate([a, b], axis=0), jac_plus, jac_minus
  )
  costs = jnp.concatenate([cost_plus, cost_minus], axis=0)  # [num_samples]
  _internal.check_finite(costs, name)
  return (jacobians, costs) if return_costs else jacobians


def antithetic_score_function_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  baseline: jax.typing.ArrayLike = 0.0,
  return_costs: bool = False,
) -> base.Params | tuple[base.Params, jax.Array]:
  r"""Score function estimator with antithetic pairs of draws.

  Same pairs as :func:`antithetic_pathwise_jacobians`, with the score function
  estimator :math:`(f(x) - b)\nabla_\theta\log p(x;\theta)` at each draw. For a
  Gaussian the location score is odd in :math:`\epsilon` and the scale score
  even, so the pair mean of the location gradient is
  :math:`\tfrac12(f(x) - f(x'))\nabla_\mu\log p(x)`: a constant offset in
  :math:`f` cancels within the pair, as with a perfect baseline, and a cost
  that is odd about :math:`\mu` loses nothing. The scale gradient sees
  :math:`\tfrac12(f(x) + f(x'))`, so a baseline still matters there.

  Args:
    function: one sample of the event shape -> scalar cost.
    params: pytree of parameters.
    dist_builder: ``params -> Normal | LogScaleNormal |
      MultivariateNormalTriL``.
    key: a PRNG key, consumed.
    num_samples: static even Python int >= 2.
    baseline: a constant subtracted from the costs (independent of the draws).
    return_costs: also return the costs, in the same order as the rows.

  Returns:
    As :func:`antithetic_pathwise_jacobians`: rows ``i`` and
    ``i + num_samples // 2`` are a pair.

  Raises:
    ValueError: if `num_samples` is not an even int >= 2.
    TypeError: if the distribution is not a symmetric one.
  """
  name = "antithetic_score_function_jacobians"
  _internal.check_int(num_samples, name, minimum=2, even=True)
  dist = _internal.build(dist_builder, params, name, ("score",))
  _check_reflection(dist)
  _internal.check_scalar_cost(function, dist, key, name)
  half = jax.lax.stop_gradient(dist.sample(key, (num_samples // 2,)))
  del key
  reflected = jax.lax.stop_gradient(dist.reflect(half))
  samples = jnp.concatenate([half, reflected], axis=0)
  costs = jax.vmap(function)(samples)  # [num_samples]
  _internal.check_finite(costs, name)
  jacobians = estimators.score_jacobians(
    params, dist_builder, samples, weights=costs - jnp.asarray(baseline)
  )
  return (jacobians, costs) if return_costs else jacobians
