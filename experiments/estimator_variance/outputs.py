"""The experiment's files and its table on stdout, written on process 0.

``results.json`` is deterministic (the same config gives the same bytes);
``timings.json`` is not, hence kept apart. Their fields:
:mod:`experiments.estimator_variance.schema`.
"""

import os
from typing import Any

from experiments.common import outputs
from experiments.estimator_variance.costs import PARAMS


def write(workdir: str, results: dict[str, Any]) -> None:
  """``results.json`` and the CSVs of the three record lists."""
  if not outputs.is_writer():
    return
  os.makedirs(workdir, exist_ok=True)
  outputs.write_json(os.path.join(workdir, "results.json"), results)
  for name, key in (
    ("results.csv", "records"),
    ("sigma_sweep.csv", "sigma_sweep"),
    ("dim_sweep.csv", "dim_sweep"),
  ):
    outputs.write_csv(os.path.join(workdir, name), results[key])


def write_timings(workdir: str, timings: dict[str, Any]) -> None:
  outputs.write_json(
    os.path.join(workdir, "timings.json"), timings, strict=False
  )


def print_table(records, costs, names) -> None:
  """Empirical (exact) variance, per cost and parameter, one row per k."""
  if not outputs.is_writer():
    return
  width = 26
  for cost in costs:
    for p in PARAMS:
      rows = [r for r in records if r["cost"] == cost and r["param"] == p]
      print(f"\nVariance of d/d{p} E[{cost}]: empirical (exact), z")
      print(f"{'k':>7} " + "".join(f"{n:>{width}}" for n in names))
      for k in sorted({r["k"] for r in rows}):
        cells = []
        for n in names:
          (r,) = [r for r in rows if r["k"] == k and r["estimator"] == n]
          z = "" if r["variance_z"] is None else f" {r['variance_z']:+.1f}"
          cells.append(
            f" {r['variance']:.3g} ({r['exact_variance']:.3g}){z}".rjust(width)
          )
        print(f"{k:7.3f} " + "".join(cells))
