"""Tests for experiments/benchmark_estimators/: a tiny run, output schema.

Not a timed test: the numbers are not checked, only that every program runs
and that results.json / results.csv / table.md have the documented schema;
that the floors compute what they claim; and that the config is checked
against the registry before any computation.
"""

import csv
import json
import math
import os
import tempfile
import types
import typing

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from experiments import benchmark_estimators
from experiments.benchmark_estimators import outputs as outputs_lib
from experiments.common import config as config_checks
from experiments.configs import benchmark_estimators as config_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ESTIMATORS = (
  "pathwise,score_function,measure_valued,measure_valued_uncoupled,delta_method"
)
_TIMING_KEYS = {
  "median_s",
  "min_s",
  "times_s",
  "num_samples",
  "chunk_size",
  "compile_s",
  "s_per_sample",
  "s_per_sample_min",
}
_PROGRAMS = {
  "floor",
  "naive_score_function",
  "measure_valued_floor",
  "delta_method_floor",
  "weighted_floor",
}


def _tiny_config():
  config = config_lib.get_config()
  config.dim = 3
  config.num_samples = 1000
  config.chunk_size = 500
  config.measure_valued_num_samples = 1000
  config.measure_valued_chunk_size = 500
  config.num_repeats = 2
  # Five estimators (four with their own floors) keep compilation, the cost of
  # this test, down; every name goes through the same code path.
  config.estimators = _ESTIMATORS
  config.memory_num_samples = 1000
  config.memory_dim = 5
  config.memory_chunk_size = 300  # uneven: a partial last chunk
  return config


def _conforms(value, annotation) -> bool:
  """Whether a JSON value has the schema's type (exactly: a bool is no int)."""
  if typing.get_origin(annotation) in (types.UnionType, typing.Union):
    return any(_conforms(value, a) for a in typing.get_args(annotation))
  if typing.get_origin(annotation) is list:
    (item,) = typing.get_args(annotation)
    return type(value) is list and all(_conforms(v, item) for v in value)
  return type(value) is annotation


def _all_schema_fields() -> dict[str, dict]:
  return {
    name: getattr(outputs_lib, name)
    for name in (
      "RESULTS_FIELDS",
      "TIMING_FIELDS",
      "NAIVE_FIELDS",
      "ESTIMATOR_FIELDS",
      "OWN_FLOOR_FIELDS",
      "DISCRETE_FIELDS",
      "MEMORY_FIELDS",
    )
  }


def _tempdir(test: absltest.TestCase) -> str:
  # Not create_tempdir(): absl flags are unparsed when pytest runs this.
  tmp = tempfile.TemporaryDirectory()
  test.addCleanup(tmp.cleanup)
  return tmp.name


