r"""Compare every applicable estimator on the user's own problem.

Mohamed et al. (2020, Section 3) judge a gradient estimator by its bias, its
variance and its computational cost. :func:`compare` measures all three for
every registered estimator (:data:`rgrad.ESTIMATORS`) that applies to the
user's cost and distribution (by capability: the others are listed with the
reason), through the one moments engine (:mod:`rgrad.diagnostics`, with the
registry's row structure, so that pairs and leave-one-out batches get
honest standard errors):

* per estimator and per parameter leaf: the mean :math:`\bar g` with its
  standard error, the per-coordinate variance :math:`s^2` of one row with
  its standard error (fourth moment), and their trace
  :math:`T = \sum_j s_j^2`;
* the signal-to-noise ratio
  :math:`(\|\bar g\|^2 - \sum_j \mathrm{se}_j^2) / T`: the unbiased
  estimate of :math:`\|E \hat g\|^2` (:math:`E\|\bar g\|^2 = \|E\hat g\|^2 +
  \sum_j \mathrm{Var}\,\bar g_j`) over the trace variance of one row;
* seconds per row, measured in the same run (below);
* cost evaluations per row (the registry's count) and the work-normalised
  variance :math:`T \times` seconds per row: the variance of an estimate
  that one second of compute buys is :math:`T\,t / 1\,\mathrm{s}`, so it
  ranks estimators at equal compute;
* with a ``reference``, each coordinate's bias in standard errors
  (:func:`rgrad.diagnostics.z_score`); relaxations, biased by design, are
  marked.

**One compilation per estimator, timed in the measurement.** The
``num_samples`` rows run as ``B`` equal *blocks* of whole chunks, and one
program (:func:`rgrad.diagnostics.compile_moments`, for one block) is
compiled per estimator; block :math:`b` draws from ``fold_in(key, b)``.
Every block is run to ``jax.block_until_ready`` and timed; the blocks'
moment sums are merged (:func:`rgrad.diagnostics.merge_moment_sums`, the
parallel update of Chan et al.), so the measurement costs no extra work.
The first block is the warm-up; seconds per row are the median of the other
blocks' times over the rows of a block (the statistic of
``experiments/benchmark_estimators``, whose programs are those blocks when
``num_samples`` is ``num_timing_repeats + 1`` times the benchmark's).
``B`` is the smallest divisor of the number of chunks that is at least
``num_timing_repeats + 1`` (:func:`num_blocks`); with fewer chunks than
that, every chunk is a block and extra blocks run for their time alone
(their draws are discarded).

**A reference at 100 times the samples.** Without an exact gradient,
``reference=rgrad.comparison.REFERENCE_100X`` (the string
``"lowest_variance_100x"``) reruns the unbiased estimator with the lowest
trace variance on ``reference_factor`` (100) times ``num_samples`` rows
with independent draws (the same compiled program, more blocks), and
measures every estimator's bias against its mean with the combined standard
error :math:`\sqrt{\mathrm{se}^2 + \mathrm{se}_\mathrm{ref}^2}`: the
reference's is 10 times smaller than that estimator's own.

The standard error of :math:`T` is the sum of the coordinates' standard
errors: the coordinates' sample variances are correlated in general, and
the sum is the bound that holds whatever the correlation (conservative).

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3).

  Chan, Golub, LeVeque. Updating formulae and a pairwise algorithm for
  computing sample variances. COMPSTAT 1982 (the merge of blocks).
"""

import math
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from rgrad import _internal
from rgrad import base
from rgrad import comparison
from rgrad import diagnostics
from rgrad import registry

NAME = "compare"


_merge = jax.jit(diagnostics.merge_moment_sums)


def _reason(spec: registry.EstimatorSpec, dist: Any) -> str | None:
  """Why `spec` does not apply, or None."""
  if spec.objective != "expectation":
    return (
      f"estimates the {spec.objective} gradient (function = log-joint), not "
      "that of E[f]"
    )
  if spec.stateful:
    return "stateful (learns its control across calls); not comparable by rows"
  missing = _internal.missing_capabilities(dist, spec.distributions)
  if missing:
    details = ", ".join(
      f"{c!r} ({', '.join(base.CAPABILITIES[c].methods)})" for c in missing
    )
    return f"the distribution lacks {details}"
  return None


