"""Tests for experiments/estimator_variance.py (Mohamed et al. Figs 2-3)."""

import jax

jax.config.update("jax_enable_x64", True)

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl.testing import absltest  # noqa: E402
from absl.testing import parameterized  # noqa: E402

from experiments import estimator_variance as ev  # noqa: E402
from experiments.configs import estimator_variance as config_lib  # noqa: E402
from rgrad import exact  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Samples for the agreement test: 5 chunks, so 4 devices need padding.
_NUM_SAMPLES = 5_000
_CHUNK_SIZE = 1_000
_REQUIRED = (
  "cost",
  "k",
  "estimator",
  "param",
  "mean",
  "variance",
  "exact_mean",
  "exact_variance",
  "num_samples",
)


def _tiny_config():
  config = config_lib.get_config()
  config.num_samples = _NUM_SAMPLES
  config.chunk_size = _CHUNK_SIZE
  config.k_grid.square = (-3.0, 3.0, 3)
  config.k_grid.exp_sq = (0.1, 3.0, 3)
  config.k_grid.cos = (0.5, 8.0, 3)
  config.sigma_sweep.scales = (0.3, 3.0, 2)
  config.dim_sweep.dims = (1, 3)
  config.dim_sweep.num_samples = _NUM_SAMPLES
  config.dim_sweep.chunk_size = _CHUNK_SIZE
  return config


def _cli_overrides():
  """The flags that make the default config `_tiny_config()`."""
  c = _tiny_config()
  return [
    f"--config.num_samples={c.num_samples}",
    f"--config.chunk_size={c.chunk_size}",
    f"--config.k_grid.square={tuple(c.k_grid.square)}",
    f"--config.k_grid.exp_sq={tuple(c.k_grid.exp_sq)}",
    f"--config.k_grid.cos={tuple(c.k_grid.cos)}",
    f"--config.sigma_sweep.scales={tuple(c.sigma_sweep.scales)}",
    f"--config.dim_sweep.dims={tuple(c.dim_sweep.dims)}",
    f"--config.dim_sweep.num_samples={c.dim_sweep.num_samples}",
    f"--config.dim_sweep.chunk_size={c.dim_sweep.chunk_size}",
  ]


def _all_records(results):
  return results["records"] + results["sigma_sweep"] + results["dim_sweep"]


