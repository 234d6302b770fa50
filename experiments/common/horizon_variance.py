r"""What the variance-against-horizon experiments share: checks, figure, files.

``experiments.lqr`` (one panel per spectral radius) and the Pendulum part of
``experiments.policy_gradient`` (one panel per policy) measure the same
estimators of :mod:`rgrad.rl` in cells (estimator, setting, T) and report
the same trade-off; the pieces that do not depend on which setting a panel
is live here: the config's batching check, one timed cell and the
measurement loop over resumable cells, the total-propagation and
unbiasedness checks, one figure panel, the output files and the closing
report.
"""

import os
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import outputs as common_outputs

COLORS = {
  "score_function": "tab:orange",
  "leave_one_out": "tab:purple",
  "bptt": "tab:blue",
  "total_propagation": "tab:green",
  "total_propagation_batch": "tab:olive",
}
# Not exactly unbiased (weights from the estimate's own batch: O(1/N)).
BIASED = ("total_propagation_batch",)
TOTAL_PROPAGATION = ("total_propagation", "total_propagation_batch")


def batching(config) -> tuple[int, int, int]:
  """``(num_samples, chunk_size, batch_size)``, checked; ConfigError else.

  Batch estimators run in independent batches of ``batch_size`` rollouts:
  even (total propagation's two halves), dividing the chunk, and at least
  two of them (a standard error).
  """
  num_samples, chunk_size = config_lib.chunking(
    config.num_samples, config.chunk_size
  )
  batch = config_lib.integer(config.batch_size, "batch_size", minimum=4)
  if batch % 2 or chunk_size % batch:
    raise config_lib.ConfigError(
      f"config.batch_size ({batch}) must be even (total propagation's two "
      f"halves) and divide config.chunk_size ({chunk_size})."
    )
  if num_samples // batch < 2:
    raise config_lib.ConfigError(
      "config.num_samples must hold at least two batches of "
      f"config.batch_size ({batch})."
    )
  return num_samples, chunk_size, batch


def timed_cell(
  name: str, horizon: int, setting: str, records: Callable[[], list]
) -> dict[str, Any]:
  """One cell's records and the seconds they took, logged.

  Args:
    name: the estimator.
    horizon: the T.
    setting: the panel's setting as logged (``"radius 0.9"``, a policy).
    records: measures the cell, ``() -> [record, ...]``.

  Returns:
    ``{"records": records(), "seconds": float}``, what a cell's ``compute``
    in :func:`measure_cells` returns.
  """
  t0 = time.perf_counter()
  rows = records()
  seconds = time.perf_counter() - t0
  logging.info("[%s] T=%d %s: %.1fs", name, horizon, setting, seconds)
  return {"records": rows, "seconds": time.perf_counter() - t0}


def measure_cells(
  workdir: str,
  cells: Iterable[tuple[str, str, Callable[[], dict[str, Any]]]],
  stop_after_cells: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]] | None:
  """Measures (or reads back) every cell; None when the test hook stops it.

  Args:
    workdir: the run's directory (:func:`checkpoints.cached_cell`).
    cells: ``(timing_key, cell_name, compute)``, in the order to run them;
      ``compute() -> {"records": [...], "seconds": float}``.
    stop_after_cells: abandon after this many newly measured cells.

  Returns:
    ``(records, timings)``: every cell's records in order, and the seconds
    per timing key (summed over its cells; a resumed cell keeps the seconds
    of the run that measured it, compilation included).
  """
  records, timings, measured = [], {}, 0
  for timing_key, name, compute in cells:
    cell, resumed = checkpoints.cached_cell(workdir, name, compute)
    records.extend(cell["records"])
    timings[timing_key] = timings.get(timing_key, 0.0) + cell["seconds"]
    measured += not resumed
    if stop_after_cells is not None and measured >= stop_after_cells:
      return None
  return records, timings


