"""Every timed program: a chunk_fn streamed through the moments engine.

Each program is :func:`rgrad.diagnostics.stream_moments` over ``num_samples``
draws in chunks of ``chunk_size``; only the ``chunk_fn`` changes. Each
estimator runs as :class:`rgrad.diagnostics.EstimatorChunk`, the ``chunk_fn``
of :func:`rgrad.gradient_moments`; the floors are
:mod:`experiments.benchmark_estimators.floors`'. The measure-valued
estimators and their floor run on ``measure_valued_num_samples`` (their
ratios are per sample, so they compare). The discrete estimators and the
programs they are compared with (:data:`problem.DISCRETE_PROGRAMS`: the
Bernoulli's floor, naive score function and rgrad's score function) run on
the Bernoulli problem (``Program.problem``).
"""

from typing import NamedTuple

import ml_collections

import rgrad
from experiments.benchmark_estimators import floors
from experiments.benchmark_estimators import problem
from rgrad import diagnostics


class Program(NamedTuple):
  """One timed program: a chunk_fn streamed through the moments engine."""

  chunk_fn: diagnostics.ChunkFn
  num_samples: int
  chunk_size: int
  problem: str = "normal"  # whose parameters it takes: problem.PROBLEMS


def build_programs(
  names: tuple[str, ...], config: ml_collections.ConfigDict
) -> dict[str, Program]:
  """Every timed program, the floors first, by name.

  Args:
    names: the estimators to time (checked by
      :func:`~experiments.benchmark_estimators.validation.parse_config`).
    config: the benchmark's config.

  Returns:
    ``floor`` and ``naive_score_function``, then the own floors that `names`
    need (:data:`problem.OWN_FLOORS`), then, if any estimator is discrete,
    :data:`problem.DISCRETE_PROGRAMS`, then the estimators in order.
  """
  cost, dim = problem.COST_FUNCTIONS[config.cost], int(config.dim)
  n, chunk = int(config.num_samples), int(config.chunk_size)
  mv = (
    int(config.measure_valued_num_samples),
    int(config.measure_valued_chunk_size),
  )
  programs = {
    "floor": Program(floors.Floor(cost), n, chunk),
    "naive_score_function": Program(floors.NaiveScoreFunction(cost), n, chunk),
  }
  mv_names = [name for name in names if name in problem.MEASURE_VALUED]
  if mv_names:
    # The registry's count: 4 d for both measure-valued estimators.
    (evaluations,) = {
      rgrad.get_estimator(name).num_cost_evaluations(dim) for name in mv_names
    }
    programs["measure_valued_floor"] = Program(
      floors.Floor(cost, evaluations), *mv
    )
  if "delta_method" in names:
    programs["delta_method_floor"] = Program(
      floors.DeltaMethodFloor(cost), n, chunk
    )
  if any(problem.OWN_FLOORS.get(name) == "weighted_floor" for name in names):
    programs["weighted_floor"] = Program(floors.WeightedFloor(cost), n, chunk)
  if any(problem.is_discrete(name) for name in names):
    bernoulli = problem.bernoulli_builder
    programs["bernoulli_floor"] = Program(
      floors.Floor(cost, builder=bernoulli), n, chunk, "bernoulli"
    )
    programs["bernoulli_naive_score_function"] = Program(
      floors.NaiveScoreFunction(cost, builder=bernoulli), n, chunk, "bernoulli"
    )
    programs["bernoulli_score_function"] = Program(
      diagnostics.EstimatorChunk(
        rgrad.get_estimator("score_function").fn, cost, bernoulli
      ),
      n,
      chunk,
      "bernoulli",
    )
  for name in names:
    discrete = problem.is_discrete(name)
    builder = problem.bernoulli_builder if discrete else problem.normal_builder
    chunk_fn = diagnostics.EstimatorChunk(
      rgrad.get_estimator(name).fn, cost, builder
    )
    sizes = mv if name in problem.MEASURE_VALUED else (n, chunk)
    programs[name] = Program(
      chunk_fn, *sizes, "bernoulli" if discrete else "normal"
    )
  return programs
