"""rgrad.compare's seconds per sample against experiments.benchmark_estimators.

Issue 16: timing is measured, not assumed. ``rgrad.compare`` times blocks of
its own measurement; with ``num_samples = (num_timing_repeats + 1) * M`` its
blocks are exactly the benchmark's program over ``M`` samples (the same
``EstimatorChunk`` through the same engine), so the two must report the
same seconds per sample up to timing noise.

The check: the difference of the two medians is within the benchmark's own
run-to-run spread (max - min over its repeats, before and after compare's
run, so that a drifting load widens the spread rather than fails the test).
What it detects: a systematic error larger than that spread, e.g. the
warm-up (compile) counted, the wrong row count in the division, or a second
program timed in place of the measured one; on an idle 2-core machine the
spread is ~10-30% of the median, so a factor-of-2 error is far outside it.
"""

import statistics

import jax
import pytest
from absl.testing import absltest

import rgrad
from experiments.benchmark_estimators import problem
from experiments.benchmark_estimators import programs
from experiments.benchmark_estimators import timing
from rgrad import diagnostics

_DIM = 100
_M = 20_000  # Rows of one benchmark program, and of one compare block.
_CHUNK = 2_000
_REPEATS = 5


@pytest.mark.slow
class TimingAgreesWithBenchmarkTest(absltest.TestCase):
  def test_seconds_per_sample_within_benchmark_spread(self):
    params = problem.initial_params(jax.random.key(0), _DIM)
    cost = problem.quadratic_cost
    for name in ("pathwise", "score_function"):
      spec = rgrad.get_estimator(name)
      program = programs.Program(
        diagnostics.EstimatorChunk(spec.fn, cost, problem.normal_builder),
        _M,
        _CHUNK,
      )
      bench = []
      for round_ in range(2):
        if round_ == 1:
          result = rgrad.compare(
            cost,
            params,
            problem.normal_builder,
            jax.random.key(1),
            estimators=(name,),
            num_samples=(_REPEATS + 1) * _M,
            chunk_size=_CHUNK,
            num_timing_repeats=_REPEATS,
          )
        records = timing.time_programs(
          {name: program},
          jax.random.key(2 + round_),
          {"normal": params},
          _REPEATS,
        )
        bench += [t / _M for t in records[name]["times_s"]]
      (stats,) = result.estimators
      self.assertEqual(stats.timing_rows, _M)
      spread = max(bench) - min(bench)
      gap = abs(stats.seconds_per_sample - statistics.median(bench))
      self.assertLessEqual(
        gap,
        spread,
        (name, stats.seconds_per_sample, statistics.median(bench), bench),
      )


if __name__ == "__main__":
  absltest.main()
