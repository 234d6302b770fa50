"""The experiments' plot style: one colour and label per estimator name.

matplotlib is an optional dependency (the ``experiments`` extra); it is
imported on first use, with the non-interactive Agg backend.
"""

import os
from typing import Any

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
