r"""Gradient estimators for discrete variables: ARM, DisARM, concrete, ST.

A Bernoulli or categorical draw is a step function of its logits, so the
pathwise estimator does not apply and the score function
(:func:`rgrad.score_function_jacobians`) is unbiased but noisy. The
estimators here use the structure of the draw instead, with the shared
signature of :mod:`rgrad.estimators`::

  jacobians = estimator(function, params, dist_builder, key, num_samples)

* Antithetic, unbiased (Bernoulli, the ``uniform_noise`` capability): a
  draw is :math:`b = 1[u > \sigma(-\eta)]` of a uniform :math:`u`, and
  :math:`\tilde b = b(1 - u)` is its antithetic partner; the pair's two cost
  evaluations give ARM (:func:`arm_jacobians`, Yin & Zhou 2019) and its
  Rao-Blackwellization DisARM (:func:`disarm_jacobians`, Dong, Mnih & Tucker
  2020). Rows come in pairs (``rows="pairs"``): rows :math:`i` and
  :math:`i + n/2` both hold the pair's estimate, so their mean is it.
* Relaxed, biased (the ``relaxation`` capability, Bernoulli and
  ``OneHotCategorical``): the cost is differentiated through the concrete
  (Gumbel-softmax) relaxation of the draw, :func:`concrete_jacobians`
  (Maddison et al. 2017; Jang et al. 2017), or evaluated at the draw and
  differentiated through the relaxation, :func:`straight_through_jacobians`.
  Neither is unbiased for :math:`\nabla E[f(b)]`; the docstrings say what
  each estimates instead.

The gradients are taken w.r.t. the distribution's logits and pulled back to
``params`` with the VJP of ``dist_builder``, as the score function's are, so
any parameterization of the logits (a network, a softplus...) works.
Validation (outside ``jit``) is that of :mod:`rgrad.estimators`: a static
``num_samples`` (even and >= 2 for the pairs), a positive finite
``temperature``, a distribution with the capability (the error names it),
any callable cost returning a scalar, and non-finite costs raise a
ValueError counting them; under ``jit`` the rows they touch are NaN (both
rows of a pair).

The K-sample variational estimator for discrete latents, VIMCO, lives with
the other bound estimators in :func:`rgrad.variational.vimco_jacobians`.

References:
  Yin, Zhou. ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks. ICLR 2019, https://arxiv.org/abs/1807.11143.
  Dong, Mnih, Tucker. DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables. NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017,
  https://arxiv.org/abs/1611.00712.
  Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR
  2017, https://arxiv.org/abs/1611.01144.
  Bengio, Leonard, Courville. Estimating or Propagating Gradients Through
  Stochastic Neurons for Conditional Computation. 2013,
  https://arxiv.org/abs/1308.3432 (straight-through).
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base

# ---------------------------------------------------------------------------
# Antithetic pairs of uniforms: ARM and DisARM.
# ---------------------------------------------------------------------------


def _logits_leaf(dist: Any, name: str) -> jax.Array:
  """The distribution's one parameter leaf (its logits)."""
  leaves = jax.tree.leaves(dist)
  if len(leaves) != 1:
    raise TypeError(
      f"{name}: needs a distribution whose only parameter is its logits "
      f"(a pytree with one leaf, e.g. Bernoulli), got {type(dist).__name__} "
      f"with {len(leaves)} leaves."
    )
  return leaves[0]


def _pull_back(
  params: base.Params, dist_builder: base.DistBuilder, rows: jax.Array
) -> base.Params:
  """Per-row gradients w.r.t. the logits ``[m, *logits]`` on ``params``."""
  dist, pullback = jax.vjp(_internal.builder(dist_builder), params)
  logits = jax.tree.leaves(dist)[0]
  cotangents = jax.tree.unflatten(
    jax.tree.structure(dist), [rows.astype(logits.dtype)]
  )
  (jacobians,) = jax.vmap(pullback)(cotangents)
  return jacobians


def _antithetic_draws(function, params, dist_builder, key, num_samples, name):
  """Checks, ``n/2`` uniforms u, the draws of u and 1 - u, and their costs.

  Returns:
    ``(logits, u [n/2, ...], b [n/2, ...], b_tilde [n/2, ...],
    costs [n])``: costs of ``b`` in the first half, of ``b_tilde`` in the
    second.
  """
  num_samples = _internal.check_int(num_samples, name, minimum=2, even=True)
  dist = _internal.build(dist_builder, params, name, ("uniform_noise",))
  logits = jax.lax.stop_gradient(_logits_leaf(dist, name))
  function = _internal.check_scalar_cost(function, dist, key, name)
  half = num_samples // 2
  _, u = dist.sample_with_noise(key, (half,))
  del key
  u = jax.lax.stop_gradient(u)
  draws = jax.lax.stop_gradient(
    dist.sample_from_uniform(jnp.concatenate([u, 1.0 - u]))
  )
  costs = jax.vmap(function)(draws)
  chex.assert_shape(costs, (num_samples,))
  _internal.check_finite(costs, name)
  return logits, u, draws[:half], draws[half:], costs


