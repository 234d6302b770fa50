"""The config checks, before any computation, against rgrad's registry.

An estimator is benchmarkable if it estimates the gradient of an expectation
:math:`E_p[f]`, the benchmark's problem, and is stateless: the moments
engine runs its chunks independently (and sharded), so no state can pass
from one to the next, and a fresh state per chunk would time a baseline that
never moves. Every chunk must also suit the estimator's rows (a minimum
number of samples per call; whole pairs for the antithetic estimators).
"""

from typing import Any

import ml_collections

import rgrad
from experiments.benchmark_estimators import problem
from experiments.common import config as config_checks
from experiments.configs import benchmark_estimators as config_lib


def unavailable_reason(name: str) -> str | None:
  """Why the registry's estimator `name` cannot be benchmarked, or None."""
  spec = rgrad.get_estimator(name)
  if spec.objective != "expectation":
    return (
      f"it estimates the gradient of the {spec.objective}, not of an "
      "expectation E_p[f], the benchmark's problem"
    )
  if spec.stateful:
    return (
      "it is stateful: the moments engine runs its chunks independently "
      "(and sharded), so no state can be threaded from chunk to chunk"
    )
  return None


def benchmarkable_names() -> tuple[str, ...]:
  """The registry names that the benchmark can time, in registry order."""
  return tuple(n for n in rgrad.ESTIMATORS if unavailable_reason(n) is None)


def _estimator_names(value: Any, field: str) -> tuple[str, ...]:
  """Registry names from `value`; each must be benchmarkable."""
  selected = config_checks.names(value, field, tuple(rgrad.ESTIMATORS))
  for name in selected:
    reason = unavailable_reason(name)
    if reason is not None:
      raise config_checks.ConfigError(
        f"config.{field}: {name!r} cannot be benchmarked: {reason}. "
        f"Choose from: {', '.join(benchmarkable_names())}."
      )
  return selected


def _check_rows(name: str, size: int, what: str) -> None:
  """A chunk of `size` rows (`what`) must suit the estimator's rows."""
  spec = rgrad.get_estimator(name)
  if size < spec.min_num_samples:
    raise config_checks.ConfigError(
      f"{what} is below the {spec.min_num_samples} samples per call that "
      f"{name!r} needs."
    )
  group = spec.group_size
  if isinstance(group, int) and group > 1 and size % group:
    raise config_checks.ConfigError(
      f"{what} must be a multiple of {group}: {name!r} returns rows in "
      f"{spec.rows} of {group}."
    )


def parse_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks every config value, before any computation; the estimators.

  Raises:
    ConfigError: naming the bad field (:mod:`experiments.common.config`).
  """
  config_checks.integer(config.seed, "seed", minimum=0)
  config_checks.integer(config.dim, "dim")
  config_checks.integer(config.num_repeats, "num_repeats")
  config_checks.real(config.target_ratio, "target_ratio", positive=True)
  config_checks.real(
    config.discrete_target_ratio, "discrete_target_ratio", positive=True
  )
  if config.cost not in config_lib.COSTS:
    raise config_checks.ConfigError(
      f"config.cost must be one of {', '.join(config_lib.COSTS)}, got "
      f"{config.cost!r}."
    )
  names = _estimator_names(config.estimators, "estimators")
  _, chunk = config_checks.chunking(config.num_samples, config.chunk_size)
  _, chunk_mv = config_checks.chunking(
    config.measure_valued_num_samples,
    config.measure_valued_chunk_size,
    prefix="measure_valued_",
  )
  for name in names:
    if name in problem.MEASURE_VALUED:
      what = f"config.measure_valued_chunk_size ({chunk_mv})"
      _check_rows(name, chunk_mv, what)
    else:
      _check_rows(name, chunk, f"config.chunk_size ({chunk})")
  if config.measure_memory:
    _check_memory(config)
  return names


def _check_memory(config: ml_collections.ConfigDict) -> None:
  """The `memory_*` fields, checked only if `config.measure_memory`."""
  memory = _estimator_names(config.memory_estimator, "memory_estimator")
  if len(memory) != 1:
    raise config_checks.ConfigError(
      f"config.memory_estimator is one name, got {config.memory_estimator!r}."
    )
  if problem.is_discrete(memory[0]):
    raise config_checks.ConfigError(
      f"config.memory_estimator: {memory[0]!r} runs on the Bernoulli "
      "problem; memory is measured on the Gaussian one."
    )
  n_mem = config_checks.integer(config.memory_num_samples, "memory_num_samples")
  # As in rgrad.diagnostics.moments: the chunk is clipped to num_samples,
  # and a last partial chunk takes the remainder.
  chunk_mem = min(
    config_checks.integer(config.memory_chunk_size, "memory_chunk_size"),
    n_mem,
  )
  _check_rows(memory[0], chunk_mem, f"config.memory_chunk_size ({chunk_mem})")
  if n_mem % chunk_mem:
    _check_rows(
      memory[0],
      n_mem % chunk_mem,
      f"the last chunk ({n_mem % chunk_mem} of config.memory_num_samples = "
      f"{n_mem})",
    )
  config_checks.integer(config.memory_dim, "memory_dim")
  config_checks.integer(config.memory_target_bytes, "memory_target_bytes")
  config_checks.real(config.memory_timeout_s, "memory_timeout_s", positive=True)
