"""Tests for rgrad.backprop: hand backprop and BPTT against jax.grad."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import backprop
from rgrad import gradcheck

_TOL = 1e-10


def _assert_trees_close(actual, expected, tol=_TOL):
  chex.assert_trees_all_equal_structs(actual, expected)
  for a, e in zip(
    jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True
  ):
    a, e = np.asarray(a), np.asarray(e)
    assert np.all(np.isfinite(a)), a
    np.testing.assert_allclose(a, e, rtol=tol, atol=tol)


def _mlp_problem(sizes, batch=5, seed=0):
  k_params, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
  params = backprop.mlp_init(k_params, sizes)
  # Non-zero biases so that every term of the backward pass is exercised.
  params = [
    {"w": p["w"], "b": 0.1 * jnp.arange(p["b"].size, dtype=jnp.float64)}
    for p in params
  ]
  x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float64)
  y = jax.random.normal(k_y, (batch, sizes[-1]), jnp.float64)
  return params, x, y


def _rnn_problem(
  num_steps, input_size=2, hidden=4, output=3, seed=0, scale=1.0
):
  k_params, k_h, k_x, k_y = jax.random.split(jax.random.key(seed), 4)
  params = backprop.rnn_init(
    k_params, input_size, hidden, output, recurrent_scale=scale
  )
  params["b_h"] = 0.1 * jnp.ones_like(params["b_h"])
  params["b_y"] = -0.2 * jnp.ones_like(params["b_y"])
  h0 = 0.5 * jax.random.normal(k_h, (hidden,), jnp.float64)
  xs = jax.random.normal(k_x, (num_steps, input_size), jnp.float64)
  ys = jax.random.normal(k_y, (num_steps, output), jnp.float64)
  return params, h0, xs, ys


def _assert_bptt_matches_autodiff(hand, params, h0, xs, ys):
  """`hand` (rnn_loss_and_grads, transformed) against jitted jax.grad."""
  loss, (grads, dh0) = hand(params, h0, xs, ys)
  ref_loss, (ref_grads, ref_dh0) = jax.jit(
    jax.value_and_grad(backprop.rnn_loss, argnums=(0, 1))
  )(params, h0, xs, ys)
  _assert_trees_close(loss, ref_loss)
  _assert_trees_close(grads, ref_grads)
  _assert_trees_close(dh0, ref_dh0)


class MLPTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
    ("linear", (3, 2), "tanh"),
    ("one_hidden_tanh", (3, 5, 2), "tanh"),
    ("deep_relu", (4, 6, 5, 6, 3), "relu"),
  )
  def test_matches_jax_grad(self, sizes, activation):
    params, x, y = _mlp_problem(sizes)
    fn = self.variant(backprop.mlp_loss_and_grads, static_argnums=3)
    loss, grads = fn(params, x, y, activation)
    ref_loss, ref_grads = jax.jit(
      jax.value_and_grad(backprop.mlp_loss), static_argnums=3
    )(params, x, y, activation)
    _assert_trees_close(loss, ref_loss)
    _assert_trees_close(grads, ref_grads)

  def test_tuple_params_keep_their_container(self):
    params, x, y = _mlp_problem((3, 4, 2))
    _, grads = backprop.mlp_loss_and_grads(tuple(params), x, y)
    self.assertIsInstance(grads, tuple)

  def test_relu_kink_uses_subgradient_zero(self):
    # A zero weight row and bias make a hidden pre-activation exactly 0.
    params, x, y = _mlp_problem((3, 4, 2))
    params[0]["w"] = params[0]["w"].at[1].set(0.0)
    params[0]["b"] = params[0]["b"].at[1].set(0.0)
    _, grads = backprop.mlp_loss_and_grads(params, x, y, "relu")
    ref = jax.grad(backprop.mlp_loss)(params, x, y, "relu")
    _assert_trees_close(grads, ref)
    np.testing.assert_array_equal(grads[0]["b"][1], 0.0)

  def test_gradcheck_report_with_finite_differences(self):
    params, x, y = _mlp_problem((2, 3, 2), batch=3)
    report = gradcheck.check_gradients(
      lambda p: backprop.mlp_loss(p, x, y),
      lambda p: backprop.mlp_loss_and_grads(p, x, y)[1],
      params,
      name="mlp",
    )
    self.assertTrue(report.passed, str(report))
    self.assertLen(report.leaves, 4)

  def test_one_compile_per_shape(self):
    traced = chex.assert_max_traces(backprop.mlp_loss_and_grads, n=1)
    fn = jax.jit(traced, static_argnums=3)
    params, x, y = _mlp_problem((3, 4, 2))
    fn(params, x, y, "tanh")
    # New values, same shapes: no retrace.
    fn(jax.tree.map(lambda p: p + 1.0, params), x * 2.0, y, "tanh")
    with self.assertRaises(AssertionError):
      fn(params, x[:2], y[:2], "tanh")  # a new batch size traces again

  def test_bad_input(self):
    params, x, y = _mlp_problem((3, 4, 2))
    with self.assertRaisesRegex(ValueError, r"x must be \[batch, in\]"):
      backprop.mlp_loss_and_grads(params, x[0], y)
    with self.assertRaisesRegex(ValueError, r"layer 0 'w' must be \[out, 2\]"):
      backprop.mlp_loss_and_grads(params, x[:, :2], y)
    bad = [params[0], {"w": params[1]["w"], "b": params[1]["b"][:1]}]
    with self.assertRaisesRegex(ValueError, r"layer 1 'b' must be \[2\]"):
      backprop.mlp_loss_and_grads(bad, x, y)
    with self.assertRaisesRegex(ValueError, "keys 'w', 'b'"):
      backprop.mlp_loss_and_grads([{"w": params[0]["w"]}], x, y)
    with self.assertRaisesRegex(ValueError, "non-empty list/tuple"):
      backprop.mlp_loss_and_grads([], x, y)
    with self.assertRaisesRegex(ValueError, "mean_squared_error: shapes"):
      backprop.mlp_loss(params, x, y[:, :1])
    with self.assertRaisesRegex(ValueError, "Unknown primitive 'elu'"):
      backprop.mlp_loss_and_grads(params, x, y, "elu")
    with self.assertRaisesRegex(ValueError, "must be an elementwise primitive"):
      backprop.mlp_loss_and_grads(params, x, y, "softmax")
    with self.assertRaisesRegex(ValueError, "layer_sizes needs"):
      backprop.mlp_init(jax.random.key(0), [3])


class RNNTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 9)
  def test_matches_jax_grad(self, num_steps):
    _assert_bptt_matches_autodiff(
      self.variant(backprop.rnn_loss_and_grads), *_rnn_problem(num_steps)
    )

  def test_long_sequence(self):
    # T = 1000: one reverse scan, no unrolling; both sides jitted.
    _assert_bptt_matches_autodiff(
      jax.jit(backprop.rnn_loss_and_grads), *_rnn_problem(1000, scale=0.9)
    )

  def test_step_weights_isolate_the_last_step(self):
    params, h0, xs, ys = _rnn_problem(6, scale=2.0)
    weights = jnp.zeros(6).at[-1].set(1.0)
    _, (grads, dh0) = backprop.rnn_loss_and_grads(params, h0, xs, ys, weights)
    ref_grads, ref_dh0 = jax.grad(backprop.rnn_loss, argnums=(0, 1))(
      params, h0, xs, ys, weights
    )
    _assert_trees_close(grads, ref_grads)
    _assert_trees_close(dh0, ref_dh0)

  def test_vmap_over_sequences(self):
    params, h0, xs, ys = _rnn_problem(5)
    batch = lambda a: jnp.stack([a, 0.5 * a, -a])
    grads_fn = jax.vmap(backprop.rnn_loss_and_grads, in_axes=(None, 0, 0, 0))
    loss, (grads, dh0) = grads_fn(params, batch(h0), batch(xs), batch(ys))
    ref = jax.vmap(
      jax.value_and_grad(backprop.rnn_loss, argnums=(0, 1)),
      in_axes=(None, 0, 0, 0),
    )(params, batch(h0), batch(xs), batch(ys))
    _assert_trees_close((loss, (grads, dh0)), ref)

  def test_gradcheck_report_with_finite_differences(self):
    params, h0, xs, ys = _rnn_problem(4, hidden=3)
    report = gradcheck.check_gradients(
      lambda p: backprop.rnn_loss(p["params"], p["h0"], xs, ys),
      lambda p: dict(
        zip(
          ("params", "h0"),
          backprop.rnn_loss_and_grads(p["params"], p["h0"], xs, ys)[1],
          strict=True,
        )
      ),
      {"params": params, "h0": h0},
      name="rnn",
    )
    self.assertTrue(report.passed, str(report))
    self.assertLen(report.leaves, 6)

  def test_one_compile_per_shape(self):
    fn = jax.jit(chex.assert_max_traces(backprop.rnn_loss_and_grads, n=1))
    params, h0, xs, ys = _rnn_problem(7)
    fn(params, h0, xs, ys)
    fn(params, h0 * 0.0, xs + 1.0, ys)
    with self.assertRaises(AssertionError):
      fn(params, h0, xs[:3], ys[:3])  # a new T traces again

  def test_bad_input(self):
    params, h0, xs, ys = _rnn_problem(4)
    f = backprop.rnn_loss_and_grads
    with self.assertRaisesRegex(ValueError, r"xs must be \[T, input\]"):
      f(params, h0, xs[0], ys)
    with self.assertRaisesRegex(ValueError, r"xs must be \[T, input\], T >= 1"):
      f(params, h0, xs[:0], ys[:0])
    with self.assertRaisesRegex(
      ValueError, r"params\['w_xh'\] must have shape"
    ):
      f(params, h0, xs[:, :1], ys)
    with self.assertRaisesRegex(ValueError, r"h0 must be \[4\]"):
      f(params, h0[:2], xs, ys)
    with self.assertRaisesRegex(ValueError, r"targets must be \[T, output\]"):
      f(params, h0, xs, ys[:3])
    with self.assertRaisesRegex(ValueError, r"step_weights must be \[T\]"):
      f(params, h0, xs, ys, jnp.ones(3))
    bad = dict(params)
    del bad["b_y"]
    with self.assertRaisesRegex(ValueError, "params must be a dict with keys"):
      f(bad, h0, xs, ys)
    with self.assertRaisesRegex(ValueError, "all sizes must be >= 1"):
      backprop.rnn_init(jax.random.key(0), 0, 2, 2)


if __name__ == "__main__":
  absltest.main()
