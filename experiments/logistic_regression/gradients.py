r"""The ELBO gradient, by each estimator; every one comes from rgrad by name.

Each estimator sees the cost :math:`f(w) = -\frac{N}{|B|}\sum_{i \in B}
\log p(y_i \mid x_i, w)` of one minibatch and returns per-sample jacobians of
:math:`\nabla_{\mu, s} E_q[f]`; the exact KL gradient is added to their mean
(:mod:`~experiments.logistic_regression.model`), which gives the gradient of
the negative ELBO that SGD descends. The estimators, by their names here:

* ``pathwise``, ``score_function``, ``measure_valued`` (coupled weak
  derivatives, :math:`4 d` cost evaluations per sample) and
  ``leave_one_out`` (score function with the leave-one-out baseline over the
  step's samples, Kool et al. 2019): the registry's entries of those names.
* ``score_function_cv``: the registry's ``delta_method`` entry (score
  function with the delta-method control variate, the second-order Taylor
  expansion of :math:`f` at :math:`\mu`, Paisley et al. 2012) with the
  per-coordinate coefficient :math:`c^* = \mathrm{Cov}(g, g_h) /
  \mathrm{Var}(g_h)` estimated from ``num_coefficient_samples`` (25)
  *extra*, independent draws at every step, as in the paper.
* ``measure_valued_cv``: the same control variate and coefficient estimate
  on the measure-valued estimator (:func:`rgrad.control_variate_jacobians`
  with ``estimator="measure_valued"``).
* ``score_function_cv_online`` (beyond the paper): the delta-method control
  variate whose coefficient is tracked online instead, at no extra cost:
  exponential moving averages (decay ``online_decay``) of the per-coordinate
  :math:`\mathrm{Cov}(g, g_h)` and :math:`\mathrm{Var}(g_h)` over the draws
  of *earlier* steps give :math:`c = \overline{\mathrm{Cov}} /
  \overline{\mathrm{Var}}` (1 before the first step), so the step's own
  draws never enter its coefficient and the estimate stays unbiased; the
  draws are folded in after use (:class:`rgrad.StatefulEstimator`'s rule).

With the control variate :math:`h`, :math:`g_i - c\,(g_{h,i} -
\nabla E_q[h])` is unbiased for every :math:`c` independent of the draws
(Mohamed et al. 2020, Section 7.4).

References:
  Mohamed et al., JMLR 2020, https://arxiv.org/abs/1906.10652 (Sections 4-8).
  Paisley, Blei and Jordan, ICML 2012, https://arxiv.org/abs/1206.6430.
  Kool, van Hoof and Welling, ICLR 2019 workshop,
  https://openreview.net/forum?id=r1lgTGL5DE.
"""

import functools
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

import rgrad
from experiments.logistic_regression import model

Params = model.Params

# The estimators, in the order of the figures; the first five are the
# paper's.
PAPER_ESTIMATORS = (
  "pathwise",
  "score_function",
  "score_function_cv",
  "measure_valued",
  "measure_valued_cv",
)
ESTIMATORS = PAPER_ESTIMATORS + ("leave_one_out", "score_function_cv_online")

# The registry entry each estimator is built on.
REGISTRY_NAMES = {
  "pathwise": "pathwise",
  "score_function": "score_function",
  "score_function_cv": "delta_method",
  "measure_valued": "measure_valued",
  "measure_valued_cv": "measure_valued",
  "leave_one_out": "leave_one_out",
  "score_function_cv_online": "delta_method",
}


class OnlineCoefficientState(NamedTuple):
  """Moving averages behind the online control-variate coefficient.

  Attributes:
    covariance: like params: EMA of the per-coordinate sample covariance of
      the score-function estimates of f and of h over each step's draws.
    variance: like params: EMA of the sample variance of those of h.
    count: int32 scalar, steps folded in.
  """

  covariance: Params
  variance: Params
  count: jax.Array


class Options(NamedTuple):
  """The static settings of the estimators (hashable)."""

  num_coefficient_samples: int = 25
  online_decay: float = 0.9


DEFAULT_OPTIONS = Options()


def init_state(name: str, params: Params) -> Any:
  """The estimator's state: `()` but for ``score_function_cv_online``."""
  if name != "score_function_cv_online":
    return ()
  zeros = jax.tree.map(jnp.zeros_like, params)
  return OnlineCoefficientState(zeros, zeros, jnp.zeros((), jnp.int32))


def online_coefficient(state: OnlineCoefficientState) -> Params:
  """c = Cov / Var of the moving averages; 1 before any step (or Var = 0)."""

  def ratio(cov, var):
    informative = (state.count > 0) & (var > 0)
    return jnp.where(informative, cov / jnp.where(informative, var, 1.0), 1.0)

  return jax.tree.map(ratio, state.covariance, state.variance)