def _pairs(params, dist_builder, estimates, costs, return_costs):
  """Both rows of each pair hold its estimate; NaN pairs of bad costs."""
  half = _pull_back(params, dist_builder, estimates)
  jacobians = jax.tree.map(lambda j: jnp.concatenate([j, j]), half)
  jacobians = _internal.poison_non_finite(jacobians, costs, rows="pairs")
  return (jacobians, costs) if return_costs else jacobians


def _cost_differences(costs: jax.Array, like: jax.Array) -> jax.Array:
  """``f(b) - f(b~)`` per pair, broadcast over the shape of a draw."""
  half = costs.shape[0] // 2
  return _internal.leading(costs[:half] - costs[half:], like)


def arm_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""ARM: the augment-REINFORCE-merge estimator for Bernoulli logits.

  With :math:`u \sim U(0,1)^d`, :math:`b = 1[u > \sigma(-\eta)]` and the
  antithetic :math:`\tilde b = 1[1 - u > \sigma(-\eta)]` (both
  :math:`\mathrm{Bernoulli}(\sigma(\eta))`), the pair's estimate is

  .. math:: g_i = \big(f(b) - f(\tilde b)\big)\,(u_i - \tfrac12), \qquad
            E[g] = \nabla_\eta E_{b \sim p_\eta}[f(b)]

  (Yin & Zhou 2019, Theorem 1: the score function in the logistic
  augmentation :math:`z = \eta + \mathrm{logit}(u)`, merged with its
  antithetic copy). In one dimension, :math:`b \ne \tilde b` exactly when
  :math:`u` falls outside :math:`(\min(p, 1-p), \max(p, 1-p))`, and
  integrating :math:`u - 1/2` there gives :math:`(f(1) - f(0))\,p(1 - p)`,
  the exact derivative. Two cost evaluations per pair, no derivative of
  ``function``.

  ``num_samples`` rows are ``num_samples / 2`` pairs; rows :math:`i` and
  :math:`i + n/2` both hold the pair's estimate :math:`g` (``rows="pairs"``:
  the pair is the independent unit, and the mean of all rows is the mean
  of the pairs). Row :math:`i` evaluated :math:`f(b)` and row
  :math:`i + n/2` :math:`f(\tilde b)`, one evaluation each.

  Args:
    function: one draw ``b`` (floats 0/1) -> scalar cost; need not be
      differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``uniform_noise``
      capability (:class:`rgrad.Bernoulli`).
    key: PRNG key, consumed.
    num_samples: static even Python int >= 2.
    return_costs: also return the costs ``[num_samples]`` (first half at
      ``b``, second half at ``b~``).

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``; with
    ``return_costs``, ``(jacobians, costs)``.

  Raises:
    ValueError: odd or too small ``num_samples``, ``params`` that do not fit
      ``dist_builder``, a non-scalar cost, or (outside jit) non-finite costs
      (under jit both rows of their pair are NaN).
    TypeError: a distribution without the ``uniform_noise`` capability.

  References:
    Yin, Zhou. ICLR 2019, https://arxiv.org/abs/1807.11143 (Theorem 1).
  """
  name = "arm_jacobians"
  _, u, _, _, costs = _antithetic_draws(
    function, params, dist_builder, key, num_samples, name
  )
  del key
  estimates = _cost_differences(costs, u) * (u - 0.5)  # [n/2, *shape]
  return _pairs(params, dist_builder, estimates, costs, return_costs)


def disarm_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""DisARM: ARM with the uniform integrated out given the pair.

  The same antithetic pair :math:`(b, \tilde b)` as :func:`arm_jacobians`;
  conditioning ARM's estimate on the pair (Rao-Blackwellizing over
  :math:`u` given :math:`(b, \tilde b)`) gives

  .. math:: g_i = \tfrac12 \big(f(b) - f(\tilde b)\big)\,
            (-1)^{\tilde b_i}\, 1[b_i \ne \tilde b_i]\,
            \sigma(|\eta_i|),

  (Dong, Mnih & Tucker 2020, Eq. 5), unbiased with variance never above
  ARM's (law of total variance). In one dimension :math:`b \ne \tilde b`
  with probability :math:`2\min(p, 1-p)`, and then
  :math:`g = \tfrac12 (f(1) - f(0)) \max(p, 1-p)`, so :math:`E g =
  (f(1) - f(0))\,p(1-p)`. Rows, cost evaluations, arguments and errors as
  for :func:`arm_jacobians`.

  Args:
    function: one draw ``b`` -> scalar cost.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``uniform_noise``
      capability (:class:`rgrad.Bernoulli`).
    key: PRNG key, consumed.
    num_samples: static even Python int >= 2.
    return_costs: also return the costs ``[num_samples]``.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``
    (rows ``i`` and ``i + n/2`` equal); with ``return_costs``,
    ``(jacobians, costs)``.

  Raises:
    ValueError, TypeError: as :func:`arm_jacobians`.

  References:
    Dong, Mnih, Tucker. NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  """
  name = "disarm_jacobians"
  logits, u, b, b_tilde, costs = _antithetic_draws(
    function, params, dist_builder, key, num_samples, name
  )
  del key
  sign = 1.0 - 2.0 * b_tilde  # (-1)^{b~}
  differ = (b != b_tilde).astype(u.dtype)
  weight = jax.nn.sigmoid(jnp.abs(logits)).astype(u.dtype)
  estimates = 0.5 * _cost_differences(costs, u) * sign * differ * weight
  return _pairs(params, dist_builder, estimates, costs, return_costs)


