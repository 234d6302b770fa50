r"""The three core Monte Carlo gradient estimators, over pytrees.

All estimate :math:`\nabla_\theta\, E_{p(x;\theta)}[f(x)]` where the
distribution is built from arbitrary parameters, ``dist = dist_builder(params)``
(a :mod:`rgrad.distributions` instance), and share one signature::

  jacobians = estimator(function, params, dist_builder, key, num_samples)

``function`` maps one draw ``x = dist.sample(key)`` (shape
``[*batch_shape, *event_shape]``, usually ``[d]``) to a scalar cost. The result
is a pytree like ``params`` whose leaves carry a leading ``num_samples`` axis
of independent per-sample gradient estimates: their mean is the estimate, their
spread its Monte Carlo error. Keeping the per-sample values (rather than only
the mean) is what lets the diagnostics and control variates built on top
measure variances and combine estimators.

* Pathwise (reparameterization), Mohamed et al. Section 5:
  :math:`\nabla_\theta E_{p(\epsilon)}[f(g(\epsilon; \theta))]
  = E_{p(\epsilon)}[\nabla_\theta f(g(\epsilon; \theta))]`.
* Score function (REINFORCE / likelihood ratio), Section 4:
  :math:`\nabla_\theta E_p[f(x)]
  = E_p[(f(x) - b)\nabla_\theta \log p(x;\theta)]`
  for any constant baseline :math:`b`.
* Measure-valued (weak derivatives), Section 6: for each parameter
  coordinate :math:`\partial_{\theta_i} p = c_i (p_i^+ - p_i^-)`, so
  :math:`\partial_{\theta_i} E_p[f] = c_i (E_{p_i^+}[f] - E_{p_i^-}[f])`.

Each estimator asks the distribution for a capability
(:data:`rgrad.base.CAPABILITIES`), not for a class: the score function for
``score``, pathwise for ``reparameterized``, measure-valued for
``weak_derivatives``; the registry (:data:`rgrad.ESTIMATORS`) lists what each
needs. Validation (outside ``jit``, where values are concrete):
``num_samples`` must be a static Python int >= 1; ``dist_builder(params)``
must succeed and return a distribution with those capabilities (the error
names the missing one); ``function`` (any callable: a NumPy or ``jax.numpy``
function, a ``functools.partial``, a callable object, a bound method) must
return a scalar; a non-finite cost raises a ValueError that counts them.
Under ``jit`` the value checks cannot run, and every row that depends on a
non-finite cost is NaN in every leaf instead (the gradient of a cost written
with ``jnp.where`` is finite where the cost is not): nothing is masked or
replaced, so a bad estimate cannot look finite.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.
  Williams. Simple statistical gradient-following algorithms for connectionist
  reinforcement learning. Machine Learning 1992 (score function).
  Pflug. Optimization of Stochastic Models. 1996 (weak derivatives).
"""

import math

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base

# ---------------------------------------------------------------------------
# Score function (REINFORCE).
# ---------------------------------------------------------------------------


