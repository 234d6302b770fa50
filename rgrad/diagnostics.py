r"""Streaming moments of Monte Carlo gradient estimators.

An estimator in :mod:`rgrad.estimators` returns ``num_samples`` independent
per-sample gradient estimates, a pytree like ``params`` with leaves
``[num_samples, *leaf.shape]``. To measure its bias and variance to high
precision one needs many samples (:math:`10^6` to :math:`10^8`), far more than
fit in memory at once for a large ``params``. :func:`gradient_moments` draws
them in chunks of ``chunk_size`` inside one compiled ``lax.scan`` and keeps
only the running count, mean and sum of squared deviations (``M2``) per
coordinate, merged chunk by chunk with the pairwise update of Chan, Golub and
LeVeque (1979): for two groups :math:`a, b` with :math:`\delta = \bar x_b -
\bar x_a` and :math:`n = n_a + n_b`,

.. math::
  \bar x = \bar x_a + \delta\,\frac{n_b}{n}, \qquad
  M_2 = M_{2,a} + M_{2,b} + \delta^2\,\frac{n_a n_b}{n}.

Each chunk's own mean and :math:`M_2` are computed in two passes over the
chunk, so no step subtracts two large nearly equal sums (the textbook
:math:`\sum x^2 - n\bar x^2` loses every digit when the variance is small
relative to the squared mean). Memory is :math:`O(\text{chunk\_size} \cdot d)`
whatever ``num_samples`` is.

Non-finite per-sample estimates are never averaged into a finite-looking
answer: every NaN or infinity is turned into NaN before the merge, so the
mean, variance and standard error of each affected coordinate are NaN, and
:attr:`GradientMoments.num_nonfinite` counts the samples that had any
non-finite entry.

References:
  Chan, Golub, LeVeque. Updating formulae and a pairwise algorithm for
  computing sample variances. Stanford CS report STAN-CS-79-773, 1979.
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3: bias,
  variance and computational cost as the criteria for an estimator).
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

DEFAULT_CHUNK_SIZE = 1024

Estimator = Callable[..., Any]


class GradientMoments(NamedTuple):
  """Moments of a single-sample gradient estimator, per coordinate.

  Attributes:
    mean: pytree like ``params``: the Monte Carlo gradient estimate (the mean
      of all per-sample estimates).
    variance: pytree like ``params``: unbiased (``n - 1``) variance of the
      *single-sample* estimator, per coordinate; NaN when ``num_samples == 1``.
    stderr: pytree like ``params``: standard error of ``mean``,
      :math:`\\sqrt{\\text{variance} / n}`.
    num_samples: total number of per-sample estimates, a Python int.
    num_nonfinite: int array, the number of samples whose estimate had a NaN
      or infinite entry in any leaf. The affected coordinates' ``mean``,
      ``variance`` and ``stderr`` are NaN.
  """

  mean: Any
  variance: Any
  stderr: Any
  num_samples: int
  num_nonfinite: jax.Array


class _Running(NamedTuple):
  """Running count, mean and sum of squared deviations (one per leaf)."""

  count: jax.Array  # scalar, in the estimates' float dtype
  mean: list  # leaves [*leaf.shape]
  m2: list  # leaves [*leaf.shape]


def _chunk_stats(leaves: list) -> _Running:
  """Two-pass mean and M2 of each leaf ``[n, *shape]`` over its first axis."""
  n = leaves[0].shape[0]
  means = [jnp.mean(x, axis=0) for x in leaves]
  m2 = [
    jnp.sum(jnp.square(x - m), axis=0)
    for x, m in zip(leaves, means, strict=True)
  ]
  dtype = jnp.result_type(*[x.dtype for x in leaves])
  return _Running(count=jnp.asarray(n, dtype), mean=means, m2=m2)


def _merge(a: _Running, b: _Running) -> _Running:
  """Chan et al. (1979) pairwise merge of two groups' moments."""
  count = a.count + b.count
  frac_b = b.count / count
  # n_a n_b / n, written to keep the product of two counts from overflowing
  # float32 (n_a n_b can exceed 3e38 only for absurd n, but costs nothing).
  cross = a.count * frac_b
  mean, m2 = [], []
  for mean_a, mean_b, m2_a, m2_b in zip(
    a.mean, b.mean, a.m2, b.m2, strict=True
  ):
    delta = mean_b - mean_a
    mean.append(mean_a + delta * frac_b.astype(delta.dtype))
    m2.append(m2_a + m2_b + jnp.square(delta) * cross.astype(delta.dtype))
  return _Running(count=count, mean=mean, m2=m2)