def near_better_checks(var, names, settings, horizons) -> dict[str, Any]:
  """``<tp>_near_better`` for each total propagation in `names`.

  `var(name, setting, T)` is the variance the checks compare; a check holds
  when total propagation's variance is at most twice the smaller of
  leave-one-out's and BPTT's (the two it combines) in every cell.
  """
  out = {}
  for tp in TOTAL_PROPAGATION:
    if {tp, "leave_one_out", "bptt"} <= set(names):
      ratio = {
        f"{s}/T={t}": var(tp, s, t)
        / min(var("leave_one_out", s, t), var("bptt", s, t))
        for s in settings
        for t in horizons
      }
      holds, worst = all(x <= 2 for x in ratio.values()), max(ratio.values())
    else:
      ratio, holds, worst = {}, None, None
    out[f"{tp}_near_better"] = {
      "expected": f"{tp} variance <= 2 x min(leave-one-out, BPTT)",
      "holds": holds,
      "values": {"worst_ratio": worst, "ratio": ratio},
    }
  return out


def unbiased_check(summary, names, expected: str) -> dict[str, Any]:
  """Every |z| of the exactly unbiased estimators below 5; :data:`BIASED`'s
  largest |z| recorded beside it (its O(1/N) bias may show)."""
  zmax = max(s["max_abs_z"] for s in summary if s["estimator"] not in BIASED)
  return {
    "expected": expected,
    "holds": bool(zmax < 5),
    "values": {
      "max_abs_z": zmax,
      "max_abs_z_biased": {
        n: max(s["max_abs_z"] for s in summary if s["estimator"] == n)
        for n in BIASED
        if n in names
      },
    },
  }


def plot_panel(ax, horizons, series, reference_sq, reference_label) -> None:
  """log10 variance against T on `ax`, one line per estimator.

  Args:
    ax: a matplotlib axis.
    horizons: the T's.
    series: ``{estimator: (variances, standard errors)}`` over `horizons`;
      the error bars are the variance's standard error (fourth moment).
    reference_sq: the squared gradient's norm over `horizons`, dashed.
    reference_label: its legend entry.
  """
  for name, (v, se) in series.items():
    v, se = np.asarray(v), np.asarray(se)
    lo = np.log10(v) - np.log10(np.maximum(v - se, v * 1e-3))
    hi = np.log10(v + se) - np.log10(v)
    ax.errorbar(
      horizons,
      np.log10(v),
      yerr=[lo, hi],
      label=name,
      color=COLORS.get(name),
      marker="o",
      ms=3,
      capsize=2,
    )
  ax.plot(horizons, np.log10(reference_sq), "k--", label=reference_label)
  ax.set_xscale("log")
  ax.set_xlabel("horizon T")
  ax.grid(alpha=0.3)


def write(workdir, results, timings, record_fields) -> None:
  """results.json, results.csv (the records) and timings.json."""
  common_outputs.write_json(os.path.join(workdir, "results.json"), results)
  common_outputs.write_csv(
    os.path.join(workdir, "results.csv"), results["records"], record_fields
  )
  common_outputs.write_json(os.path.join(workdir, "timings.json"), timings)


def finish(config, workdir, results, timings, start, outputs) -> None:
  """A run's closing steps: the figure, the files and the printed summary.

  Args:
    config: the run's config (``config.plot``: draw the figure).
    workdir: the run's directory.
    results: the contents of results.json, with its ``"checks"``.
    timings: seconds per timing key (:func:`measure_cells`); the wall time
      since `start` (a ``time.perf_counter()``) and the platform are added.
    start: when the run started.
    outputs: the experiment's outputs module, with ``plot(workdir,
      results)``, ``write(workdir, results, timings)`` and
      ``table(results)``.
  """
  if config.plot and common_outputs.is_writer():
    logging.info("wrote %s", outputs.plot(workdir, results))
  timings["wall_time_s"] = time.perf_counter() - start
  timings["platform"] = jax.devices()[0].platform
  outputs.write(workdir, results, timings)
  if common_outputs.is_writer():
    print(outputs.table(results))
    for check, value in results["checks"].items():
      print(f"{check}: {value['holds']}  ({value['expected']})")
    print(f"wall time {timings['wall_time_s']:.1f}s; outputs in {workdir}")
