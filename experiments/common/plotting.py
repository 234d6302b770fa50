"""The experiments' plot style: one colour and label per estimator name.

matplotlib is an optional dependency (the ``experiments`` extra); it is
imported on first use, with the non-interactive Agg backend.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.common import outputs

# One colour per registry name (and the experiments' own variants), so that
# an estimator looks the same in every figure.
COLORS = {
  "pathwise": "tab:blue",
  "score_function": "tab:orange",
  "score_function_cv": "tab:green",
  "delta_method": "tab:green",
  "measure_valued": "tab:red",
  "leave_one_out": "tab:purple",
  "score_function_moving_average": "tab:brown",
  "stl": "tab:pink",
  "dreg": "tab:gray",
  "antithetic_pathwise": "tab:olive",
  "antithetic_score_function": "tab:cyan",
  # The discrete estimators (issue 12).
  "arm": "tab:olive",
  "disarm": "tab:red",
  "vimco": "tab:gray",
  "rebar": "tab:green",
  "relax": "tab:cyan",
  "concrete": "tab:pink",
  "straight_through": "tab:blue",
}


def pyplot() -> Any:
  """``matplotlib.pyplot`` with the Agg backend."""
  import matplotlib  # noqa: PLC0415  (optional dependency)

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415

  return plt


def color(name: str) -> str | None:
  return COLORS.get(name)


def save(fig: Any, path: str, dpi: int = 110) -> str | None:
  """Saves and closes `fig` on process 0; returns the path written."""
  plt = pyplot()
  written = None
  if outputs.is_writer():
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)
    written = path
  plt.close(fig)
  return written


def image_grid(
  rows: Sequence[tuple[str, np.ndarray]], side: int, title: str, path: str
) -> None:
  """One row of `side` x `side` images per `(label, images [num, dim])`."""
  plt = pyplot()
  num = rows[0][1].shape[0]
  fig, axes = plt.subplots(
    len(rows),
    num,
    figsize=(1.0 * num + 1.5, 1.0 * len(rows) + 0.6),
    squeeze=False,
  )
  for i, (label, images) in enumerate(rows):
    for j in range(num):
      ax = axes[i, j]
      ax.imshow(images[j].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center")
  fig.suptitle(title)
  fig.tight_layout()
  save(fig, path, dpi=100)
