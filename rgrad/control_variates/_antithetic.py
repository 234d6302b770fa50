r"""Antithetic sampling: draws in pairs reflected through the mean.

For a symmetric distribution :math:`x' = 2\mu - x` has the law of :math:`x`,
so each half of a pair is an unbiased estimate, and the part of the estimate
that is odd in the noise cancels within the pair. Both the pathwise and the
score function estimator come in this form.
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base
from rgrad import estimators


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
    ValueError: if `num_samples` is not an even int >= 2, or (outside jit)
      non-finite costs; under jit both rows of a pair with a non-finite cost
      are NaN.
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
  function = _internal.check_scalar_cost(function, dist, key, name)
  keys = jax.random.split(key, num_samples // 2)
  del key

  def cost(params, pair_key, reflect):
    dist = _internal.builder(dist_builder)(params)
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
  # The pair is the independent unit: a non-finite cost makes both its rows
  # NaN (its gradient may be finite, e.g. for a cost written with jnp.where).
  jacobians = _internal.poison_non_finite(jacobians, costs, rows="pairs")
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
    baseline: a scalar, or one value per row ``[num_samples]``, subtracted
      from the costs; independent of the draws, finite.
    return_costs: also return the costs, in the same order as the rows.

  Returns:
    As :func:`antithetic_pathwise_jacobians`: rows ``i`` and
    ``i + num_samples // 2`` are a pair.

  Raises:
    ValueError: if `num_samples` is not an even int >= 2, a baseline of the
      wrong shape, or (outside jit) non-finite costs or baseline values;
      under jit both rows of a pair with a non-finite cost are NaN.
    TypeError: if the distribution is not a symmetric one.
  """
  name = "antithetic_score_function_jacobians"
  _internal.check_int(num_samples, name, minimum=2, even=True)
  dist = _internal.build(dist_builder, params, name, ("score",))
  _check_reflection(dist)
  function = _internal.check_scalar_cost(function, dist, key, name)
  baseline = _internal.check_row_weights(
    baseline, num_samples, name, "baseline"
  )
  _internal.check_finite(baseline, name, "baseline values")
  half = jax.lax.stop_gradient(dist.sample(key, (num_samples // 2,)))
  del key
  reflected = jax.lax.stop_gradient(dist.reflect(half))
  samples = jnp.concatenate([half, reflected], axis=0)
  costs = jax.vmap(function)(samples)  # [num_samples]
  _internal.check_finite(costs, name)
  weights = costs - baseline  # [num_samples]
  jacobians = estimators.score_jacobians(
    params, dist_builder, samples, weights=weights
  )
  jacobians = _internal.poison_non_finite(jacobians, weights, rows="pairs")
  return (jacobians, costs) if return_costs else jacobians