# ---------------------------------------------------------------------------
# Relaxations: concrete (Gumbel-softmax) and straight-through.
# ---------------------------------------------------------------------------


def _relaxed_value_and_grads(
  function, params, dist_builder, key, num_samples, temperature, name, hard
):
  """Costs and per-row gradients through the relaxation of each draw.

  The forward value is ``function`` at the relaxed sample, or with `hard` at
  the draw itself, its gradient through the relaxed sample (``hard +
  (relaxed - stop_gradient(relaxed))``: exactly the draw in value).
  """
  num_samples = _internal.check_int(num_samples, name)
  temperature = _internal.check_positive_scalar(temperature, name)
  dist = _internal.build(dist_builder, params, name, ("relaxation",))
  function = _internal.check_scalar_cost(function, dist, key, name)
  draws, noise = jax.lax.stop_gradient(
    dist.sample_with_noise(key, (num_samples,))
  )
  del key

  def one_row(draw, noise_row):
    def cost(p):
      relaxed = _internal.builder(dist_builder)(p).relaxed_sample(
        noise_row, temperature
      )
      if hard:
        relaxed = draw + (relaxed - jax.lax.stop_gradient(relaxed))
      return jnp.asarray(function(relaxed))

    return jax.value_and_grad(cost)(params)

  costs, jacobians = jax.vmap(one_row)(draws, noise)
  chex.assert_shape(costs, (num_samples,))
  _internal.check_finite(costs, name)
  return costs, _internal.poison_non_finite(jacobians, costs)


def concrete_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  temperature: jax.typing.ArrayLike = 2.0 / 3.0,
  return_costs: bool = False,
):
  r"""Concrete (Gumbel-softmax) relaxation: pathwise through a relaxed draw.

  The draw is replaced by its continuous relaxation at temperature
  :math:`\tau`, made from the same noise: for a Bernoulli
  :math:`\sigma(z/\tau)` with :math:`z = \eta + \log u - \log(1 - u)` (the
  binary concrete), for a one-hot categorical :math:`\mathrm{softmax}((\eta
  + g)/\tau)` with Gumbel :math:`g`. Its pathwise gradient,

  .. math:: g = \nabla_\theta f\big(\mathrm{relaxed}(\epsilon; \theta,
            \tau)\big), \qquad E[g] = \nabla_\theta
            E_\epsilon\big[f(\mathrm{relaxed}(\epsilon; \theta, \tau))\big],

  is unbiased for the gradient of the **relaxed** objective, not of
  :math:`E[f(b)]`: it is **biased** for the discrete objective (registered
  ``unbiased=False``), and ``function`` is evaluated off the discrete
  support, so it must be defined and differentiable on the whole cube or
  simplex. The bias vanishes as :math:`\tau \to 0` while the variance grows
  like :math:`1/\tau`. One cost evaluation per row, i.i.d. rows.

  Temperature. :math:`\tau = 2/3` (the default, and the registry entry
  ``"concrete"``'s) is Maddison et al.'s suggestion for binary variables.
  For :math:`k > 2` categories their Proposition 1(d) (the Concrete density
  is log-convex for :math:`\tau \le 1/(k - 1)`, e.g. 1/2 at :math:`k = 3`)
  is the usual guide; the one registry entry keeps 2/3 for every ``k`` (a
  ``k``-dependent default cannot be one ``functools.partial``): pass
  ``temperature`` to choose. :func:`rgrad.exact.bernoulli_estimator_moments`
  and :func:`rgrad.exact.one_hot_categorical_estimator_moments` give the
  exact (biased) mean and variance at any :math:`\tau`.

  One-hot categorical (:class:`rgrad.OneHotCategorical`, logits
  ``[*batch, k]``, Gumbel noise :math:`g`): with :math:`y =
  \mathrm{softmax}((\eta + g)/\tau)` per unit, the row is :math:`J^\top
  \nabla f(y)`, :math:`J = \partial y/\partial\eta = (\mathrm{diag}(y) -
  y y^\top)/\tau` (:math:`y` is Jang et al. 2017's Eq. 1, Maddison et
  al.'s Concrete draw with :math:`\alpha = e^\eta`).

  Args:
    function: one relaxed draw (the shape of a draw, entries in (0, 1)) ->
      scalar cost, differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``relaxation``
      capability (:class:`rgrad.Bernoulli`, :class:`rgrad.OneHotCategorical`).
    key: PRNG key, consumed.
    num_samples: static Python int >= 1.
    temperature: :math:`\tau`, a positive finite scalar (may be traced, e.g.
      learned; then its positivity is the caller's).
    return_costs: also return the costs at the relaxed draws
      ``[num_samples]``.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``; with
    ``return_costs``, ``(jacobians, costs)``.

  Raises:
    ValueError: bad ``num_samples`` or ``temperature``, ``params`` that do
      not fit ``dist_builder``, a non-scalar cost, or (outside jit)
      non-finite costs (under jit their rows are NaN).
    TypeError: a distribution without the ``relaxation`` capability.

  References:
    Maddison, Mnih, Teh. ICLR 2017, https://arxiv.org/abs/1611.00712.
    Jang, Gu, Poole. ICLR 2017, https://arxiv.org/abs/1611.01144.
  """
  costs, jacobians = _relaxed_value_and_grads(
    function,
    params,
    dist_builder,
    key,
    num_samples,
    temperature,
    "concrete_jacobians",
    hard=False,
  )
  del key
  return (jacobians, costs) if return_costs else jacobians