def _check_int(value: Any, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise TypeError(
      f"{name} must be a static Python int, got {type(value).__name__} "
      f"{value!r}."
    )
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}.")
  return value


def _check_estimates(estimates: Any, params: Any, size: int) -> list:
  """Returns the leaves of `estimates` after checking them against `params`."""
  leaves, treedef = jax.tree.flatten(estimates)
  params_leaves, params_treedef = jax.tree.flatten(params)
  if treedef != params_treedef:
    raise ValueError(
      "the estimator must return a pytree like params; got structure "
      f"{treedef}, expected {params_treedef}."
    )
  for x, p in zip(leaves, params_leaves, strict=True):
    want = (size,) + tuple(jnp.shape(p))
    if tuple(x.shape) != want:
      raise ValueError(
        "each leaf of the estimator's output must have shape "
        f"[num_samples, *leaf.shape] = {want}, got {tuple(x.shape)}."
      )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      raise ValueError(
        f"per-sample estimates must be floating point, got dtype {x.dtype}."
      )
  return leaves


@functools.partial(
  jax.jit,
  static_argnames=(
    "estimator",
    "function",
    "dist_builder",
    "num_samples",
    "chunk_size",
  ),
)
def _gradient_moments(
  estimator, function, params, dist_builder, key, num_samples, chunk_size
):
  """Compiled core of :func:`gradient_moments` (sizes are static)."""
  num_full, remainder = divmod(num_samples, chunk_size)

  def chunk(index: jax.Array, size: int):
    """Moments of chunk `index` and its count of non-finite samples."""
    estimates = estimator(
      function, params, dist_builder, jax.random.fold_in(key, index), size
    )
    leaves = _check_estimates(estimates, params, size)
    finite = [jnp.isfinite(x) for x in leaves]
    # A sample is bad if any of its entries, in any leaf, is non-finite.
    sample_ok = functools.reduce(
      jnp.logical_and,
      [f.reshape(size, -1).all(axis=1) for f in finite],
    )  # [size]
    # inf would merge into inf or NaN depending on the order of operations;
    # NaN makes the outcome deterministic and unmistakable.
    leaves = [
      jnp.where(f, x, jnp.nan) for f, x in zip(finite, leaves, strict=True)
    ]
    num_bad = jnp.sum(~sample_ok, dtype=jnp.int32)
    return _chunk_stats(leaves), num_bad

  # Shapes and dtypes of one chunk's statistics, to build the initial carry
  # (an abstract trace, nothing is compiled or run).
  stats_shape, _ = jax.eval_shape(
    functools.partial(chunk, size=chunk_size), jnp.zeros((), jnp.int32)
  )
  zeros = lambda s: jnp.zeros(s.shape, s.dtype)
  init = (jax.tree.map(zeros, stats_shape), jnp.zeros((), jnp.int32))

  def body(carry, _):
    # The chunk index lives in the carry, not in a scanned-over `arange`,
    # which would be an O(num_samples / chunk_size) buffer.
    running, num_bad, index = carry
    stats, bad = chunk(index, chunk_size)
    return (_merge(running, stats), num_bad + bad, index + 1), None

  (running, num_bad, _), _ = jax.lax.scan(
    body, init + (jnp.zeros((), jnp.int32),), None, length=num_full
  )
  if remainder:
    # The last, partial chunk: traced once more at its own static size.
    stats, bad = chunk(jnp.asarray(num_full, jnp.int32), remainder)
    running, num_bad = _merge(running, stats), num_bad + bad

  treedef = jax.tree.structure(params)
  variance = [m2 / (num_samples - 1) for m2 in running.m2]
  if num_samples == 1:
    variance = [jnp.full_like(v, jnp.nan) for v in variance]
  stderr = [jnp.sqrt(v / num_samples) for v in variance]
  unflatten = functools.partial(jax.tree.unflatten, treedef)
  return (
    unflatten(running.mean),
    unflatten(variance),
    unflatten(stderr),
    num_bad,
  )


