"""Timing the programs: compiled first, then run in interleaved rounds.

Every program is lowered and compiled first (``compile_s``) and run once to
warm up; then ``num_repeats`` rounds each run every program once,
interleaved so that the drifting load of a shared machine hits all programs
alike. Times are wall times to ``jax.block_until_ready``; a record holds
their median and minimum, also per sample. The parameters are traced
arguments of the compiled programs, never compile-time constants.
"""

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
from absl import logging

from experiments.benchmark_estimators.programs import Program
from rgrad import diagnostics


def compile_program(program: Program, key: jax.Array, params: Any):
  """The engine's program for `program`, lowered and compiled (and seconds).

  `params` are those of the program's problem (``program.problem``).
  """
  start = time.perf_counter()
  compiled = diagnostics.stream_moments.lower(
    key,
    params,
    chunk_fn=program.chunk_fn,
    num_samples=program.num_samples,
    chunk_size=program.chunk_size,
  ).compile()
  return compiled, time.perf_counter() - start


def time_interleaved(
  programs: dict[str, Callable[[jax.Array], Any]],
  key: jax.Array,
  num_repeats: int,
) -> dict[str, list[float]]:
  """Wall times (seconds) of each program, repeats interleaved.

  Every program is run once first (warm-up). Then each repeat runs every
  program once, in turn: on a shared machine whose load drifts, interleaving
  spreads the drift over all programs instead of biasing whichever ran
  during a busy minute. Each repeat uses a fresh key.
  """
  for program in programs.values():
    jax.block_until_ready(program(jax.random.fold_in(key, num_repeats)))
  times = {name: [] for name in programs}
  for repeat in range(num_repeats):
    k = jax.random.fold_in(key, repeat)
    for name, program in programs.items():
      start = time.perf_counter()
      jax.block_until_ready(program(k))
      times[name].append(time.perf_counter() - start)
  return times


def timing_record(
  times: list[float], program: Program, compile_s: float
) -> dict[str, Any]:
  """The timing fields of a program's record in results.json."""
  median = statistics.median(times)
  return {
    "median_s": median,
    # On a shared machine the minimum is the least contended run.
    "min_s": min(times),
    "s_per_sample_min": min(times) / program.num_samples,
    "times_s": times,
    "num_samples": program.num_samples,
    "chunk_size": program.chunk_size,
    "compile_s": compile_s,
    "s_per_sample": median / program.num_samples,
  }


def time_programs(
  programs: dict[str, Program],
  key: jax.Array,
  params: dict[str, Any],
  num_repeats: int,
) -> dict[str, dict[str, Any]]:
  """Compiles every program, times them interleaved; their records, by name.

  Args:
    programs: the timed programs, in the order they run in each round.
    key: the timing key; repeat `r` runs every program on ``fold_in(key,
      r)`` (and the warm-up on ``fold_in(key, num_repeats)``).
    params: each problem's parameters (:data:`problem.PROBLEMS` -> pytree),
      a traced argument of every program of that problem.
    num_repeats: timed rounds after the warm-up.

  Returns:
    Per program, :func:`timing_record`; each is also logged.
  """
  compiled, compile_s = {}, {}
  for name, program in programs.items():
    p = params[program.problem]
    executable, compile_s[name] = compile_program(program, key, p)
    compiled[name] = lambda k, executable=executable, p=p: executable(k, p)
  times = time_interleaved(compiled, key, num_repeats)
  records = {}
  for name, program in programs.items():
    records[name] = timing_record(times[name], program, compile_s[name])
    logging.info(
      "%-28s median %.4f s over %d samples (%.3f us/sample; compiled in "
      "%.1f s)",
      name,
      records[name]["median_s"],
      program.num_samples,
      1e6 * records[name]["s_per_sample"],
      compile_s[name],
    )
  return records