class BenchmarkEstimatorsTest(absltest.TestCase):
  def assertFields(self, record, fields, where):
    """`record` has exactly the schema's `fields`, each of its type."""
    self.assertEqual(set(record), set(fields), where)
    for field, annotation in fields.items():
      self.assertTrue(
        _conforms(record[field], annotation),
        f"{where}: {field} = {record[field]!r} is not {annotation}",
      )

  def test_tiny_run_schema(self):
    workdir = _tempdir(self)
    results = benchmark_estimators.run(_tiny_config(), workdir)

    with open(os.path.join(workdir, "results.json")) as f:
      written = json.load(f)
    self.assertEqual(written, json.loads(json.dumps(results)))
    # The schema constants, checked against the file as written.
    self.assertFields(written, outputs_lib.RESULTS_FIELDS, "results.json")
    for name, record in written["programs"].items():
      fields = (
        outputs_lib.NAIVE_FIELDS
        if name == "naive_score_function"
        else outputs_lib.TIMING_FIELDS
      )
      self.assertFields(record, fields, f"programs[{name!r}]")
    for name, record in written["estimators"].items():
      fields = dict(outputs_lib.ESTIMATOR_FIELDS)
      if name in benchmark_estimators.OWN_FLOORS:
        fields.update(outputs_lib.OWN_FLOOR_FIELDS)
      self.assertFields(record, fields, f"estimators[{name!r}]")
    self.assertFields(written["memory"], outputs_lib.MEMORY_FIELDS, "memory")
    self.assertEqual(set(results["estimators"]), set(_ESTIMATORS.split(",")))
    self.assertEqual(set(results["programs"]), _PROGRAMS)
    for name, record in results["programs"].items():
      self.assertContainsSubset(_TIMING_KEYS, set(record), name)
      self.assertGreater(record["compile_s"], 0.0, name)
      self.assertGreater(results[f"{name}_s_per_sample"], 0.0, name)
      self.assertEqual(
        results[f"{name}_s_per_sample"], record["s_per_sample"], name
      )
    for name, record in results["estimators"].items():
      self.assertContainsSubset(
        _TIMING_KEYS
        | {
          "ratio_to_floor",
          "ratio_to_floor_min",
          "ratio_to_naive_score_function",
          "within_target",
          "cost_evaluations",
        },
        set(record),
      )
      self.assertLen(record["times_s"], 2)
      self.assertTrue(math.isfinite(record["ratio_to_floor"]), name)
      self.assertGreater(record["median_s"], 0.0)
      self.assertGreater(record["compile_s"], 0.0)
      self.assertEqual(record["chunk_size"], 500)
      # The registry's count: 4 d for the measure-valued estimators.
      self.assertEqual(
        record["cost_evaluations"],
        rgrad.get_estimator(name).num_cost_evaluations(3),
      )
      # Per sample, like the median ratios (MV runs on its own sample count).
      self.assertAlmostEqual(
        record["ratio_to_floor_min"],
        record["s_per_sample_min"]
        / results["programs"]["floor"]["s_per_sample_min"],
      )
      self.assertAlmostEqual(
        record["ratio_to_floor"],
        record["s_per_sample"] / results["floor_s_per_sample"],
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
      # The measure-valued estimators are held to their own floor.
      held_to = "own_floor" if name.startswith("measure_valued") else "floor"
      self.assertEqual(
        record["within_target"], record[f"ratio_to_{held_to}"] <= 1.15, name
      )
    self.assertEqual(
      results["estimators"]["measure_valued"]["cost_evaluations"], 12
    )
    memory = results["memory"]
    self.assertContainsSubset(
      {
        "method",
        "peak_rss_bytes",
        "rss_before_bytes",
        "compiled_temp_bytes",
        "compile_s",
        "wall_s",
        "within_target",
      },
      set(memory),
    )
    self.assertEqual(
      (memory["estimator"], memory["num_samples"], memory["chunk_size"]),
      ("pathwise", 1000, 300),
    )
    self.assertGreaterEqual(
      memory["peak_rss_bytes"], memory["rss_before_bytes"]
    )
    self.assertEqual(memory["num_nonfinite"], 0)

    with open(os.path.join(workdir, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, len(_ESTIMATORS.split(",")) + len(_PROGRAMS))
    self.assertEqual(
      [r["program"] for r in rows],
      list(results["programs"]) + list(results["estimators"]),
    )
    self.assertEqual(
      float(rows[-1]["ratio_to_floor"]),
      results["estimators"]["delta_method"]["ratio_to_floor"],
    )
    with open(os.path.join(workdir, "table.md")) as f:
      table = f.read()
    for name in list(_PROGRAMS) + _ESTIMATORS.split(","):
      self.assertIn(f"| {name} |", table)

  def test_tiny_discrete_run(self):
    """The discrete estimators on the Bernoulli, against its score function."""
    config = _tiny_config()
    config.estimators = "arm,disarm,concrete,straight_through"
    config.measure_memory = False
    results = benchmark_estimators.run(config, _tempdir(self))
    self.assertEqual(
      set(results["programs"]),
      {
        "floor",
        "naive_score_function",
        *benchmark_estimators.DISCRETE_PROGRAMS,
      },
    )
    self.assertFields(
      results["programs"]["bernoulli_naive_score_function"],
      outputs_lib.NAIVE_FIELDS,
      "bernoulli_naive_score_function",
    )
    sf = results["programs"]["bernoulli_score_function"]
    self.assertEqual(
      results["bernoulli_score_function_s_per_sample"], sf["s_per_sample"]
    )
    floor = results["programs"]["bernoulli_floor"]
    for name, record in results["estimators"].items():
      fields = {**outputs_lib.ESTIMATOR_FIELDS, **outputs_lib.DISCRETE_FIELDS}
      self.assertFields(record, fields, name)
      ratio = record["s_per_sample"] / sf["s_per_sample"]
      self.assertAlmostEqual(record["ratio_to_score_function"], ratio)
      # One cost evaluation per row for every one of them and for SF.
      self.assertAlmostEqual(
        record["ratio_to_score_function_per_evaluation"], ratio
      )
      rows = 2 if name in ("arm", "disarm") else 1
      self.assertEqual(record["rows_per_estimate"], rows)
      self.assertAlmostEqual(
        record["ratio_to_score_function_per_estimate"], rows * ratio
      )
      self.assertEqual(record["within_target"], rows * ratio <= 2.3, name)
      self.assertAlmostEqual(
        record["ratio_to_floor"], record["s_per_sample"] / floor["s_per_sample"]
      )

  def test_schema_constants_are_the_documented_schema(self):
    # The docstring is the annotated schema; the constants must not drift
    # from it.
    for name, fields in _all_schema_fields().items():
      for field in fields:
        self.assertIn(f'"{field}"', outputs_lib.__doc__, f"{name}: {field}")
    self.assertContainsSubset(
      set(outputs_lib.TIMING_FIELDS), set(outputs_lib.ESTIMATOR_FIELDS)
    )
    self.assertEmpty(
      set(outputs_lib.OWN_FLOOR_FIELDS) & set(outputs_lib.ESTIMATOR_FIELDS)
    )
    self.assertEmpty(
      set(outputs_lib.DISCRETE_FIELDS) & set(outputs_lib.ESTIMATOR_FIELDS)
    )


class FloorsTest(absltest.TestCase):
  """The floors compute what their docstrings say, from the same draws."""

  def setUp(self):
    super().setUp()
    self.key = jax.random.key(3)
    k_loc, k_scale = jax.random.split(jax.random.key(4))
    self.params = {
      "loc": jax.random.normal(k_loc, (4,), jnp.float64),
      "scale": jnp.exp(0.3 * jax.random.normal(k_scale, (4,), jnp.float64)),
    }
    self.cost = benchmark_estimators.quadratic_cost

  def test_naive_score_function_is_the_score_function(self):
    naive = benchmark_estimators.NaiveScoreFunction(self.cost)
    got = naive(self.key, 64, self.params)
    want = rgrad.score_function_jacobians(
      self.cost, self.params, benchmark_estimators.normal_builder, self.key, 64
    )
    for leaf in ("loc", "scale"):
      self.assertEqual(got[leaf].shape, (64, 4))
      np.testing.assert_allclose(got[leaf], want[leaf], rtol=1e-10, atol=0)

  def test_floor_evaluates_the_cost_k_times(self):
    x, eps = benchmark_estimators.normal_builder(self.params).sample_with_noise(
      self.key, (8,)
    )
    loc, scale, plain = benchmark_estimators.Floor(self.cost)(
      self.key, 8, self.params
    )
    np.testing.assert_allclose(plain, jax.vmap(self.cost)(x), rtol=1e-12)
    # The noise twice: the floor's output is shaped like an estimator's two
    # [n, d] leaves, so both pay the same for the moments.
    np.testing.assert_array_equal(loc, eps)
    np.testing.assert_array_equal(scale, eps)
    *_, many = benchmark_estimators.Floor(self.cost, 16)(
      self.key, 8, self.params
    )
    self.assertEqual(many.shape, (8, 16))
    # The first evaluation is at the draw itself; the others at distinct
    # shifted copies, so none can be deduplicated.
    np.testing.assert_allclose(many[:, 0], plain, rtol=1e-12)
    self.assertLen(np.unique(np.asarray(many[0])), 16)

  def test_delta_method_floor_evaluates_the_control_variate(self):
    # For a quadratic cost the second-order expansion h is the cost itself.
    floor = benchmark_estimators.DeltaMethodFloor(self.cost)
    loc, scale, values = floor(self.key, 8, self.params)
    self.assertEqual([loc.shape, scale.shape], [(8, 4), (8, 4)])
    self.assertEqual(values.shape, (8, 2))
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-10)

  def test_bernoulli_floor_has_one_leaf_like_the_logits(self):
    params = {"logits": jnp.array([0.3, -1.0, 2.0])}
    floor = benchmark_estimators.Floor(
      self.cost, builder=benchmark_estimators.bernoulli_builder
    )
    u, costs = floor(self.key, 8, params)
    b, noise = benchmark_estimators.bernoulli_builder(params).sample_with_noise(
      self.key, (8,)
    )
    np.testing.assert_array_equal(u, noise)
    np.testing.assert_allclose(costs, jax.vmap(self.cost)(b), rtol=1e-12)

  def test_weighted_floor_has_the_estimators_output_shape(self):
    values = benchmark_estimators.WeightedFloor(self.cost)(
      self.key, 8, self.params
    )
    self.assertEqual([v.shape for v in values], [(8, 4), (8, 4)])

  def test_floors_compare_by_their_fields(self):
    # The engine's chunk_fn is a static jit argument: equal floors built in
    # two places must hit one compilation.
    for cls in (
      benchmark_estimators.Floor,
      benchmark_estimators.DeltaMethodFloor,
      benchmark_estimators.WeightedFloor,
      benchmark_estimators.NaiveScoreFunction,
    ):
      self.assertEqual(cls(self.cost), cls(self.cost))
      self.assertEqual(hash(cls(self.cost)), hash(cls(self.cost)))
    self.assertNotEqual(
      benchmark_estimators.Floor(self.cost, 2),
      benchmark_estimators.Floor(self.cost, 3),
    )


class ConfigTest(parameterized.TestCase):
  def test_default_selects_every_benchmarkable_registry_estimator(self):
    config = config_lib.get_config()
    names = benchmark_estimators.parse_config(config)
    self.assertEqual(names, benchmark_estimators.benchmarkable_names())
    self.assertIn("measure_valued", names)
    self.assertNotIn("measure_valued_coupled", names)
    for name in ("score_function_moving_average", "stl", "dreg"):
      self.assertIn(name, rgrad.ESTIMATORS)
      self.assertNotIn(name, names)

  def test_own_floors_name_registry_estimators(self):
    # A renamed registry entry must not silently lose its own floor.
    self.assertContainsSubset(
      set(benchmark_estimators.OWN_FLOORS), set(rgrad.ESTIMATORS)
    )
    self.assertContainsSubset(
      set(benchmark_estimators.MEASURE_VALUED),
      set(benchmark_estimators.OWN_FLOORS),
    )

  def test_rows_follow_the_selected_estimators(self):
    # Odd chunks suit the i.i.d. estimators; antithetic pairs need even ones.
    config = _tiny_config()
    config.estimators = "pathwise,leave_one_out"
    config.num_samples, config.chunk_size = 999, 333
    self.assertEqual(
      benchmark_estimators.parse_config(config),
      ("pathwise", "leave_one_out"),
    )

  @parameterized.named_parameters(
    ("unknown", "estimators", "pathwise,reinforce", r"'reinforce' in config"),
    ("empty", "estimators", "", r"config\.estimators is empty"),
    ("twice", "estimators", "pathwise,pathwise", "lists a name twice"),
    (
      "other_objective",
      "estimators",
      "pathwise,stl",
      r"'stl' cannot be benchmarked: it estimates the gradient of the "
      "negative_elbo",
    ),
    (
      "stateful",
      "estimators",
      "score_function_moving_average",
      "cannot be benchmarked: it is stateful",
    ),
    (
      "memory_estimator",
      "memory_estimator",
      "dreg",
      r"config\.memory_estimator: 'dreg' cannot be benchmarked",
    ),
    (
      "two_memory_estimators",
      "memory_estimator",
      "pathwise,score_function",
      "is one name",
    ),
    ("not_a_multiple", "chunk_size", 300, "must be a multiple of"),
    (
      "mv_not_a_multiple",
      "measure_valued_chunk_size",
      300,
      r"config\.measure_valued_num_samples \(1000\) must be a multiple",
    ),
    ("dim", "dim", 0, r"config\.dim must be >= 1, got 0"),
    ("repeats", "num_repeats", 0, r"config\.num_repeats must be >= 1"),
    ("target", "target_ratio", 0.0, r"config\.target_ratio must be > 0"),
    (
      "discrete_target",
      "discrete_target_ratio",
      -1.0,
      r"config\.discrete_target_ratio must be > 0",
    ),
    (
      "discrete_memory_estimator",
      "memory_estimator",
      "arm",
      r"'arm' runs on the Bernoulli problem",
    ),
    ("cost", "cost", "quartic", r"config\.cost must be one of quadratic, cos"),
  )
  def test_bad_config_fails_before_computation(self, field, value, message):
    config = _tiny_config()
    config[field] = value
    workdir = os.path.join(_tempdir(self), "out")
    with self.assertRaisesRegex(config_checks.ConfigError, message):
      benchmark_estimators.run(config, workdir)
    self.assertFalse(os.path.exists(workdir))

  @parameterized.named_parameters(
    (
      "pairs",
      dict(estimators="antithetic_pathwise", chunk_size=125),
      r"config\.chunk_size \(125\) must be a multiple of 2: "
      "'antithetic_pathwise' returns rows in pairs",
    ),
    (
      "too_small",
      dict(estimators="leave_one_out", chunk_size=1),
      r"config\.chunk_size \(1\) is below the 2 samples per call that "
      "'leave_one_out' needs",
    ),
    (
      "memory_pairs",
      dict(memory_estimator="antithetic_pathwise", memory_chunk_size=333),
      r"config\.memory_chunk_size \(333\) must be a multiple of 2",
    ),
    (
      "memory_last_pairs",
      # 1003 = 2 x 500 + 3: the last, partial chunk is no whole pairs.
      dict(
        memory_estimator="antithetic_pathwise",
        memory_num_samples=1003,
        memory_chunk_size=500,
      ),
      r"the last chunk \(3 of config\.memory_num_samples = 1003\) must be "
      "a multiple of 2",
    ),
    (
      "memory_last_chunk",
      # 1000 = 3 x 333 + 1.
      dict(memory_estimator="leave_one_out", memory_chunk_size=333),
      r"the last chunk \(1 of config\.memory_num_samples = 1000\) is below "
      "the 2 samples",
    ),
  )
  def test_chunks_must_suit_the_rows(self, fields, message):
    config = _tiny_config()
    config.update(fields)
    with self.assertRaisesRegex(config_checks.ConfigError, message):
      benchmark_estimators.parse_config(config)


if __name__ == "__main__":
  absltest.main()