@pytest.mark.slow
class EstimatorVarianceRunTest(parameterized.TestCase):
  """One tiny end-to-end run, shared by the tests below."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.workdir = os.path.join(cls._tmp.name, "one_device")
    cls.four_workdir = os.path.join(cls._tmp.name, "four_devices")
    # The 4-device run goes through the command line in a subprocess (XLA
    # flags must be set before JAX initializes); it runs while this process
    # does the 1-device run.
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
    cls.four = subprocess.Popen(
      [
        sys.executable,
        "-m",
        "experiments.estimator_variance",
        f"--workdir={cls.four_workdir}",
        "--config.plot=False",
        # The dim sweep runs the same sharded code path; leaving it out of
        # the subprocess saves half its compile time.
        "--config.dim_sweep.enabled=False",
        *_cli_overrides(),
      ],
      cwd=_REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    cls.results = ev.run(_tiny_config(), cls.workdir)

  @classmethod
  def tearDownClass(cls):
    if cls.four.poll() is None:
      cls.four.kill()
      cls.four.communicate()
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_outputs_written(self):
    for name in (
      "results.json",
      "timings.json",
      "results.csv",
      "sigma_sweep.csv",
      "dim_sweep.csv",
      "variance_square.png",
      "variance_exp_sq.png",
      "variance_cos.png",
      "sigma_sweep.png",
      "dim_sweep.png",
      "work_normalized_variance.png",
    ):
      path = os.path.join(self.workdir, name)
      self.assertTrue(os.path.isfile(path), path)
      self.assertGreater(os.path.getsize(path), 0, path)
    with open(os.path.join(self.workdir, "results.json")) as f:
      self.assertEqual(json.load(f), self.results)
    with open(os.path.join(self.workdir, "timings.json")) as f:
      timings = json.load(f)
    self.assertLen(timings["main"], len(config_lib.ESTIMATORS))
    for t in timings["main"] + timings["dim_sweep"]:
      self.assertGreater(t["seconds_per_sample"], 0.0)

  def test_schema(self):
    records = self.results["records"]
    # One record per (cost, k, estimator, param), in a fixed order.
    self.assertLen(records, 3 * 3 * 4 * 2)
    keys = {(r["cost"], r["k"], r["estimator"], r["param"]) for r in records}
    self.assertLen(keys, len(records))
    for r in records:
      for field in _REQUIRED:
        self.assertIn(field, r)
      self.assertIn(r["cost"], ("square", "exp_sq", "cos"))
      self.assertIn(r["estimator"], config_lib.ESTIMATORS)
      self.assertIn(r["param"], ("mu", "sigma"))
      self.assertEqual(r["num_samples"], _NUM_SAMPLES)
      for field in ("k", "mean", "variance", "exact_mean", "exact_variance"):
        self.assertIsInstance(r[field], float, (field, r))
      self.assertGreaterEqual(r["variance"], 0.0)
    self.assertLen(self.results["sigma_sweep"], 3 * 2 * 4 * 2)
    self.assertTrue(all("scale" in r for r in self.results["sigma_sweep"]))
    dim_records = self.results["dim_sweep"]
    self.assertLen(dim_records, 3 * 2 * 4 * 2)
    for r in dim_records:
      self.assertIn(r["dim"], (1, 3))
      # The delta-method CV's reference exists for d = 1 only.
      undefined = r["estimator"] == "score_function_cv" and r["dim"] > 1
      self.assertEqual(r["exact_variance"] is None, undefined)
    self.assertEqual(self.results["config"]["num_samples"], _NUM_SAMPLES)

  def test_empirical_agrees_with_exact(self):
    # Every mean and variance within 5 of its own standard errors of the
    # quadrature reference (the variance's from the 4th central moment).
    checked = 0
    for r in _all_records(self.results):
      self.assertLess(abs(r["mean_z"]), 5.0, r)
      if r["variance_z"] is not None:
        self.assertLess(abs(r["variance_z"]), 5.0, r)
        checked += 1
    # All but the delta-method CV in d = 3 (no reference): 168 - 6.
    self.assertEqual(checked, 162)

  def test_zero_variance_control_variate_on_quadratic(self):
    # The delta method's h equals (x - k)^2: the estimator is exact.
    for r in self.results["records"]:
      if r["cost"] == "square" and r["estimator"] == "score_function_cv":
        self.assertLess(r["variance"], 1e-20)
        self.assertAlmostEqual(r["mean"], r["exact_mean"], delta=1e-10)

  def test_paper_shapes(self):
    # Figure 2: (x - k)^2, pathwise flat in k (4 and 8), score function
    # growing; Figure 3: cos(kx), pathwise growing, score function bounded.
    def variances(cost, estimator, param="mu"):
      rows = [
        r
        for r in self.results["records"]
        if (r["cost"], r["estimator"], r["param"]) == (cost, estimator, param)
      ]
      return np.array([r["exact_variance"] for r in rows])

    # Pathwise on (x - k)^2: 2(x - k) and 2(x - k) eps, variances 4 sigma^2
    # and 4 (mu - k)^2 + 8 sigma^2 at k = -3, 0, 3.
    np.testing.assert_allclose(variances("square", "pathwise"), 4.0)
    np.testing.assert_allclose(
      variances("square", "pathwise", "sigma"), [72.0, 12.0, 24.0]
    )
    score = variances("square", "score_function")
    self.assertGreater(score[0], 10 * score[1])  # k = -3 vs k = 0
    cos_path = variances("cos", "pathwise")
    self.assertTrue(np.all(np.diff(cos_path) > 0))
    self.assertLessEqual(variances("cos", "score_function").max(), 2.0)

  def test_dim_sweep_score_function_grows(self):
    rows = {
      (r["cost"], r["estimator"], r["param"], r["dim"]): r
      for r in self.results["dim_sweep"]
    }
    for cost in ("square", "exp_sq", "cos"):
      for param in ("mu", "sigma"):
        one = rows[(cost, "score_function", param, 1)]["exact_variance"]
        three = rows[(cost, "score_function", param, 3)]["exact_variance"]
        self.assertGreater(three, one)
        for name in ("pathwise", "measure_valued"):
          self.assertEqual(
            rows[(cost, name, param, 1)]["exact_variance"],
            rows[(cost, name, param, 3)]["exact_variance"],
          )

  def test_determinism_and_seed(self):
    # A smaller selection: the same seed gives byte-identical JSON twice, the
    # same numbers as in the full run (keys do not depend on which costs and
    # estimators are selected), and another seed gives other numbers.
    config = _tiny_config()
    config.costs = "cos"
    config.estimators = "pathwise"
    config.dim_sweep.enabled = False
    config.plot = False
    texts = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
      config.seed = seed
      workdir = os.path.join(self._tmp.name, f"small_{name}")
      ev.run(config, workdir)
      with open(os.path.join(workdir, "results.json")) as f:
        texts.append(f.read())
    self.assertEqual(texts[0], texts[1])
    small = json.loads(texts[0])["records"]
    full = [
      r
      for r in self.results["records"]
      if (r["cost"], r["estimator"]) == ("cos", "pathwise")
    ]
    self.assertLen(small, len(full))
    for a, b in zip(small, full, strict=True):
      np.testing.assert_allclose(
        [a["mean"], a["variance"]], [b["mean"], b["variance"]], rtol=1e-12
      )
    other = json.loads(texts[2])["records"]
    self.assertTrue(
      all(a["mean"] != b["mean"] for a, b in zip(small, other, strict=True))
    )

  def test_four_devices_match_one_device(self):
    stdout, stderr = self.four.communicate(timeout=600)
    self.assertEqual(self.four.returncode, 0, stderr[-3000:])
    self.assertIn("max |z|", stdout)
    with open(os.path.join(self.four_workdir, "timings.json")) as f:
      self.assertEqual(json.load(f)["device_count"], 4)
    with open(os.path.join(self.four_workdir, "results.json")) as f:
      four = json.load(f)
    one = self.results
    expected_config = json.loads(json.dumps(one["config"]))
    expected_config["plot"] = False
    expected_config["dim_sweep"]["enabled"] = False
    self.assertEqual(four["config"], expected_config)
    self.assertEqual(four["dim_sweep"], [])
    for key in ("records", "sigma_sweep"):
      self.assertLen(four[key], len(one[key]))
      for a, b in zip(one[key], four[key], strict=True):
        self.assertEqual(a.keys(), b.keys())
        for field, value in a.items():
          if isinstance(value, float):
            # Derived z-scores divide by tiny standard errors where the
            # estimator is exact (the delta method on the quadratic): an ulp
            # in the mean moves them by ~1e-6 there.
            abs_tol = 1e-6 if field.endswith("_z") else 1e-300
            self.assertTrue(
              math.isclose(value, b[field], rel_tol=1e-12, abs_tol=abs_tol),
              (key, field, a, b),
            )
          else:
            self.assertEqual(value, b[field], (key, field))


class MergeMomentsTest(parameterized.TestCase):
  @parameterized.named_parameters(("one_chunk", 1), ("seven_chunks", 7))
  def test_matches_direct_moments(self, num_chunks):
    rng = np.random.default_rng(0)
    chunk = 50
    x = rng.standard_gamma(2.0, size=(num_chunks * chunk, 3)) + 100.0
    stats = np.stack(
      [
        np.asarray(ev._central_moments(jnp.asarray(c)))
        for c in np.split(x, num_chunks)
      ]
    )
    moments = ev.merge_moments(stats, chunk)
    n = x.shape[0]
    np.testing.assert_allclose(moments.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(moments.variance, x.var(0, ddof=1), rtol=1e-11)
    mu4 = np.mean((x - x.mean(0)) ** 4, axis=0)
    s2 = x.var(0, ddof=1)
    np.testing.assert_allclose(
      moments.variance_stderr,
      np.sqrt((mu4 - s2**2 * (n - 3) / (n - 1)) / n),
      rtol=1e-10,
    )
    np.testing.assert_allclose(moments.stderr, np.sqrt(s2 / n), rtol=1e-12)
    self.assertEqual(moments.num_samples, n)


class CostMomentsTest(parameterized.TestCase):
  @parameterized.product(
    cost=("square", "exp_sq", "cos"), k=(0.5, 2.0), scale=(0.5, 1.0)
  )
  def test_closed_form_moments_against_quadrature(self, cost, k, scale):
    # d/dloc and d/dscale of the closed-form E f(X) must equal the quadrature
    # gradient; E f^2 = Var + mean^2 is checked through f^2's gradient too.
    c = ev.COSTS[cost]
    loc = 1.0

    def mean(loc, scale):
      return c.moments(k, loc, scale)[0]

    def second(loc, scale):
      m, v = c.moments(k, loc, scale)
      return v + m**2

    f = lambda x: c.fn(x, k)  # noqa: E731
    f2 = lambda x: c.fn(x, k) ** 2  # noqa: E731
    for fn, moment in ((f, mean), (f2, second)):
      expected = exact.exact_gradient(fn, loc, scale, num_points=160)
      got = jax.grad(moment, argnums=(0, 1))(loc, scale)
      np.testing.assert_allclose(got, tuple(expected), rtol=1e-9, atol=1e-12)


class ConfigErrorsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("unknown_cost", "costs", "square,quartic", ValueError, "'quartic'"),
    (
      "unknown_estimator",
      "estimators",
      "pathwise,reinforce",
      ValueError,
      "'reinforce'",
    ),
    ("empty_costs", "costs", "", ValueError, "empty"),
    ("duplicate", "estimators", "pathwise,pathwise", ValueError, "twice"),
    ("not_a_multiple", "num_samples", 1500, ValueError, "multiple"),
    ("too_few", "num_samples", 1, ValueError, ">= 2"),
    ("scale", "scale", 0.0, ValueError, "config.scale must be > 0"),
  )
  def test_bad_config_fails_before_computation(
    self, field, value, error, message
  ):
    config = _tiny_config()
    config[field] = value
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "out")
      with self.assertRaisesRegex(error, message):
        ev.run(config, workdir)
      self.assertFalse(os.path.exists(workdir))

  def test_float_sample_count(self):
    config = _tiny_config()
    with config.ignore_type():
      config.chunk_size = 10.0
    with self.assertRaisesRegex(TypeError, "chunk_size must be an int"):
      ev.parse_config(config)

  def test_unknown_name_lists_valid_ones(self):
    config = _tiny_config()
    config.costs = "sqaure"
    with self.assertRaisesRegex(
      ValueError, r"config\.costs; valid names are: square, exp_sq, cos"
    ):
      ev.parse_config(config)

  def test_exp_sq_needs_positive_k(self):
    config = _tiny_config()
    config.k_grid.exp_sq = (-1.0, 1.0, 3)
    with self.assertRaisesRegex(ValueError, "needs k > 0"):
      ev.parse_config(config)

  def test_bad_grid_and_dims(self):
    config = _tiny_config()
    config.k_grid.cos = (0.5, 8.0)
    with self.assertRaisesRegex(ValueError, r"\(start, stop, num\) triple"):
      ev.parse_config(config)
    config = _tiny_config()
    config.sigma_sweep.scales = (0.0, 3.0, 4)
    with self.assertRaisesRegex(ValueError, "geometric"):
      ev.parse_config(config)
    config = _tiny_config()
    config.dim_sweep.dims = (1, 1)
    with self.assertRaisesRegex(ValueError, "distinct"):
      ev.parse_config(config)

  def test_config_is_locked(self):
    config = config_lib.get_config()
    config.lock()
    with self.assertRaises(AttributeError):
      config.num_sample = 10  # a typo must not create a new field


if __name__ == "__main__":
  absltest.main()
