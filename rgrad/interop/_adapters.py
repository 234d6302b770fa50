r"""Adapters from distrax, TFP-on-JAX and NumPyro distributions to rgrad's.

:func:`adapt` is called by every estimator on whatever ``dist_builder``
returns (through :func:`rgrad._internal.builder`, which imports this module
only when it sees an object of one of the three libraries). Two routes:

* **Conversion** of the families rgrad has, by exact class: ``Normal`` ->
  :class:`rgrad.distributions.Normal`, ``Bernoulli`` -> ``Bernoulli`` (its
  logits), ``Categorical`` -> ``Categorical`` (its logits), ``Gamma`` ->
  ``Gamma`` (concentration and rate), and ``Independent`` of one of these
  with one reinterpreted axis (rgrad's factorized families already treat the
  last axis as the event). The parameters are read off the foreign object
  with the library's own accessors, so when ``dist_builder`` is traced
  (``jax.vjp(dist_builder, params)``, as the score-function estimator pulls
  scores back) the gradient flows ``params -> foreign parameters (probs to
  logits included) -> rgrad distribution``. The result *is* rgrad's
  distribution with the same law: every capability (hand scores, pathwise
  draws, weak derivatives, reflection, uniform noise, relaxations), and
  draws from rgrad's samplers (a Bernoulli draw is a float 0.0/1.0).
* A **generic** :class:`ForeignDistribution` for any other family: a pytree
  of the foreign object's leaves whose ``sample`` calls the library's, whose
  ``log_prob`` is the library's summed over its batch axes (one draw of the
  adapter is the whole ``[*batch_shape, *event_shape]`` array, the
  convention of rgrad's estimators, so the density is the joint one) and
  whose ``score`` is :math:`\nabla_\theta \log p(x)` by ``jax.grad`` of that
  ``log_prob`` w.r.t. the leaves. It is ``reparameterized`` when the library
  says its draws are (TFP: ``FULLY_REPARAMETERIZED``; NumPyro:
  ``has_rsample``; distrax declares nothing, so pass ``reparameterized=True``
  to :func:`adapt` for a distrax family whose ``sample`` is differentiable).
  Capabilities it lacks (weak derivatives, uniform noise...) make the
  estimators that need them raise, naming the capability.
"""

import functools
from typing import Any
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad import distributions

LIBRARIES = _internal.FOREIGN_LIBRARIES


def library_of(dist: Any) -> str | None:
  """The library (a name in :data:`LIBRARIES`) `dist` comes from, or None."""
  return _internal.foreign_library(dist)


# ---------------------------------------------------------------------------
# Conversion of the families rgrad has.
# ---------------------------------------------------------------------------


def _tfp_rate(d):
  # TFP's Gamma may hold log_rate instead of rate.
  return d.rate if d.rate is not None else jnp.exp(d.log_rate)


@functools.cache
def _converters(library: str) -> dict[type, Any]:
  """Exact foreign class -> (foreign distribution -> rgrad distribution)."""
  if library == "distrax":
    import distrax

    return {
      distrax.Normal: lambda d: distributions.Normal(d.loc, d.scale),
      distrax.Bernoulli: lambda d: distributions.Bernoulli(d.logits),
      distrax.Categorical: lambda d: distributions.Categorical(d.logits),
      distrax.Gamma: lambda d: distributions.Gamma(d.concentration, d.rate),
      distrax.Independent: lambda d: _independent(
        d.distribution, d.reinterpreted_batch_ndims
      ),
    }
  if library == "tensorflow_probability":
    from tensorflow_probability.substrates import jax as tfp

    tfd = tfp.distributions
    return {
      tfd.Normal: lambda d: distributions.Normal(d.loc, d.scale),
      tfd.Bernoulli: lambda d: distributions.Bernoulli(d.logits_parameter()),
      tfd.Categorical: lambda d: distributions.Categorical(
        d.logits_parameter()
      ),
      tfd.Gamma: lambda d: distributions.Gamma(d.concentration, _tfp_rate(d)),
      tfd.Independent: lambda d: _independent(
        d.distribution, d.reinterpreted_batch_ndims
      ),
    }
  import numpyro.distributions as nd

  return {
    nd.Normal: lambda d: distributions.Normal(d.loc, d.scale),
    nd.BernoulliLogits: lambda d: distributions.Bernoulli(d.logits),
    nd.BernoulliProbs: lambda d: distributions.Bernoulli(d.logits),
    nd.CategoricalLogits: lambda d: distributions.Categorical(d.logits),
    nd.CategoricalProbs: lambda d: distributions.Categorical(d.logits),
    nd.Gamma: lambda d: distributions.Gamma(d.concentration, d.rate),
    nd.Independent: lambda d: _independent(
      d.base_dist, d.reinterpreted_batch_ndims
    ),
  }


