"""The figures: learning curves and the gradient variance with/without baseline.

* ``learning_curve.png``: mean return (band: +- 2 SE) against the update
  and against the training wall-clock, with the solved threshold;
* ``grad_variance.png``: trace of the covariance of one episode's
  policy-gradient estimate against the update, log scale, with the value
  baseline and without it (same policy, same episodes), bands +- 2 jackknife
  SE; and their ratio.
"""

import os
from typing import Any

import numpy as np

from experiments.common import plotting


def plot_all(results: dict[str, Any], workdir: str) -> None:
  """Writes the two figures to `workdir` (on process 0)."""
  plot_learning_curve(results, os.path.join(workdir, "learning_curve.png"))
  plot_gradient_variance(results, os.path.join(workdir, "grad_variance.png"))


def _column(rows, field):
  return np.array([r[field] for r in rows], dtype=float)


def plot_learning_curve(results: dict[str, Any], path: str) -> None:
  plt = plotting.pyplot()
  rows, config = results["history"], results["config"]
  mean, se = _column(rows, "mean_return"), _column(rows, "mean_return_se")
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  for ax, x_field, label in (
    (axes[0], "step", "update"),
    (axes[1], "wall_time_s", "training wall-clock (s)"),
  ):
    x = _column(rows, x_field)
    ax.plot(x, mean, color="tab:blue", marker=".", label="mean return")
    ax.fill_between(x, mean - 2 * se, mean + 2 * se, alpha=0.25)
    ax.axhline(
      results["solved"]["threshold"], color="k", ls="--", lw=1, label="solved"
    )
    ax.set(xlabel=label)
    ax.grid(alpha=0.3)
  axes[0].set(ylabel="mean undiscounted return", title="return vs update")
  axes[1].set(title="return vs wall-clock")
  axes[0].legend(loc="lower right")
  fig.suptitle(
    f"REINFORCE + value baseline on {results['env']}: "
    f"{config['num_envs']} episodes per update; "
    f"{config['num_eval_envs']} fresh episodes per evaluation"
  )
  fig.tight_layout()
  plotting.save(fig, path)


def plot_gradient_variance(results: dict[str, Any], path: str) -> None:
  plt = plotting.pyplot()
  rows, config = results["history"], results["config"]
  steps = _column(rows, "step")
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for suffix, label, color in (
    ("no_baseline", "b = 0", "tab:orange"),
    ("baseline", "b = V(s, t) (learned)", "tab:green"),
  ):
    var = _column(rows, f"grad_variance_{suffix}")
    se = _column(rows, f"grad_variance_{suffix}_se")
    axes[0].semilogy(steps, var, color=color, marker=".", label=label)
    axes[0].fill_between(
      steps,
      np.maximum(var - 2 * se, var * 1e-3),
      var + 2 * se,
      color=color,
      alpha=0.2,
    )
  ratio = _column(rows, "grad_variance_no_baseline") / _column(
    rows, "grad_variance_baseline"
  )
  axes[1].semilogy(steps, ratio, color="k", marker=".")
  axes[0].set(
    xlabel="update",
    ylabel="trace of covariance",
    title="per-episode policy-gradient variance",
  )
  axes[1].set(
    xlabel="update",
    ylabel="variance(b = 0) / variance(b = V)",
    title="what the value baseline buys",
  )
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  fig.suptitle(
    f"{config['num_variance_envs']} episodes at each evaluated policy, "
    f"discount {config['discount']}"
  )
  fig.tight_layout()
  plotting.save(fig, path)