def straight_through_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  temperature: jax.typing.ArrayLike = 1.0,
  return_costs: bool = False,
):
  r"""Straight-through (Gumbel) estimator: forward hard, backward relaxed.

  With the draw :math:`b` and its concrete relaxation :math:`r` at
  temperature :math:`\tau` from the same noise (see
  :func:`concrete_jacobians`), the cost is evaluated at

  .. math:: y = b + \big(r - \mathrm{stop\_gradient}(r)\big) \;(= b
            \text{ in value}), \qquad g = \nabla_x f(b)\,
            \frac{\partial r}{\partial \theta},

  so the forward pass sees the discrete draw and the backward pass the
  relaxation's Jacobian (straight-through Gumbel-softmax, Jang et al. 2017
  Section 2.2; for a Bernoulli its binary version). :math:`g` is the
  gradient of no objective in general: it is **biased** for
  :math:`\nabla E[f(b)]` (registered ``unbiased=False``); its mean is
  :math:`E[\nabla_x f(b)\, \partial r / \partial \theta]`, which the exact
  references of :mod:`rgrad.exact` give. For a cost linear in the draw
  that mean is the concrete estimator's (the gradient of the relaxed
  objective, itself biased); in general it is no objective's gradient.
  ``function`` must be differentiable at the draws. One cost evaluation per
  row, i.i.d. rows.

  One-hot categorical: the draw is :math:`x = \mathrm{one\_hot}(\arg\max_j
  (\eta_j + g_j))`, which is also :math:`\mathrm{one\_hot}(\arg\max_j
  y_j)` for the Gumbel-softmax sample :math:`y` of the same noise (Jang et
  al.'s "discretize :math:`y` using arg max"), and the row is :math:`J^\top
  \nabla f(x)` with the :math:`J` of :func:`concrete_jacobians`. The
  registry entry uses :math:`\tau = 1`.

  Args:
    function: one draw -> scalar cost, differentiable at the draws.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``relaxation``
      capability (:class:`rgrad.Bernoulli`, :class:`rgrad.OneHotCategorical`).
    key: PRNG key, consumed.
    num_samples: static Python int >= 1.
    temperature: :math:`\tau` of the backward pass, a positive finite scalar.
    return_costs: also return the costs at the draws ``[num_samples]``.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``; with
    ``return_costs``, ``(jacobians, costs)``.

  Raises:
    ValueError, TypeError: as :func:`concrete_jacobians`.

  References:
    Jang, Gu, Poole. ICLR 2017, https://arxiv.org/abs/1611.01144 (Sec. 2.2).
    Bengio, Leonard, Courville 2013, https://arxiv.org/abs/1308.3432.
  """
  costs, jacobians = _relaxed_value_and_grads(
    function,
    params,
    dist_builder,
    key,
    num_samples,
    temperature,
    "straight_through_jacobians",
    hard=True,
  )
  del key
  return (jacobians, costs) if return_costs else jacobians
