r"""Compare every applicable estimator on the user's own problem.

Mohamed et al. (2020, Section 3) judge a gradient estimator by its bias, its
variance and its computational cost. :func:`compare` measures all three for
every registered estimator (:data:`rgrad.ESTIMATORS`) that applies to the
user's cost and distribution, through the one moments engine
(:func:`rgrad.gradient_moments`, with the registry's row structure, so that
pairs and leave-one-out batches get honest standard errors):

* per estimator and per parameter leaf: the mean :math:`\bar g` with its
  standard error, the per-coordinate variance :math:`s^2` of one row with
  its standard error (fourth moment), and their trace
  :math:`T = \sum_j s_j^2`;
* the signal-to-noise ratio
  :math:`(\|\bar g\|^2 - \sum_j \mathrm{se}_j^2) / T`, with the unbiased
  estimate of :math:`\|E \hat g\|^2` (:math:`E\|\bar g\|^2 = \|E\hat g\|^2 +
  \sum_j \mathrm{Var}\,\bar g_j`) over the trace variance of one row;
* seconds per row, measured in the same run: the engine's program for a
  fixed ``timing_chunks * chunk_size`` rows is compiled, run once to warm
  up, then ``num_timing_repeats`` times to ``jax.block_until_ready``, and
  the median is taken (the approach of ``experiments/benchmark_estimators``);
* cost evaluations per row (the registry's count) and the work-normalised
  variance :math:`T \times` seconds per row: the variance of an estimate
  that one second of compute buys is :math:`T\,t / 1\,\mathrm{s}`, so it
  ranks estimators at equal compute;
* with an exact ``reference`` gradient, each coordinate's bias in standard
  errors (:func:`rgrad.bias_in_stderrs`); relaxations, biased by design, are
  marked.

The standard error of :math:`T` is the sum of the coordinates' standard
errors: the coordinates' sample variances are correlated in general, and
the sum is the bound that holds whatever the correlation (conservative).

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3).
"""

import csv
import dataclasses
import io
import json
import math
import statistics
import time
import zlib
from typing import Any

import jax
import numpy as np

from rgrad import _internal
from rgrad import base
from rgrad import diagnostics
from rgrad import registry

NAME = "compare"


@dataclasses.dataclass(frozen=True)
class LeafStats:
  """One parameter leaf's statistics for one estimator (flattened lists)."""

  leaf: str
  mean: list
  stderr: list
  variance: list
  variance_stderr: list
  trace_variance: float
  trace_variance_stderr: float
  snr: float
  bias_z: list | None = None


@dataclasses.dataclass(frozen=True)
class EstimatorStats:
  """One estimator's statistics, over all leaves, and its cost."""

  name: str
  summary: str
  unbiased: bool
  rows: str
  num_samples: int
  num_nonfinite: int
  trace_variance: float
  trace_variance_stderr: float
  snr: float
  seconds_per_sample: float
  cost_evaluations: int
  work_variance: float
  work_variance_stderr: float
  max_abs_bias_z: float | None
  leaves: tuple[LeafStats, ...]


@dataclasses.dataclass(frozen=True)
class BestEstimator:
  """:meth:`Comparison.best`: the winner and its factor to the runner-up."""

  name: str
  work_variance: float
  runner_up: str | None
  factor: float


