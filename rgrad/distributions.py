r"""Distributions with hand-derived scores, as pure pytrees.

The Monte Carlo gradient estimators ask a distribution :math:`p(x; \theta)`
for *capabilities* (:data:`rgrad.base.CAPABILITIES`), each a method or two, so
that adding a distribution is one class with the methods it can support:

* ``sample(key, sample_shape)``: draws; with ``reparameterized = True`` the
  draws are differentiable functions of the parameters (the *pathwise* or
  reparameterization trick, explicit or implicit);
* ``log_prob(x)``: :math:`\log p(x; \theta)`, summed over the event axis;
* ``score``: :math:`\nabla_\theta \log p(x; \theta)` derived by hand and
  returned as a pytree of the same class, one leaf per parameter, with
  ``sample_with_noise``/``score_from_noise`` (the draws together with the noise
  :math:`\epsilon` they are computed from, and the weighted scores as
  functions of :math:`\epsilon`: for the Gaussians the standardized draw is
  :math:`\epsilon` itself, so the score needs no :math:`(x - \mu)/\sigma`, no
  cancellation and no triangular solve) and ``batch_score`` (at given draws);
* ``weak_derivatives(key, num_samples, coupling)``: per field, the two parts of
  :math:`\partial_{\theta_i} p = c_i (p_i^+ - p_i^-)` as draws
  (:class:`WeakDerivative`; the diagonal Gaussians);
* ``mean_and_covariance()``: in closed form (the delta-method control variate;
  the Gaussians);
* ``reflect(x)``: a measure-preserving reflection :math:`x \mapsto 2\mu - x`
  (antithetic sampling; the Gaussians).

Each distribution is a registered pytree whose leaves are its parameters, so it
passes through ``jax.jit``, ``jax.vmap`` and ``jax.vjp`` like any other array
container, and a distribution-shaped pytree doubles as a cotangent: the score
function estimator pulls ``score(x)`` back to arbitrary ``params`` with the VJP
of ``dist_builder``.

Shapes follow the usual convention: ``sample`` returns
``[*sample_shape, *batch_shape, *event_shape]`` and ``log_prob`` returns
``[*sample_shape, *batch_shape]``. The factorized distributions (``Normal``,
``LogScaleNormal``, ``Bernoulli``, ``Gamma``) treat the last axis of their
parameters as the event axis (a scalar parameter has an empty event).

Parameters are validated at construction: shapes always (they are static under
``jit``), values (positive scales, ...) whenever they are concrete, i.e. outside
``jit``/``vmap``. Pytree operations (``jax.tree.map``, unflattening inside
transformations, cotangents) bypass validation on purpose: a score or a
cotangent is distribution-shaped but its "scale" leaf may be negative.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Sections 4-5, Table 1).
  Figurnov, Mohamed, Mnih. Implicit Reparameterization Gradients. NeurIPS 2018,
  https://arxiv.org/abs/1805.08498 (the Gamma pathwise gradient).
"""

import math
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.primitives import normal_log_prob
from rgrad.primitives import normal_log_prob_grads

_HALF_LOG_TWO_PI = 0.5 * np.log(2.0 * np.pi)

SampleShape = int | Sequence[int]


# ---------------------------------------------------------------------------
# Shared machinery: pytree registration and parameter checks.
# ---------------------------------------------------------------------------


def _as_float_array(value: Any, cls_name: str, field: str) -> jax.Array:
  """Converts a parameter to a floating array (ints become default floats)."""
  try:
    array = jnp.asarray(value)
  except TypeError as e:
    raise TypeError(
      f"{cls_name}: {field} must be array-like, got {type(value).__name__}."
    ) from e
  if not jnp.issubdtype(array.dtype, jnp.floating):
    if jnp.issubdtype(array.dtype, jnp.complexfloating):
      raise TypeError(f"{cls_name}: {field} must be real, got {array.dtype}.")
    array = array.astype(jnp.result_type(float))
  return array


def _check_positive(value: jax.Array, cls_name: str, field: str) -> None:
  """Raises if a concrete `value` has an entry that is not > 0 (NaN too)."""
  concrete = _internal.concrete(value)
  if concrete is None:
    return  # Traced: the check is the caller's (or happens outside jit).
  bad = ~(concrete > 0)  # Written this way so that NaN counts as bad.
  if bad.any():
    raise ValueError(
      f"{cls_name}: {field} must be positive, got {int(bad.sum())} "
      f"non-positive or NaN entr{'y' if bad.sum() == 1 else 'ies'} of "
      f"{concrete.size} (min {np.min(concrete)})."
    )


