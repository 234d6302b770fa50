"""The figures, one line per estimator (colours of experiments.common).

* ``elbo_and_variance.png``: the paper's layout: the exact train ELBO
  against the step, and the log-variance of the gradient for the mean and
  for the log-scale parameters against the step;
* ``work_normalized_variance.png``: the two variances times each
  estimator's measured seconds per step (variance per unit of compute);
* ``test_metrics.png``: test log-likelihood and accuracy against the step
  and against the training wall-clock;
* ``cv_coefficient.png`` (when ``score_function_cv_online`` ran): the mean of
  its online control-variate coefficients against the step.
"""

import os
from typing import Any

import numpy as np

from experiments.common import plotting

_EXTRA_COLORS = {
  "measure_valued_cv": "tab:pink",
  "score_function_cv_online": "tab:olive",
}


def _color(name: str) -> str | None:
  return _EXTRA_COLORS.get(name) or plotting.color(name)


def _series(rows, field):
  return np.array([r["step"] for r in rows]), np.array(
    [np.nan if r[field] is None else r[field] for r in rows], float
  )


def plot_all(results: dict[str, Any], workdir: str) -> list[str]:
  """Writes the figures to `workdir` (on process 0); returns their paths."""
  paths = [
    plot_paper_figure(results, os.path.join(workdir, "elbo_and_variance.png")),
    plot_work_normalized(
      results, os.path.join(workdir, "work_normalized_variance.png")
    ),
    plot_test_metrics(results, os.path.join(workdir, "test_metrics.png")),
  ]
  if "score_function_cv_online" in results["estimators"]:
    paths.append(
      plot_coefficient(results, os.path.join(workdir, "cv_coefficient.png"))
    )
  return [p for p in paths if p]


def _title(results):
  c = results["config"]
  return (
    f"Bayesian logistic regression, breast cancer (d = "
    f"{results['data']['dim']}): batch {c['batch_size']}, "
    f"{c['num_samples']} samples, SGD {c['learning_rate']:g} cosine"
  )


def _finish(fig, axes, results, path) -> str | None:
  """The step-axis figures' common tail: legend, log grid, title, save."""
  axes[0].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  fig.suptitle(_title(results))
  fig.tight_layout()
  return plotting.save(fig, path)


def plot_paper_figure(results: dict[str, Any], path: str) -> str | None:
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
  names = results["estimators"]
  for n in names:
    steps, elbo = _series(results["evaluation"][n], "elbo_exact")
    axes[0].plot(steps, elbo, color=_color(n), label=n)
    for ax, field in zip(
      axes[1:], ("variance_loc", "variance_log_scale"), strict=True
    ):
      steps, var = _series(results["variance"][n], field)
      ax.semilogy(steps, var, color=_color(n), lw=0.8, label=n)
  # The first rows (from the prior) would squash the curves.
  later = [
    r["elbo_exact"]
    for n in names
    for r in results["evaluation"][n]
    if r["step"] >= results["config"]["num_steps"] // 10
  ]
  if later:
    low, high = np.percentile(later, 1), max(later)
    pad = 0.05 * (high - low) + 1e-9
    axes[0].set_ylim(low - pad, high + pad)
  axes[0].set(xlabel="step", ylabel="ELBO (nats, exact)", title="train ELBO")
  axes[1].set(
    xlabel="step",
    ylabel="variance (sum over coordinates)",
    title="gradient variance: mean parameters",
  )
  axes[2].set(xlabel="step", title="gradient variance: log-scale parameters")
  return _finish(fig, axes, results, path)


def plot_work_normalized(results: dict[str, Any], path: str) -> str | None:
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=False)
  for n in results["estimators"]:
    seconds = results["final"][n]["seconds_per_step"]
    for ax, field in zip(
      axes, ("variance_loc", "variance_log_scale"), strict=True
    ):
      steps, var = _series(results["variance"][n], field)
      ax.semilogy(
        steps,
        var * seconds,
        color=_color(n),
        lw=0.8,
        label=f"{n} ({1e3 * seconds:.2f} ms/step)",
      )
  axes[0].set(
    xlabel="step",
    ylabel="variance x seconds per step",
    title="work-normalized variance: mean parameters",
  )
  axes[1].set(xlabel="step", title="work-normalized variance: log-scales")
  return _finish(fig, axes, results, path)


def plot_test_metrics(results: dict[str, Any], path: str) -> str | None:
  plt = plotting.pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row")
  for n in results["estimators"]:
    rows = results["evaluation"][n]
    seconds = np.array([r["wall_time_s"] for r in rows])
    for i, field in enumerate(("test_log_likelihood", "test_accuracy")):
      steps, value = _series(rows, field)
      axes[i, 0].plot(steps, value, color=_color(n), label=n)
      axes[i, 1].plot(seconds, value, color=_color(n), label=n)
  axes[0, 0].set(ylabel="test log-likelihood (nats / point)")
  axes[1, 0].set(xlabel="step", ylabel="test accuracy")
  axes[1, 1].set(xlabel="training wall-clock (s)")
  axes[0, 0].set_title("against the step")
  axes[0, 1].set_title("against the wall-clock")
  # The prior's test log-likelihood would squash the curves.
  values = [
    r["test_log_likelihood"]
    for n in results["estimators"]
    for r in results["evaluation"][n][1:]
  ]
  if values:
    low, high = np.percentile(values, 2), max(values)
    pad = 0.05 * (high - low) + 1e-9
    axes[0, 0].set_ylim(low - pad, high + pad)
  axes[0, 0].legend(fontsize=8)
  for ax in axes.ravel():
    ax.grid(alpha=0.3)
  fig.suptitle(_title(results))
  fig.tight_layout()
  return plotting.save(fig, path)


def plot_coefficient(results: dict[str, Any], path: str) -> str | None:
  plt = plotting.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  rows = results["variance"]["score_function_cv_online"]
  for field, style in (
    ("cv_coefficient_loc", "-"),
    ("cv_coefficient_log_scale", "--"),
  ):
    steps, value = _series(rows, field)
    ax.plot(steps, value, style, color=_color("score_function_cv_online"))
  ax.axhline(1.0, color="gray", lw=0.8)
  ax.set(
    xlabel="step",
    ylabel="mean coefficient over coordinates",
    title="online delta-method coefficient: mean (solid), log-scale (dashed)",
  )
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return plotting.save(fig, path)
