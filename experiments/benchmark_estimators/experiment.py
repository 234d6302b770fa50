"""`run(config, workdir)`: time every program, measure memory, write results.

Randomness: ``key = jax.random.key(config.seed)`` is split once, into the
Gaussian's parameters, the timing key (each timed round folds its index
into that key; :func:`~experiments.benchmark_estimators.timing.
time_programs`) and the Bernoulli's logits.
"""

from typing import Any

import jax
import ml_collections
from absl import logging

from experiments.benchmark_estimators import memory as memory_lib
from experiments.benchmark_estimators import outputs
from experiments.benchmark_estimators import problem
from experiments.benchmark_estimators import programs as programs_lib
from experiments.benchmark_estimators import ratios
from experiments.benchmark_estimators import timing
from experiments.benchmark_estimators import validation


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the benchmark and writes results to `workdir`.

  Args:
    config: see `experiments/configs/benchmark_estimators.py`.
    workdir: output directory, created if needed.

  Returns:
    The contents of ``results.json`` (schema in
    :mod:`experiments.benchmark_estimators.outputs`).

  Raises:
    ConfigError: for a bad config value (sizes, names), before any
      computation; `workdir` is not created.
  """
  names = validation.parse_config(config)
  key = jax.random.key(config.seed)
  k_params, k_time, k_logits = jax.random.split(key, 3)
  del key
  params = {
    "normal": problem.initial_params(k_params, int(config.dim)),
    "bernoulli": problem.initial_bernoulli_params(k_logits, int(config.dim)),
  }

  programs = programs_lib.build_programs(names, config)
  records = timing.time_programs(programs, k_time, params, config.num_repeats)
  floors = ratios.program_records(records, names)
  estimators = ratios.estimator_records(
    records,
    names,
    floors,
    config.target_ratio,
    int(config.dim),
    discrete_target_ratio=config.discrete_target_ratio,
  )

  memory = memory_lib.measure_memory(config) if config.measure_memory else None
  if memory:
    logging.info(
      "gradient_moments peak RSS %.0f MiB", memory["peak_rss_bytes"] / 2**20
    )

  results = outputs.results(config, floors, estimators, memory)
  outputs.write(results, workdir)
  return results