def _broadcast(cls_name: str, **fields: jax.Array) -> list[jax.Array]:
  """Broadcasts parameters against each other, with a clear error."""
  try:
    shape = jnp.broadcast_shapes(*(v.shape for v in fields.values()))
  except ValueError as e:
    shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in fields.items())
    raise ValueError(
      f"{cls_name}: parameter shapes do not broadcast: {shapes}."
    ) from e
  return [jnp.broadcast_to(v, shape) for v in fields.values()]


def _sample_shape(sample_shape: SampleShape) -> tuple[int, ...]:
  if isinstance(sample_shape, (int, np.integer)):
    return (int(sample_shape),)
  return tuple(int(s) for s in sample_shape)


class Distribution:
  """Base class: a frozen pytree whose leaves are the parameters.

  Subclasses list their parameters in `_fields` and set `reparameterized`.
  Construction (``__init__``) validates; pytree unflattening does not (see the
  module docstring), which is why `_unchecked` exists.
  """

  _fields: ClassVar[tuple[str, ...]] = ()
  reparameterized: ClassVar[bool] = False

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)

    def flatten_with_keys(dist):
      return (
        tuple(
          (jax.tree_util.GetAttrKey(f), getattr(dist, f)) for f in cls._fields
        ),
        None,
      )

    def flatten(dist):
      return tuple(getattr(dist, f) for f in cls._fields), None

    def unflatten(aux, children):
      del aux
      return cls._unchecked(**dict(zip(cls._fields, children, strict=True)))

    jax.tree_util.register_pytree_with_keys(
      cls, flatten_with_keys, unflatten, flatten
    )

  @classmethod
  def _unchecked(cls, **fields):
    """Builds an instance from `fields` without conversion or validation."""
    dist = object.__new__(cls)
    for name in cls._fields:
      object.__setattr__(dist, name, fields[name])
    return dist

  def __setattr__(self, name, value):
    raise AttributeError(
      f"{type(self).__name__} is immutable; use .replace({name}=...)."
    )

  def replace(self, **updates):
    """Returns a validated copy with some parameters replaced."""
    unknown = set(updates) - set(self._fields)
    if unknown:
      raise ValueError(
        f"{type(self).__name__}.replace: unknown fields {sorted(unknown)}; "
        f"fields are {list(self._fields)}."
      )
    fields = {f: getattr(self, f) for f in self._fields}
    fields.update(updates)
    return type(self)(**fields)

  def __repr__(self):
    parts = []
    for f in self._fields:
      v = getattr(self, f)
      shape = getattr(v, "shape", None)
      dtype = getattr(v, "dtype", None)
      parts.append(
        f"{f}={v!r}" if shape is None else f"{f}={dtype}{list(shape)}"
      )
    return f"{type(self).__name__}({', '.join(parts)})"

  @property
  def batch_shape(self) -> tuple[int, ...]:
    raise NotImplementedError

  @property
  def event_shape(self) -> tuple[int, ...]:
    raise NotImplementedError

  def sample(self, key: chex.PRNGKey, sample_shape: SampleShape = ()):
    raise NotImplementedError

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    raise NotImplementedError

  def score(self, x: jax.typing.ArrayLike) -> "Distribution":
    raise NotImplementedError

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    r"""Draws exactly as :meth:`sample` does, and the noise behind them.

    For a family sampled as :math:`x = g(\epsilon; \theta)` the noise is
    :math:`\epsilon`; :meth:`score_from_noise` turns it into scores. This
    default, for a family without such a form, returns the draws as their
    own noise.

    Returns:
      ``(x, noise)``: ``x`` identical to ``sample(key, sample_shape)``, and
      ``noise`` of the same shape.
    """
    x = self.sample(key, sample_shape)
    return x, x

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Distribution":
    r"""Weighted scores :math:`w_i \nabla_\theta \log p(x_i)` of many draws.

    ``x_i`` is the draw that :meth:`sample_with_noise` made from ``noise_i``.
    This default (noise = draw) is ``vmap(score)`` times the weights; the
    Gaussians override it with the score as a function of the noise.

    Args:
      noise: ``[num_samples, *batch_shape, *event_shape]``, the second output
        of ``sample_with_noise(key, (num_samples,))``.
      weights: ``[num_samples]`` or None (all ones).

    Returns:
      A pytree like this distribution, leaves ``[num_samples, *field]``.
    """
    return self.batch_score(self._check_rows(noise), weights)

  def batch_score(
    self,
    xs: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Distribution":
    r"""Weighted scores :math:`w_i \nabla_\theta \log p(x_i)` at given draws.

    Args:
      xs: draws ``[num_samples, *batch_shape, *event_shape]``.
      weights: ``[num_samples]`` or None (all ones).

    Returns:
      A pytree like this distribution, leaves ``[num_samples, *field]``.
    """
    xs = self._check_rows(xs, "xs")
    return self._weighted(jax.vmap(self.score)(xs), weights)

  def _check_rows(
    self,
    rows: jax.typing.ArrayLike,
    what: str = "noise",
    owner: str | None = None,
  ) -> jax.Array:
    """Checks that `rows` is [num_samples, *one draw]; errors name `owner`."""
    return _internal.check_rows(self, rows, what, owner)

  def _weighted(
    self, scores: "Distribution", weights: jax.typing.ArrayLike | None
  ) -> "Distribution":
    """Per-sample `scores` (leaves [n, ...]) times `weights` [n], if any."""
    if weights is None:
      return scores
    num_samples = jax.tree.leaves(scores)[0].shape[0]
    weights = self._check_weights(weights, num_samples)
    return jax.tree.map(lambda s: s * _internal.leading(weights, s), scores)

  def _check_weights(
    self, weights: jax.typing.ArrayLike, num_samples: int
  ) -> jax.Array:
    weights = jnp.asarray(weights)
    if weights.shape != (num_samples,):
      raise ValueError(
        f"{type(self).__name__}: weights must have shape ({num_samples},), "
        f"one per row of the noise, got {tuple(weights.shape)}."
      )
    return weights


def _sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
  """Sums the trailing `event_ndims` axes (the event axis, if any)."""
  return (
    jnp.sum(values, axis=tuple(range(-event_ndims, 0)))
    if event_ndims
    else values
  )


class WeakDerivative(NamedTuple):
  r"""One field's weak derivative, per coordinate, as draws of its two parts.

  For a factorized distribution, coordinate :math:`i` of a field
  :math:`\theta` satisfies :math:`\partial_{\theta_i} p =
  c_i (p_i^+ - p_i^-)`, where :math:`p_i^\pm` change coordinate :math:`i`
  of the draw only, so

  .. math:: \partial_{\theta_i} E_p[f] = c_i\,\big(E f(x^{(i, +)})
            - E f(x^{(i, -)})\big),

  with :math:`x^{(i, \pm)}` a draw of :math:`p` whose coordinate :math:`i`
  is replaced by a draw of the part :math:`\pm` (Mohamed et al. 2020,
  Section 6).

  Attributes:
    constant: :math:`c_i`, shape of a draw.
    positive: ``[num_samples, *shape]``, coordinate :math:`i` of row
      :math:`r` is the value that replaces :math:`x_i` in :math:`x^{(i,+)}`.
    negative: the same for the negative part.
  """

  constant: jax.Array
  positive: jax.Array
  negative: jax.Array


class _Factorized(Distribution):
  """Shared shape logic: independent coordinates, event = last axis."""

  @property
  def _shape(self) -> tuple[int, ...]:
    return tuple(getattr(self, self._fields[0]).shape)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self._shape[:-1]

  @property
  def event_shape(self) -> tuple[int, ...]:
    return self._shape[-1:]

  def _check_x(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    shape = self._shape
    if x.shape[x.ndim - len(shape) :] != shape or x.ndim < len(shape):
      raise ValueError(
        f"{type(self).__name__}: x must have shape [..., *{list(shape)}] "
        f"(batch and event shape), got {list(x.shape)}."
      )
    return x


# ---------------------------------------------------------------------------
# Gaussians.
# ---------------------------------------------------------------------------


class _StandardNormalNoise:
  """Mixin: Gaussians drawn as ``x = loc + A eps`` from N(0, I) noise."""

  loc: jax.Array

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    raise NotImplementedError

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    """Draws, shape ``[*sample_shape, *batch_shape, *event_shape]``."""
    return self.sample_with_noise(key, sample_shape)[0]

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    """``(loc + A eps, eps)``, ``eps`` standard normal like ``loc``."""
    shape = _sample_shape(sample_shape) + self.loc.shape
    eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
    return self._from_noise(eps), eps


class _DiagonalGaussian(_StandardNormalNoise, _Factorized):
  r"""Shared code of Normal and LogScaleNormal: ``loc + scale * eps``.

  Both have the weak derivatives of Mohamed et al. Table 1 for one
  coordinate (:math:`W \sim` Rayleigh, i.e. Weibull with scale
  :math:`\sqrt2` and shape 2; :math:`M \sim` double-sided Maxwell):

  .. math::
    \partial_\mu E[f] = \frac{1}{\sqrt{2\pi}\,\sigma}
      \big(E f(\mu + \sigma W) - E f(\mu - \sigma W')\big), \qquad
    \partial_\sigma E[f] = \frac{1}{\sigma}
      \big(E f(\mu + \sigma M) - E f(\mu + \sigma \epsilon)\big).
  """

  scale: jax.Array

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    return self.loc + self.scale * eps

  def _scale_constant(self) -> jax.Array:
    """The weak derivative's constant for the second field."""
    raise NotImplementedError

  def weak_derivatives(
    self, key: chex.PRNGKey, num_samples: int, *, coupling: bool = True
  ) -> tuple[jax.Array, tuple[WeakDerivative, ...]]:
    r"""Base draws and, per field, the two parts of its weak derivative.

    With ``coupling=True`` the two parts of each field share random numbers:
    :math:`W' = W`, and :math:`\epsilon = U M` with :math:`U \sim U(0, 1)`
    (a uniform multiple of a double-sided Maxwell draw is standard normal).

    Args:
      key: PRNG key, consumed.
      num_samples: static number of draws.
      coupling: share random numbers between the positive and negative parts.

    Returns:
      ``(base, parts)``: ``base`` ``[num_samples, *shape]`` draws of this
      distribution, and one :class:`WeakDerivative` per field, in the order of
      ``jax.tree.leaves(self)``.
    """
    shape = self.loc.shape
    dim = math.prod(shape)
    scale = self.scale
    dtype = self.loc.dtype
    k_base, k_mean_pos, k_mean_neg, k_scale_pos, k_scale_neg = jax.random.split(
      key, 5
    )
    del key
    noise_shape = (num_samples, dim)
    base = self.sample(k_base, (num_samples,))

    def rayleigh(k):
      # Rayleigh(1), density w e^{-w^2/2}, by inverting its CDF
      # 1 - e^{-w^2/2}: the law (and the uniform stream) of
      # jax.random.weibull_min(k, sqrt 2, 2), with a square root where
      # weibull_min takes a general power.
      u = jax.random.uniform(k, noise_shape, dtype)
      return jnp.sqrt(-2.0 * jnp.log1p(-u)).reshape((num_samples,) + shape)

    w_pos = rayleigh(k_mean_pos)
    w_neg = w_pos if coupling else rayleigh(k_mean_neg)
    m_pos = jax.random.double_sided_maxwell(
      k_scale_pos, 0.0, 1.0, noise_shape, dtype
    ).reshape((num_samples,) + shape)
    eps_neg = (
      jax.random.uniform(k_scale_neg, noise_shape, dtype).reshape(m_pos.shape)
      * m_pos
      if coupling
      else jax.random.normal(k_scale_neg, noise_shape, dtype).reshape(
        m_pos.shape
      )
    )
    loc_part = WeakDerivative(
      constant=1.0 / (math.sqrt(2.0 * math.pi) * scale),
      positive=self.loc + scale * w_pos,
      negative=self.loc - scale * w_neg,
    )
    scale_part = WeakDerivative(
      constant=self._scale_constant(),
      positive=self.loc + scale * m_pos,
      negative=self.loc + scale * eps_neg,
    )
    return base, (loc_part, scale_part)

  def mean_and_covariance(self) -> tuple[jax.Array, jax.Array]:
    """Mean (shape of a draw) and covariance ``[n, n]`` of the flat draw."""
    # `scale` is a field of Normal and exp(log_scale) for LogScaleNormal, so
    # gradients reach either parameterization.
    return self.loc, jnp.diag(jnp.square(self.scale).reshape(-1))

  def reflect(self, x: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`x' = 2\mu - x`, which has the law of :math:`x` (symmetry).

    Differentiable in the parameters: for :math:`x = \mu + \sigma\epsilon`
    it is :math:`\mu - \sigma\epsilon`, still a reparameterization.
    """
    return 2.0 * self.loc - x


class Normal(_DiagonalGaussian):
  r"""Diagonal Gaussian :math:`N(x; \mu, \mathrm{diag}(\sigma^2))`.

  Reparameterized as :math:`x = \mu + \sigma\epsilon`,
  :math:`\epsilon \sim N(0, I)`. The score reuses the hand-derived partials of
  :func:`rgrad.primitives.normal_log_prob_grads`:

  .. math:: \partial_\mu \log p = z/\sigma, \qquad
            \partial_\sigma \log p = (z^2 - 1)/\sigma, \qquad
            z = (x - \mu)/\sigma.

  Attributes:
    loc: means :math:`\mu`, shape ``[*batch_shape, d]`` (or scalar).
    scale: standard deviations :math:`\sigma > 0`, broadcast against `loc`.
  """

  _fields = ("loc", "scale")
  reparameterized = True
  loc: jax.Array
  scale: jax.Array

  def __init__(self, loc: jax.typing.ArrayLike, scale: jax.typing.ArrayLike):
    name = type(self).__name__
    loc = _as_float_array(loc, name, "loc")
    scale = _as_float_array(scale, name, "scale")
    loc, scale = _broadcast(name, loc=loc, scale=scale)
    _check_positive(scale, name, "scale")
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "scale", scale)

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Normal":
    r"""Weighted scores at :math:`x_i = \mu + \sigma\epsilon_i`.

    :math:`z_i = (x_i - \mu)/\sigma = \epsilon_i` exactly, so (see
    :func:`rgrad.primitives.normal_log_prob_grads`) with
    :math:`v_i = w_i/\sigma`:
    :math:`w_i \partial_\mu \log p = v_i \epsilon_i` and
    :math:`w_i \partial_\sigma \log p = v_i (\epsilon_i^2 - 1)`.
    """
    eps = self._check_rows(noise)
    v = 1.0 / self.scale
    if weights is not None:
      v = _internal.leading(self._check_weights(weights, eps.shape[0]), eps) * v
    return Normal._unchecked(loc=v * eps, scale=v * (eps * eps - 1.0))

  def _scale_constant(self) -> jax.Array:
    return 1.0 / self.scale

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "Normal":
    r""":math:`\nabla_{(\mu, \sigma)} \log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return Normal._unchecked(loc=grads.loc, scale=grads.scale)


class LogScaleNormal(_DiagonalGaussian):
  r"""Diagonal Gaussian parameterized by :math:`(\mu, \log\sigma)`.

  Same law as :class:`Normal` with ``scale = exp(log_scale)``; the score is
  :math:`\partial_{\log\sigma} \log p = z^2 - 1` (chain rule through
  :math:`\sigma = e^{\log\sigma}`), again from
  :func:`rgrad.primitives.normal_log_prob_grads`.

  Attributes:
    loc: means, shape ``[*batch_shape, d]`` (or scalar).
    log_scale: log standard deviations, broadcast against `loc`.
  """

  _fields = ("loc", "log_scale")
  reparameterized = True
  loc: jax.Array
  log_scale: jax.Array

  def __init__(
    self, loc: jax.typing.ArrayLike, log_scale: jax.typing.ArrayLike
  ):
    name = type(self).__name__
    loc = _as_float_array(loc, name, "loc")
    log_scale = _as_float_array(log_scale, name, "log_scale")
    loc, log_scale = _broadcast(name, loc=loc, log_scale=log_scale)
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "log_scale", log_scale)

  @property
  def scale(self) -> jax.Array:
    return jnp.exp(self.log_scale)

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "LogScaleNormal":
    r"""Weighted scores at :math:`x_i = \mu + e^{\log\sigma}\epsilon_i`.

    With :math:`z_i = \epsilon_i` exactly:
    :math:`w_i \partial_\mu \log p = (w_i/\sigma)\, \epsilon_i` and
    :math:`w_i \partial_{\log\sigma} \log p = w_i (\epsilon_i^2 - 1)`.
    """
    eps = self._check_rows(noise)
    d_log_scale = eps * eps - 1.0
    if weights is None:
      return LogScaleNormal._unchecked(
        loc=eps / self.scale, log_scale=d_log_scale
      )
    w = _internal.leading(self._check_weights(weights, eps.shape[0]), eps)
    return LogScaleNormal._unchecked(
      loc=(w / self.scale) * eps, log_scale=w * d_log_scale
    )

  def _scale_constant(self) -> jax.Array:
    # sigma = exp(log sigma): d/dlog sigma = sigma d/dsigma, and sigma times
    # the scale's constant 1/sigma is 1.
    return jnp.ones_like(self.log_scale)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "LogScaleNormal":
    r""":math:`\nabla_{(\mu, \log\sigma)} \log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return LogScaleNormal._unchecked(loc=grads.loc, log_scale=grads.log_scale)


class MultivariateNormalTriL(_StandardNormalNoise, Distribution):
  r"""Full-covariance Gaussian :math:`N(\mu, L L^\top)`, Cholesky-parameterized.

  Reparameterized as :math:`x = \mu + L\epsilon`. Only the lower triangle of
  `scale_tril` is read (the strict upper triangle is ignored by every method,
  so its pathwise gradient and its score are both zero). With
  :math:`z = L^{-1}(x - \mu)`,
  :math:`\log p = -\tfrac12 z^\top z - \sum_i \log L_{ii} - \tfrac d2\log 2\pi`,
  and, since :math:`dz = -L^{-1} dL\, z`,

  .. math:: \nabla_\mu \log p = L^{-\top} z, \qquad
            \nabla_L \log p = \mathrm{tril}\big(L^{-\top}(z z^\top - I)\big)
            = \mathrm{tril}\big((L^{-\top}z) z^\top\big)
              - \mathrm{diag}(1/L_{ii}),

  the last step because :math:`L^{-\top}` is upper triangular with diagonal
  :math:`1/L_{ii}`.

  Attributes:
    loc: means, ``[*batch_shape, d]``.
    scale_tril: lower-triangular factors with positive diagonal,
      ``[*batch_shape, d, d]`` (batch shapes broadcast).
  """

  _fields = ("loc", "scale_tril")
  reparameterized = True
  loc: jax.Array
  scale_tril: jax.Array

  def __init__(
    self, loc: jax.typing.ArrayLike, scale_tril: jax.typing.ArrayLike
  ):
    name = type(self).__name__
    loc = _as_float_array(loc, name, "loc")
    scale_tril = _as_float_array(scale_tril, name, "scale_tril")
    if loc.ndim < 1:
      raise ValueError(f"{name}: loc must be at least 1-D [..., d], got [].")
    d = loc.shape[-1]
    if scale_tril.ndim < 2 or scale_tril.shape[-2:] != (d, d):
      raise ValueError(
        f"{name}: scale_tril must have shape [..., {d}, {d}] to match loc "
        f"{list(loc.shape)}, got {list(scale_tril.shape)}."
      )
    try:
      batch = jnp.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
    except ValueError as e:
      raise ValueError(
        f"{name}: batch shapes of loc {list(loc.shape)} and scale_tril "
        f"{list(scale_tril.shape)} do not broadcast."
      ) from e
    loc = jnp.broadcast_to(loc, batch + (d,))
    scale_tril = jnp.broadcast_to(scale_tril, batch + (d, d))
    _check_positive(
      jnp.diagonal(scale_tril, axis1=-2, axis2=-1), name, "diag(scale_tril)"
    )
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "scale_tril", scale_tril)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.loc.shape[:-1])

  @property
  def event_shape(self) -> tuple[int, ...]:
    return tuple(self.loc.shape[-1:])

  def _tril(self) -> jax.Array:
    return jnp.tril(self.scale_tril)

  def _whiten(self, x: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Returns ``(L, z)``, ``z = L^{-1}(x - loc)``, L broadcast against x."""
    x = jnp.asarray(x)
    shape = tuple(self.loc.shape)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
      raise ValueError(
        f"{type(self).__name__}: x must have shape [..., *{list(shape)}] "
        f"(batch and event shape), got {list(x.shape)}."
      )
    tril = jnp.broadcast_to(self._tril(), x.shape + x.shape[-1:])
    z = jax.scipy.linalg.solve_triangular(
      tril, (x - self.loc)[..., None], lower=True
    )[..., 0]
    return tril, z

  def mean_and_covariance(self) -> tuple[jax.Array, jax.Array]:
    """Mean ``[d]`` and covariance :math:`L L^T` ``[d, d]`` (no batch)."""
    if self.loc.ndim != 1:
      raise ValueError(
        f"{type(self).__name__}.mean_and_covariance: supported without "
        f"batch dimensions (loc [d]); got loc of shape {list(self.loc.shape)}."
      )
    tril = self._tril()  # The class reads the lower triangle only.
    return self.loc, tril @ tril.T

  def reflect(self, x: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`x' = 2\mu - x` (for :math:`x = \mu + L\epsilon`,
    :math:`\mu - L\epsilon`), which has the law of :math:`x`."""
    return 2.0 * self.loc - x

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    """``loc + L eps``, shape ``[*sample_shape, *batch_shape, d]``."""
    return self.loc + jnp.einsum("...ij,...j->...i", self._tril(), eps)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    tril, z = self._whiten(x)
    log_det = jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)), -1)
    d = self.loc.shape[-1]
    return -0.5 * jnp.sum(jnp.square(z), -1) - log_det - d * _HALF_LOG_TWO_PI

  def score(self, x: jax.typing.ArrayLike) -> "MultivariateNormalTriL":
    r""":math:`\nabla_{(\mu, L)} \log p(x)` for one draw `x` (see class)."""
    return self._score_at(*self._whiten(x))

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "MultivariateNormalTriL":
    r"""Weighted scores at :math:`x_i = \mu + L\epsilon_i`.

    :math:`z_i = L^{-1}(x_i - \mu) = \epsilon_i` exactly, so the whitening
    solve of :meth:`score` is skipped; the rest is the same formula.
    """
    eps = self._check_rows(noise)
    tril = jnp.broadcast_to(self._tril(), eps.shape + eps.shape[-1:])
    return self._weighted(self._score_at(tril, eps), weights)

  def _score_at(
    self, tril: jax.Array, z: jax.Array
  ) -> "MultivariateNormalTriL":
    """The score from ``L`` (broadcast against z) and ``z = L^{-1}(x - mu)``."""
    # L^{-T} z, by a transposed triangular solve rather than an inverse.
    d_loc = jax.scipy.linalg.solve_triangular(
      tril, z[..., None], lower=True, trans="T"
    )[..., 0]
    inv_diag = 1.0 / jnp.diagonal(tril, axis1=-2, axis2=-1)
    d_tril = jnp.tril(d_loc[..., :, None] * z[..., None, :]) - (
      inv_diag[..., :, None] * jnp.eye(z.shape[-1], dtype=z.dtype)
    )
    return MultivariateNormalTriL._unchecked(loc=d_loc, scale_tril=d_tril)