_COLUMNS = (
  "estimator",
  "leaf",
  "unbiased",
  "trace_variance",
  "trace_variance_stderr",
  "snr",
  "seconds_per_sample",
  "cost_evaluations",
  "work_variance",
  "work_variance_stderr",
  "max_abs_bias_z",
)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The result of :func:`compare`.

  Attributes:
    estimators: per compared estimator, sorted by work-normalised variance.
    skipped: estimator name -> why it was not compared (a missing
      capability, a stateful estimator, another objective).
    num_samples: rows per estimator.
    chunk_size: rows per estimator call.
  """

  estimators: tuple[EstimatorStats, ...]
  skipped: dict
  num_samples: int
  chunk_size: int

  def table(self) -> str:
    """A plain-text table sorted by work-normalised variance."""
    head = (
      f"{'estimator':<30} {'bias':>6} {'trace var':>21} {'SNR':>9} "
      f"{'us/sample':>10} {'evals':>6} {'work var':>10} {'|z|max':>7}"
    )
    lines = [head, "-" * len(head)]
    for e in self.estimators:
      z = "" if e.max_abs_bias_z is None else f"{e.max_abs_bias_z:.1f}"
      lines.append(
        f"{e.name:<30} {'' if e.unbiased else 'biased':>6} "
        f"{e.trace_variance:>10.4g} ± {e.trace_variance_stderr:<8.2g} "
        f"{e.snr:>9.3g} {1e6 * e.seconds_per_sample:>10.4g} "
        f"{e.cost_evaluations:>6d} {e.work_variance:>10.4g} {z:>7}"
      )
    for name, reason in self.skipped.items():
      lines.append(f"{name:<30} not compared: {reason}")
    return "\n".join(lines)

  def to_dict(self) -> dict:
    return {
      "num_samples": self.num_samples,
      "chunk_size": self.chunk_size,
      "estimators": [dataclasses.asdict(e) for e in self.estimators],
      "skipped": dict(self.skipped),
    }

  def to_json(self) -> str:
    """JSON of :meth:`to_dict`; :meth:`from_json` reads it back."""
    return json.dumps(self.to_dict(), indent=1, allow_nan=True)

  @classmethod
  def from_json(cls, text: str) -> "Comparison":
    data = json.loads(text)
    stats = []
    for e in data["estimators"]:
      leaves = tuple(LeafStats(**leaf) for leaf in e.pop("leaves"))
      stats.append(EstimatorStats(leaves=leaves, **e))
    return cls(
      tuple(stats), data["skipped"], data["num_samples"], data["chunk_size"]
    )

  def to_csv(self, path: str | None = None) -> str:
    """One row per estimator (leaf ``"all"``) and per leaf; returns the text.

    Writes the text to `path` too, when given.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for e in self.estimators:
      common = (e.name,)
      rows = [("all", e.trace_variance, e.trace_variance_stderr, e.snr)]
      rows += [
        (s.leaf, s.trace_variance, s.trace_variance_stderr, s.snr)
        for s in e.leaves
      ]
      for leaf, tv, tv_se, snr in rows:
        writer.writerow(
          common
          + (leaf, e.unbiased, repr(tv), repr(tv_se), repr(snr))
          + (repr(e.seconds_per_sample), e.cost_evaluations)
          + (
            repr(tv * e.seconds_per_sample),
            repr(tv_se * e.seconds_per_sample),
          )
          + ("" if e.max_abs_bias_z is None else repr(e.max_abs_bias_z),)
        )
    text = out.getvalue()
    if path is not None:
      with open(path, "w") as f:
        f.write(text)
    return text

  def best(self) -> BestEstimator:
    """The unbiased estimator with the lowest work-normalised variance.

    Raises:
      ValueError: no unbiased estimator with a finite work variance.
    """
    ranked = [
      e
      for e in self.estimators
      if e.unbiased and math.isfinite(e.work_variance)
    ]
    ranked.sort(key=lambda e: e.work_variance)
    if not ranked:
      raise ValueError(
        "best: no unbiased estimator with a finite work-normalised variance "
        "was compared."
      )
    first = ranked[0]
    if len(ranked) == 1:
      return BestEstimator(first.name, first.work_variance, None, math.inf)
    second = ranked[1]
    factor = (
      second.work_variance / first.work_variance
      if first.work_variance > 0
      else math.inf
    )
    return BestEstimator(first.name, first.work_variance, second.name, factor)

  def plot(self, path: str) -> None:
    """Trace variance and work-normalised variance per estimator, log scale.

    Error bars are one standard error (the trace's conservative one).
    """
    import matplotlib  # Lazily: the library does not need it otherwise.

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [e.name for e in self.estimators]
    y = np.arange(len(names))
    fig, axes = plt.subplots(
      1, 2, figsize=(11, 0.4 * len(names) + 1.5), sharey=True
    )
    panels = (
      ("trace variance of one sample", "trace_variance"),
      ("work-normalised variance (var x s/sample)", "work_variance"),
    )
    for ax, (title, field) in zip(axes, panels, strict=True):
      values = np.array([getattr(e, field) for e in self.estimators])
      errors = np.array(
        [getattr(e, field + "_stderr") for e in self.estimators]
      )
      colors = ["C0" if e.unbiased else "C3" for e in self.estimators]
      ax.barh(y, values, xerr=errors, color=colors, capsize=3)
      ax.set_xscale("log")
      ax.set_title(title)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.suptitle("rgrad.compare (red: biased)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def _rows_per_unit(spec: registry.EstimatorSpec, chunk_size: int) -> int:
  return chunk_size if spec.group_size == "batch" else int(spec.group_size)


def seconds_per_sample(
  chunk_fn: diagnostics.ChunkFn,
  key: jax.Array,
  params: Any,
  *,
  num_units: int,
  chunk_units: int,
  rows_per_unit: int,
  num_repeats: int,
) -> float:
  """Median wall seconds per row of the engine's program, compile excluded.

  The program is :func:`rgrad.diagnostics.stream_moments` of `chunk_fn` over
  `num_units` units, lowered and compiled first, run once to warm up, then
  `num_repeats` times (fresh keys) to ``jax.block_until_ready``.
  """
  program = diagnostics.stream_moments.lower(
    key,
    params,
    chunk_fn=chunk_fn,
    num_samples=num_units,
    chunk_size=chunk_units,
  ).compile()
  jax.block_until_ready(program(jax.random.fold_in(key, num_repeats), params))
  times = []
  for repeat in range(num_repeats):
    k = jax.random.fold_in(key, repeat)
    start = time.perf_counter()
    jax.block_until_ready(program(k, params))
    times.append(time.perf_counter() - start)
  return statistics.median(times) / (num_units * rows_per_unit)


def _flat(x: Any) -> np.ndarray:
  return np.asarray(x, dtype=float).reshape(-1)


def _leaf_stats(m, reference_z, paths) -> list[LeafStats]:
  leaves = []
  fields = [jax.tree.leaves(t) for t in (m.mean, m.stderr, m.variance)]
  var_se = jax.tree.leaves(m.variance_stderr)
  zs = [None] * len(paths) if reference_z is None else reference_z
  for path, mean, se, var, vse, z in zip(
    paths, *fields, var_se, zs, strict=True
  ):
    mean, se, var, vse = (_flat(v) for v in (mean, se, var, vse))
    trace = float(var.sum())
    leaves.append(
      LeafStats(
        leaf=path,
        mean=mean.tolist(),
        stderr=se.tolist(),
        variance=var.tolist(),
        variance_stderr=vse.tolist(),
        trace_variance=trace,
        trace_variance_stderr=float(vse.sum()),
        snr=float((mean @ mean - se @ se) / trace) if trace > 0 else math.inf,
        bias_z=None if z is None else _flat(z).tolist(),
      )
    )
  return leaves


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
  num_timing_repeats: int = 5,
  timing_chunks: int = 4,
) -> Comparison:
  r"""Bias, variance, SNR and cost of every applicable estimator.

  See the module docstring for what is measured and how. Each estimator
  draws from ``fold_in(key, crc32(name))`` (its statistics do not depend on
  which others are compared) and is compiled twice: the moments run and the
  fixed-size timing program.

  Args:
    function: the cost, one draw -> scalar.
    params: pytree of parameters (concrete).
    dist_builder: ``params`` -> an rgrad distribution.
    key: PRNG key, consumed.
    estimators: ``"all"`` (every registered estimator; those that do not
      apply are listed in :attr:`Comparison.skipped` with the reason) or a
      sequence of registered names.
    num_samples: rows per estimator, an int >= 1 (a multiple of every
      compared estimator's unit: even for pairs, a multiple of
      ``chunk_size`` for leave-one-out batches).
    chunk_size: rows per estimator call (the leave-one-out batch), clipped
      to ``num_samples``.
    reference: the exact gradient, a pytree like ``params``, or None.
    num_timing_repeats: timed runs after the warm-up, an int >= 1.
    timing_chunks: chunks per timed run, an int >= 1.

  Returns:
    A :class:`Comparison`.

  Raises:
    TypeError: non-callable `function` or `dist_builder`, non-int counts.
    ValueError: counts < 1 or not fitting an estimator's unit, a cost that
      is not scalar, unknown names in `estimators`, a distribution that no
      selected estimator applies to, a `reference` not like `params`.
  """
  num_samples = _internal.check_int(num_samples, NAME)
  chunk_size = min(
    _internal.check_int(chunk_size, NAME, what="chunk_size"), num_samples
  )
  num_timing_repeats = _internal.check_int(
    num_timing_repeats, NAME, what="num_timing_repeats"
  )
  timing_chunks = _internal.check_int(timing_chunks, NAME, what="timing_chunks")
  names = _select(estimators)
  dist = _internal.build(dist_builder, params, NAME)
  draw_key, key = jax.random.split(key)
  function = _internal.check_scalar_cost(function, dist, draw_key, NAME)
  dim = int(np.prod(jax.eval_shape(dist.sample, draw_key).shape))
  if reference is not None and (
    jax.tree.structure(reference) != jax.tree.structure(params)
  ):
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
  for name, spec in specs.items():
    unit = _rows_per_unit(spec, chunk_size)
    if chunk_size < spec.min_num_samples:
      raise ValueError(
        f"{NAME}: chunk_size={chunk_size} is below {name!r}'s minimum of "
        f"{spec.min_num_samples} rows per call."
      )
    for what, value in (
      ("num_samples", num_samples),
      ("chunk_size", chunk_size),
    ):
      if value % unit:
        raise ValueError(
          f"{NAME}: {what}={value} must be a multiple of {unit}, the rows of "
          f"one independent unit of {name!r} (rows={spec.rows!r})."
        )
  paths = [
    jax.tree_util.keystr(p) or "params"
    for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
  ]
  results = []
  for name, spec in specs.items():
    k_moments, k_time = jax.random.split(
      jax.random.fold_in(key, zlib.crc32(name.encode()))
    )
    m = diagnostics.gradient_moments(
      name,
      function,
      params,
      dist_builder,
      k_moments,
      num_samples,
      chunk_size=chunk_size,
      higher_moments=True,
    )
    z = None
    if reference is not None:
      z = jax.tree.leaves(diagnostics.bias_in_stderrs(m, reference))
    leaves = _leaf_stats(m, z, paths)
    unit = _rows_per_unit(spec, chunk_size)
    chunk_units = chunk_size // unit
    sps = seconds_per_sample(
      diagnostics.EstimatorChunk(
        spec.fn, function, dist_builder, spec.rows, unit
      ),
      k_time,
      params,
      num_units=chunk_units * timing_chunks,
      chunk_units=chunk_units,
      rows_per_unit=unit,
      num_repeats=num_timing_repeats,
    )
    trace = sum(s.trace_variance for s in leaves)
    trace_se = sum(s.trace_variance_stderr for s in leaves)
    all_mean = np.concatenate([s.mean for s in leaves])
    all_se = np.concatenate([s.stderr for s in leaves])
    results.append(
      EstimatorStats(
        name=name,
        summary=spec.summary,
        unbiased=spec.unbiased,
        rows=spec.rows,
        num_samples=m.num_samples,
        num_nonfinite=int(m.num_nonfinite),
        trace_variance=trace,
        trace_variance_stderr=trace_se,
        snr=float((all_mean @ all_mean - all_se @ all_se) / trace)
        if trace > 0
        else math.inf,
        seconds_per_sample=sps,
        cost_evaluations=spec.num_cost_evaluations(dim),
        work_variance=trace * sps,
        work_variance_stderr=trace_se * sps,
        max_abs_bias_z=None
        if z is None
        else float(max(np.max(np.abs(_flat(x))) for x in z)),
        leaves=tuple(leaves),
      )
    )
  results.sort(
    key=lambda e: (
      e.work_variance if math.isfinite(e.work_variance) else math.inf
    )
  )
  return Comparison(tuple(results), skipped, num_samples, chunk_size)
