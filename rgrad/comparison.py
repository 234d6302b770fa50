r"""The result of :func:`rgrad.compare`: statistics per estimator, and views.

:class:`Comparison` holds, per compared estimator, an
:class:`EstimatorStats` (over all parameters) with one :class:`LeafStats`
per parameter leaf, and offers the views a reader wants: a plain-text
:meth:`~Comparison.table` sorted by work-normalised variance, JSON
(:meth:`~Comparison.to_json`, read back by :meth:`~Comparison.from_json`),
CSV (:meth:`~Comparison.to_csv`), a log-scale :meth:`~Comparison.plot`, and
:meth:`~Comparison.best`, the unbiased estimator with the lowest
work-normalised variance and its factor over the runner-up.

Every value is a plain Python float, int, string or list, so that the
object is a record of the run, not of device arrays. How each number is
measured is in :mod:`rgrad.compare`.
"""

import csv
import dataclasses
import io
import json
import math

import numpy as np

#: ``rgrad.compare(..., reference=REFERENCE_100X)``: measure the bias against
#: the lowest-variance unbiased estimator rerun at ``reference_factor`` (100)
#: times the samples.
REFERENCE_100X = "lowest_variance_100x"

#: Below this many independent units (rows, pairs or leave-one-out batches)
#: the fourth-moment standard error of a variance is itself too noisy to
#: trust (measured: 20 leave-one-out batches put exact variances 4.5 of
#: their estimated SEs away); :meth:`Comparison.table` flags such rows.
MIN_UNITS = 100


@dataclasses.dataclass(frozen=True)
class LeafStats:
  r"""One parameter leaf's statistics for one estimator (flattened lists).

  Attributes:
    leaf: the leaf's path in ``params`` (``jax.tree_util.keystr``).
    mean: the estimate's mean, per coordinate.
    stderr: its honest standard error (dependent rows accounted for).
    variance: the variance of one row, per coordinate (the effective
      per-row variance for pairs and batches).
    variance_stderr: its standard error, from the fourth moment.
    trace_variance: the sum of ``variance``.
    trace_variance_stderr: the sum of ``variance_stderr`` (conservative).
    snr: unbiased :math:`\|E\hat g\|^2` over ``trace_variance``.
    bias_z: per coordinate, (mean - reference) / combined standard error;
      None without a reference.
  """

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
  """One estimator's statistics, over all leaves, and its cost.

  Attributes:
    name: the registry name.
    summary: the registry's one-line summary.
    unbiased: False for estimators biased by design (relaxations).
    rows: the registry's row structure (``"iid"``, ``"pairs"``,
      ``"groups"``).
    num_samples: rows measured.
    num_units: independent units measured (rows, pairs or batches).
    num_nonfinite: independent units with a non-finite entry.
    trace_variance: the sum over leaves of :attr:`LeafStats.trace_variance`.
    trace_variance_stderr: the sum of the leaves' (conservative).
    snr: over all coordinates, as for a leaf.
    seconds_per_sample: median seconds per row of the timed blocks.
    timing_s: wall seconds of each timed block (warm-up excluded).
    timing_rows: rows per timed block.
    cost_evaluations: cost evaluations per row (the registry's count).
    work_variance: ``trace_variance * seconds_per_sample``.
    work_variance_stderr: ``trace_variance_stderr * seconds_per_sample``.
    max_abs_bias_z: the largest :math:`|z|` over all coordinates; None
      without a reference.
    leaves: one :class:`LeafStats` per parameter leaf.
  """

  name: str
  summary: str
  unbiased: bool
  rows: str
  num_samples: int
  num_units: int
  num_nonfinite: int
  trace_variance: float
  trace_variance_stderr: float
  snr: float
  seconds_per_sample: float
  timing_s: list
  timing_rows: int
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
  """The result of :func:`rgrad.compare`.

  Attributes:
    estimators: per compared estimator, sorted by work-normalised variance.
    skipped: estimator name -> why it was not compared (a missing
      capability, a stateful estimator, another objective).
    num_samples: rows per estimator.
    chunk_size: rows per estimator call.
    reference: what the bias is measured against: ``"none"``,
      ``"exact"``, or ``"<estimator> at <n> samples"`` (the lowest-variance
      unbiased estimator, rerun with independent draws).
    num_devices: the devices the moments engine sharded the chunks over.
  """

  estimators: tuple[EstimatorStats, ...]
  skipped: dict
  num_samples: int
  chunk_size: int
  reference: str = "none"
  num_devices: int = 1

  def table(self) -> str:
    """A plain-text table sorted by work-normalised variance.

    A ``*`` after the variance marks fewer than :data:`MIN_UNITS`
    independent units (its standard error is rough).
    """
    head = (
      f"{'estimator':<30} {'bias':>6} {'trace var':>21} {'SNR':>9} "
      f"{'us/sample':>10} {'evals':>6} {'work var':>10} {'|z|max':>7}"
    )
    lines = [head, "-" * len(head)]
    few = False
    for e in self.estimators:
      z = "" if e.max_abs_bias_z is None else f"{e.max_abs_bias_z:.1f}"
      mark = "*" if e.num_units < MIN_UNITS else " "
      few = few or mark == "*"
      lines.append(
        f"{e.name:<30} {'' if e.unbiased else 'biased':>6} "
        f"{e.trace_variance:>10.4g}{mark}± {e.trace_variance_stderr:<8.2g} "
        f"{e.snr:>9.3g} {1e6 * e.seconds_per_sample:>10.4g} "
        f"{e.cost_evaluations:>6d} {e.work_variance:>10.4g} {z:>7}"
      )
    for name, reason in self.skipped.items():
      lines.append(f"{name:<30} not compared: {reason}")
    if few:
      lines.append(
        f"* fewer than {MIN_UNITS} independent units (pairs, leave-one-out "
        "batches): the variance's SE is rough; use more samples."
      )
    lines.append(
      f"{self.num_samples} samples per estimator, chunks of "
      f"{self.chunk_size}, on {self.num_devices} device(s); |z| against: "
      f"{self.reference}."
    )
    return "\n".join(lines)

  def to_dict(self) -> dict:
    return {
      "num_samples": self.num_samples,
      "chunk_size": self.chunk_size,
      "reference": self.reference,
      "num_devices": self.num_devices,
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
      tuple(stats),
      data["skipped"],
      data["num_samples"],
      data["chunk_size"],
      data["reference"],
      data["num_devices"],
    )

  def to_csv(self, path: str | None = None) -> str:
    """One row per estimator (leaf ``"all"``) and per leaf; returns the text.

    Writes the text to `path` too, when given.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for e in self.estimators:
      rows = [("all", e.trace_variance, e.trace_variance_stderr, e.snr)]
      rows += [
        (s.leaf, s.trace_variance, s.trace_variance_stderr, s.snr)
        for s in e.leaves
      ]
      for leaf, tv, tv_se, snr in rows:
        writer.writerow(
          (e.name, leaf, e.unbiased, repr(tv), repr(tv_se), repr(snr))
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

    One horizontal bar per estimator, in the table's order; red bars are
    estimators biased by design. Error bars are one standard error (the
    trace's conservative one).
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
