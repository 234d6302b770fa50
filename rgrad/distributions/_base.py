"""What every rgrad distribution shares: the base class and parameter checks.

:class:`Distribution` registers each subclass as a pytree of its parameters
and gives the capabilities their defaults (noise = draw for
``sample_with_noise``/``score_from_noise``, ``vmap(score)`` for
``batch_score``); :class:`Factorized` adds the shape logic of independent
coordinates with the event on the last axis; :class:`WeakDerivative` is what
``weak_derivatives`` returns. The checks below turn parameters into float
arrays and give every family the same error messages. The families live in
the sibling modules; :mod:`rgrad.distributions` is their public face.
"""

from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal

SampleShape = int | Sequence[int]


# ---------------------------------------------------------------------------
# Parameter checks, shared by the families' constructors.
# ---------------------------------------------------------------------------


def as_float_array(value: Any, cls_name: str, field: str) -> jax.Array:
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


def check_positive(value: jax.Array, cls_name: str, field: str) -> None:
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


def check_finite(
  value: jax.Array,
  cls_name: str,
  field: str,
  *,
  allow_negative_infinity: bool = False,
) -> None:
  """Raises if a concrete `value` has a NaN or infinite entry.

  With `allow_negative_infinity`, ``-inf`` is allowed (a logit of a
  category that is never drawn). Traced values are not checked: under
  ``jit`` a non-finite parameter propagates into non-finite draws and
  scores, never into finite ones.
  """
  concrete = _internal.concrete(value)
  if concrete is None:
    return
  bad = ~np.isfinite(concrete)
  if allow_negative_infinity:
    bad &= ~np.isneginf(concrete)
  if bad.any():
    count = int(bad.sum())
    allowed = " (or -inf)" if allow_negative_infinity else ""
    raise ValueError(
      f"{cls_name}: {field} must be finite{allowed}, got {count} NaN or "
      f"infinite entr{'y' if count == 1 else 'ies'} of {concrete.size}."
    )


def broadcast_parameters(cls_name: str, **fields: jax.Array) -> list[jax.Array]:
  """Broadcasts parameters against each other, with a clear error."""
  try:
    shape = jnp.broadcast_shapes(*(v.shape for v in fields.values()))
  except ValueError as e:
    shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in fields.items())
    raise ValueError(
      f"{cls_name}: parameter shapes do not broadcast: {shapes}."
    ) from e
  return [jnp.broadcast_to(v, shape) for v in fields.values()]


def as_sample_shape(sample_shape: SampleShape) -> tuple[int, ...]:
  """`sample_shape` (an int or a sequence of ints) as a tuple of ints."""
  if isinstance(sample_shape, (int, np.integer)):
    return (int(sample_shape),)
  return tuple(int(s) for s in sample_shape)


# ---------------------------------------------------------------------------
# The base class: pytree registration, immutability, capability defaults.
# ---------------------------------------------------------------------------


class Distribution:
  """Base class: a frozen pytree whose leaves are the parameters.

  Subclasses list their parameters in `_fields` and set `reparameterized`.
  Construction (``__init__``) validates; pytree unflattening does not (see
  :mod:`rgrad.distributions`), which is why `_unchecked` exists.
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


# ---------------------------------------------------------------------------
# Factorized families: the event axis and the weak derivatives' parts.
# ---------------------------------------------------------------------------


def sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
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


class Factorized(Distribution):
  """Shared shape logic: independent coordinates, event = last axis.

  The base of Normal, LogScaleNormal, Bernoulli and Gamma.
  """

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
