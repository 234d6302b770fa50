r"""Gradient estimators with a control variate, and their coefficients.

:func:`control_variate_jacobians` applies any estimator to the cost :math:`f`
and to a control variate :math:`h` (:mod:`rgrad.control_variates` explains the
correction) at the same draws, and subtracts
:math:`c\,(g_h - \nabla_\theta \mathbb{E}_p[h])` with a fixed coefficient or
one estimated per coordinate from independent draws
(:func:`estimate_control_variate_coefficients`). Names resolve here: the
estimators through :mod:`rgrad.registry`, the control variates to the delta
method.
"""

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base
from rgrad import estimators
from rgrad.control_variates import _delta_method

# ---------------------------------------------------------------------------
# Names, coefficients and paired draws.
# ---------------------------------------------------------------------------

_CONTROL_VARIATES: dict[str, _delta_method.ControlVariateBuilder] = {
  "delta": functools.partial(
    _delta_method.delta_method_control_variate, order=2
  ),
  "first_order_delta": functools.partial(
    _delta_method.delta_method_control_variate, order=1
  ),
}


def _estimator_fn(estimator: Any) -> base.Estimator:
  """A callable as is, or the registered estimator of that name."""
  if callable(estimator) and not isinstance(estimator, str):
    return estimator
  # Imported here: the registry lists this package's estimators.
  from rgrad import registry

  names = registry.estimators_for(objective="expectation", stateful=False)
  if not isinstance(estimator, str) or estimator not in names:
    raise ValueError(
      f"Unknown estimator {estimator!r}; valid names are {sorted(names)} (the "
      "stateless expectation estimators of rgrad.ESTIMATORS), or pass a "
      "callable."
    )
  return registry.get_estimator(estimator).fn


def _control_variate_builder(
  control_variate: Any,
) -> _delta_method.ControlVariateBuilder:
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
  control_variate: str | _delta_method.ControlVariateBuilder = "delta",
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
  cv: _delta_method.ControlVariate,
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
    # Rows of non-finite costs are NaN, as score_function_jacobians has them.
    f_jacobians = _internal.poison_non_finite(
      jax.tree.map(lambda s: s * _internal.leading(costs, s), scores), costs
    )
    h_jacobians = _internal.poison_non_finite(
      jax.tree.map(lambda s: s * _internal.leading(h_costs, s), scores),
      h_costs,
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


# ---------------------------------------------------------------------------
# The estimators.
# ---------------------------------------------------------------------------


def control_variate_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  estimator: str | base.Estimator = "score_function",
  control_variate: str | _delta_method.ControlVariateBuilder = "delta",
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
      `coefficient` (outside jit, a non-finite one too) or sample count, or
      (outside jit) non-finite costs; under jit rows of non-finite costs
      are NaN.
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
    for leaf in jax.tree.leaves(coefficient):
      _internal.check_finite(
        leaf, "control_variate_jacobians", "coefficient values"
      )

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
