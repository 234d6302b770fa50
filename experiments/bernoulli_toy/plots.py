"""The figures: p against step, and the gradient variance against step.

* ``probability.png``: one panel per target t; per estimator the median
  over seeds of :math:`p = \\sigma(\\theta)` against step, with the band
  between the smallest and largest seed. The optimum is p = 0 (t < 1/2).
* ``variance.png``: one panel per target; per estimator the variance of the
  step's gradient estimate against step on a log scale, measured from fresh
  draws at the current theta (solid) and exact at the same theta (dashed),
  each the mean over seeds. Where the exact variance is 0 (DisARM at
  theta = 0, where its estimate is a constant) neither is drawn: the
  measured value there is floating-point rounding.
* ``variance_vs_theta.png`` (when the theta grid is on): the exact variance
  of one unit against theta, the same theta for every estimator.
"""

import os
from typing import Any

import numpy as np

from experiments.common import plotting

# Colours for the estimators the shared palette does not name.
_COLORS = {
  "arm": "tab:olive",
  "disarm": "tab:cyan",
  "concrete": "tab:pink",
  "straight_through": "tab:gray",
  "rebar": "tab:red",
  "relax": "tab:green",
  "score_function": "tab:orange",
  "leave_one_out": "tab:purple",
}


def _color(name: str) -> str | None:
  return _COLORS.get(name) or plotting.color(name)


def _panels(plt, num: int):
  fig, axes = plt.subplots(1, num, figsize=(4.2 * num, 3.6), squeeze=False)
  return fig, axes[0]


def plot(workdir: str, results: dict[str, Any]) -> list[str]:
  """Writes the figures of the module docstring; returns their paths."""
  plt = plotting.pyplot()
  steps = np.asarray(results["steps"])
  targets = results["targets"]
  runs = {(r["estimator"], r["target"]): r for r in results["runs"]}
  written = []

  fig, axes = _panels(plt, len(targets))
  for ax, t in zip(axes, targets, strict=True):
    for name in results["estimators"]:
      p = np.asarray(runs[name, t]["p"])  # [S, L]
      color = _color(name)
      ax.plot(steps, np.median(p, 0), color=color, label=name)
      ax.fill_between(steps, p.min(0), p.max(0), color=color, alpha=0.15, lw=0)
    ax.set_title(f"t = {t}")
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.02)
  axes[0].set_ylabel("p = sigmoid(theta)  (optimum 0)")
  axes[-1].legend(fontsize=7, loc="upper right")
  fig.tight_layout()
  written.append(plotting.save(fig, os.path.join(workdir, "probability.png")))

  fig, axes = _panels(plt, len(targets))
  for ax, t in zip(axes, targets, strict=True):
    for name in results["estimators"]:
      run = runs[name, t]
      color = _color(name)
      measured = np.mean(run["grad_variance"], 0)
      if run["exact_variance"] is not None:
        exact = np.mean(run["exact_variance"], 0)
        # Where the exact variance is 0 the estimate is a constant and the
        # measured value is rounding (~1e-35): not drawn.
        measured = np.where(exact > 0, measured, np.nan)
        exact = np.where(exact > 0, exact, np.nan)
        ax.plot(steps, exact, color=color, ls="--", lw=1)
      ax.plot(steps, measured, color=color, label=name)
    ax.set_yscale("log")
    ax.set_title(f"t = {t}")
    ax.set_xlabel("step")
  axes[0].set_ylabel("variance of the step's gradient")
  handles, _ = axes[-1].get_legend_handles_labels()
  handles += [
    plt.Line2D([], [], color="k", label="measured"),
    plt.Line2D([], [], color="k", ls="--", lw=1, label="exact"),
  ]
  axes[-1].legend(handles=handles, fontsize=7, loc="best")
  fig.tight_layout()
  written.append(plotting.save(fig, os.path.join(workdir, "variance.png")))

  grid = results["theta_grid"]
  if grid["theta"] and grid["unit_variance"]:
    fig, axes = _panels(plt, len(targets))
    for i, (ax, t) in enumerate(zip(axes, targets, strict=True)):
      for name, values in grid["unit_variance"].items():
        ax.plot(grid["theta"], values[i], color=_color(name), label=name)
      ax.set_yscale("log")
      ax.set_title(f"t = {t}")
      ax.set_xlabel("theta")
    axes[0].set_ylabel("exact variance of one unit")
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    written.append(
      plotting.save(fig, os.path.join(workdir, "variance_vs_theta.png"))
    )
  return [w for w in written if w]