def gradient_moments(
  estimator: Estimator,
  function: Callable[[jax.Array], jax.Array],
  params: Any,
  dist_builder: Callable[[Any], Any],
  key: chex.PRNGKey,
  num_samples: int,
  *,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> GradientMoments:
  r"""Mean, variance and standard error of an estimator over many samples.

  Calls ``estimator(function, params, dist_builder, chunk_key, size)`` on
  chunks of ``chunk_size`` samples (the last chunk takes the remaining
  ``num_samples % chunk_size``, so every ``num_samples`` is handled exactly),
  with ``chunk_key = jax.random.fold_in(key, chunk_index)``, inside one
  ``lax.scan``, and merges the chunks' moments with the pairwise update of
  Chan et al. (1979) (see the module docstring). The estimator is traced at
  most three times (an abstract trace for the shapes, the full chunk and the
  partial last chunk) whatever ``num_samples``, and memory is
  :math:`O(\text{chunk\_size} \cdot d)`.

  The whole computation is compiled once per combination of ``estimator``,
  ``function``, ``dist_builder`` (static, compared by identity: build a
  ``functools.partial`` once and reuse it) and sizes; new ``params`` or
  ``key`` values reuse the compilation. Extra estimator options go through
  ``functools.partial(estimator, coupling=False)``.

  Note that the samples depend on ``chunk_size`` (each chunk draws from its
  own key), so two chunk sizes give statistically equivalent, not identical,
  results.

  Args:
    estimator: a function with the signature of
      :func:`rgrad.estimators.pathwise_jacobians`, returning a pytree like
      ``params`` with leaves ``[size, *leaf.shape]``.
    function: the cost, passed to `estimator`.
    params: pytree of parameters (may be traced).
    dist_builder: ``params`` -> distribution, passed to `estimator`.
    key: PRNG key (typed or raw), consumed.
    num_samples: total number of per-sample estimates, a Python int >= 1.
    chunk_size: samples per estimator call, a Python int >= 1; clipped to
      ``num_samples``.

  Returns:
    A :class:`GradientMoments`.

  Raises:
    TypeError: `estimator`, `function` or `dist_builder` not callable, or
      `num_samples` / `chunk_size` not Python ints.
    ValueError: `num_samples` or `chunk_size` < 1, or an estimator output that
      is not a pytree like `params` with leaves ``[size, *leaf.shape]``.
  """
  for name, fn in (
    ("estimator", estimator),
    ("function", function),
    ("dist_builder", dist_builder),
  ):
    if not callable(fn):
      raise TypeError(f"{name} must be callable, got {type(fn).__name__}.")
  num_samples = _check_int(num_samples, "num_samples")
  chunk_size = min(_check_int(chunk_size, "chunk_size"), num_samples)
  mean, variance, stderr, num_nonfinite = _gradient_moments(
    estimator,
    function,
    params,
    dist_builder,
    key,
    num_samples=num_samples,
    chunk_size=chunk_size,
  )
  return GradientMoments(
    mean=mean,
    variance=variance,
    stderr=stderr,
    num_samples=num_samples,
    num_nonfinite=num_nonfinite,
  )


def bias_in_stderrs(moments: GradientMoments, exact: Any) -> Any:
  r"""Bias of the estimate in units of its standard error, per coordinate.

  .. math:: z = (\hat\mu - \nabla_{\text{exact}}) / \mathrm{se}(\hat\mu).

  For an unbiased estimator :math:`z` is approximately standard normal, so
  :math:`|z| < 5` is the test criterion used throughout rgrad.

  Args:
    moments: from :func:`gradient_moments`.
    exact: the exact gradient, a pytree like ``moments.mean`` (leaves
      broadcastable against its leaves).

  Returns:
    A pytree like ``moments.mean``.

  Raises:
    ValueError: if `exact` does not have the structure of ``moments.mean``.
  """
  treedef = jax.tree.structure(moments.mean)
  if jax.tree.structure(exact) != treedef:
    raise ValueError(
      f"exact must be a pytree like moments.mean ({treedef}), got "
      f"{jax.tree.structure(exact)}."
    )
  return jax.tree.map(
    lambda m, e, s: (m - e) / s, moments.mean, exact, moments.stderr
  )


def signal_to_noise(moments: GradientMoments) -> Any:
  r"""Signal-to-noise ratio of the single-sample estimator, per coordinate.

  .. math:: \mathrm{SNR} = |E[\hat g]| / \sqrt{\mathrm{Var}[\hat g]},

  estimated by ``|mean| / sqrt(variance)`` (Rainforth et al. 2018, "Tighter
  variational bounds are not necessarily better", https://arxiv.org/abs/1802.04537).
  The SNR of an average of :math:`n` samples is :math:`\sqrt n` times this.

  Args:
    moments: from :func:`gradient_moments`.

  Returns:
    A pytree like ``moments.mean``.
  """
  return jax.tree.map(
    lambda m, v: jnp.abs(m) / jnp.sqrt(v), moments.mean, moments.variance
  )