def _select(estimators: Any) -> tuple[str, ...]:
  if isinstance(estimators, str):
    if estimators == "all":
      return tuple(registry.ESTIMATORS)
    estimators = (estimators,)
  try:
    names = tuple(estimators)
  except TypeError:
    raise TypeError(
      f'{NAME}: estimators must be "all" or a sequence of registered names, '
      f"got {type(estimators).__name__}."
    ) from None
  unknown = [n for n in names if n not in registry.ESTIMATORS]
  if unknown or not names:
    raise ValueError(
      f"{NAME}: estimators has unknown names {unknown} (or is empty); known: "
      f"{', '.join(sorted(registry.ESTIMATORS))}."
    )
  return names


def num_blocks(num_chunks: int, num_timing_repeats: int) -> int:
  """Blocks of whole chunks: the smallest divisor >= repeats + 1, or all.

  With fewer chunks than ``num_timing_repeats + 1``, every chunk is a block
  and :func:`compare` runs extra blocks for their time alone.
  """
  for blocks in range(num_timing_repeats + 1, num_chunks + 1):
    if num_chunks % blocks == 0:
      return blocks
  return num_chunks


def _run_blocks(
  program: Callable[..., diagnostics.MomentSums],
  key: jax.Array,
  params: Any,
  num_measured: int,
  num_timed: int,
) -> tuple[diagnostics.MomentSums, list[float]]:
  """Merged sums of `num_measured` blocks, and >= `num_timed` block times.

  Block ``b`` draws from ``fold_in(key, b)``; block 0 is the warm-up.
  Blocks past `num_measured` run for their time alone.
  """
  sums, times = None, []
  for b in range(max(num_measured, num_timed + 1)):
    start = time.perf_counter()
    block = jax.block_until_ready(program(jax.random.fold_in(key, b), params))
    if b:
      times.append(time.perf_counter() - start)
    if b < num_measured:
      sums = block if sums is None else _merge(sums, block)
  return sums, times


def _flat(x: Any) -> np.ndarray:
  return np.asarray(x, dtype=float).reshape(-1)


def _snr(mean: np.ndarray, se: np.ndarray, trace: float) -> float:
  return float((mean @ mean - se @ se) / trace) if trace > 0 else math.inf


def _leaf_stats(
  m, reference, reference_se, paths
) -> list[comparison.LeafStats]:
  leaves = []
  fields = [jax.tree.leaves(t) for t in (m.mean, m.stderr, m.variance)]
  var_se = jax.tree.leaves(m.variance_stderr)
  for i, (path, mean, se, var, vse) in enumerate(
    zip(paths, *fields, var_se, strict=True)
  ):
    mean, se, var, vse = (_flat(v) for v in (mean, se, var, vse))
    z = None
    if reference is not None:
      combined = np.hypot(se, reference_se[i])
      z = _flat(diagnostics.z_score(mean, reference[i], combined)).tolist()
    trace = float(var.sum())
    leaves.append(
      comparison.LeafStats(
        leaf=path,
        mean=mean.tolist(),
        stderr=se.tolist(),
        variance=var.tolist(),
        variance_stderr=vse.tolist(),
        trace_variance=trace,
        trace_variance_stderr=float(vse.sum()),
        snr=_snr(mean, se, trace),
        bias_z=z,
      )
    )
  return leaves


def _check_sizes(specs, num_samples: int, chunk_size: int) -> None:
  if num_samples % chunk_size:
    raise ValueError(
      f"{NAME}: num_samples={num_samples} must be a multiple of "
      f"chunk_size={chunk_size} (the rows run as blocks of whole chunks, "
      "which are timed)."
    )
  for name, spec in specs.items():
    if chunk_size < spec.min_num_samples:
      raise ValueError(
        f"{NAME}: chunk_size={chunk_size} is below {name!r}'s minimum of "
        f"{spec.min_num_samples} rows per call."
      )
    unit = chunk_size if spec.group_size == "batch" else int(spec.group_size)
    if chunk_size % unit:
      raise ValueError(
        f"{NAME}: chunk_size={chunk_size} must be a multiple of {unit}, the "
        f"rows of one independent unit of {name!r} (rows={spec.rows!r})."
      )