_FACTORIZED = (
  distributions.Normal,
  distributions.Bernoulli,
  distributions.Gamma,
)


def _independent(base: Any, reinterpreted: int) -> Any:
  """rgrad's distribution for Independent(base, reinterpreted), or None.

  rgrad's factorized families sum ``log_prob`` over their last axis, which
  is exactly one reinterpreted batch axis of a foreign ``Independent``.
  """
  inner = _convert(base)
  if inner is None or not isinstance(inner, _FACTORIZED):
    return None
  if reinterpreted == 0 or (
    reinterpreted == 1 and jax.tree.leaves(inner)[0].ndim
  ):
    return inner
  return None


def _convert(dist: Any) -> Any:
  library = library_of(dist)
  if library is None:
    return None
  converter = _converters(library).get(type(dist))
  return None if converter is None else converter(dist)


# ---------------------------------------------------------------------------
# The generic adapter: sample and log_prob from the library, score by autodiff.
# ---------------------------------------------------------------------------


def _is_float(leaf: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def _zero_cotangent(leaf: Any) -> Any:
  # A non-float leaf (an integer count, a flag) has no tangent space: its
  # cotangent is float0, as jax.vjp expects.
  return np.zeros(np.shape(leaf), dtype=jax.dtypes.float0)


def _register(cls: type) -> None:
  jax.tree_util.register_pytree_node(
    cls,
    lambda d: (d.leaves, (d.treedef, d.library)),
    lambda aux, leaves: cls(leaves, *aux),
  )


class ForeignDistribution:
  r"""A distrax / TFP / NumPyro distribution seen through rgrad's methods.

  A pytree whose leaves are the foreign distribution's (its parameters) and
  whose static part is the foreign tree structure, so that it passes
  through ``jax.vjp(dist_builder, params)`` and doubles as a cotangent (a
  score) like rgrad's own distributions. One draw is the foreign draw
  ``[*batch_shape, *event_shape]``; ``log_prob`` is the foreign one summed
  over the batch axes; ``score(x)`` is ``jax.grad`` of it w.r.t. the
  floating-point leaves (integer leaves get a ``float0`` zero). Build it
  with :func:`adapt`.

  Attributes:
    leaves: the foreign distribution's pytree leaves.
    treedef: its pytree structure.
    library: which library it comes from.
  """

  reparameterized: ClassVar[bool] = False

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    _register(cls)

  def __init__(self, leaves, treedef, library: str):
    self.leaves = tuple(leaves)
    self.treedef = treedef
    self.library = library

  @property
  def distribution(self) -> Any:
    """The foreign distribution with this adapter's leaves."""
    return jax.tree.unflatten(self.treedef, self.leaves)

  def __repr__(self):
    foreign = type(self.distribution)
    return (
      f"{type(self).__name__}({foreign.__module__}.{foreign.__qualname__}, "
      f"batch_shape={list(self.batch_shape)}, "
      f"event_shape={list(self.event_shape)})"
    )

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(int(s) for s in self.distribution.batch_shape)

  @property
  def event_shape(self) -> tuple[int, ...]:
    return tuple(int(s) for s in self.distribution.event_shape)

  def _foreign(self, differentiable: bool) -> Any:
    leaves = (
      self.leaves if differentiable else jax.lax.stop_gradient(self.leaves)
    )
    return jax.tree.unflatten(self.treedef, leaves)

  def sample(self, key, sample_shape=()):
    """Draws ``[*sample_shape, *batch_shape, *event_shape]`` by the library.

    Gradients flow through the draws only if ``reparameterized``.
    """
    shape = (
      (int(sample_shape),)
      if isinstance(sample_shape, (int, np.integer))
      else tuple(int(s) for s in sample_shape)
    )
    dist = self._foreign(self.reparameterized)
    if self.library == "numpyro":
      return dist.sample(key, shape)
    if self.library == "distrax":
      return dist.sample(seed=key, sample_shape=shape)
    return dist.sample(shape, seed=key)

  def log_prob(self, x):
    """The joint log density of the draw(s) ``x`` (summed over the batch)."""
    values = self.distribution.log_prob(x)
    batch_ndims = len(self.batch_shape)
    return (
      jnp.sum(values, axis=tuple(range(-batch_ndims, 0)))
      if batch_ndims
      else values
    )

  def score(self, x) -> "ForeignDistribution":
    r""":math:`\nabla_\theta \log p(x)` for one draw, by ``jax.grad``."""
    x = jax.lax.stop_gradient(jnp.asarray(x))
    floats = [i for i, leaf in enumerate(self.leaves) if _is_float(leaf)]

    def log_prob(float_leaves):
      leaves = list(self.leaves)
      for i, leaf in zip(floats, float_leaves, strict=True):
        leaves[i] = leaf
      return type(self)(leaves, self.treedef, self.library).log_prob(x)

    grads = jax.grad(log_prob)([self.leaves[i] for i in floats])
    out = [_zero_cotangent(leaf) for leaf in self.leaves]
    for i, g in zip(floats, grads, strict=True):
      out[i] = g
    return type(self)(out, self.treedef, self.library)

  def sample_with_noise(self, key, sample_shape=()):
    """``(x, x)``: the draws are their own noise (no explicit form)."""
    x = self.sample(key, sample_shape)
    return x, x

  def batch_score(self, xs, weights=None) -> "ForeignDistribution":
    """Weighted scores at the draws ``xs`` ``[num_samples, ...]``."""
    xs = _internal.check_rows(self, xs, "xs")
    scores = jax.vmap(self.score)(xs)
    if weights is None:
      return scores
    weights = _internal.check_row_weights(
      weights, xs.shape[0], type(self).__name__
    )
    return jax.tree.map(
      lambda s: s * _internal.leading(weights, s) if _is_float(s) else s, scores
    )

  def score_from_noise(self, noise, weights=None) -> "ForeignDistribution":
    """The noise is the draw: :meth:`batch_score`."""
    return self.batch_score(_internal.check_rows(self, noise), weights)


class ReparameterizedForeignDistribution(ForeignDistribution):
  """A :class:`ForeignDistribution` whose draws are differentiable."""

  reparameterized: ClassVar[bool] = True


_register(ForeignDistribution)


@functools.cache
def _adapter_class(foreign: type, reparameterized: bool) -> type:
  """A subclass named after the foreign class, so that errors name it."""
  base = (
    ReparameterizedForeignDistribution
    if reparameterized
    else ForeignDistribution
  )
  library = foreign.__module__.partition(".")[0]
  name = f"{library}.{foreign.__qualname__} (generic adapter)"
  return type(name, (base,), {"__module__": __name__})


def _declared_reparameterized(dist: Any, library: str) -> bool:
  if library == "numpyro":
    return bool(getattr(dist, "has_rsample", False))
  if library == "tensorflow_probability":
    from tensorflow_probability.substrates import jax as tfp

    return (
      dist.reparameterization_type == tfp.distributions.FULLY_REPARAMETERIZED
    )
  return False  # distrax declares no reparameterization.


def adapt(
  dist: Any,
  *,
  reparameterized: bool | None = None,
  convert: bool = True,
) -> Any:
  """`dist` as an rgrad distribution (unchanged if it is not foreign).

  Args:
    dist: anything; a distrax, ``tfp.substrates.jax`` or
      ``numpyro.distributions`` distribution is adapted, anything else
      returned as it is.
    reparameterized: override what the library declares for the generic
      adapter (distrax declares nothing). A value that differs from the
      converted family's (rgrad's Normal and Gamma are reparameterized,
      Bernoulli and Categorical are not) selects the generic adapter.
    convert: convert the families rgrad has (the default); False always
      gives the generic :class:`ForeignDistribution` (sample, log_prob and
      autodiff scores from the library only).

  Returns:
    An rgrad distribution of the same law, a :class:`ForeignDistribution`,
    or `dist` itself.

  Raises:
    TypeError: a TensorFlow Probability distribution that is not of the JAX
      substrate (``tfp.substrates.jax``).
  """
  library = library_of(dist)
  if library is None or isinstance(dist, ForeignDistribution):
    return dist
  module = type(dist).__module__
  if library == "tensorflow_probability" and ".substrates.jax" not in module:
    raise TypeError(
      f"rgrad.interop: {module}.{type(dist).__qualname__} is a TensorFlow "
      "Probability distribution of another substrate; rgrad needs JAX "
      "arrays: use tensorflow_probability.substrates.jax.distributions."
    )
  if convert:
    converted = _convert(dist)
    if converted is not None and reparameterized in (
      None,
      type(converted).reparameterized,
    ):
      return converted
  if reparameterized is None:
    reparameterized = _declared_reparameterized(dist, library)
  cls = _adapter_class(type(dist), bool(reparameterized))
  leaves, treedef = jax.tree.flatten(dist)
  leaves = [
    jnp.asarray(leaf) if isinstance(leaf, float) else leaf for leaf in leaves
  ]
  return cls(leaves, treedef, library)
