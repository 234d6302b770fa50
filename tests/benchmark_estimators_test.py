"""Tests for experiments/benchmark_estimators.py: a tiny run, output schema.

Not a timed test: the numbers are not checked, only that every program runs
and that results.json / results.csv / table.md have the documented schema.
"""

import csv
import json
import math
import os
import tempfile

from absl.testing import absltest

from experiments import benchmark_estimators
from experiments.configs import benchmark_estimators as config_lib

_ESTIMATORS = "pathwise,score_function,measure_valued_uncoupled,delta_method"
_TIMING_KEYS = {
  "median_s",
  "min_s",
  "times_s",
  "num_samples",
  "s_per_sample",
  "ratio_to_floor_min",
}


def _tiny_config():
  config = config_lib.get_config()
  config.dim = 3
  config.num_samples = 1000
  config.chunk_size = 500
  config.measure_valued_num_samples = 1000
  config.measure_valued_chunk_size = 500
  config.num_repeats = 2
  # Four estimators (three with their own floors) keep compilation, the cost of
  # this test, down; every name goes through the same code path.
  config.estimators = _ESTIMATORS
  config.memory_num_samples = 1000
  config.memory_dim = 5
  config.memory_chunk_size = 300  # uneven: a partial last chunk
  return config


class BenchmarkEstimatorsTest(absltest.TestCase):
  def _tempdir(self) -> str:
    # Not create_tempdir(): absl flags are unparsed when pytest runs this.
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    return tmp.name

  def test_tiny_run_schema(self):
    workdir = self._tempdir()
    results = benchmark_estimators.run(_tiny_config(), workdir)

    with open(os.path.join(workdir, "results.json")) as f:
      self.assertEqual(json.load(f), json.loads(json.dumps(results)))
    self.assertEqual(set(results["estimators"]), set(_ESTIMATORS.split(",")))
    self.assertEqual(
      set(results["programs"]),
      {
        "floor",
        "naive_score_function",
        "measure_valued_floor",
        "delta_method_floor",
        "weighted_floor",
      },
    )
    for name, record in results["estimators"].items():
      self.assertContainsSubset(
        _TIMING_KEYS
        | {"ratio_to_floor", "ratio_to_naive_score_function", "within_target"},
        set(record),
      )
      self.assertLen(record["times_s"], 2)
      self.assertTrue(math.isfinite(record["ratio_to_floor"]), name)
      self.assertGreater(record["median_s"], 0.0)
      # Per sample, like the median ratios (MV runs on its own sample count).
      self.assertAlmostEqual(
        record["ratio_to_floor_min"],
        record["s_per_sample_min"]
        / results["programs"]["floor"]["s_per_sample_min"],
      )
      self.assertEqual(
        "ratio_to_own_floor" in record,
        name.startswith("measure_valued")
        or name in ("delta_method", "score_function"),
        name,
      )
      self.assertEqual(
        "within_own_floor_target" in record, "ratio_to_own_floor" in record
      )
      if "ratio_to_own_floor" in record:
        self.assertEqual(
          record["within_own_floor_target"],
          record["ratio_to_own_floor"] <= 1.15,
        )
    self.assertGreater(results["delta_method_floor_s_per_sample"], 0.0)
    self.assertGreater(results["weighted_floor_s_per_sample"], 0.0)
    memory = results["memory"]
    self.assertContainsSubset(
      {"method", "peak_rss_bytes", "rss_before_bytes", "compiled_temp_bytes"},
      set(memory),
    )
    self.assertGreaterEqual(
      memory["peak_rss_bytes"], memory["rss_before_bytes"]
    )
    self.assertEqual(memory["num_nonfinite"], 0)

    with open(os.path.join(workdir, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, len(_ESTIMATORS.split(",")) + 5)
    with open(os.path.join(workdir, "table.md")) as f:
      table = f.read()
    for name in _ESTIMATORS.split(","):
      self.assertIn(f"| {name} |", table)

  def test_bad_config(self):
    config = _tiny_config()
    config.chunk_size = 300  # 1000 is not a multiple
    with self.assertRaisesRegex(ValueError, "must be a multiple of"):
      benchmark_estimators.run(config, self._tempdir())
    config = _tiny_config()
    config.estimators = "pathwise,reinforce"
    with self.assertRaisesRegex(ValueError, "estimators must be"):
      benchmark_estimators.run(config, self._tempdir())


if __name__ == "__main__":
  absltest.main()
