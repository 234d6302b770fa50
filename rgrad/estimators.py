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

Validation (outside ``jit``, where values are concrete): ``num_samples`` must be
a static Python int >= 1; ``dist_builder(params)`` must succeed and return a
distribution; ``function`` must return a scalar; a non-finite cost raises a
ValueError that counts them. Under ``jit`` the value checks cannot run, and
non-finite costs then propagate into non-finite jacobians: they are never
masked or replaced, so a bad estimate cannot look finite.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.
  Williams. Simple statistical gradient-following algorithms for connectionist
  reinforcement learning. Machine Learning 1992 (score function).
  Pflug. Optimization of Stochastic Models. 1996 (weak derivatives).
"""

import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad.distributions import Distribution
from rgrad.distributions import LogScaleNormal
from rgrad.distributions import Normal
from rgrad.distributions import _concrete
from rgrad.distributions import _leading

Function = Callable[[jax.Array], jax.Array]
DistBuilder = Callable[[Any], Distribution]


# ---------------------------------------------------------------------------
# Argument checks shared by all estimators.
# ---------------------------------------------------------------------------


def _check_num_samples(
  num_samples: Any,
  name: str | None = None,
  *,
  what: str = "num_samples",
  minimum: int = 1,
  even: bool = False,
) -> int:
  """Checks that `num_samples` is a static Python int >= `minimum`.

  The one check behind every estimator here, in control_variates and in
  variational; `name` (the calling function) prefixes the messages, `what`
  names the argument, `even` asks for antithetic pairs.
  """
  prefix = f"{name}: " if name else ""
  # `bool` is an `int` subclass; `True` samples is a bug, not one sample.
  if isinstance(num_samples, bool) or not isinstance(
    num_samples, (int, np.integer)
  ):
    raise TypeError(
      f"{prefix}{what} must be a static Python int (list it in "
      f"static_argnames under jax.jit), got {type(num_samples).__name__} "
      f"{num_samples!r}."
    )
  if num_samples < minimum:
    raise ValueError(f"{prefix}{what} must be >= {minimum}, got {num_samples}.")
  if even and num_samples % 2:
    raise ValueError(
      f"{prefix}{what} must be even (samples come in antithetic pairs), got "
      f"{num_samples}."
    )
  return int(num_samples)


def _build(dist_builder: DistBuilder, params: Any, name: str) -> Distribution:
  """Calls `dist_builder(params)`, turning a misfit into a clear ValueError."""
  try:
    dist = dist_builder(params)
  except (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
  ):
    raise  # A jit problem inside dist_builder, not a params misfit.
  except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
    raise ValueError(
      f"{name}: params do not fit dist_builder; dist_builder(params) raised "
      f"{type(e).__name__}: {e}"
    ) from e
  if not isinstance(dist, Distribution):
    raise TypeError(
      f"{name}: dist_builder must return an rgrad.distributions.Distribution, "
      f"got {type(dist).__name__}."
    )
  return dist


def _check_scalar_cost(
  function: Function, dist: Distribution, key: chex.PRNGKey, name: str
) -> None:
  """Checks, from shapes alone, that `function` maps one draw to a scalar."""
  _check_scalar_output(function, jax.eval_shape(dist.sample, key), name)


def _check_scalar_output(
  function: Function, x: jax.ShapeDtypeStruct, name: str
) -> None:
  """Checks, from shapes alone, that `function` maps `x` to a scalar."""
  out = jax.eval_shape(function, x)
  shape = getattr(out, "shape", None)
  if shape != ():
    got = f"shape {tuple(shape)}" if shape is not None else type(out).__name__
    raise ValueError(
      f"{name}: function must return a scalar cost for one sample of shape "
      f"{tuple(x.shape)}, got {got}."
    )


def _check_finite(costs: jax.Array, name: str) -> None:
  """Raises if concrete `costs` contain NaN/inf; under jit they propagate."""
  concrete = _concrete(costs)
  if concrete is None:
    return
  bad = int(np.sum(~np.isfinite(concrete)))
  if bad:
    raise ValueError(
      f"{name}: {bad} of {concrete.size} costs are non-finite (NaN or inf); "
      "the gradient estimate would be meaningless. Under jax.jit they "
      "propagate into non-finite jacobians instead."
    )


# ---------------------------------------------------------------------------
# Score function (REINFORCE).
# ---------------------------------------------------------------------------


def score_function_jacobians(
  function: Function,
  params: Any,
  dist_builder: DistBuilder,
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
      (outside jit) non-finite costs.
    TypeError: ``num_samples`` not a Python int, or ``dist_builder`` not
      returning a distribution.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652, Section 4.
  """
  name = "score_function_jacobians"
  num_samples = _check_num_samples(num_samples, name)
  dist = _build(dist_builder, params, name)
  _check_scalar_cost(function, dist, key, name)
  baseline = jnp.asarray(baseline)
  if baseline.shape not in ((), (num_samples,)):
    raise ValueError(
      f"{name}: baseline must be a scalar or have shape ({num_samples},), "
      f"got {tuple(baseline.shape)}."
    )

  # The draws are data here, never differentiated through.
  xs, noise = jax.lax.stop_gradient(dist.sample_with_noise(key, (num_samples,)))
  del key
  costs = jax.vmap(function)(xs)
  chex.assert_shape(costs, (num_samples,))
  _check_finite(costs, name)
  jacobians = noise_score_jacobians(
    params, dist_builder, noise, weights=costs - baseline
  )
  return (jacobians, costs) if return_costs else jacobians


