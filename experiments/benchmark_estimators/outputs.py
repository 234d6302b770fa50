"""The results in `workdir`: results.json, results.csv and table.md.

* ``results.json``::

    {"config": {...}, "device": str, "jax_version": str,
     "floor_s_per_sample": float, "naive_score_function_s_per_sample": float,
     "measure_valued_floor_s_per_sample": float | null,
     "delta_method_floor_s_per_sample": float | null,
     "weighted_floor_s_per_sample": float | null,
     "bernoulli_score_function_s_per_sample": float | null,
     "estimators": {name: {"median_s": float, "min_s": float,
                           "times_s": [float], "num_samples": int,
                           "chunk_size": int, "compile_s": float,
                           "s_per_sample": float, "s_per_sample_min": float,
                           "cost_evaluations": int,  # per sample, registry
                           "ratio_to_floor": float,       # medians
                           "ratio_to_floor_min": float,   # minima
                           "ratio_to_naive_score_function": float,
                           "ratio_to_own_floor": float,   # MV, delta, SF
                           "ratio_to_own_floor_min": float,  # likewise
                           "within_target": bool,  # medians; MV: own floor
                           "within_own_floor_target": bool,  # if any
                           # the discrete estimators (Bernoulli problem):
                           "ratio_to_score_function": float,
                           "ratio_to_score_function_min": float,
                           "ratio_to_score_function_per_evaluation": float,
                           "ratio_to_score_function_per_estimate": float,
                           "rows_per_estimate": int,
                           "within_score_function_target": bool}},
     "programs": {name: {...same timing fields...}},  # the floors and naive
                 # (naive_score_function's and bernoulli_naive_score_function's
                 # also have "ratio_to_floor": float)
     "memory": null | {"method": str, "estimator": str, "cost": str,
                       "num_samples": int, "dim": int, "chunk_size": int,
                       "seed": int, "peak_rss_bytes": int,
                       "rss_before_bytes": int, "compiled_temp_bytes": int,
                       "compile_s": float, "wall_s": float,
                       "num_nonfinite": int, "within_target": bool}}

  Estimator names are the registry's (``measure_valued`` was
  ``measure_valued_coupled``); ``chunk_size``, ``compile_s`` and
  ``cost_evaluations`` are new, and so are the discrete estimators' fields
  (their ``ratio_to_floor`` and ``ratio_to_naive_score_function`` are to the
  Bernoulli's floor and naive score function, and their ``within_target``
  is ``within_score_function_target``); no field was renamed.

* ``results.csv``: one row per timed program; ``table.md``: the same as a
  Markdown table (also logged).

The same schema as constants, field -> type, against which the tests check
a real results.json: :data:`RESULTS_FIELDS` (the top level);
:data:`TIMING_FIELDS` (every program; :data:`NAIVE_FIELDS` for the naive
score function); :data:`ESTIMATOR_FIELDS` (every estimator), plus
:data:`OWN_FLOOR_FIELDS` for those of ``problem.OWN_FLOORS``,
:data:`DISCRETE_FIELDS` for the discrete estimators; and
:data:`MEMORY_FIELDS`. Files are written on process 0 only
(:mod:`experiments.common.outputs`).
"""

import functools
import os
from typing import Any

import jax
import ml_collections
from absl import logging

from experiments.common import outputs

TIMING_FIELDS = {
  "median_s": float,
  "min_s": float,
  "times_s": list[float],
  "num_samples": int,
  "chunk_size": int,
  "compile_s": float,
  "s_per_sample": float,
  "s_per_sample_min": float,
}
NAIVE_FIELDS = {**TIMING_FIELDS, "ratio_to_floor": float}
ESTIMATOR_FIELDS = {
  **TIMING_FIELDS,
  "cost_evaluations": int,
  "ratio_to_floor": float,
  "ratio_to_floor_min": float,
  "ratio_to_naive_score_function": float,
  "within_target": bool,
}
OWN_FLOOR_FIELDS = {
  "ratio_to_own_floor": float,
  "ratio_to_own_floor_min": float,
  "within_own_floor_target": bool,
}
DISCRETE_FIELDS = {
  "ratio_to_score_function": float,
  "ratio_to_score_function_min": float,
  "ratio_to_score_function_per_evaluation": float,
  "ratio_to_score_function_per_estimate": float,
  "rows_per_estimate": int,
  "within_score_function_target": bool,
}
MEMORY_FIELDS = {
  "method": str,
  "estimator": str,
  "cost": str,
  "num_samples": int,
  "dim": int,
  "chunk_size": int,
  "seed": int,
  "peak_rss_bytes": int,
  "rss_before_bytes": int,
  "compiled_temp_bytes": int,
  "compile_s": float,
  "wall_s": float,
  "num_nonfinite": int,
  "within_target": bool,
}
RESULTS_FIELDS = {
  "config": dict,
  "device": str,
  "jax_version": str,
  "floor_s_per_sample": float,
  "naive_score_function_s_per_sample": float,
  "measure_valued_floor_s_per_sample": float | None,
  "delta_method_floor_s_per_sample": float | None,
  "weighted_floor_s_per_sample": float | None,
  "bernoulli_score_function_s_per_sample": float | None,
  "estimators": dict,  # name -> ESTIMATOR_FIELDS (| OWN_FLOOR_FIELDS)
  "programs": dict,  # name -> TIMING_FIELDS (NAIVE_FIELDS)
  "memory": dict | None,  # MEMORY_FIELDS
}

