r"""The moments engine: streamed, sharded moments of Monte Carlo estimates.

An estimator in :mod:`rgrad.estimators` returns ``num_samples`` per-sample
gradient estimates, a pytree like ``params`` with leaves
``[num_samples, *leaf.shape]``. To measure its bias and variance to high
precision one needs many samples (:math:`10^6` to :math:`10^8`), far more than
fit in memory at once for a large ``params``. This module is rgrad's one
engine for that; :func:`gradient_moments`, the variance experiment and the
benchmark all run on it.

* **Chunked and streamed.** Samples are drawn in chunks of ``chunk_size``;
  chunk :math:`c` draws its randomness from ``fold_in(key, c)``, :math:`c` the
  global chunk index, and only running moments are kept, so memory is
  :math:`O(\text{chunk\_size} \cdot d)` whatever ``num_samples`` is.
* **Accurate.** Each chunk's mean and central sums :math:`M_p =
  \sum (x - \bar x)^p` are computed in two passes over the chunk, and chunks
  are merged with the pairwise update of Chan, Golub and LeVeque (1979),
  extended to :math:`M_3, M_4` by Pébay (2008): for groups :math:`a, b` with
  :math:`\delta = \bar x_b - \bar x_a` and :math:`n = n_a + n_b`,

  .. math::
    \bar x = \bar x_a + \delta\,\tfrac{n_b}{n}, \qquad
    M_2 = M_{2,a} + M_{2,b} + \delta^2\,\tfrac{n_a n_b}{n},

    M_3 = M_{3,a} + M_{3,b} + \delta^3\,\tfrac{n_a n_b (n_a - n_b)}{n^2}
          + 3\delta\,\tfrac{n_a M_{2,b} - n_b M_{2,a}}{n},

    M_4 = M_{4,a} + M_{4,b}
          + \delta^4\,\tfrac{n_a n_b (n_a^2 - n_a n_b + n_b^2)}{n^3}
          + 6\delta^2\,\tfrac{n_a^2 M_{2,b} + n_b^2 M_{2,a}}{n^2}
          + 4\delta\,\tfrac{n_a M_{3,b} - n_b M_{3,a}}{n}.

  No step subtracts two large nearly equal sums. Moments accumulate in
  float64 when ``jax_enable_x64`` is on (whatever the estimates' dtype), and
  otherwise in float32 with the mean and :math:`M_2` kept as compensated
  (Neumaier) sums, so that a mean much larger than the spread does not drift
  over many chunks.
* **Honest about the variance.** With ``higher_moments=True`` the third and
  fourth central moments are kept too, and
  :attr:`GradientMoments.variance_stderr` is the standard error of the
  sample variance,
  :math:`\sqrt{(\mu_4 - \sigma^4 (N-3)/(N-1)) / N}`, estimated with
  :math:`\mu_4 = M_4/N` and :math:`\sigma^2 = s^2`.
* **Sharded.** Chunks are spread over a 1-d ``jax.sharding.Mesh`` of every
  device of every process with ``jax.shard_map``: device :math:`i` of
  :math:`D` takes a contiguous block of chunk indices and merges its chunks
  in a ``lax.scan``; the :math:`D` partial results are merged in device
  order. Each chunk draws the same numbers whatever :math:`D`, so one device
  and four agree to rounding (1e-12 relative).
* **Non-finite estimates are never averaged away.** Every NaN or infinity
  becomes NaN before the merge, so the mean, variance and standard error of
  each affected coordinate are NaN, and :attr:`GradientMoments.num_nonfinite`
  counts the samples with any non-finite entry.

The file is longer than rgrad's other modules because it is one engine, read
in order: the running sums and their merge formulas, the chunked and sharded
stream built on them, then the gradient statistics on top.

References:
  Chan, Golub, LeVeque. Updating formulae and a pairwise algorithm for
  computing sample variances. Stanford CS report STAN-CS-79-773, 1979.
  Pébay. Formulas for robust, one-pass parallel computation of covariances
  and arbitrary-order statistical moments. Sandia report SAND2008-6212.
  Neumaier. Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
  Summen. ZAMM 54, 1974 (compensated summation).
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
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rgrad import _internal
from rgrad import base

DEFAULT_CHUNK_SIZE = 1024
SAMPLES_AXIS = "samples"

# (chunk key, static chunk size, *args) -> a pytree of per-sample values,
# each leaf [size, ...].
ChunkFn = Callable[..., Any]


class GradientMoments(NamedTuple):
  """Moments of per-sample estimates, per coordinate (rgrad's one result type).

  Attributes:
    mean: pytree like one sample (for an estimator: like ``params``): the
      Monte Carlo estimate, the mean of all per-sample values.
    variance: the same pytree: unbiased (``n - 1``) variance of one sample;
      NaN when ``num_samples == 1``.
    stderr: the same pytree: standard error of ``mean``,
      :math:`\\sqrt{\\text{variance} / n}`.
    num_samples: the number of samples, a Python int.
    num_nonfinite: int array, the number of samples with a NaN or infinite
      entry in any leaf; the affected coordinates' statistics are NaN.
    variance_stderr: with ``higher_moments=True``, the same pytree: the
      standard error of ``variance`` from the fourth central moment; else
      None.
  """

  mean: Any
  variance: Any
  stderr: Any
  num_samples: int
  num_nonfinite: jax.Array
  variance_stderr: Any = None


class MomentSums(NamedTuple):
  """Running moments; what the engine streams. Pytrees like one sample.

  Attributes:
    count: number of samples merged, a scalar in the accumulation dtype.
    mean, mean_lo: the mean as a compensated sum ``mean + mean_lo``.
    m2, m2_lo: the central sum of squares, likewise.
    m3, m4: third and fourth central sums (zeros unless requested).
    num_nonfinite: int32 scalar.
  """

  count: jax.Array
  mean: Any
  mean_lo: Any
  m2: Any
  m2_lo: Any
  m3: Any
  m4: Any
  num_nonfinite: jax.Array


def accumulation_dtype() -> jnp.dtype:
  """float64 when ``jax_enable_x64`` is on, float32 otherwise."""
  return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


def chunk_moment_sums(values: Any, higher_moments: bool = False) -> MomentSums:
  """Two-pass moments of each leaf ``[size, *shape]`` over its first axis.

  One chunk's :class:`MomentSums`, in :func:`accumulation_dtype`; merge
  chunks with :func:`merge_moment_sums` and finish with
  :func:`finalize_moments`.
  """
  higher = higher_moments
  size = jax.tree.leaves(values)[0].shape[0]
  dtype = accumulation_dtype()
  finite = jax.tree.map(jnp.isfinite, values)
  # A sample is bad if any of its entries, in any leaf, is non-finite.
  sample_ok = functools.reduce(
    jnp.logical_and,
    [f.reshape(size, -1).all(axis=1) for f in jax.tree.leaves(finite)],
  )
  # inf would merge into inf or NaN depending on the order of operations;
  # NaN makes the outcome deterministic and unmistakable.
  values = jax.tree.map(
    lambda f, x: jnp.where(f, x.astype(dtype), jnp.nan), finite, values
  )
  mean = jax.tree.map(lambda x: jnp.mean(x, axis=0), values)
  centered = jax.tree.map(lambda x, m: x - m, values, mean)
  power = lambda p: jax.tree.map(lambda c: jnp.sum(c**p, axis=0), centered)  # noqa: E731
  zeros = jax.tree.map(jnp.zeros_like, mean)
  return MomentSums(
    count=jnp.asarray(size, dtype),
    mean=mean,
    mean_lo=zeros,
    m2=power(2),
    m2_lo=zeros,
    m3=power(3) if higher else zeros,
    m4=power(4) if higher else zeros,
    num_nonfinite=jnp.sum(~sample_ok, dtype=jnp.int32),
  )


def _two_sum(hi: jax.Array, lo: jax.Array, inc: jax.Array):
  """``hi + lo + inc`` as a new compensated pair (Neumaier's update)."""
  total = hi + inc
  big = jnp.abs(hi) >= jnp.abs(inc)
  err = jnp.where(big, (hi - total) + inc, (inc - total) + hi)
  return total, lo + err


def merge_moment_sums(a: MomentSums, b: MomentSums) -> MomentSums:
  """Pairwise merge of two groups' moments (see the module docstring)."""
  n = a.count + b.count
  # 0/0 guard for two empty groups (the formulas then leave zeros).
  safe_n = jnp.where(n > 0, n, 1.0)
  frac_a, frac_b = a.count / safe_n, b.count / safe_n
  # n_a n_b / n, as n_a * (n_b / n) so that no product of counts overflows.
  cross = a.count * frac_b

  def leaf(mean_a, lo_a, m2_a, m2lo_a, m3_a, m4_a, mean_b, lo_b, m2_b, m2lo_b,
           m3_b, m4_b):  # fmt: skip
    delta = (mean_b + lo_b - mean_a) - lo_a
    d2 = jnp.square(delta)
    full_m2_a, full_m2_b = m2_a + m2lo_a, m2_b + m2lo_b
    mean, mean_lo = _two_sum(mean_a, lo_a, delta * frac_b)
    m2, m2_lo = _two_sum(m2_a, m2lo_a, full_m2_b + d2 * cross)
    m3 = (
      m3_a
      + m3_b
      + d2 * delta * cross * (frac_a - frac_b)
      + 3.0 * delta * (frac_a * full_m2_b - frac_b * full_m2_a)
    )
    m4 = (
      m4_a
      + m4_b
      + d2 * d2 * cross * (frac_a * frac_a - frac_a * frac_b + frac_b * frac_b)
      + 6.0 * d2 * (frac_a * frac_a * full_m2_b + frac_b * frac_b * full_m2_a)
      + 4.0 * delta * (frac_a * m3_b - frac_b * m3_a)
    )
    return mean, mean_lo, m2, m2_lo, m3, m4

  fields = ("mean", "mean_lo", "m2", "m2_lo", "m3", "m4")
  treedef = jax.tree.structure(a.mean)
  columns = [jax.tree.leaves(getattr(a, f)) for f in fields] + [
    jax.tree.leaves(getattr(b, f)) for f in fields
  ]
  merged = [leaf(*row) for row in zip(*columns, strict=True)]
  out = {
    f: jax.tree.unflatten(treedef, [m[i] for m in merged])
    for i, f in enumerate(fields)
  }
  return MomentSums(
    count=n, num_nonfinite=a.num_nonfinite + b.num_nonfinite, **out
  )


def _check_chunk(values: Any, size: int) -> None:
  leaves = jax.tree.leaves(values)
  if not leaves:
    raise ValueError("chunk_fn must return a non-empty pytree of arrays.")
  for x in leaves:
    if x.ndim < 1 or x.shape[0] != size:
      raise ValueError(
        "every leaf chunk_fn returns must have a leading axis of the chunk "
        f"size {size}, got shape {tuple(x.shape)}."
      )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      raise ValueError(
        f"per-sample values must be floating point, got dtype {x.dtype}."
      )


def default_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh (axis ``"samples"``) over every device of every process."""
  return jax.sharding.Mesh(np.array(jax.devices()), (SAMPLES_AXIS,))


@functools.partial(
  jax.jit,
  static_argnames=(
    "chunk_fn",
    "num_samples",
    "chunk_size",
    "higher_moments",
    "mesh",
  ),
)
def stream_moments(
  key: chex.PRNGKey,
  args: Any,
  *,
  chunk_fn: ChunkFn,
  num_samples: int,
  chunk_size: int,
  higher_moments: bool = False,
  mesh: jax.sharding.Mesh | None = None,
) -> MomentSums:
  """The compiled engine: streamed, sharded moment sums of ``chunk_fn``.

  Prefer :func:`moments`, which checks its arguments and finalizes the sums;
  this is the jitted program itself, for callers that lower and compile it
  apart (``stream_moments.lower(...).compile()``) to time the two phases.

  Args:
    key: PRNG key, or a pytree of keys; chunk ``c`` gets ``fold_in(k, c)``
      of each.
    args: a pytree passed to every chunk, replicated on every device.
    chunk_fn: ``(key, size, args) ->`` a pytree of per-sample values with
      leaves ``[size, ...]``; static, so pass the same (hashable) callable
      to reuse the compilation.
    num_samples: total samples; full chunks of ``chunk_size`` and, if
      ``num_samples % chunk_size``, one last partial chunk.
    chunk_size: samples per chunk.
    higher_moments: also accumulate the third and fourth central sums.
    mesh: a 1-d mesh; None for :func:`default_mesh`.

  Returns:
    The :class:`MomentSums`, pytrees like one sample of ``chunk_fn``.
  """
  mesh = default_mesh() if mesh is None else mesh
  (axis,) = mesh.axis_names
  num_devices = mesh.devices.size
  num_full, remainder = divmod(num_samples, chunk_size)
  per_device = -(-num_full // num_devices)  # ceil

  def chunk(key, args, index: jax.Array, size: int) -> MomentSums:
    chunk_key = jax.tree.map(lambda k: jax.random.fold_in(k, index), key)
    values = chunk_fn(chunk_key, size, args)
    _check_chunk(values, size)
    return chunk_moment_sums(values, higher_moments)

  # Shapes of one chunk's sums, for the initial carry (an abstract trace).
  template = jax.eval_shape(
    functools.partial(chunk, size=chunk_size),
    key,
    args,
    jnp.zeros((), jnp.int32),
  )
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)

  def local(key, args):
    first = jax.lax.axis_index(axis) * per_device

    def body(carry, _):
      running, index = carry
      merged = merge_moment_sums(running, chunk(key, args, index, chunk_size))
      # Padding chunks (index >= num_full) are computed and dropped.
      running = jax.tree.map(
        lambda m, r: jnp.where(index < num_full, m, r), merged, running
      )
      return (running, index + 1), None

    # The chunk index lives in the carry, not in a scanned-over `arange`,
    # which would be an O(num_samples / chunk_size) buffer.
    (running, _), _ = jax.lax.scan(
      body, (zeros, first), None, length=per_device
    )
    return jax.tree.map(lambda x: x[None], running)  # [1, ...] per device

  # check_vma=False: the estimators take VJPs of closures over replicated
  # parameters with per-device cotangents, which the varying-manual-axes
  # type check rejects although every chunk is computed independently.
  per_device_sums = jax.shard_map(
    local, mesh=mesh, in_specs=(P(), P()), out_specs=P(axis), check_vma=False
  )(key, args)
  total = zeros
  for d in range(num_devices):  # In device order: deterministic.
    total = merge_moment_sums(
      total, jax.tree.map(lambda x, d=d: x[d], per_device_sums)
    )
  if remainder:
    # The last, partial chunk: traced once more at its own static size.
    total = merge_moment_sums(
      total, chunk(key, args, jnp.asarray(num_full, jnp.int32), remainder)
    )
  return jax.lax.with_sharding_constraint(total, NamedSharding(mesh, P()))


def finalize_moments(
  sums: MomentSums, num_samples: int, higher_moments: bool = False
) -> GradientMoments:
  """Mean, variance and standard errors from the streamed sums."""
  n = num_samples
  add = lambda a, b: jax.tree.map(jnp.add, a, b)  # noqa: E731
  m2 = add(sums.m2, sums.m2_lo)
  if n > 1:
    variance = jax.tree.map(lambda x: x / (n - 1), m2)
  else:
    variance = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), m2)
  variance_stderr = None
  if higher_moments:
    # Var(s^2) = (mu_4 - sigma^4 (n - 3) / (n - 1)) / n, mu_4 = M_4 / n.
    variance_stderr = jax.tree.map(
      lambda m4, v: jnp.sqrt(
        jnp.maximum(m4 / n - v * v * (n - 3) / (n - 1), 0.0) / n
      ),
      sums.m4,
      variance,
    )
  return GradientMoments(
    mean=add(sums.mean, sums.mean_lo),
    variance=variance,
    stderr=jax.tree.map(lambda v: jnp.sqrt(v / n), variance),
    num_samples=n,
    num_nonfinite=sums.num_nonfinite,
    variance_stderr=variance_stderr,
  )


def _host_value(x: Any) -> Any:
  """A process-local array as a host value, for a multi-process program.

  With several processes, a host (numpy) value is a replicated input of the
  global program, the same on every process; an array committed to one local
  device is not (jit rejects its device set). Typed keys keep their
  implementation. Tracers (under an outer jit) and global arrays pass as is.
  """
  if (
    not isinstance(x, jax.Array)
    or isinstance(x, jax.core.Tracer)
    or not x.is_fully_addressable
  ):
    return x
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(
      np.asarray(jax.random.key_data(x)), impl=jax.random.key_impl(x)
    )
  return np.asarray(x)


def _engine_args(
  chunk_fn: Any, num_samples: Any, chunk_size: Any, mesh: Any, name: str
) -> tuple[int, int]:
  """The checks of :func:`moments` and :func:`compile_moments`; the sizes."""
  _internal.check_callable(chunk_fn, "chunk_fn", name)
  num_samples = _internal.check_int(num_samples, name)
  chunk_size = min(
    _internal.check_int(chunk_size, name, what="chunk_size"), num_samples
  )
  if mesh is not None and len(mesh.axis_names) != 1:
    raise ValueError(f"{name}: mesh must be 1-d, got axes {mesh.axis_names}.")
  return num_samples, chunk_size


def moments(
  chunk_fn: ChunkFn,
  key: chex.PRNGKey,
  num_samples: int,
  args: Any = None,
  *,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  higher_moments: bool = False,
  mesh: jax.sharding.Mesh | None = None,
) -> GradientMoments:
  r"""Streamed, sharded moments of the per-sample values of ``chunk_fn``.

  The engine behind :func:`gradient_moments`, for any per-sample quantity
  (a pytree of arrays with a leading sample axis). ``chunk_fn(chunk_key,
  size, args)`` is called once per chunk of ``chunk_size`` samples (a last
  partial chunk takes the remaining ``num_samples % chunk_size``), with
  ``chunk_key = fold_in(key, chunk_index)``; see the module docstring for
  the merge, the accumulation dtype and the sharding.

  With several processes (after ``jax.distributed.initialize``) every
  process calls this with the same ``key`` and ``args``, which enter as
  host values (replicated inputs), and every process gets the whole,
  replicated result.

  Args:
    chunk_fn: ``(key, size, args) ->`` pytree, leaves ``[size, ...]``;
      static under jit (compared by ``==``: a NamedTuple or a module-level
      function reuses the compilation, a fresh lambda compiles again).
    key: PRNG key, or a pytree of keys (each folded with the chunk index),
      consumed.
    num_samples: total number of samples, an int >= 1.
    args: a pytree of arrays passed to every chunk (e.g. ``params``); traced,
      so new values reuse the compilation.
    chunk_size: samples per chunk, an int >= 1; clipped to ``num_samples``.
    higher_moments: also compute ``variance_stderr`` (third and fourth
      central moments).
    mesh: a 1-d ``jax.sharding.Mesh`` to shard chunks over; None for every
      device of every process.

  Returns:
    A :class:`GradientMoments` whose pytrees are like one sample of
    ``chunk_fn``'s output.

  Raises:
    TypeError: ``chunk_fn`` not callable, or counts that are not ints.
    ValueError: counts < 1, or a ``chunk_fn`` output that is not a pytree of
      floating arrays with a leading axis of the chunk size.
  """
  num_samples, chunk_size = _engine_args(
    chunk_fn, num_samples, chunk_size, mesh, "moments"
  )
  if jax.process_count() > 1:
    key, args = jax.tree.map(_host_value, (key, args))
  sums = stream_moments(
    key,
    args,
    chunk_fn=chunk_fn,
    num_samples=num_samples,
    chunk_size=chunk_size,
    higher_moments=higher_moments,
    mesh=mesh,
  )
  return finalize_moments(sums, num_samples, higher_moments)


class EstimatorChunk(NamedTuple):
  """The ``chunk_fn`` of :func:`gradient_moments`, for :func:`moments`.

  One call draws ``size`` independent *units* (rows for ``"iid"``, pairs,
  groups): it calls the estimator on ``size * rows_per_unit`` rows and
  returns the unit means (:func:`unit_means`). Hashable by its fields, so a
  repeated call with the same estimator, cost and builder reuses the
  compilation.
  """

  estimator: base.Estimator
  function: base.CostFunction
  dist_builder: base.DistBuilder
  rows: str = "iid"
  rows_per_unit: int = 1

  def __call__(self, key: jax.Array, size: int, params: Any) -> Any:
    num_rows = size * self.rows_per_unit
    estimates = self.estimator(
      self.function, params, self.dist_builder, key, num_rows
    )
    _check_estimates(estimates, params, num_rows)
    return unit_means(estimates, self.rows, self.rows_per_unit)


def unit_means(estimates: Any, rows: str, rows_per_unit: int) -> Any:
  r"""Means of the independent units of one estimator call, leaves ``[u, ...]``.

  Rows of one call are independent only for ``rows="iid"``. For
  ``"pairs"`` (rows :math:`i` and :math:`i + n/2` are an antithetic pair)
  the units are the :math:`n/2` pair means; for ``"groups"`` of
  ``rows_per_unit`` consecutive rows (a leave-one-out or importance-weighted
  batch: the whole call), the group means. Unit means are i.i.d., so their
  sample variance gives an honest standard error of the overall mean, which
  is the same (every unit has as many rows).
  """
  if rows == "iid":
    return estimates
  if rows == "pairs":
    return jax.tree.map(
      lambda x: 0.5 * (x[: x.shape[0] // 2] + x[x.shape[0] // 2 :]), estimates
    )
  return jax.tree.map(
    lambda x: x.reshape((-1, rows_per_unit) + x.shape[1:]).mean(axis=1),
    estimates,
  )


def _check_estimates(estimates: Any, params: Any, size: int) -> None:
  """Checks that `estimates` is a pytree like `params`, leaves [size, ...]."""
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


def row_structure(
  estimator: Any,
  rows: str | None = None,
  group_size: int | str | None = None,
) -> tuple[Any, str, int | str]:
  """Resolves an estimator and its row structure, for :func:`gradient_moments`.

  Args:
    estimator: a registered name, an :class:`rgrad.EstimatorSpec` or an
      estimator function (looked up in the registry by identity, or as an
      equal ``functools.partial``).
    rows: overrides the registry's ``rows`` (:data:`rgrad.base.ROWS`);
      ``"iid"`` for an unregistered estimator when None.
    group_size: overrides the registry's ``group_size``.

  Returns:
    ``(fn, rows, group_size)``.

  Raises:
    TypeError: a stateful estimator (its calls are not independent of each
      other; see :mod:`rgrad.testing` for those).
    ValueError: an unknown name or an inconsistent ``rows``/``group_size``.
  """
  from rgrad import registry  # The registry imports the estimators.

  _, spec = registry.find_estimator(estimator)
  fn = estimator if spec is None else spec.fn
  if isinstance(fn, base.StatefulEstimator):
    raise TypeError(
      "gradient_moments: estimator is stateful (init/estimate); step it "
      "yourself or use rgrad.testing.assert_unbiased, which does."
    )
  if rows is None:
    rows = "iid" if spec is None else spec.rows
    if group_size is None:
      group_size = 1 if spec is None else spec.group_size
  if rows not in base.ROWS:
    raise ValueError(
      f"gradient_moments: rows must be one of {base.ROWS}, got {rows!r}."
    )
  if group_size is None:
    group_size = {"iid": 1, "pairs": 2}.get(rows, "batch")
  valid = {
    "iid": group_size == 1,
    "pairs": group_size == 2,
    "groups": group_size == "batch"
    or (
      isinstance(group_size, (int, np.integer))
      and not isinstance(group_size, bool)
      and group_size >= 2
    ),
  }[rows]
  if not valid:
    raise ValueError(
      f"gradient_moments: group_size={group_size!r} does not fit "
      f"rows={rows!r} (iid: 1, pairs: 2, groups: an int >= 2 or 'batch')."
    )
  return fn, rows, group_size


def compile_moments(
  chunk_fn: ChunkFn,
  key: chex.PRNGKey,
  args: Any,
  *,
  num_samples: int,
  chunk_size: int,
  higher_moments: bool = False,
  mesh: jax.sharding.Mesh | None = None,
) -> Callable[[chex.PRNGKey, Any], MomentSums]:
  r"""The engine's program for fixed sizes, compiled now, to run many times.

  For callers that time the engine or run it in blocks
  (:func:`rgrad.compare` does both with one compilation):
  :func:`stream_moments` lowered at the shapes of ``key`` and ``args`` and
  compiled, wrapped so that, as in :func:`moments`, a multi-process run
  passes its inputs as host values.
  The returned ``program(key, args)`` gives the :class:`MomentSums` of
  ``num_samples`` samples (combine blocks with :func:`merge_moment_sums`,
  then :func:`finalize_moments`); a different shape or dtype of ``args``
  is an error, not a recompilation.

  Args:
    chunk_fn: as for :func:`moments`.
    key: a PRNG key of the kind the program will take (its value unused).
    args: a pytree of arrays like those the program will take.
    num_samples: samples per run, an int >= 1.
    chunk_size: samples per chunk, an int >= 1; clipped to ``num_samples``.
    higher_moments: also accumulate the third and fourth central sums.
    mesh: as for :func:`moments`.

  Returns:
    ``program(key, args) -> MomentSums``.

  Raises:
    TypeError: ``chunk_fn`` not callable, or counts that are not ints.
    ValueError: counts < 1, or a ``chunk_fn`` output that is not a pytree of
      floating arrays with a leading axis of the chunk size.
  """
  num_samples, chunk_size = _engine_args(
    chunk_fn, num_samples, chunk_size, mesh, "compile_moments"
  )
  multi_process = jax.process_count() > 1
  if multi_process:
    key, args = jax.tree.map(_host_value, (key, args))
  compiled = stream_moments.lower(
    key,
    args,
    chunk_fn=chunk_fn,
    num_samples=num_samples,
    chunk_size=chunk_size,
    higher_moments=higher_moments,
    mesh=mesh,
  ).compile()

  def program(key: chex.PRNGKey, args: Any) -> MomentSums:
    if multi_process:
      key, args = jax.tree.map(_host_value, (key, args))
    return compiled(key, args)

  return program


def gradient_moments(
  estimator: base.Estimator | str,
  function: base.CostFunction,
  params: Any,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  higher_moments: bool = False,
  mesh: jax.sharding.Mesh | None = None,
  rows: str | None = None,
  group_size: int | str | None = None,
) -> GradientMoments:
  r"""Mean, variance and standard error of an estimator over many samples.

  Calls ``estimator(function, params, dist_builder, chunk_key, size)`` on
  chunks of ``chunk_size`` samples with ``chunk_key =
  jax.random.fold_in(key, chunk_index)`` and streams their moments through
  the engine (:func:`moments`; see the module docstring): memory is
  :math:`O(\text{chunk\_size} \cdot d)`, the chunks are sharded over every
  device, and the estimator is traced at most three times (shapes, the
  full chunk and the partial last chunk) whatever ``num_samples``.

  **Dependent rows.** The standard error :math:`\sqrt{s^2/n}` is only right
  for independent rows. Antithetic pairs, leave-one-out batches and
  importance-weighted (DReG) batches are not: their rows are correlated
  within a pair or batch. The registry says which
  (:attr:`rgrad.EstimatorSpec.rows`), and this function reads it for a
  registered estimator (given by name, spec, or the registered function
  itself), or takes ``rows``/``group_size``: the moments are then those of
  the i.i.d. *unit means* (:func:`unit_means`: pair means, or group means
  with ``group_size`` rows, or one mean per ``chunk_size`` call for
  ``group_size="batch"``), and

  * ``mean`` is the mean of all rows, as before;
  * ``stderr`` is :math:`\sqrt{s_u^2 / n_u}` over the :math:`n_u` units;
  * ``variance`` is the *effective variance per row*, :math:`g\, s_u^2`
    with :math:`g` rows per unit, so that ``stderr ==
    sqrt(variance / num_samples)`` still holds and estimators compare at
    equal ``num_samples``: for a pair it is :math:`\sigma^2 (1 + \rho)`,
    the row variance times one plus the within-pair correlation;
  * ``num_nonfinite`` counts units with a non-finite entry.

  An estimator whose coefficient is estimated from the call's own draws
  (``control_variate_jacobians(..., coefficient="estimate")``) shares it
  across the call: pass ``rows="groups", group_size="batch"``.

  The computation is compiled once per combination of ``estimator``,
  ``function``, ``dist_builder`` (static, compared by identity: build a
  ``functools.partial`` once and reuse it) and sizes; new ``params`` or
  ``key`` values reuse the compilation. The distribution is built once from
  concrete ``params`` before compiling, so that its argument checks (a
  negative scale, NaN logits) raise here rather than vanish under ``jit``.

  The samples depend on ``chunk_size`` (each chunk draws from its own key),
  so two chunk sizes give statistically equivalent, not identical, results.

  Args:
    estimator: a function with the shared estimator signature, returning a
      pytree like ``params`` with leaves ``[size, *leaf.shape]``; or a
      registered name or :class:`rgrad.EstimatorSpec`.
    function: the cost, passed to `estimator`.
    params: pytree of parameters (may be traced).
    dist_builder: ``params`` -> distribution, passed to `estimator`.
    key: PRNG key (typed or raw), consumed.
    num_samples: total number of rows, an int >= 1 (a multiple of the unit
      size: even for pairs, a multiple of ``chunk_size`` for batch groups).
    chunk_size: rows per estimator call, an int >= 1; clipped to
      ``num_samples``. For ``group_size="batch"`` it is the estimator's
      batch size (the leave-one-out or IWAE ``K``) and matters.
    higher_moments: also compute ``variance_stderr``.
    mesh: as for :func:`moments`.
    rows: ``"iid"``, ``"pairs"`` or ``"groups"``; None for the registry's
      (``"iid"`` for an unregistered estimator).
    group_size: rows per group for ``"groups"``, or ``"batch"``.

  Returns:
    A :class:`GradientMoments` (``num_samples`` counts rows).

  Raises:
    TypeError: `estimator`, `function` or `dist_builder` not callable, a
      stateful estimator, or counts that are not ints.
    ValueError: counts < 1 or not a multiple of the unit size, an unknown
      estimator name, a `rows`/`group_size` that do not fit, invalid
      distribution parameters, or an estimator output that is not a pytree
      like `params` with leaves ``[size, *leaf.shape]``.
  """
  name = "gradient_moments"
  estimator, rows, group_size = row_structure(estimator, rows, group_size)
  for what, fn in (
    ("estimator", estimator),
    ("function", function),
    ("dist_builder", dist_builder),
  ):
    _internal.check_callable(fn, what, name)
  try:
    hash(function)
  except TypeError:
    # jit keys the compilation on the cost; an unhashable callable object is
    # wrapped in a plain function (compiled anew per call).
    function = _internal.as_cost(function, "function", name)
  num_samples = _internal.check_int(num_samples, name)
  chunk_size = min(
    _internal.check_int(chunk_size, name, what="chunk_size"), num_samples
  )
  per_unit = chunk_size if group_size == "batch" else int(group_size)
  for what, value in (("num_samples", num_samples), ("chunk_size", chunk_size)):
    if value % per_unit:
      raise ValueError(
        f"{name}: {what}={value} must be a multiple of {per_unit}, the rows "
        f"of one independent unit (rows={rows!r}, group_size={group_size!r})."
      )
  if not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(params)):
    # Concrete params: let the distribution check them, outside jit.
    dist_builder(params)
  m = moments(
    EstimatorChunk(estimator, function, dist_builder, rows, per_unit),
    key,
    num_samples // per_unit,
    params,
    chunk_size=chunk_size // per_unit,
    higher_moments=higher_moments,
    mesh=mesh,
  )
  return per_row(m, per_unit) if per_unit > 1 else m


def per_row(
  unit_moments: GradientMoments, rows_per_unit: int
) -> GradientMoments:
  """Moments of unit means, restated per row (see :func:`gradient_moments`).

  The mean and standard error are the units'; ``variance`` (and its
  standard error) become the effective per-row variance, ``rows_per_unit``
  times the variance of a unit mean, and ``num_samples`` counts rows.
  """
  scale = lambda t: jax.tree.map(lambda x: rows_per_unit * x, t)  # noqa: E731
  return unit_moments._replace(
    variance=scale(unit_moments.variance),
    variance_stderr=None
    if unit_moments.variance_stderr is None
    else scale(unit_moments.variance_stderr),
    num_samples=unit_moments.num_samples * rows_per_unit,
  )


# Relative accuracy of rgrad's exact references (rgrad.exact reaches 1e-10
# in float64); the floor of the standard error in :func:`z_score`.
REFERENCE_TOL = 1e-10


def z_score(
  value: Any, exact: Any, stderr: Any, reference_tol: float = REFERENCE_TOL
) -> jax.Array:
  r""":math:`(\hat v - v) / \sqrt{\mathrm{se}^2 + (\tau \max(|v|, 1))^2}`.

  Elementwise. The Monte Carlo standard error combined with the reference's
  own accuracy :math:`\tau` (relative for :math:`|v| \ge 1`, absolute
  below, as the quadrature references' errors are: a quantity that cancels
  to zero is known to :math:`\tau` of the integrand's scale, not of
  itself). So an estimator that is exact up to roundoff (the delta-method
  control variate on a quadratic cost, where every estimate equals the
  gradient and the standard error is ~1e-17) is not flagged for differing
  from the reference in the 15th digit, which a bare
  :math:`(\hat v - v)/\mathrm{se}` reads as -12. The price: differences
  below :math:`\tau = 10^{-10}` in absolute terms are never significant, so
  compare gradients of scale :math:`\ll 10^{-10}` after rescaling (or pass
  ``reference_tol=0``). Equal values give 0, also with zero standard error.
  """
  value, exact, stderr = (jnp.asarray(x) for x in (value, exact, stderr))
  floor = reference_tol * jnp.maximum(jnp.abs(exact), 1.0)
  scale = jnp.hypot(stderr, floor)
  diff = value - exact
  safe = jnp.where(scale > 0, scale, 1.0)
  return jnp.where(
    diff == 0,
    0.0 * diff,
    jnp.where(scale > 0, diff / safe, jnp.inf * jnp.sign(diff)),
  )


def bias_in_stderrs(
  moments: GradientMoments, exact: Any, reference_tol: float = REFERENCE_TOL
) -> Any:
  r"""Bias of the estimate in units of its standard error, per coordinate.

  .. math:: z = (\hat\mu - \nabla) /
            \sqrt{\mathrm{se}(\hat\mu)^2 + \tau^2 \max(|\nabla|, 1)^2},

  with :math:`\nabla` the exact gradient, :math:`\tau` = `reference_tol`,
  the accuracy of the exact value
  (:func:`z_score`, whose floor is :math:`\tau \max(|v|, 1)`, the variance
  experiment's: a zero-variance estimator is not read as biased by
  roundoff). ``moments.stderr`` already accounts for dependent rows (see
  :func:`gradient_moments`). For an unbiased estimator :math:`z` is
  approximately standard normal, so :math:`|z| < 5` is the test criterion
  used throughout rgrad; :mod:`rgrad.testing` turns it into a test with a
  stated false-alarm rate and power.

  Args:
    moments: from :func:`gradient_moments`.
    exact: the exact gradient, a pytree like ``moments.mean`` (leaves
      broadcastable against its leaves).
    reference_tol: relative accuracy of `exact`, >= 0.

  Returns:
    A pytree like ``moments.mean``.

  Raises:
    ValueError: if `exact` does not have the structure of ``moments.mean``,
      or `reference_tol` < 0.
  """
  treedef = jax.tree.structure(moments.mean)
  if jax.tree.structure(exact) != treedef:
    raise ValueError(
      f"exact must be a pytree like moments.mean ({treedef}), got "
      f"{jax.tree.structure(exact)}."
    )
  if not reference_tol >= 0:
    raise ValueError(f"reference_tol must be >= 0, got {reference_tol}.")
  return jax.tree.map(
    lambda m, e, s: z_score(m, e, s, reference_tol),
    moments.mean,
    exact,
    moments.stderr,
  )


def signal_to_noise(moments: GradientMoments) -> Any:
  r"""Signal-to-noise ratio of the single-sample estimator, per coordinate.

  .. math:: \mathrm{SNR} = |E[\hat g]| / \sqrt{\mathrm{Var}[\hat g]}

  (Rainforth et al. 2018, "Tighter variational bounds are not necessarily
  better", https://arxiv.org/abs/1802.04537). The plug-in
  ``|mean| / sqrt(variance)`` is biased upward: :math:`E[\bar g^2] =
  (E\hat g)^2 + \sigma^2/n`, so with no signal it reads
  :math:`\sqrt{1/n}`. This uses the unbiased estimate of the squared signal,
  :math:`\bar g^2 - s^2/n` (``stderr**2``, which accounts for dependent
  rows), clipped at zero before the square root:

  .. math:: \widehat{\mathrm{SNR}} = \sqrt{\max(\bar g^2 - s^2/n, 0)} / s.

  The SNR of an average of :math:`n` samples is :math:`\sqrt n` times this.

  Args:
    moments: from :func:`gradient_moments`.

  Returns:
    A pytree like ``moments.mean``.
  """
  return jax.tree.map(
    lambda m, v, se: jnp.sqrt(jnp.maximum(m * m - se * se, 0.0)) / jnp.sqrt(v),
    moments.mean,
    moments.variance,
    moments.stderr,
  )