def score_jacobians(
  params: Any,
  dist_builder: DistBuilder,
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
  params: Any,
  dist_builder: DistBuilder,
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
  inverse-CDF of the Gaussian sampler alive for a second consumer (on CPU it
  recomputed it: the score function took ~1.4x the time of drawing and
  evaluating the cost, against ~1.1x this way). For the other distributions
  the noise is the draw and the two functions agree exactly.

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
  params: Any,
  dist_builder: DistBuilder,
  rows: jax.typing.ArrayLike,
  weights: jax.typing.ArrayLike | None,
  what: str,
  name: str,
):
  """Weighted scores at draws (`what` = "xs") or from their noise, on params."""
  dist, pullback = jax.vjp(dist_builder, params)
  rows = jax.lax.stop_gradient(dist._check_rows(rows, what, name))
  weights = _check_row_weights(weights, rows.shape[0], name)
  score_rows = dist.batch_score if what == "xs" else dist.score_from_noise
  # Like dist, leaves [num_samples, *field].
  (jacobians,) = jax.vmap(pullback)(score_rows(rows, weights))
  return jacobians


def _check_row_weights(
  weights: jax.typing.ArrayLike | None, num_samples: int, name: str
) -> jax.Array | None:
  """None, or `weights` (a scalar or [num_samples]) broadcast to [n]."""
  if weights is None:
    return None
  weights = jnp.asarray(weights)
  if weights.shape not in ((), (num_samples,)):
    raise ValueError(
      f"{name}: weights must be a scalar or have shape ({num_samples},), "
      f"got {tuple(weights.shape)}."
    )
  return jnp.broadcast_to(weights, (num_samples,))


# ---------------------------------------------------------------------------
# Pathwise (reparameterization).
# ---------------------------------------------------------------------------