_CSV_COLUMNS = (
  "program",
  "num_samples",
  "chunk_size",
  "median_s",
  "s_per_sample",
  "min_s",
  "compile_s",
  "ratio_to_floor",
  "ratio_to_floor_min",
  "ratio_to_naive_score_function",
  "ratio_to_own_floor",
  "ratio_to_own_floor_min",
  "ratio_to_score_function",
  "ratio_to_score_function_per_estimate",
  "within_target",
)


def results(
  config: ml_collections.ConfigDict,
  programs: dict[str, dict[str, Any]],
  estimators: dict[str, dict[str, Any]],
  memory: dict[str, Any] | None,
) -> dict[str, Any]:
  """The content of results.json (schema in the module docstring)."""

  def s_per_sample(program: str) -> float | None:
    return programs.get(program, {}).get("s_per_sample")

  return {
    "config": config.to_dict(),
    "device": str(jax.devices()[0].device_kind),
    "jax_version": jax.__version__,
    "floor_s_per_sample": s_per_sample("floor"),
    "naive_score_function_s_per_sample": s_per_sample("naive_score_function"),
    "measure_valued_floor_s_per_sample": s_per_sample("measure_valued_floor"),
    "delta_method_floor_s_per_sample": s_per_sample("delta_method_floor"),
    "weighted_floor_s_per_sample": s_per_sample("weighted_floor"),
    "bernoulli_score_function_s_per_sample": s_per_sample(
      "bernoulli_score_function"
    ),
    "programs": programs,
    "estimators": estimators,
    "memory": memory,
  }


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per timed program: the floors and naive, then the estimators."""
  return [
    {"program": name, **record}
    for group in ("programs", "estimators")
    for name, record in results[group].items()
  ]


def _format_ratio(record: dict[str, Any], key: str) -> str:
  value = record.get(key)
  return "" if value is None else f"{value:.3f}"


def table(results: dict[str, Any]) -> str:
  """The rows as a Markdown table, then the memory measurement if any."""
  lines = [
    "| program | samples | compile s | median s | us/sample | / floor "
    "| / floor (min) | / naive SF | / own floor | / own floor (min) "
    "| / SF | / SF per estimate |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows(results):
    fmt = functools.partial(_format_ratio, r)
    lines.append(
      f"| {r['program']} | {r['num_samples']} | {r['compile_s']:.2f} | "
      f"{r['median_s']:.4f} | {1e6 * r['s_per_sample']:.3f} | "
      f"{fmt('ratio_to_floor')} | {fmt('ratio_to_floor_min')} | "
      f"{fmt('ratio_to_naive_score_function')} | {fmt('ratio_to_own_floor')} "
      f"| {fmt('ratio_to_own_floor_min')} | {fmt('ratio_to_score_function')} "
      f"| {fmt('ratio_to_score_function_per_estimate')} |"
    )
  memory = results["memory"]
  if memory:
    lines.append("")
    lines.append(
      f"gradient_moments({memory['estimator']}) over "
      f"{memory['num_samples']} x {memory['dim']}: peak RSS "
      f"{memory['peak_rss_bytes'] / 2**20:.0f} MiB (before the call "
      f"{memory['rss_before_bytes'] / 2**20:.0f} MiB; XLA temp "
      f"{memory['compiled_temp_bytes'] / 2**20:.1f} MiB), "
      f"{memory['wall_s']:.1f} s."
    )
  return "\n".join(lines) + "\n"


def write(results: dict[str, Any], workdir: str) -> None:
  """Writes results.json, results.csv and table.md (on process 0); logs it."""
  outputs.make_workdir(workdir)
  outputs.write_json(os.path.join(workdir, "results.json"), results)
  outputs.write_csv(
    os.path.join(workdir, "results.csv"), rows(results), _CSV_COLUMNS
  )
  text = table(results)
  if outputs.is_writer():
    with open(os.path.join(workdir, "table.md"), "w") as f:
      f.write(text)
  logging.info("\n%s", text)
