r"""The discrete distributions, Bernoulli and Categorical.

Their draws are step functions of the logits, so they have no pathwise
sampler (``reparameterized = False``): the score function estimators are the
ones that apply.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.distributions import _base


class Bernoulli(_base.Factorized):
  r"""Independent Bernoulli variables with logits :math:`\eta`.

  :math:`\log p(x) = x\eta - \mathrm{softplus}(\eta)` for :math:`x \in \{0,1\}`,
  so :math:`\partial_\eta \log p(x) = x - \sigma(\eta)`. Draws are floats (0.0
  or 1.0) so that costs can be written arithmetically; they are not
  differentiable in :math:`\eta` (``reparameterized = False``).

  Attributes:
    logits: ``[*batch_shape, d]`` (or scalar), finite.
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    logits = _base.as_float_array(logits, type(self).__name__, "logits")
    # An infinite logit makes log_prob inf - inf = NaN at its likely value.
    _base.check_finite(logits, type(self).__name__, "logits")
    object.__setattr__(self, "logits", logits)

  @property
  def probs(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    shape = _base.as_sample_shape(sample_shape) + self.logits.shape
    # A draw is a step function of the logits: no gradient flows through it.
    logits = jax.lax.stop_gradient(self.logits)
    draws = jax.random.bernoulli(key, jax.nn.sigmoid(logits), shape)
    return draws.astype(self.logits.dtype)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    # x * eta - softplus(eta): finite for any logits, unlike log(sigmoid).
    values = x * self.logits - jax.nn.softplus(self.logits)
    return _base.sum_event(values, len(self.event_shape))

  def score(self, x: jax.typing.ArrayLike) -> "Bernoulli":
    x = self._check_x(x)
    return Bernoulli._unchecked(logits=x - jax.nn.sigmoid(self.logits))


class Categorical(_base.Distribution):
  r"""Categorical over :math:`\{0, \dots, k-1\}` with logits :math:`\eta`.

  :math:`\log p(x) = \eta_x - \mathrm{logsumexp}(\eta)`, so
  :math:`\nabla_\eta \log p(x) = e_x - \mathrm{softmax}(\eta)`. Draws are
  integer indices (event shape ``()``); ``reparameterized = False``.

  Attributes:
    logits: ``[*batch_shape, k]``, finite or ``-inf`` (a category that is
      never drawn), at least one finite per distribution.
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    name = type(self).__name__
    logits = _base.as_float_array(logits, name, "logits")
    if logits.ndim < 1 or logits.shape[-1] < 1:
      raise ValueError(
        f"{name}: logits must have shape [..., k] with k >= 1, got "
        f"{list(logits.shape)}."
      )
    # -inf masks a category (it is never drawn); NaN and +inf make the
    # softmax NaN, as does a distribution whose every logit is -inf.
    _base.check_finite(logits, name, "logits", allow_negative_infinity=True)
    concrete = _internal.concrete(logits)
    if concrete is not None and not np.isfinite(concrete).any(-1).all():
      raise ValueError(
        f"{name}: logits must have at least one finite entry per "
        "distribution (all -inf leaves nothing to draw)."
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
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    shape = _base.as_sample_shape(sample_shape) + self.batch_shape
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
