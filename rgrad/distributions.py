r"""Distributions with hand-derived scores, as pure pytrees.

The Monte Carlo gradient estimators in :mod:`rgrad.estimators` need three
things of a distribution :math:`p(x; \theta)`:

* ``sample(key, sample_shape)``: draws; when ``reparameterized`` is True the
  draws are differentiable functions of the parameters (the *pathwise* or
  reparameterization trick, explicit or implicit),
* ``log_prob(x)``: :math:`\log p(x; \theta)`, summed over the event axis,
* ``score(x)``: :math:`\nabla_\theta \log p(x; \theta)`, derived by hand and
  returned as a pytree of the same class, one leaf per parameter.

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

from collections.abc import Sequence
from typing import Any
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

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


def _concrete(value: jax.Array) -> np.ndarray | None:
  """Returns `value` as NumPy if it is concrete, None if it is a tracer."""
  try:
    return np.asarray(value)
  except (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
  ):
    return None


def _check_positive(value: jax.Array, cls_name: str, field: str) -> None:
  """Raises if a concrete `value` has an entry that is not > 0 (NaN too)."""
  concrete = _concrete(value)
  if concrete is None:
    return  # Traced: the check is the caller's (or happens outside jit).
  bad = ~(concrete > 0)  # Written this way so that NaN counts as bad.
  if bad.any():
    raise ValueError(
      f"{cls_name}: {field} must be positive, got {int(bad.sum())} "
      f"non-positive or NaN entr{'y' if bad.sum() == 1 else 'ies'} of "
      f"{concrete.size} (min {np.nanmin(concrete) if concrete.size else 0})."
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


def _sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
  """Sums the trailing `event_ndims` axes (the event axis, if any)."""
  return (
    jnp.sum(values, axis=tuple(range(-event_ndims, 0)))
    if event_ndims
    else values
  )


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


class Normal(_Factorized):
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

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    """Draws ``loc + scale * eps``, shape ``[*sample_shape, *loc.shape]``."""
    shape = _sample_shape(sample_shape) + self.loc.shape
    eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
    return self.loc + self.scale * eps

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "Normal":
    """:math:`\\nabla_{(\\mu, \\sigma)} \\log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return Normal._unchecked(loc=grads.loc, scale=grads.scale)


class LogScaleNormal(_Factorized):
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

  def sample(
    self, key: chex.PRNGKey, sample_shape: SampleShape = ()
  ) -> jax.Array:
    """Draws ``loc + exp(log_scale) * eps``."""
    shape = _sample_shape(sample_shape) + self.loc.shape
    eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
    return self.loc + self.scale * eps

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "LogScaleNormal":
    """:math:`\\nabla_{(\\mu, \\log\\sigma)} \\log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return LogScaleNormal._unchecked(loc=grads.loc, log_scale=grads.log_scale)
