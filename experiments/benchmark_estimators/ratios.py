"""Each estimator's time as ratios to the floors, and its verdicts.

Ratios are per sample, so the measure-valued estimators, run on fewer
samples, compare; ``ratio_to_floor`` and the verdicts use the medians,
``ratio_to_floor_min`` the minima (on a shared machine, the least contended
runs). An estimator is ``within_target`` if its ratio to the common floor is
at most ``config.target_ratio``, except the measure-valued estimators, which
are held to their own floor (``4 d`` cost evaluations per sample are their
definition). The estimators of :data:`problem.OWN_FLOORS` also get
``within_own_floor_target``.
"""

from typing import Any

import rgrad
from experiments.benchmark_estimators import problem


def program_records(
  records: dict[str, dict[str, Any]], names: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
  """The floors' and naive score function's records (``programs``).

  The naive score function's record also gets its ``ratio_to_floor``.
  """
  programs = {name: r for name, r in records.items() if name not in names}
  programs["naive_score_function"]["ratio_to_floor"] = (
    programs["naive_score_function"]["s_per_sample"]
    / programs["floor"]["s_per_sample"]
  )
  return programs


def _ratios(
  name: str, record: dict, programs: dict, target_ratio: float
) -> dict:
  """An estimator's record with its ratios to the floors and its verdicts."""
  floor = programs["floor"]
  naive = programs["naive_score_function"]
  record = dict(record)
  # Per sample: the measure-valued estimators run on fewer samples.
  record["ratio_to_floor"] = record["s_per_sample"] / floor["s_per_sample"]
  record["ratio_to_floor_min"] = (
    record["s_per_sample_min"] / floor["s_per_sample_min"]
  )
  record["ratio_to_naive_score_function"] = (
    record["s_per_sample"] / naive["s_per_sample"]
  )
  if name in problem.OWN_FLOORS:
    own = programs[problem.OWN_FLOORS[name]]
    record["ratio_to_own_floor"] = record["s_per_sample"] / own["s_per_sample"]
    record["ratio_to_own_floor_min"] = (
      record["s_per_sample_min"] / own["s_per_sample_min"]
    )
    record["within_own_floor_target"] = (
      record["ratio_to_own_floor"] <= target_ratio
    )
  if name in problem.MEASURE_VALUED:
    # 4 d cost evaluations per sample are the estimator's definition.
    record["within_target"] = record["ratio_to_own_floor"] <= target_ratio
  else:
    # The delta method and the score-function family are held to the
    # common floor too; against their own floors (the O(d^2) control
    # variate; the second pass over the draws) see within_own_floor_target.
    record["within_target"] = record["ratio_to_floor"] <= target_ratio
  return record


def estimator_records(
  records: dict[str, dict[str, Any]],
  names: tuple[str, ...],
  programs: dict[str, dict[str, Any]],
  target_ratio: float,
  dim: int,
) -> dict[str, dict[str, Any]]:
  """The estimators' records (``estimators``): timing, ratios, verdicts.

  Args:
    records: every program's timing record, by name.
    names: the estimators, in order.
    programs: the floors' records (:func:`program_records`).
    target_ratio: the verdicts' threshold.
    dim: the Gaussian's dimension, for the registry's ``cost_evaluations``.
  """
  estimators = {}
  for name in names:
    record = _ratios(name, records[name], programs, target_ratio)
    spec = rgrad.get_estimator(name)
    record["cost_evaluations"] = spec.num_cost_evaluations(dim)
    estimators[name] = record
  return estimators