def pathwise_jacobians(
  function: Function,
  params: Any,
  dist_builder: DistBuilder,
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
  num_samples = _check_num_samples(num_samples, name)
  dist = _build(dist_builder, params, name)
  _check_reparameterized(dist, name)
  _check_scalar_cost(function, dist, key, name)

  def cost(p, k):
    return function(dist_builder(p).sample(k))

  keys = jax.random.split(key, num_samples)
  del key
  costs, jacobians = jax.vmap(jax.value_and_grad(cost), in_axes=(None, 0))(
    params, keys
  )
  chex.assert_shape(costs, (num_samples,))
  _check_finite(costs, name)
  # A gradient can be finite where the cost is not (e.g. a cost written with
  # jnp.where); such a sample has no meaningful gradient, so it is made NaN
  # rather than let a finite-looking mean hide it.
  jacobians = _poison_non_finite(jacobians, costs)
  return (jacobians, costs) if return_costs else jacobians


def _check_reparameterized(dist: Distribution, name: str) -> None:
  if not type(dist).reparameterized:
    raise ValueError(
      f"{name}: {type(dist).__name__} has no pathwise sampler "
      "(reparameterized=False), so its samples cannot be differentiated; use "
      "score_function_jacobians instead."
    )


def _poison_non_finite(jacobians: Any, costs: jax.Array) -> Any:
  """NaN rows of `jacobians` [n, ...] wherever `costs` [n] is not finite."""
  poison = jnp.where(jnp.isfinite(costs), 0.0, jnp.nan)  # [num_samples]
  return jax.tree.map(lambda j: j + _leading(poison, j), jacobians)


# ---------------------------------------------------------------------------
# Measure-valued (weak derivatives) for the Gaussian.
# ---------------------------------------------------------------------------


def measure_valued_jacobians(
  function: Function,
  params: Any,
  dist_builder: DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  coupling: bool = True,
):
  r"""Measure-valued gradient estimator for a diagonal Gaussian.

  A weak derivative writes :math:`\partial_{\theta_i} N(x; \mu, \sigma^2)` as a
  scaled difference of two densities, :math:`c_i (p_i^+ - p_i^-)`; for a
  factorized distribution only coordinate :math:`i` changes, the others are
  drawn from :math:`p` itself (shared by both sides). For one coordinate
  (Mohamed et al. Table 1, :math:`W \sim` Rayleigh, i.e. Weibull with scale
  :math:`\sqrt2` and shape 2; :math:`M \sim` double-sided Maxwell):

  .. math::
    \partial_\mu E[f] = \frac{1}{\sqrt{2\pi}\,\sigma}
      \big(E f(\mu + \sigma W) - E f(\mu - \sigma W')\big), \qquad
    \partial_\sigma E[f] = \frac{1}{\sigma}
      \big(E f(\mu + \sigma M) - E f(\mu + \sigma \epsilon)\big).

  With ``coupling=True`` the two sides share random numbers: :math:`W' = W`,
  and :math:`\epsilon = U M` with :math:`U \sim U(0, 1)` (a uniform multiple
  of a double-sided Maxwell draw is standard normal). Common random numbers
  help when the two sides' costs are positively correlated and can hurt
  otherwise: for :math:`f(x) = x^2` the coupled :math:`\partial_\sigma`
  variance is :math:`4\mu^2 + 4\sigma^2` against :math:`16\mu^2 + 8\sigma^2`
  uncoupled, but for the odd :math:`f(x) = x` the coupled
  :math:`\partial_\mu` variance, :math:`(4 - \pi)/\pi`, is twice the
  uncoupled one (both derived in the tests). The estimate is unbiased either
  way and needs no derivative of ``function``. For ``d`` Gaussian coordinates
  it evaluates ``function`` ``2 d`` times per sample for the locations (one
  pair per coordinate) and ``2 d`` times for the scales, as four batches of
  ``[num_samples, d, d]`` inputs in turn (memory O(num_samples d^2): chunk
  it; on CPU, chunks whose ``num_samples d^2`` floats fit in cache run
  about twice as fast per sample, e.g. 100 samples at d = 100).

  Gradients w.r.t. :math:`(\mu, \sigma)` are mapped to the distribution's own
  fields (:math:`\partial_{\log\sigma} = \sigma\,\partial_\sigma` for
  :class:`LogScaleNormal`) and pulled back to ``params`` with the VJP of
  ``dist_builder``.

  Args:
    function: one draw ``x`` -> scalar cost; need not be differentiable.
    params: pytree of parameters.
    dist_builder: ``params`` -> a :class:`Normal` or :class:`LogScaleNormal`.
    key: PRNG key, consumed.
    num_samples: static number of draws, a Python int >= 1.
    coupling: share random numbers between the positive and negative parts.

  Returns:
    A pytree like ``params`` with leaves ``[num_samples, *leaf.shape]``.

  Raises:
    ValueError: a non-Gaussian distribution, bad ``num_samples``, ``params``
      that do not fit ``dist_builder``, a non-scalar cost, or (outside jit)
      non-finite costs.
    TypeError: as for :func:`score_function_jacobians`.

  References:
    Mohamed et al. 2020, https://arxiv.org/abs/1906.10652, Section 6, Table 1.
  """
  name = "measure_valued_jacobians"
  num_samples = _check_num_samples(num_samples, name)
  dist = _build(dist_builder, params, name)
  if not isinstance(dist, (Normal, LogScaleNormal)):
    raise ValueError(
      f"{name}: implemented for the diagonal Gaussian (Normal, "
      f"LogScaleNormal) only, got {type(dist).__name__}."
    )
  _check_scalar_cost(function, dist, key, name)

  shape = dist.loc.shape
  dim = math.prod(shape)
  loc = dist.loc.reshape(dim)  # [d]
  scale = dist.scale.reshape(dim)  # [d]
  dtype = loc.dtype
  k_base, k_mean_pos, k_mean_neg, k_scale_pos, k_scale_neg = jax.random.split(
    key, 5
  )
  del key
  noise_shape = (num_samples, dim)

  # The coordinates that do not move: one draw of p per sample, shared by the
  # positive and negative part of every coordinate.
  base = dist.sample(k_base, (num_samples,)).reshape(noise_shape)  # [n, d]

  def rayleigh(k):
    # Rayleigh(1), density w e^{-w^2/2}, by inverting its CDF 1 - e^{-w^2/2}:
    # the law (and the uniform stream) of jax.random.weibull_min(k, sqrt 2, 2),
    # with a square root where weibull_min takes a general power.
    u = jax.random.uniform(k, noise_shape, dtype)
    return jnp.sqrt(-2.0 * jnp.log1p(-u))

  w_pos = rayleigh(k_mean_pos)
  w_neg = w_pos if coupling else rayleigh(k_mean_neg)
  m_pos = jax.random.double_sided_maxwell(
    k_scale_pos, 0.0, 1.0, noise_shape, dtype
  )
  eps_neg = (
    jax.random.uniform(k_scale_neg, noise_shape, dtype) * m_pos
    if coupling
    else jax.random.normal(k_scale_neg, noise_shape, dtype)
  )

  # Every cost input is `base` with one coordinate replaced: for a side and
  # coordinate i, row i of that side's [n, d, d] batch is the base draw with
  # its i-th coordinate set to the side's variate. The four sides are
  # evaluated in turn by lax.map over one [4, n, d] stack of variates: the
  # base draws enter the loop materialized, once, where one [n, 4 d, d]
  # select let XLA recompute the Gaussian inverse CDF of `base` inside every
  # one of the 4 d copies (on CPU ~2.4x slower at n = 100, d = 100), and the
  # working set is one side's [n, d, d], a quarter of it.
  sides = jnp.stack(
    [
      loc + scale * w_pos,  # mean, positive part
      loc - scale * w_neg,  # mean, negative part
      loc + scale * m_pos,  # scale, positive part
      loc + scale * eps_neg,  # scale, negative part
    ]
  )  # [4, n, d]
  replaced = jnp.eye(dim, dtype=bool)  # [d (row), d (coordinate)]

  def side_costs(values: jax.Array) -> jax.Array:  # [n, d] -> [n, d]
    xs = jnp.where(replaced, values[:, :, None], base[:, None, :])  # [n, d, d]
    xs = xs.reshape((num_samples, dim) + shape)
    return jax.vmap(jax.vmap(function))(xs)

  all_costs = jax.lax.map(side_costs, sides)  # [4, n, d]
  mean_pos, mean_neg, scale_pos, scale_neg = all_costs
  _check_finite(all_costs, name)

  d_loc = (mean_pos - mean_neg) / (math.sqrt(2.0 * math.pi) * scale)
  d_scale = (scale_pos - scale_neg) / scale  # both [n, d]
  # Cotangents must match the primal dtypes (a float32 cost may meet float64
  # parameters).
  d_loc = d_loc.reshape((num_samples,) + shape).astype(dtype)
  d_scale = d_scale.reshape((num_samples,) + shape).astype(dtype)
  if isinstance(dist, Normal):
    cotangents = Normal._unchecked(loc=d_loc, scale=d_scale)
  else:
    # sigma = exp(log sigma): d/dlog sigma = sigma d/dsigma.
    cotangents = LogScaleNormal._unchecked(
      loc=d_loc, log_scale=d_scale * dist.scale
    )
  _, pullback = jax.vjp(dist_builder, params)
  (jacobians,) = jax.vmap(pullback)(cotangents)
  return jacobians
