"""Tests for rgrad.rl.lqr_bptt_gradients: hand BPTT against jax.grad.

Each rollout's hand-written adjoint is compared with ``jax.grad`` of that
rollout's summed costs (``lqr_rollout(...).costs.sum()``) to 1e-10 of the
gradient's scale in float64, on random problems of two shapes, horizons 1
to 50 and closed loops of spectral radius below and above one (where the
gradients grow like 1.2^T). The mean over rollouts is then checked against
the exact policy gradient of rgrad.exact.
"""

import statistics
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import diagnostics
from rgrad import exact
from rgrad import rl
from tests import lqr_reference as ref

_TOL = 1e-10
_NUM_ROLLOUTS = 4


@jax.jit
def _autodiff(problem, params, noise):
  """Per-rollout jax.grad of the rollout's total cost: leaves [N, ...]."""

  def total_cost(p, z0, zeta, eps):
    single = rl.LQRNoise(z0[None], zeta[None], eps[None])
    return rl.lqr_rollout(problem, p, single).costs.sum()

  return jax.vmap(jax.grad(total_cost), in_axes=(None, 0, 0, 0))(params, *noise)


def _assert_per_rollout_close(actual, expected, what):
  """|a - e| <= 1e-10 max(1, max |e|), the scale taken per rollout."""
  worst = 0.0
  for key in ("K", "log_sigma"):
    a, e = np.asarray(actual[key]), np.asarray(expected[key])
    assert a.shape == e.shape, (what, key, a.shape, e.shape)
    axes = tuple(range(1, e.ndim))
    scale = np.maximum(1.0, np.max(np.abs(e), axis=axes, keepdims=True))
    rel = np.abs(a - e) / scale
    assert np.all(np.isfinite(a)), (what, key)
    assert np.all(rel <= _TOL), (what, key, float(np.max(rel)))
    worst = max(worst, float(np.max(rel)))
  return worst


class AutodiffTest(parameterized.TestCase):
  @parameterized.product(
    shape=((2, 1), (3, 2)), horizon=(1, 5, 50), radius=(0.8, 1.2)
  )
  def test_matches_jax_grad(self, shape, horizon, radius):
    n, m = shape
    problem, params = ref.random_lqr(n + 10 * m, n, m, radius)
    noise = rl.sample_lqr_noise(
      problem, jax.random.key(horizon), horizon, _NUM_ROLLOUTS
    )
    hand = rl.lqr_bptt_gradients(problem, params, noise)
    self.assertEqual(hand["K"].shape, (_NUM_ROLLOUTS, m, n))
    self.assertEqual(hand["log_sigma"].shape, (_NUM_ROLLOUTS,))
    auto = _autodiff(problem, params, noise)
    _assert_per_rollout_close(hand, auto, (shape, horizon, radius))

  @parameterized.parameters(0.9, 1.2)
  def test_example_lqr(self, radius):
    problem, params = rl.example_lqr(radius, dtype=jnp.float64)
    noise = rl.sample_lqr_noise(problem, jax.random.key(7), 30, _NUM_ROLLOUTS)
    hand = rl.lqr_bptt_gradients(problem, params, noise)
    _assert_per_rollout_close(hand, _autodiff(problem, params, noise), radius)

  def test_jit_and_vmap(self):
    problem, params = ref.random_lqr(3, 3, 2, 0.9)
    noise = rl.sample_lqr_noise(problem, jax.random.key(1), 6, _NUM_ROLLOUTS)
    eager = rl.lqr_bptt_gradients(problem, params, noise)
    jitted = jax.jit(rl.lqr_bptt_gradients)(problem, params, noise)
    # vmap over two policies: each row is the gradient at its own policy.
    stacked = jax.tree.map(lambda x: jnp.stack([x, 1.1 * x]), params)
    both = jax.vmap(rl.lqr_bptt_gradients, in_axes=(None, 0, None))(
      problem, stacked, noise
    )
    for key in eager:
      np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-13)
      np.testing.assert_allclose(both[key][0], eager[key], rtol=1e-13)


class _BPTTChunk(NamedTuple):
  horizon: int

  def __call__(self, key, size, args):
    problem, params = args
    noise = rl.sample_lqr_noise(problem, key, self.horizon, size)
    return rl.lqr_bptt_gradients(problem, params, noise)


class UnbiasedTest(absltest.TestCase):
  def test_mean_is_exact_policy_gradient(self):
    # Three coordinates at family-wise false alarm 1e-3 (Bonferroni: z =
    # 3.59 each); a relative error of 1% of each coordinate is detected with
    # power 0.95 when (3.59 + 1.64) SE <= 0.01 |g|. The single-rollout
    # variance (K[0, 0] worst: sd / |g| = 21) needs 5.2e5 rollouts.
    problem, params = rl.example_lqr(0.9, dtype=jnp.float64)
    horizon, chunk = 10, 8192
    moments = diagnostics.moments(
      _BPTTChunk(horizon),
      jax.random.key(0),
      80 * chunk,
      (problem, params),
      chunk_size=chunk,
    )
    want = exact.lqr_policy_gradient(problem, params, horizon)
    z_alarm = statistics.NormalDist().inv_cdf(1.0 - 0.001 / 6)
    z_power = statistics.NormalDist().inv_cdf(0.95)
    for key in want:
      mean, se = np.asarray(moments.mean[key]), np.asarray(moments.stderr[key])
      g = np.asarray(want[key])
      detectable = (z_alarm + z_power) * se / np.abs(g)
      self.assertTrue(np.all(detectable <= 0.01), (key, detectable))
      z = (mean - g) / se
      self.assertTrue(np.all(np.abs(z) < z_alarm), (key, mean, g, z))


class BadInputTest(absltest.TestCase):
  def test_errors_name_the_argument(self):
    problem, params = rl.example_lqr(0.9, dtype=jnp.float64)
    noise = rl.sample_lqr_noise(problem, jax.random.key(0), 5, 3)
    fn = rl.lqr_bptt_gradients
    with self.assertRaisesRegex(TypeError, "noise must be an LQRNoise"):
      fn(problem, params, tuple(noise))
    with self.assertRaisesRegex(ValueError, "noise must have z0 .N, n."):
      fn(problem, params, noise._replace(eps=noise.eps[:, :4]))
    with self.assertRaisesRegex(ValueError, "noise must have z0 .N, n."):
      fn(problem, params, noise._replace(z0=noise.z0[0]))
    with self.assertRaisesRegex(ValueError, r"params\['K'\] must have shape"):
      fn(problem, dict(params, K=jnp.zeros((2, 2))), noise)
    with self.assertRaisesRegex(TypeError, "problem must be an rgrad.rl.LQR"):
      fn(tuple(problem), params, noise)
    with self.assertRaisesRegex(ValueError, "lqr_bptt_gradients: problem.B"):
      fn(problem._replace(B=jnp.zeros((3, 1))), params, noise)


if __name__ == "__main__":
  absltest.main()