def score_function_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  baseline: jax.typing.ArrayLike = 0.0,
  return_costs: bool = False,
):
  r"""Score-function (REINFORCE, likelihood-ratio) gradient estimator.

  .. math:: \nabla_\theta E_{p(x;\theta)}[f(x)]
            = E_{p(x;\theta)}[(f(x) - b)\, \nabla_\theta \log p(x;\theta)],

  unbiased for any baseline :math:`b` independent of :math:`x` because
  :math:`E_p[\nabla_\theta \log p] = 0`. Needs neither a differentiable
  ``function`` nor a reparameterizable distribution, so it also covers
  ``Bernoulli`` and ``Categorical``. The distribution's hand-derived
  ``score(x)`` (a gradient w.r.t. its own fields) is pulled back to ``params``
  with the VJP of ``dist_builder``: any parameterization of ``params`` works
  (``log_scale``, softplus, a network...) without differentiating ``log_prob``.

  Args:
    function: one draw ``x`` -> scalar cost; need not be differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> distribution.
    key: PRNG key, consumed.
    num_samples: static number of draws, a Python int >= 1.
    baseline: a scalar, or one value per sample ``[num_samples]``, subtracted
      from the costs; it must not depend on the draw it multiplies (a
      leave-one-out baseline lives in :mod:`rgrad.control_variates`).
    return_costs: also return the costs ``[num_samples]``.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``; with
    ``return_costs``, the pair ``(jacobians, costs)``.

  Raises:
    ValueError: bad ``num_samples``, ``params`` that do not fit
      ``dist_builder``, a non-scalar cost, a baseline of the wrong shape, or
      (outside jit) non-finite costs or baseline values; under jit the rows
      of non-finite costs are NaN.
    TypeError: ``num_samples`` not a Python int, or ``dist_builder`` not
      returning a distribution.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652, Section 4.
  """
  name = "score_function_jacobians"
  num_samples = _internal.check_int(num_samples, name)
  baseline = _internal.check_row_weights(
    baseline, num_samples, name, "baseline"
  )
  _internal.check_finite(baseline, name, "baseline values")
  noise, (costs,) = score_function_draws(
    (function,), params, dist_builder, key, num_samples, name=name
  )
  del key
  weights = costs - baseline  # [num_samples]
  jacobians = noise_score_jacobians(
    params, dist_builder, noise, weights=weights
  )
  # A non-finite cost (or baseline) times a score can come out finite (times
  # a zero score) or infinite; the row is made NaN either way.
  jacobians = _internal.poison_non_finite(jacobians, weights)
  return (jacobians, costs) if return_costs else jacobians


