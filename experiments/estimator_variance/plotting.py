"""The figures: Figures 2-3's layout, the sweeps, work-normalized variance.

* ``variance_<cost>.png``: log-variance against ``k``, one panel per
  parameter, one line per estimator, exact values dashed (the paper's
  layout).
* ``work_normalized_variance.png``: variance x seconds per sample.
* ``sigma_sweep.png``: against the scale sigma; ``dim_sweep.png``: against
  the dimension, with the total variance over all 2 d parameters.
"""

import os

import numpy as np

from experiments.common import plotting
from experiments.estimator_variance.costs import COSTS
from experiments.estimator_variance.costs import PARAMS
from experiments.estimator_variance.records import ZERO_VARIANCE

# Fixed margins rather than tight_layout, which measures every tick label.
_MARGINS = dict(
  left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.25, hspace=0.45
)
_LABELS = {
  "pathwise": "pathwise",
  "score_function": "score function",
  "score_function_cv": "score function + delta CV (estimated c)",
  "measure_valued": "measure-valued",
}
_GREEK = {"mu": "μ", "sigma": "σ"}


def _log_scale(ax, which="y", **kwargs) -> None:
  """A log axis with plain-text tick labels (no mathtext to typeset)."""
  from matplotlib import ticker  # noqa: PLC0415  (optional dependency)

  axis = ax.yaxis if which == "y" else ax.xaxis
  (ax.set_yscale if which == "y" else ax.set_xscale)("log", **kwargs)
  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axis.set_minor_locator(ticker.NullLocator())


def _save(fig, legend_ax, path: str) -> str | None:
  """One legend for the figure, under the panels (it hides no data)."""
  handles, labels = legend_ax.get_legend_handles_labels()
  fig.legend(
    handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False
  )
  # Fixed room in inches for the x labels plus two rows of legend entries.
  fig.subplots_adjust(**{**_MARGINS, "bottom": 1.0 / fig.get_figheight()})
  return plotting.save(fig, path)


def _lines(ax, names, rows, x_field, y_of, exact_of=None) -> None:
  for n in names:
    sel = [r for r in rows if r["estimator"] == n]
    if not sel:
      continue
    xs = np.array([r[x_field] for r in sel], np.float64)
    ys = np.array([y_of(r) for r in sel], np.float64)
    # Roundoff-level "variances" (the delta method on the quadratic cost,
    # where the estimator is exact) cannot sit on a log axis with the rest.
    shown = ys > ZERO_VARIANCE
    tag = (
      ""
      if shown.any()
      else " (zero where h = f, as for (x - k)²: off the log axis)"
    )
    ax.plot(
      xs[shown],
      ys[shown],
      ".-",
      color=plotting.color(n),
      label=_LABELS[n] + tag,
      lw=1.5,
      ms=4,
    )
    if exact_of is not None:
      exact_ys = np.array([exact_of(r) for r in sel], np.float64)
      keep = exact_ys > ZERO_VARIANCE
      ax.plot(xs[keep], exact_ys[keep], "--", color="k", lw=0.8)
  _log_scale(ax)
  ax.grid(True, which="major", alpha=0.3)


def _rows(records, cost, param=None):
  return [
    r
    for r in records
    if r["cost"] == cost and (param is None or r["param"] == param)
  ]


def _grid_of_panels(plt, num_costs: int, num_panels: int = 2):
  width = 10 if num_panels == 2 else 14
  return plt.subplots(
    num_costs, num_panels, figsize=(width, 3.2 * num_costs), squeeze=False
  )


def _dim_totals(ax, names, rows) -> None:
  """Total variance, summed over both parameters of all d coordinates."""
  for n in names:
    sel = [r for r in rows if r["estimator"] == n]
    ds = np.array(sorted({r["dim"] for r in sel}))
    total = np.array(
      [sum(r["total_variance"] for r in sel if r["dim"] == d) for d in ds]
    )
    exact_total = np.array(
      [sum(r["exact_total_variance"] for r in sel if r["dim"] == d) for d in ds]
    )
    shown = total > ZERO_VARIANCE
    ax.plot(ds[shown], total[shown], ".-", color=plotting.color(n), lw=1.5)
    # As in `_lines`: roundoff-level references stay off the log axis.
    keep = exact_total > ZERO_VARIANCE
    ax.plot(ds[keep], exact_total[keep], "--", color="k", lw=0.8)
  _log_scale(ax)
  ax.grid(True, which="major", alpha=0.3)


def plot(workdir, parsed, results, timings) -> list[str]:
  """Writes the figures to `workdir` (on process 0); returns their paths."""
  plt = plotting.pyplot()
  names, costs = parsed.estimators, parsed.costs
  records = results["records"]
  variance = lambda r: r["variance"]
  exact = lambda r: r["exact_variance"]
  paths = []

  for c in costs:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, p in zip(axes, PARAMS, strict=True):
      _lines(ax, names, _rows(records, c, p), "k", variance, exact)
      ax.set_xlabel("k")
      ax.set_ylabel("variance")
      ax.set_title(
        f"{COSTS[c].label}: gradient w.r.t. {_GREEK[p]}  (- - exact)"
      )
    paths.append(
      _save(fig, axes[0], os.path.join(workdir, f"variance_{c}.png"))
    )

  per_sample = {t["estimator"]: t["seconds_per_sample"] for t in timings}
  fig, axes = _grid_of_panels(plt, len(costs))
  for row, c in enumerate(costs):
    for ax, p in zip(axes[row], PARAMS, strict=True):
      _lines(
        ax,
        names,
        _rows(records, c, p),
        "k",
        lambda r: r["variance"] * per_sample[r["estimator"]],
      )
      ax.set_xlabel("k")
      ax.set_ylabel("variance x s/sample")
      ax.set_title(f"{COSTS[c].label}: work-normalized, {_GREEK[p]}")
  paths.append(
    _save(
      fig, axes[0, 0], os.path.join(workdir, "work_normalized_variance.png")
    )
  )

  if results["sigma_sweep"]:
    fig, axes = _grid_of_panels(plt, len(costs))
    for row, c in enumerate(costs):
      for ax, p in zip(axes[row], PARAMS, strict=True):
        rows = _rows(results["sigma_sweep"], c, p)
        _lines(ax, names, rows, "scale", variance, exact)
        _log_scale(ax, "x")
        ax.set_xlabel("σ")
        ax.set_ylabel("variance")
        ax.set_title(
          f"{COSTS[c].label}, k={rows[0]['k']:g}: {_GREEK[p]}  (- - exact)"
        )
    paths.append(
      _save(fig, axes[0, 0], os.path.join(workdir, "sigma_sweep.png"))
    )

  if results["dim_sweep"]:
    fig, axes = _grid_of_panels(plt, len(costs), 3)
    for row, c in enumerate(costs):
      rows = _rows(results["dim_sweep"], c)
      for ax, p in zip(axes[row][:2], PARAMS, strict=True):
        _lines(ax, names, _rows(rows, c, p), "dim", variance, exact)
        ax.set_title(
          f"{COSTS[c].label}, k={rows[0]['k']:g}: {_GREEK[p]}₁  (- - exact)"
        )
      _dim_totals(axes[row][2], names, rows)
      axes[row][2].set_title(
        f"{COSTS[c].label}: total variance, 2d params (- - exact)"
      )
      for ax in axes[row]:
        _log_scale(ax, "x", base=2)
        ax.set_xlabel("dimension d")
    paths.append(_save(fig, axes[0, 0], os.path.join(workdir, "dim_sweep.png")))
  return [p for p in paths if p is not None]