# ---------------------------------------------------------------------------
# Discrete distributions (no pathwise sampler).
# ---------------------------------------------------------------------------


class Bernoulli(_Factorized):
  r"""Independent Bernoulli variables with logits :math:`\eta`.

  :math:`\log p(x) = x\eta - \mathrm{softplus}(\eta)` for :math:`x \in \{0,1\}`,
  so :math:`\partial_\eta \log p(x) = x - \sigma(\eta)`. Draws are floats (0.0
  or 1.0) so that costs can be written arithmetically; they are not
  differentiable in :math:`\eta` (``reparameterized = False``).

  Attributes:
    logits: ``[*batch_shape, d]`` (or scalar).
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    logits = _as_float_array(logits, type(self).__name__, "logits")
    object.__setattr__(self, "logits", logits)

  @property
  def probs(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    shape = _sample_shape(sample_shape) + self.logits.shape
    # A draw is a step function of the logits: no gradient flows through it.
    logits = jax.lax.stop_gradient(self.logits)
    draws = jax.random.bernoulli(key, jax.nn.sigmoid(logits), shape)
    return draws.astype(self.logits.dtype)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    # x * eta - softplus(eta): finite for any logits, unlike log(sigmoid).
    values = x * self.logits - jax.nn.softplus(self.logits)
    return _sum_event(values, len(self.event_shape))

  def score(self, x: jax.typing.ArrayLike) -> "Bernoulli":
    x = self._check_x(x)
    return Bernoulli._unchecked(logits=x - jax.nn.sigmoid(self.logits))


class Categorical(Distribution):
  r"""Categorical over :math:`\{0, \dots, k-1\}` with logits :math:`\eta`.

  :math:`\log p(x) = \eta_x - \mathrm{logsumexp}(\eta)`, so
  :math:`\nabla_\eta \log p(x) = e_x - \mathrm{softmax}(\eta)`. Draws are
  integer indices (event shape ``()``); ``reparameterized = False``.

  Attributes:
    logits: ``[*batch_shape, k]``.
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    name = type(self).__name__
    logits = _as_float_array(logits, name, "logits")
    if logits.ndim < 1 or logits.shape[-1] < 1:
      raise ValueError(
        f"{name}: logits must have shape [..., k] with k >= 1, got "
        f"{list(logits.shape)}."
      )
    object.__setattr__(self, "logits", logits)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.logits.shape[:-1])

  @property
  def event_shape(self) -> tuple[int, ...]:
    return ()

  @property
  def probs(self) -> jax.Array:
    return jax.nn.softmax(self.logits, axis=-1)

  def _check_x(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise TypeError(
        f"{type(self).__name__}: x must hold integer category indices, got "
        f"dtype {x.dtype}."
      )
    batch = self.batch_shape
    if x.ndim < len(batch) or x.shape[x.ndim - len(batch) :] != batch:
      raise ValueError(
        f"{type(self).__name__}: x must have shape [..., *{list(batch)}] "
        f"(batch shape), got {list(x.shape)}."
      )
    return x

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    shape = _sample_shape(sample_shape) + self.batch_shape
    logits = jax.lax.stop_gradient(self.logits)
    return jax.random.categorical(key, logits, axis=-1, shape=shape)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    log_probs = jax.nn.log_softmax(self.logits, axis=-1)
    log_probs = jnp.broadcast_to(log_probs, x.shape + log_probs.shape[-1:])
    return jnp.take_along_axis(log_probs, x[..., None], axis=-1)[..., 0]

  def score(self, x: jax.typing.ArrayLike) -> "Categorical":
    x = self._check_x(x)
    k = self.logits.shape[-1]
    one_hot = jax.nn.one_hot(x, k, dtype=self.logits.dtype)
    return Categorical._unchecked(logits=one_hot - self.probs)


# ---------------------------------------------------------------------------
# Gamma (implicit reparameterization).
# ---------------------------------------------------------------------------


class Gamma(_Factorized):
  r"""Independent Gamma variables, shape :math:`\alpha`, rate :math:`\beta`.

  .. math:: \log p(x) = (\alpha - 1)\log x - \beta x + \alpha\log\beta
            - \log\Gamma(\alpha),

  .. math:: \partial_\alpha \log p = \log x + \log\beta - \psi(\alpha),
            \qquad \partial_\beta \log p = \alpha/\beta - x,

  with :math:`\psi` the digamma function. Draws are :math:`x = y/\beta`,
  :math:`y \sim \mathrm{Gamma}(\alpha, 1)` from ``jax.random.gamma``, whose
  derivative w.r.t. :math:`\alpha` is the implicit reparameterization
  gradient :math:`dy/d\alpha = -\partial_\alpha F(y;\alpha) / p(y;\alpha)`
  (Figurnov et al. 2018), so the pathwise estimator applies.

  Attributes:
    concentration: :math:`\alpha > 0`, ``[*batch_shape, d]`` (or scalar).
    rate: :math:`\beta > 0`, broadcast against `concentration`.
  """

  _fields = ("concentration", "rate")
  reparameterized = True
  concentration: jax.Array
  rate: jax.Array

  def __init__(
    self,
    concentration: jax.typing.ArrayLike,
    rate: jax.typing.ArrayLike,
  ):
    name = type(self).__name__
    concentration = _as_float_array(concentration, name, "concentration")
    rate = _as_float_array(rate, name, "rate")
    concentration, rate = _broadcast(
      name, concentration=concentration, rate=rate
    )
    _check_positive(concentration, name, "concentration")
    _check_positive(rate, name, "rate")
    object.__setattr__(self, "concentration", concentration)
    object.__setattr__(self, "rate", rate)

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    shape = _sample_shape(sample_shape) + self.concentration.shape
    unit = jax.random.gamma(
      key, self.concentration, shape, dtype=self.concentration.dtype
    )
    return unit / self.rate

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    a, b = self.concentration, self.rate
    # xlogy keeps (alpha - 1) log x at 0 for alpha = 1, x = 0.
    values = (
      jax.scipy.special.xlogy(a - 1.0, x)
      - b * x
      + a * jnp.log(b)
      - jax.scipy.special.gammaln(a)
    )
    return _sum_event(values, len(self.event_shape))

  def score(self, x: jax.typing.ArrayLike) -> "Gamma":
    x = self._check_x(x)
    a, b = self.concentration, self.rate
    return Gamma._unchecked(
      concentration=jnp.log(x) + jnp.log(b) - jax.scipy.special.digamma(a),
      rate=a / b - x,
    )