def score_function_draws(
  functions: tuple[base.CostFunction, ...],
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  name: str = "score_function_draws",
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """The score-function pipeline up to the weights: checks, draws, costs.

  Draws ``num_samples`` samples from ``key`` exactly as
  :func:`score_function_jacobians` does and evaluates each of ``functions``
  at them, for estimators that weight one set of scores by several costs
  (leave-one-out, control variates). The one implementation of that
  pipeline: every score-function estimator makes the same draws from the
  same key.

  Args:
    functions: costs, each one draw -> scalar.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``score``
      capability.
    key: PRNG key, consumed.
    num_samples: static number of draws, an int >= 1.
    name: the caller, for error messages.

  Returns:
    ``(noise [num_samples, ...], (costs [num_samples] per function))``:
    the noise of the draws (``Distribution.sample_with_noise``), for
    :func:`noise_score_jacobians`.

  Raises:
    ValueError: ``params`` that do not fit ``dist_builder``, a non-scalar
      cost, or (outside jit) non-finite costs.
    TypeError: a distribution without the ``score`` capability.
  """
  num_samples = _internal.check_int(num_samples, name)
  dist = _internal.build(dist_builder, params, name, ("score",))
  functions = tuple(
    _internal.check_scalar_cost(function, dist, key, name)
    for function in functions
  )
  # The draws are data here, never differentiated through.
  xs, noise = jax.lax.stop_gradient(dist.sample_with_noise(key, (num_samples,)))
  del key
  all_costs = []
  for function in functions:
    costs = jax.vmap(function)(xs)
    chex.assert_shape(costs, (num_samples,))
    _internal.check_finite(costs, name)
    all_costs.append(costs)
  return noise, tuple(all_costs)


def score_jacobians(
  params: base.Params,
  dist_builder: base.DistBuilder,
  xs: jax.Array,
  *,
  weights: jax.typing.ArrayLike | None = None,
):
  r"""Per-sample scores :math:`\nabla_\theta \log p(x_i)` on ``params``.

  The distribution's hand-derived ``score(x)`` (a gradient w.r.t. its own
  fields) is evaluated at every draw and pulled back to ``params`` with the
  VJP of ``dist_builder``. The VJP is linear in its cotangent, so vmapping it
  over the per-sample cotangents gives all the pull-backs in one batched pass,
  and ``weights`` (e.g. the costs minus a baseline) are applied before the
  pull-back at no extra cost:

  .. math:: J_i = w_i\, \Big(\frac{\partial\, \mathrm{dist}}{\partial \theta}
            \Big)^{\!\top} \nabla_{\mathrm{dist}} \log p(x_i).

  This is the one implementation behind :func:`score_function_jacobians` and
  the score-function estimators of :mod:`rgrad.control_variates`
  (leave-one-out baseline, control variates, antithetic draws), which make
  their own draws.

  Args:
    params: pytree of parameters.
    dist_builder: ``params`` -> distribution.
    xs: draws ``[num_samples, *batch_shape, *event_shape]``; data, not
      differentiated through (gradients are stopped).
    weights: optional per-sample weights ``[num_samples]`` (or a scalar)
      multiplying each score; ``None`` for the plain scores.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``.

  Raises:
    ValueError: ``xs`` whose trailing shape is not one draw of the
      distribution, or ``weights`` of the wrong shape.
  """
  return _pulled_back_scores(
    params, dist_builder, xs, weights, "xs", "score_jacobians"
  )


def noise_score_jacobians(
  params: base.Params,
  dist_builder: base.DistBuilder,
  noise: jax.Array,
  *,
  weights: jax.typing.ArrayLike | None = None,
):
  r"""Like :func:`score_jacobians`, at the draws made from ``noise``.

  ``noise`` is the second output of
  ``dist_builder(params).sample_with_noise(key, (num_samples,))``; the scores
  come from the distribution's ``score_from_noise``. For the Gaussians that
  is the score as a function of :math:`\epsilon` (:math:`z = \epsilon`
  exactly): the same values as :func:`score_jacobians` at the draws, up to
  rounding, without recomputing :math:`(x - \mu)/\sigma` (or a triangular
  solve). It also means the compiled program reads the noise where
  :func:`score_jacobians` would read the draws, so XLA need not keep the
  inverse CDF of the Gaussian sampler alive for a second consumer (which it
  may recompute; ``experiments/benchmark_estimators/`` measures the
  difference). For the other distributions the noise is the draw and the two
  functions agree exactly.

  Args:
    params: pytree of parameters.
    dist_builder: ``params`` -> distribution.
    noise: ``[num_samples, *batch_shape, *event_shape]``; data, not
      differentiated through (gradients are stopped).
    weights: optional per-sample weights ``[num_samples]`` (or a scalar).

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``.

  Raises:
    ValueError: ``noise`` whose trailing shape is not one draw of the
      distribution, or ``weights`` of the wrong shape.
  """
  return _pulled_back_scores(
    params, dist_builder, noise, weights, "noise", "noise_score_jacobians"
  )


def _pulled_back_scores(
  params: base.Params,
  dist_builder: base.DistBuilder,
  rows: jax.typing.ArrayLike,
  weights: jax.typing.ArrayLike | None,
  what: str,
  name: str,
):
  """Weighted scores at draws (`what` = "xs") or from their noise, on params."""
  dist, pullback = jax.vjp(_internal.builder(dist_builder), params)
  _internal.build(lambda _: dist, None, name, ("score",))
  rows = jax.lax.stop_gradient(_internal.check_rows(dist, rows, what, name))
  weights = _internal.check_row_weights(weights, rows.shape[0], name)
  score_rows = dist.batch_score if what == "xs" else dist.score_from_noise
  # Like dist, leaves [num_samples, *field].
  (jacobians,) = jax.vmap(pullback)(score_rows(rows, weights))
  return jacobians


# ---------------------------------------------------------------------------
# Pathwise (reparameterization).
# ---------------------------------------------------------------------------


def pathwise_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""Pathwise (reparameterization) gradient estimator.

  .. math:: \nabla_\theta E_{p(x;\theta)}[f(x)]
            = E_{p(\epsilon)}[\nabla_x f(g(\epsilon;\theta))\,
              \nabla_\theta g(\epsilon;\theta)],

  where ``dist.sample`` realizes :math:`x = g(\epsilon; \theta)`, explicitly
  (Gaussians) or implicitly (``Gamma``, via the implicit reparameterization
  gradient that ``jax.random.gamma`` defines). Requires a differentiable
  ``function``. Each sample gets its own key, and ``jax.value_and_grad`` is
  vmapped over the keys: the whole path ``params -> dist -> x -> f(x)`` is
  differentiated, so any parameterization of ``params`` works.

  Args:
    function: one draw ``x`` -> scalar cost, differentiable in ``x``.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with ``reparameterized=True``.
    key: PRNG key, consumed.
    num_samples: static number of draws, a Python int >= 1.
    return_costs: also return the costs ``[num_samples]``.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``; with
    ``return_costs``, the pair ``(jacobians, costs)``.

  Raises:
    ValueError: a distribution without a pathwise sampler (``Bernoulli``,
      ``Categorical``), bad ``num_samples``, ``params`` that do not fit
      ``dist_builder``, a non-scalar cost, or (outside jit) non-finite costs.
    TypeError: as for :func:`score_function_jacobians`.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652, Section 5.
    Figurnov et al. 2018, https://arxiv.org/abs/1805.08498 (implicit).
  """
  name = "pathwise_jacobians"
  ((costs, jacobians),) = pathwise_value_and_grads(
    (function,), params, dist_builder, key, num_samples, name=name
  )
  del key
  return (jacobians, costs) if return_costs else jacobians


def pathwise_value_and_grads(
  functions: tuple[base.CostFunction, ...],
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  name: str = "pathwise_value_and_grads",
) -> tuple[tuple[jax.Array, base.Params], ...]:
  r"""The pathwise pipeline for several costs at the same draws.

  Splits ``key`` into one key per sample exactly as
  :func:`pathwise_jacobians` does; for every sample the sampling path
  :math:`\theta \mapsto x(\epsilon; \theta)` is traced and transposed once
  and its VJP applied to the gradient of each of ``functions`` at that draw
  (any reparameterization works, Gamma's implicit one included). Rows whose
  cost is non-finite are NaN in that cost's jacobians.

  Args:
    functions: costs, each one draw -> scalar, differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the
      ``reparameterized`` capability.
    key: PRNG key, consumed.
    num_samples: static number of draws, an int >= 1.
    name: the caller, for error messages.

  Returns:
    One ``(costs [num_samples], jacobians)`` pair per function, jacobians a
    pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``.

  Raises:
    ValueError: a distribution without a pathwise sampler, bad
      ``num_samples``, ``params`` that do not fit ``dist_builder``, a
      non-scalar cost, or (outside jit) non-finite costs.
  """
  num_samples = _internal.check_int(num_samples, name)
  dist = _internal.build(dist_builder, params, name)
  if _internal.missing_capabilities(dist, ("reparameterized",)):
    raise ValueError(
      f"{name}: {type(dist).__name__} has no pathwise sampler "
      "(reparameterized=False), so its samples cannot be differentiated; use "
      "score_function_jacobians instead."
    )
  functions = tuple(
    _internal.check_scalar_cost(function, dist, key, name)
    for function in functions
  )
  keys = jax.random.split(key, num_samples)
  del key

  def one_sample(sample_key):
    x, pullback = jax.vjp(
      lambda p: _internal.builder(dist_builder)(p).sample(sample_key), params
    )
    out = []
    for function in functions:
      cost, dx = jax.value_and_grad(lambda x, f=function: jnp.asarray(f(x)))(x)
      (jacobian,) = pullback(dx)
      out.append((cost, jacobian))
    return tuple(out)

  results = jax.vmap(one_sample)(keys)
  checked = []
  for costs, jacobians in results:
    chex.assert_shape(costs, (num_samples,))
    _internal.check_finite(costs, name)
    checked.append((costs, _internal.poison_non_finite(jacobians, costs)))
  return tuple(checked)


# ---------------------------------------------------------------------------
# Measure-valued (weak derivatives).
# ---------------------------------------------------------------------------


def measure_valued_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  coupling: bool = True,
):
  r"""Measure-valued (weak-derivative) gradient estimator.

  A weak derivative writes :math:`\partial_{\theta_i} p(x; \theta)` as a
  scaled difference of two densities, :math:`c_i (p_i^+ - p_i^-)`; for a
  factorized distribution only coordinate :math:`i` of the draw changes, the
  others are drawn from :math:`p` itself (shared by both parts), so

  .. math:: \partial_{\theta_i} E_p[f] = c_i\,\big(E f(x^{(i,+)})
            - E f(x^{(i,-)})\big).

  The distribution supplies the parts through its ``weak_derivatives``
  capability (:meth:`rgrad.distributions.Normal.weak_derivatives` gives the
  Gaussian's, Mohamed et al. Table 1). With ``coupling=True`` the two parts
  share random numbers. Common random numbers help when the two parts' costs
  are positively correlated and can hurt otherwise: for :math:`f(x) = x^2`
  the coupled :math:`\partial_\sigma` variance is :math:`4\mu^2 + 4\sigma^2`
  against :math:`16\mu^2 + 8\sigma^2` uncoupled, but for the odd
  :math:`f(x) = x` the coupled :math:`\partial_\mu` variance,
  :math:`(4 - \pi)/\pi`, is twice the uncoupled one (both derived in the
  tests). The estimate is unbiased either way and needs no derivative of
  ``function``.

  For ``d`` coordinates and ``F`` fields it evaluates ``function``
  ``2 F d`` times per sample, as ``2 F`` batches of ``[num_samples, d, d]``
  inputs in turn, so memory is O(num_samples d^2): chunk it (chunks whose
  ``num_samples d^2`` floats fit in cache run fastest; the benchmark
  measures it). The gradients w.r.t. the distribution's own fields are
  pulled back to ``params`` with the VJP of ``dist_builder``.

  Args:
    function: one draw ``x`` -> scalar cost; need not be differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the
      ``weak_derivatives`` capability (:class:`Normal`,
      :class:`LogScaleNormal`).
    key: PRNG key, consumed.
    num_samples: static number of draws, a Python int >= 1.
    coupling: share random numbers between the positive and negative parts.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``.

  Raises:
    ValueError: a distribution without weak derivatives, bad
      ``num_samples``, ``params`` that do not fit ``dist_builder``, a
      non-scalar cost, or (outside jit) non-finite costs.
    TypeError: as for :func:`score_function_jacobians`.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652, Section 6, Table 1.
  """
  name = "measure_valued_jacobians"
  num_samples = _internal.check_int(num_samples, name)
  dist = _internal.build(dist_builder, params, name)
  if _internal.missing_capabilities(dist, ("weak_derivatives",)):
    raise ValueError(
      f"{name}: needs a distribution with weak derivatives (the "
      "weak_derivatives capability, e.g. the diagonal Gaussian Normal or "
      f"LogScaleNormal), got {type(dist).__name__}."
    )
  function = _internal.check_scalar_cost(function, dist, key, name)

  base_draws, parts = dist.weak_derivatives(key, num_samples, coupling=coupling)
  del key
  shape = base_draws.shape[1:]
  dim = math.prod(shape)
  base_draws = base_draws.reshape(num_samples, dim)  # [n, d]
  dtype = base_draws.dtype

  # Every cost input is the base draw with one coordinate replaced: for a part
  # and coordinate i, row i of that part's [n, d, d] batch is the base draw
  # with its i-th coordinate set to the part's variate. The parts are
  # evaluated in turn by lax.map over one [2 F, n, d] stack: the base draws
  # enter the loop materialized, once, where one [n, 2 F d, d] select let XLA
  # recompute the sampler of `base` inside every copy, and the working set is
  # one part's [n, d, d].
  sides = jnp.stack(
    [
      side.reshape(num_samples, dim)
      for part in parts
      for side in (part.positive, part.negative)
    ]
  )  # [2 F, n, d]
  replaced = jnp.eye(dim, dtype=bool)  # [d (row), d (coordinate)]

  def side_costs(values: jax.Array) -> jax.Array:  # [n, d] -> [n, d]
    xs = jnp.where(replaced, values[:, :, None], base_draws[:, None, :])
    xs = xs.reshape((num_samples, dim) + shape)  # [n, d, *shape]
    return jax.vmap(jax.vmap(function))(xs)

  all_costs = jax.lax.map(side_costs, sides)  # [2 F, n, d]
  _internal.check_finite(all_costs, name)
  # Cotangents must match the primal dtypes (a float32 cost may meet float64
  # parameters).
  leaves = [
    (part.constant.reshape(dim) * (all_costs[2 * i] - all_costs[2 * i + 1]))
    .reshape((num_samples,) + shape)
    .astype(dtype)
    for i, part in enumerate(parts)
  ]
  cotangents = jax.tree.unflatten(jax.tree.structure(dist), leaves)
  _, pullback = jax.vjp(_internal.builder(dist_builder), params)
  (jacobians,) = jax.vmap(pullback)(cotangents)
  # A row is NaN if any of its 2 F d costs is not finite (a NaN in one
  # coordinate's cost would otherwise reach only that entry, and an infinite
  # one could cancel to a finite value).
  return _internal.poison_non_finite(jacobians, jnp.moveaxis(all_costs, 1, 0))