def _online_jacobians(function, params, dist_builder, key, num_samples, state):
  score_function = rgrad.get_estimator("score_function").fn
  cv = rgrad.delta_method_control_variate(function, params, dist_builder)
  # One key for f and h: the same draws (common random numbers).
  g = score_function(function, params, dist_builder, key, num_samples)
  g_h = score_function(cv.value, params, dist_builder, key, num_samples)
  del key
  expected = jax.grad(cv.expected_value)(params)
  coefficient = online_coefficient(state)  # from earlier steps only
  jacobians = jax.tree.map(
    lambda a, b, e, c: a - c * (b - e), g, g_h, expected, coefficient
  )

  def centred(a):
    return a - jnp.mean(a, axis=0)

  covariance = jax.tree.map(
    lambda a, b: jnp.mean(centred(a) * centred(b), axis=0), g, g_h
  )
  variance = jax.tree.map(lambda b: jnp.mean(jnp.square(centred(b)), 0), g_h)
  return jacobians, (covariance, variance)


def jacobians(
  name: str,
  function: rgrad.base.CostFunction,
  params: Params,
  dist_builder: rgrad.base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  state: Any = (),
  options: Options = DEFAULT_OPTIONS,
) -> tuple[Params, Any]:
  """Per-sample jacobians of E_q[function] by the estimator `name`.

  Args:
    name: one of :data:`ESTIMATORS`.
    function: one draw ``w [d]`` -> scalar cost.
    params: ``{"loc", "log_scale"}``.
    dist_builder: params -> the posterior.
    key: consumed.
    num_samples: draws per estimate (static).
    state: the estimator's state (:func:`init_state`).
    options: see :class:`Options`.

  Returns:
    ``(jacobians, new_state)``: leaves ``[num_samples, d]``, whose mean is
    the estimate.
  """
  if name == "score_function_cv_online":
    jac, (covariance, variance) = _online_jacobians(
      function, params, dist_builder, key, num_samples, state
    )
    decay = options.online_decay
    ema = lambda old, new: decay * old + (1.0 - decay) * new  # noqa: E731
    return jac, OnlineCoefficientState(
      jax.tree.map(ema, state.covariance, covariance),
      jax.tree.map(ema, state.variance, variance),
      state.count + 1,
    )
  if name == "score_function_cv":  # the registry's delta_method entry
    estimator = functools.partial(
      rgrad.get_estimator("delta_method").fn,
      coefficient="estimate",
      num_coefficient_samples=options.num_coefficient_samples,
    )
  elif name == "measure_valued_cv":
    estimator = functools.partial(
      rgrad.control_variate_jacobians,
      estimator="measure_valued",
      control_variate="delta",
      coefficient="estimate",
      num_coefficient_samples=options.num_coefficient_samples,
    )
  else:
    estimator = rgrad.get_estimator(REGISTRY_NAMES[name]).fn
  return estimator(function, params, dist_builder, key, num_samples), state


def negative_elbo_gradient(
  name: str,
  params: Params,
  x: jax.Array,
  y: jax.Array,
  scale: float,
  key: chex.PRNGKey,
  num_samples: int,
  state: Any = (),
  options: Options = DEFAULT_OPTIONS,
) -> tuple[Params, Any]:
  """One estimate of the gradient of the negative ELBO, on a minibatch.

  The cost is ``model.negative_log_likelihood_cost`` of the batch; the
  estimate is the mean of :func:`jacobians` plus the exact KL gradient.

  Args:
    name, params, key, num_samples, state, options: as for :func:`jacobians`.
    x: ``[batch, d]`` features.
    y: ``[batch]`` labels in {0, 1}.
    scale: ``N / batch``, so that the batch estimates the whole sum.

  Returns:
    ``(gradient like params, new_state)``.
  """
  cost = model.negative_log_likelihood_cost(x, y, scale)
  jac, state = jacobians(
    name, cost, params, model.posterior, key, num_samples, state, options
  )
  kl = model.kl_gradient(params)
  return jax.tree.map(lambda j, k: jnp.mean(j, axis=0) + k, jac, kl), state


def row_structure(name: str) -> tuple[str, int | str]:
  """``(rows, group_size)`` of one call's rows, for rgrad.testing.

  The rows of an estimator whose coefficient or baseline comes from the
  call's own draws are dependent: the unit is the whole call.
  """
  if name in ("pathwise", "score_function", "measure_valued"):
    return "iid", 1
  return "groups", "batch"


def as_estimator(name: str, options: Options = DEFAULT_OPTIONS) -> Any:
  """`name` with rgrad's estimator signature (stateful for the online CV)."""
  if name == "score_function_cv_online":
    return rgrad.StatefulEstimator(
      init=lambda params: init_state(name, params),
      estimate=lambda f, p, builder, key, n, state: jacobians(
        name, f, p, builder, key, n, state, options
      ),
    )

  def estimator(function, params, dist_builder, key, num_samples):
    return jacobians(
      name, function, params, dist_builder, key, num_samples, (), options
    )[0]

  return estimator