def compare(
  function: base.CostFunction,
  params: Any,
  dist_builder: base.DistBuilder,
  key: jax.Array,
  *,
  estimators: Any = "all",
  num_samples: int,
  chunk_size: int,
  reference: Any = None,
  reference_factor: int = 100,
  num_timing_repeats: int = 5,
  mesh: jax.sharding.Mesh | None = None,
  progress: Callable[[str], None] | None = None,
) -> comparison.Comparison:
  r"""Bias, variance, SNR and cost of every applicable estimator.

  See the module docstring for what is measured and how. Each estimator
  draws from ``fold_in(key, crc32(name))`` (its statistics do not depend on
  which others are compared) and is compiled once.

  Args:
    function: the cost, one draw -> scalar (any callable, NumPy functions
      included).
    params: pytree of parameters (concrete).
    dist_builder: ``params`` -> an rgrad distribution (or a distrax, TFP or
      NumPyro one, through :mod:`rgrad.interop`).
    key: PRNG key, consumed.
    estimators: ``"all"`` (every registered estimator; those that do not
      apply are listed in :attr:`~rgrad.comparison.Comparison.skipped` with
      the reason) or a sequence of registered names.
    num_samples: rows per estimator, a multiple of ``chunk_size``.
    chunk_size: rows per estimator call (the leave-one-out batch), an int
      >= 1, clipped to ``num_samples``; even for pairs.
    reference: None; the exact gradient, a pytree like ``params``; or
      :data:`~rgrad.comparison.REFERENCE_100X`.
    reference_factor: for :data:`~rgrad.comparison.REFERENCE_100X`, the
      reference's samples over ``num_samples``, an int >= 1.
    num_timing_repeats: timed blocks after the warm-up block, an int >= 1.
    mesh: as for :func:`rgrad.diagnostics.moments` (None: every device).
    progress: called with a line of text as each estimator finishes (e.g.
      ``absl.logging.info``), or None.

  Returns:
    A :class:`~rgrad.comparison.Comparison`.

  Raises:
    TypeError: non-callable `function` or `dist_builder`, non-int counts.
    ValueError: counts < 1 or not fitting an estimator's unit, a cost that
      is not scalar, unknown names in `estimators`, a distribution that no
      selected estimator applies to, a `reference` that is neither None,
      :data:`~rgrad.comparison.REFERENCE_100X` nor a pytree like `params`,
      or no unbiased estimator for that reference.
  """
  num_samples = _internal.check_int(num_samples, NAME)
  chunk_size = min(
    _internal.check_int(chunk_size, NAME, what="chunk_size"), num_samples
  )
  num_timing_repeats = _internal.check_int(
    num_timing_repeats, NAME, what="num_timing_repeats"
  )
  reference_factor = _internal.check_int(
    reference_factor, NAME, what="reference_factor"
  )
  names = _select(estimators)
  dist = _internal.build(dist_builder, params, NAME)
  draw_key, key = jax.random.split(key)
  function = _internal.check_scalar_cost(function, dist, draw_key, NAME)
  dim = int(np.prod(jax.eval_shape(dist.sample, draw_key).shape))
  at_100x = isinstance(reference, str)
  if at_100x and reference != comparison.REFERENCE_100X:
    raise ValueError(
      f"{NAME}: reference must be None, a pytree like params or "
      f"{comparison.REFERENCE_100X!r}, got {reference!r}."
    )
  if not at_100x and reference is not None:
    if jax.tree.structure(reference) != jax.tree.structure(params):
      raise ValueError(
        f"{NAME}: reference must be a pytree like params "
        f"({jax.tree.structure(params)}), got {jax.tree.structure(reference)}."
      )
  specs, skipped = {}, {}
  for name in names:
    spec = registry.get_estimator(name)
    reason = _reason(spec, dist)
    if reason is None:
      specs[name] = spec
    else:
      skipped[name] = reason
  if not specs:
    details = "; ".join(f"{n}: {r}" for n, r in skipped.items())
    raise ValueError(
      f"{NAME}: no selected estimator applies to dist_builder(params) "
      f"({type(dist).__name__}): {details}."
    )
  if at_100x and not any(s.unbiased for s in specs.values()):
    raise ValueError(
      f"{NAME}: reference={comparison.REFERENCE_100X!r} needs an unbiased "
      f"estimator; the compared ones ({', '.join(specs)}) are all biased."
    )
  _check_sizes(specs, num_samples, chunk_size)
  blocks = num_blocks(num_samples // chunk_size, num_timing_repeats)
  block_rows = num_samples // blocks
  paths = [
    jax.tree_util.keystr(p) or "params"
    for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
  ]

  runs = {}  # name -> (program, per-row moments, block times)
  for name, spec in specs.items():
    unit = chunk_size if spec.group_size == "batch" else int(spec.group_size)
    chunk_fn = diagnostics.EstimatorChunk(
      spec.fn, function, dist_builder, spec.rows, unit
    )
    block_key = jax.random.fold_in(key, zlib.crc32(name.encode()))
    program = diagnostics.compile_moments(
      chunk_fn,
      block_key,
      params,
      num_samples=block_rows // unit,
      chunk_size=chunk_size // unit,
      higher_moments=True,
      mesh=mesh,
    )
    sums, times = _run_blocks(
      program, block_key, params, blocks, num_timing_repeats
    )
    m = diagnostics.finalize_moments(sums, num_samples // unit, True)
    runs[name] = (program, diagnostics.per_row(m, unit), times, unit)
    if progress is not None:
      units = num_samples // unit
      progress(
        f"{NAME}: {name}: {num_samples} rows in {blocks} blocks, "
        f"{1e6 * statistics.median(times) / block_rows:.4g} us/row"
        + (
          f"; only {units} independent units, the variance's SE is rough"
          if units < comparison.MIN_UNITS
          else ""
        )
      )

  ref, ref_se, description = None, None, "none"
  if at_100x:
    best = min(
      (n for n in runs if specs[n].unbiased),
      key=lambda n: sum(
        float(v.sum()) for v in jax.tree.leaves(runs[n][1].variance)
      ),
    )
    program, _, _, unit = runs[best]
    ref_key = jax.random.fold_in(key, zlib.crc32(b"reference"))
    sums, _ = _run_blocks(
      program, ref_key, params, reference_factor * blocks, 0
    )
    m = diagnostics.per_row(
      diagnostics.finalize_moments(
        sums, reference_factor * num_samples // unit, True
      ),
      unit,
    )
    ref = [_flat(x) for x in jax.tree.leaves(m.mean)]
    ref_se = [_flat(x) for x in jax.tree.leaves(m.stderr)]
    description = f"{best} at {reference_factor * num_samples} samples"
    if progress is not None:
      progress(f"{NAME}: reference: {description}")
  elif reference is not None:
    ref = [_flat(x) for x in jax.tree.leaves(reference)]
    ref_se = [np.zeros_like(x) for x in ref]
    description = "exact"

  results = []
  for name, (_, m, times, unit) in runs.items():
    spec = specs[name]
    leaves = _leaf_stats(m, ref, ref_se, paths)
    sps = statistics.median(times) / block_rows
    trace = sum(s.trace_variance for s in leaves)
    trace_se = sum(s.trace_variance_stderr for s in leaves)
    results.append(
      comparison.EstimatorStats(
        name=name,
        summary=spec.summary,
        unbiased=spec.unbiased,
        rows=spec.rows,
        num_samples=m.num_samples,
        num_units=m.num_samples // unit,
        num_nonfinite=int(m.num_nonfinite),
        trace_variance=trace,
        trace_variance_stderr=trace_se,
        snr=_snr(
          np.concatenate([s.mean for s in leaves]),
          np.concatenate([s.stderr for s in leaves]),
          trace,
        ),
        seconds_per_sample=sps,
        timing_s=times,
        timing_rows=block_rows,
        cost_evaluations=spec.num_cost_evaluations(dim),
        work_variance=trace * sps,
        work_variance_stderr=trace_se * sps,
        max_abs_bias_z=None
        if ref is None
        else float(max(np.max(np.abs(s.bias_z)) for s in leaves)),
        leaves=tuple(leaves),
      )
    )
  results.sort(
    key=lambda e: (
      e.work_variance if math.isfinite(e.work_variance) else math.inf
    )
  )
  mesh = diagnostics.default_mesh() if mesh is None else mesh
  return comparison.Comparison(
    tuple(results),
    skipped,
    num_samples,
    chunk_size,
    description,
    int(mesh.devices.size),
  )
