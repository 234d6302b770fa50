"""Tests for rgrad.gradcheck: it passes right gradients and fails wrong ones."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import gradcheck
from rgrad import primitives


def _quadratic(params):
  # f(w, b) = sum(tanh(w @ a + b)^2), a fixed input.
  a = jnp.asarray([0.3, -0.7, 1.1])
  return jnp.sum(jnp.square(jnp.tanh(params["w"] @ a + params["b"])))


def _quadratic_grads(params, wrong=False):
  a = jnp.asarray([0.3, -0.7, 1.1])
  z = params["w"] @ a + params["b"]
  t = jnp.tanh(z)
  # d/dz tanh(z)^2 = 2 tanh(z) sech^2(z).
  dz = 2.0 * t * primitives.tanh_derivative(z)
  if wrong:
    dz = 2.0 * t  # forgot the inner derivative
  return {"w": jnp.outer(dz, a), "b": dz}


def _params():
  kw, kb = jax.random.split(jax.random.key(0))
  return {
    "w": jax.random.normal(kw, (2, 3), jnp.float64),
    "b": jax.random.normal(kb, (2,), jnp.float64),
  }


class CheckGradientsTest(parameterized.TestCase):
  def test_right_gradient_passes(self):
    report = gradcheck.check_gradients(
      _quadratic, _quadratic_grads, _params(), name="quadratic"
    )
    self.assertTrue(report.passed, str(report))
    self.assertLen(report.leaves, 2)
    self.assertEqual([leaf.path for leaf in report.leaves], ["['b']", "['w']"])
    self.assertLess(report.autodiff_max_abs, 1e-12)
    self.assertLess(report.fd_max_rel, 1e-6)
    self.assertGreater(report.fd_max_abs, 0.0)  # FD is not exact.

  def test_wrong_gradient_fails(self):
    report = gradcheck.check_gradients(
      _quadratic, lambda p: _quadratic_grads(p, wrong=True), _params()
    )
    self.assertFalse(report.passed)
    self.assertFalse(any(leaf.autodiff_passed for leaf in report.leaves))
    self.assertFalse(any(leaf.fd_passed for leaf in report.leaves))
    self.assertGreater(report.autodiff_max_rel, 1e-3)
    self.assertIn("FAILED", str(report))
    self.assertIn(" NO", str(report))

  def test_relative_error_is_normwise_per_leaf(self):
    # Normwise: an entry off by 1e-17 next to an entry of 2 is rounding; the
    # same 1e-17 next to an entry of 1e-16 is a 10% error, and fails (the
    # criterion has no absolute floor below which errors are forgiven).
    def function(p):
      return jnp.sum(p["x"] ** 2)

    def off_by_tiny(p):
      return {"x": 2.0 * p["x"] + jnp.array([1e-17, 0.0])}

    big = {"x": jnp.array([0.0, 1.0], jnp.float64)}
    report = gradcheck.check_gradients(
      function, off_by_tiny, big, finite_differences=False
    )
    self.assertLess(report.autodiff_max_rel, 1e-16)
    self.assertTrue(report.passed, str(report))
    self.assertEqual(report.leaves[0].rule, "relative")
    tiny = {"x": jnp.array([0.0, 5e-17], jnp.float64)}
    report = gradcheck.check_gradients(
      function, off_by_tiny, tiny, finite_differences=False
    )
    self.assertAlmostEqual(report.autodiff_max_rel, 0.1, places=12)
    self.assertFalse(report.passed, str(report))
    report = gradcheck.check_gradients(
      function,
      lambda p: {"x": 2.2 * p["x"]},
      {"x": jnp.array([0.0, 3.0], jnp.float64)},
      finite_differences=False,
    )
    self.assertAlmostEqual(report.autodiff_max_rel, 0.6 / 6.0, places=12)
    self.assertFalse(report.passed)

  @parameterized.parameters(1e-12, 1e-8, 1e-4, 1.0, 1e4, 1e8, 1e12)
  def test_verdict_does_not_depend_on_the_scale(self, scale):
    # f = s * sum(sin(w)^2), grad = s * sin(2w). The verdicts must be the
    # same at every scale s: the right gradient passes both references, a
    # wrong formula with the wrong sign and an all-zero gradient (each 100%
    # or more off) fail both. Under the old absolute floor (atol = 1e-10)
    # both wrong ones passed at s = 1e-11.
    w = {"w": jnp.asarray([0.3, -1.2, 2.0, 0.7], jnp.float64)}

    def function(p):
      return scale * jnp.sum(jnp.square(jnp.sin(p["w"])))

    right = lambda p: {"w": scale * jnp.sin(2.0 * p["w"])}
    wrong = lambda p: {"w": -2.0 * scale * jnp.square(jnp.cos(p["w"]))}
    zero = lambda p: {"w": jnp.zeros_like(p["w"])}
    report = gradcheck.check_gradients(function, right, w)
    self.assertTrue(report.passed, str(report))
    self.assertLess(report.autodiff_max_rel, 1e-14, str(report))
    self.assertLess(report.fd_max_rel, 1e-8, str(report))
    for bad in (wrong, zero):
      report = gradcheck.check_gradients(function, bad, w)
      self.assertFalse(report.leaves[0].autodiff_passed, str(report))
      self.assertFalse(report.leaves[0].fd_passed, str(report))
      self.assertGreaterEqual(report.autodiff_max_rel, 1.0, str(report))
      self.assertEqual(report.leaves[0].rule, "relative")

  def test_exactly_zero_reference_uses_the_absolute_rule(self):
    # d/dx sum(x^2) = 0 at x = 0 exactly: no scale to be relative to, so the
    # hand gradient must itself be below atol (absolute), and the report
    # says that this rule applied.
    function = lambda x: jnp.sum(x**2)
    x = jnp.zeros(3, jnp.float64)
    report = gradcheck.check_gradients(function, lambda x: 2.0 * x, x)
    self.assertTrue(report.passed, str(report))
    self.assertEqual(report.leaves[0].rule, "absolute")
    self.assertEqual(report.leaves[0].zero_reference_points, 1)
    self.assertEqual(report.autodiff_max_rel, 0.0)
    self.assertIn("abs", str(report))
    report = gradcheck.check_gradients(
      function, lambda x: 2.0 * x + 1e-9, x, finite_differences=False
    )
    self.assertFalse(report.passed, str(report))
    self.assertEqual(report.autodiff_max_rel, float("inf"))
    self.assertAlmostEqual(report.autodiff_max_abs, 1e-9, delta=1e-24)
    # Under atol, and reported as such.
    loose = gradcheck.Tolerances(atol=1e-8)
    report = gradcheck.check_gradients(
      function,
      lambda x: 2.0 * x + 1e-9,
      x,
      finite_differences=False,
      tolerances=loose,
    )
    self.assertTrue(report.passed, str(report))
    # Strict JSON still: the inf relative error becomes null.
    json.dumps(report.to_dict(), allow_nan=False)

  def test_batched_rule_is_per_point(self):
    # One point with an exact-zero gradient (x = 0), one without: "mixed";
    # each point is judged on its own scale, so a 1e-3 relative error at
    # the small point fails even though the other point is 1e6 larger.
    function = lambda x: jnp.sum(x**2)
    xs = jnp.asarray([[0.0, 0.0], [1e6, 1e-6]], jnp.float64)
    report = gradcheck.check_gradients(
      function, lambda x: 2.0 * x, xs, batched=True, finite_differences=False
    )
    self.assertTrue(report.passed, str(report))
    self.assertEqual(report.leaves[0].rule, "mixed")
    self.assertEqual(report.leaves[0].zero_reference_points, 1)
    xs = jnp.asarray([[1e6, 1.0], [1e-6, 1e-6]], jnp.float64)
    report = gradcheck.check_gradients(
      function,
      lambda x: 2.0 * x * jnp.where(x < 1e-3, 1.001, 1.0),
      xs,
      batched=True,
      finite_differences=False,
    )
    self.assertFalse(report.passed, str(report))
    self.assertAlmostEqual(report.autodiff_max_rel, 1e-3, places=9)

  def test_slightly_wrong_gradient_fails(self):
    # Off by 1e-8 relative: below FD's resolution, caught by autodiff.
    report = gradcheck.check_gradients(
      _quadratic,
      lambda p: jax.tree.map(lambda g: g * (1 + 1e-8), _quadratic_grads(p)),
      _params(),
    )
    self.assertFalse(report.passed)
    self.assertTrue(all(leaf.fd_passed for leaf in report.leaves))
    self.assertFalse(any(leaf.autodiff_passed for leaf in report.leaves))

  def test_nan_gradient_fails(self):
    report = gradcheck.check_gradients(
      _quadratic,
      lambda p: jax.tree.map(lambda g: g * jnp.nan, _quadratic_grads(p)),
      _params(),
      finite_differences=False,
    )
    self.assertFalse(report.passed)
    # Strict JSON: NaN errors become null.
    encoded = json.dumps(report.to_dict(), allow_nan=False)
    self.assertIn("null", encoded)

  def test_vector_output_uses_jacobian(self):
    prim = primitives.get_primitive("softmax")
    x = jnp.asarray([0.5, -1.0, 2.0], jnp.float64)
    report = gradcheck.check_gradients(prim.fn, prim.jacobian, x)
    self.assertTrue(report.passed, str(report))
    wrong = gradcheck.check_gradients(
      prim.fn, lambda x: prim.jacobian(x).T + jnp.eye(3) * 1e-3, x
    )
    self.assertFalse(wrong.passed)

  def test_batched_points(self):
    xs = jnp.linspace(-2.0, 2.0, 12, dtype=jnp.float64).reshape(4, 3)
    report = gradcheck.check_gradients(
      primitives.logsumexp, primitives.logsumexp_grad, xs, batched=True
    )
    self.assertTrue(report.passed, str(report))
    self.assertEqual(report.num_points, 4)
    self.assertEqual(report.leaves[0].shape, (3,))

  def test_finite_difference_gradient_alone(self):
    x = jnp.asarray([0.1, 1.0, 30.0], jnp.float64)
    fd = gradcheck.finite_difference_gradient(lambda x: jnp.sum(jnp.sin(x)), x)
    # Central differences with h ~ eps^(1/3): error ~1e-10 relative here.
    np.testing.assert_allclose(fd, jnp.cos(x), rtol=1e-8, atol=1e-9)

  def test_report_is_json_and_table(self):
    report = gradcheck.check_gradients(_quadratic, _quadratic_grads, _params())
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    self.assertEqual(
      set(d), {"name", "passed", "num_points", "tolerances", "leaves"}
    )
    self.assertEqual(d["leaves"][1]["shape"], [2, 3])
    self.assertTrue(d["passed"])
    table = report.table()
    self.assertIn("ad max abs", table)
    self.assertIn("rule", table)
    self.assertLen(table.splitlines(), 4)

  def test_tolerances_are_respected(self):
    loose = gradcheck.Tolerances(atol=1e-2, rtol=1e-2, fd_atol=1, fd_rtol=1)
    report = gradcheck.check_gradients(
      _quadratic,
      lambda p: jax.tree.map(lambda g: g * (1 + 1e-4), _quadratic_grads(p)),
      _params(),
      tolerances=loose,
    )
    self.assertTrue(report.passed)


class BadInputTest(absltest.TestCase):
  def test_float32_when_float64_requested(self):
    params = jax.tree.map(lambda p: p.astype(jnp.float32), _params())
    with self.assertRaisesRegex(
      TypeError, r"leaf \['b'\] has dtype float32, but float64 was requested"
    ):
      gradcheck.check_gradients(_quadratic, _quadratic_grads, params)

  def test_float32_allowed_when_not_requested(self):
    params = jax.tree.map(lambda p: p.astype(jnp.float32), _params())
    report = gradcheck.check_gradients(
      _quadratic,
      _quadratic_grads,
      params,
      require_float64=False,
      tolerances=gradcheck.Tolerances(1e-5, 1e-5, 1e-2, 1e-2),
    )
    self.assertTrue(report.passed, str(report))

  def test_x64_disabled(self):
    params = _params()
    jax.config.update("jax_enable_x64", False)
    try:
      with self.assertRaisesRegex(TypeError, "jax_enable_x64 is off"):
        gradcheck.check_gradients(_quadratic, _quadratic_grads, params)
    finally:
      jax.config.update("jax_enable_x64", True)

  def test_integer_leaf(self):
    with self.assertRaisesRegex(TypeError, r"leaf \['w'\] has dtype int"):
      gradcheck.check_gradients(
        _quadratic,
        _quadratic_grads,
        {"b": _params()["b"], "w": jnp.ones((2, 3), int)},
      )

  def test_empty_leaf(self):
    params = {"b": jnp.zeros((0,), jnp.float64), "w": _params()["w"]}
    with self.assertRaisesRegex(ValueError, r"leaf \['b'\] is empty"):
      gradcheck.check_gradients(_quadratic, _quadratic_grads, params)
    with self.assertRaisesRegex(ValueError, "no leaves"):
      gradcheck.check_gradients(_quadratic, _quadratic_grads, {})

  def test_empty_output(self):
    with self.assertRaisesRegex(ValueError, "returns an empty array"):
      gradcheck.check_gradients(
        lambda x: x[:0], lambda x: x, jnp.ones(3, jnp.float64)
      )

  def test_shape_mismatch_names_the_leaf(self):
    def bad(params):
      g = _quadratic_grads(params)
      return {"w": g["w"].T, "b": g["b"]}

    with self.assertRaisesRegex(
      ValueError, r"hand gradient for leaf \['w'\] has shape \(3, 2\), expected"
    ):
      gradcheck.check_gradients(_quadratic, bad, _params())

  def test_structure_mismatch(self):
    with self.assertRaisesRegex(ValueError, "tree structure differs"):
      gradcheck.check_gradients(
        _quadratic, lambda p: _quadratic_grads(p)["w"], _params()
      )

  def test_batched_point_mismatch(self):
    with self.assertRaisesRegex(ValueError, r"leaf \['y'\] has 3 points"):
      gradcheck.check_gradients(
        lambda p: jnp.sum(p["x"]) + jnp.sum(p["y"]),
        lambda p: jax.tree.map(jnp.ones_like, p),
        {"x": jnp.ones((2, 1)), "y": jnp.ones((3, 1))},
        batched=True,
      )


if __name__ == "__main__":
  absltest.main()
