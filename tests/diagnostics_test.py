"""Tests for rgrad.diagnostics: streaming gradient moments."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import diagnostics
from rgrad import distributions
from rgrad import estimators
from rgrad import exact

_PARAMS = {"w": jnp.arange(3.0), "b": jnp.asarray(0.5)}
_OFFSET = 1e3  # a large mean next to O(1) spread: the merge must not cancel.


def _toy_estimator(function, params, dist_builder, key, num_samples):
  """An estimator-shaped function with known, uneven per-coordinate laws."""
  del function, dist_builder
  noise = jax.random.normal(key, (num_samples, 4))  # one RNG call: cheap to jit
  return {
    "w": _OFFSET + params["w"] + noise[:, :3] * jnp.array([1.0, 2.0, 3.0]),
    "b": params["b"] + jnp.exp(noise[:, 3]),  # log-normal: skewed
  }


def _bad_toy_estimator(function, params, dist_builder, key, num_samples):
  """Like the toy estimator, with infinities in w[0] and NaNs in b."""
  out = _toy_estimator(function, params, dist_builder, key, num_samples)
  w = (
    out["w"]
    .at[:, 0]
    .set(jnp.where(out["w"][:, 0] > _OFFSET + 1.5, jnp.inf, out["w"][:, 0]))
  )
  b = jnp.where(out["b"] > 3.0, jnp.nan, out["b"])
  return {"w": w, "b": b}


def _identity(params):
  return params


def _reproduce(estimator, key, num_samples, chunk_size):
  """The per-sample estimates gradient_moments draws, concatenated."""
  chunk_size = min(chunk_size, num_samples)
  num_full, remainder = divmod(num_samples, chunk_size)

  @functools.partial(jax.jit, static_argnums=1)
  def draw(index, size):
    key_i = jax.random.fold_in(key, index)
    return estimator(jnp.sum, _PARAMS, _identity, key_i, size)

  full = jax.vmap(draw, in_axes=(0, None))(jnp.arange(num_full), chunk_size)
  chunks = [jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), full)]
  if remainder:
    chunks.append(draw(num_full, remainder))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)


class GradientMomentsTest(parameterized.TestCase):
  # 1: a scan of 1000 steps; 7: a partial last chunk; 4096 > num_samples.
  @parameterized.parameters(1, 7, 4096)
  def test_matches_one_shot_numpy(self, chunk_size):
    key = jax.random.key(1)
    num_samples = 1000
    moments = diagnostics.gradient_moments(
      _toy_estimator,
      jnp.sum,
      _PARAMS,
      _identity,
      key,
      num_samples,
      chunk_size=chunk_size,
    )
    samples = _reproduce(_toy_estimator, key, num_samples, chunk_size)
    self.assertEqual(moments.num_samples, num_samples)
    self.assertEqual(int(moments.num_nonfinite), 0)
    for name in ("w", "b"):
      x = samples[name]
      np.testing.assert_allclose(
        moments.mean[name], x.mean(0), rtol=1e-14, atol=0
      )
      var = x.var(0, ddof=1)
      np.testing.assert_allclose(
        moments.variance[name], var, rtol=1e-12, atol=0
      )
      np.testing.assert_allclose(
        moments.stderr[name], np.sqrt(var / num_samples), rtol=1e-12
      )

  def test_merge_is_partition_invariant(self):
    rng = np.random.default_rng(0)
    # Mean / std up to 1e5: the naive sum-of-squares formula would lose ~10
    # digits on the first column (relative error ~ eps * 1e10).
    data = _OFFSET + rng.standard_normal((1000, 4)) * [1e-2, 1.0, 10.0, 1e3]
    want_mean, want_var = data.mean(0), data.var(0, ddof=1)
    for cuts in ([1000], [1, 999], [7, 93, 500, 400], [333, 333, 333, 1]):
      bounds = np.cumsum([0] + cuts)
      pieces = [
        diagnostics.chunk_moment_sums([jnp.asarray(data[a:b])])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
      ]
      # Merge left to right and as a balanced tree: both are exact.
      left = functools.reduce(diagnostics.merge_moment_sums, pieces)
      np.testing.assert_allclose(left.mean[0], want_mean, rtol=1e-14)
      np.testing.assert_allclose(
        left.m2[0] / (left.count - 1), want_var, rtol=1e-12
      )
      while len(pieces) > 1:
        pieces = [
          diagnostics.merge_moment_sums(*pieces[i : i + 2])
          if i + 1 < len(pieces)
          else pieces[i]
          for i in range(0, len(pieces), 2)
        ]
      np.testing.assert_allclose(pieces[0].mean[0], left.mean[0], rtol=1e-14)
      np.testing.assert_allclose(pieces[0].m2[0], left.m2[0], rtol=1e-12)

  def test_estimator_traces_do_not_grow_with_num_samples(self):
    traces = []

    def counting(function, params, dist_builder, key, num_samples):
      traces.append(num_samples)
      return _toy_estimator(function, params, dist_builder, key, num_samples)

    run = functools.partial(
      diagnostics.gradient_moments, counting, jnp.sum, _PARAMS, _identity
    )
    run(jax.random.key(0), 1000, chunk_size=64)
    # Abstract shape trace, scan body, final partial chunk of 1000 % 64.
    self.assertEqual(sorted(traces), [40, 64, 64])
    run(jax.random.key(1), 1000, chunk_size=64)  # new key: no retrace
    self.assertLen(traces, 3)
    run(jax.random.key(0), 64 * 500, chunk_size=64)  # 500 chunks, one body
    self.assertEqual(sorted(traces), [40, 64, 64, 64, 64])

  def test_compiled_memory_is_independent_of_num_samples(self):
    params = {"w": jnp.zeros(256)}

    def estimator(function, params, dist_builder, key, num_samples):
      noise = jax.random.normal(key, (num_samples, 256))
      return {"w": params["w"] + noise}

    def temp_bytes(num_samples):
      lowered = diagnostics.stream_moments.lower(
        jax.random.key(0),
        params,
        chunk_fn=diagnostics.EstimatorChunk(estimator, jnp.sum, _identity),
        num_samples=num_samples,
        chunk_size=128,
      )
      return lowered.compile().memory_analysis().temp_size_in_bytes

    small, huge = temp_bytes(128 * 10), temp_bytes(128 * 10**6)
    self.assertEqual(small, huge)
    # A few chunk-sized buffers, nowhere near num_samples * d.
    self.assertLess(huge, 16 * 128 * 256 * 8)

  def test_non_finite_samples_are_reported_not_averaged(self):
    key = jax.random.key(3)
    moments = diagnostics.gradient_moments(
      _bad_toy_estimator, jnp.sum, _PARAMS, _identity, key, 500, chunk_size=100
    )
    samples = _reproduce(_bad_toy_estimator, key, 500, 100)
    bad = ~np.isfinite(samples["w"]).all(1) | ~np.isfinite(samples["b"])
    self.assertGreater(bad.sum(), 0)
    self.assertEqual(int(moments.num_nonfinite), int(bad.sum()))
    for field in ("mean", "variance", "stderr"):
      value = getattr(moments, field)
      self.assertTrue(np.isnan(value["w"][0]), field)  # inf -> NaN, not inf
      self.assertTrue(np.isnan(value["b"]), field)
      self.assertTrue(np.all(np.isfinite(value["w"][1:])), field)
    # The finite coordinates are still exact.
    np.testing.assert_allclose(
      moments.mean["w"][1:], samples["w"][:, 1:].mean(0), rtol=1e-14
    )

  def test_single_sample(self):
    key = jax.random.key(0)
    moments = diagnostics.gradient_moments(
      _toy_estimator, jnp.sum, _PARAMS, _identity, key, 1
    )
    sample = _toy_estimator(None, _PARAMS, None, jax.random.fold_in(key, 0), 1)
    np.testing.assert_allclose(moments.mean["w"], sample["w"][0])
    self.assertTrue(np.all(np.isnan(moments.variance["w"])))

  def test_jit_and_vmap_over_keys_and_params(self):
    keys = jax.random.split(jax.random.key(0), 2)
    shifts = jnp.array([0.0, 10.0])

    @jax.jit
    @jax.vmap
    def mean_w(key, shift):
      params = {"w": _PARAMS["w"] + shift, "b": _PARAMS["b"]}
      moments = diagnostics.gradient_moments(
        _toy_estimator, jnp.sum, params, _identity, key, 100, chunk_size=30
      )
      return moments.mean["w"]

    got = mean_w(keys, shifts)
    for i in range(2):
      params = {"w": _PARAMS["w"] + shifts[i], "b": _PARAMS["b"]}
      want = diagnostics.gradient_moments(
        _toy_estimator, jnp.sum, params, _identity, keys[i], 100, chunk_size=30
      ).mean["w"]
      np.testing.assert_allclose(got[i], want, rtol=1e-14)


class BadInputTest(parameterized.TestCase):
  def _run(self, estimator=_toy_estimator, num_samples=10, **kwargs):
    return diagnostics.gradient_moments(
      estimator, jnp.sum, _PARAMS, _identity, jax.random.key(0), num_samples,
      **kwargs,
    )  # fmt: skip

  @parameterized.parameters(0, -3)
  def test_num_samples_below_one(self, n):
    with self.assertRaisesRegex(ValueError, "num_samples must be >= 1"):
      self._run(num_samples=n)

  @parameterized.parameters(0, -1)
  def test_chunk_size_below_one(self, c):
    with self.assertRaisesRegex(ValueError, "chunk_size must be >= 1"):
      self._run(chunk_size=c)

  def test_non_int_sizes(self):
    with self.assertRaisesRegex(TypeError, "num_samples must be a static"):
      self._run(num_samples=10.0)
    with self.assertRaisesRegex(TypeError, "chunk_size must be a static"):
      self._run(chunk_size=jnp.asarray(4))

  def test_not_callable(self):
    with self.assertRaisesRegex(TypeError, "estimator must be callable"):
      self._run(estimator=3)
    # A string is a registry name: an unknown one lists the known ones.
    with self.assertRaisesRegex(ValueError, "known estimators: .*pathwise"):
      self._run(estimator="reinforce")

  def test_wrong_output_shape(self):
    def short(function, params, dist_builder, key, num_samples):
      out = _toy_estimator(function, params, dist_builder, key, num_samples)
      return {"w": out["w"][:, :2], "b": out["b"]}

    with self.assertRaisesRegex(ValueError, r"must have shape.*\(10, 3\)"):
      self._run(estimator=short)

  def test_wrong_output_structure(self):
    def flat(function, params, dist_builder, key, num_samples):
      return _toy_estimator(function, params, dist_builder, key, num_samples)[
        "w"
      ]

    with self.assertRaisesRegex(ValueError, "pytree like params"):
      self._run(estimator=flat)


class SummaryTest(absltest.TestCase):
  def test_bias_and_snr(self):
    moments = diagnostics.GradientMoments(
      mean={"a": jnp.array([1.0, -2.0])},
      variance={"a": jnp.array([4.0, 16.0])},
      stderr={"a": jnp.array([0.5, 0.25])},
      num_samples=64,
      num_nonfinite=jnp.asarray(0),
    )
    z = diagnostics.bias_in_stderrs(moments, {"a": jnp.array([0.0, -1.0])})
    np.testing.assert_allclose(z["a"], [2.0, -4.0])
    snr = diagnostics.signal_to_noise(moments)
    # sqrt(mean^2 - stderr^2) / sqrt(variance): the squared signal less its
    # upward bias, not the plug-in |mean| / sd = [0.5, 0.5].
    np.testing.assert_allclose(
      snr["a"], [np.sqrt(1.0 - 0.25) / 2.0, np.sqrt(4.0 - 0.0625) / 4.0]
    )
    with self.assertRaisesRegex(ValueError, "exact must be a pytree like"):
      diagnostics.bias_in_stderrs(moments, jnp.zeros(2))


def _normal_builder(params):
  return distributions.Normal(params["loc"], params["scale"])


class RealEstimatorsTest(parameterized.TestCase):
  """Moments of the rgrad estimators against the quadrature references.

  The cost is separable, f(x) = sum_i cos(k_i x_i), so every coordinate of
  the pathwise and measure-valued estimators is a one-dimensional estimator
  of exact.py; the score-function one multiplies the whole cost by one
  coordinate's score, so it is checked in one dimension.
  """

  @parameterized.named_parameters(
    ("pathwise", "pathwise", 2),
    ("score_function", "score_function", 1),
    ("measure_valued_coupled", "measure_valued_coupled", 2),
    ("measure_valued_uncoupled", "measure_valued_uncoupled", 2),
  )
  def test_mean_and_variance(self, name, dim):
    ks = jnp.array([1.5, 0.7])[:dim]
    params = {
      "loc": jnp.array([0.3, -0.8])[:dim],
      "scale": jnp.array([0.9, 1.4])[:dim],
    }
    cost = lambda x: jnp.sum(jnp.cos(ks * x))
    estimator, variance_fn = {
      "pathwise": (estimators.pathwise_jacobians, exact.pathwise_variance),
      "score_function": (
        estimators.score_function_jacobians,
        exact.score_function_variance,
      ),
      "measure_valued_coupled": (
        functools.partial(estimators.measure_valued_jacobians, coupling=True),
        functools.partial(exact.measure_valued_variance, coupling=True),
      ),
      "measure_valued_uncoupled": (
        functools.partial(estimators.measure_valued_jacobians, coupling=False),
        functools.partial(exact.measure_valued_variance, coupling=False),
      ),
    }[name]
    per_coordinate = lambda fn: jax.vmap(
      lambda k, m, s: fn(lambda x: jnp.cos(k * x), m, s)
    )(ks, params["loc"], params["scale"])
    want_grad = per_coordinate(exact.exact_gradient)
    want_var = per_coordinate(variance_fn)

    exact_mean = {"loc": want_grad.loc, "scale": want_grad.scale}

    def with_squares(function, both, dist_builder, key, num_samples):
      # Per-sample g and (g - E g)^2 from one estimator call: the mean of the
      # second is the variance (the exact mean is known), and its standard
      # error comes from the same samples.
      del dist_builder  # _normal_builder of both["g"], as below.
      g = estimator(function, both["g"], _normal_builder, key, num_samples)
      sq = jax.tree.map(lambda x, m: jnp.square(x - m), g, exact_mean)
      return {"g": g, "sq": sq}

    moments = diagnostics.gradient_moments(
      # `both` holds params twice; the distribution is built from one copy
      # (gradient_moments builds it once, eagerly, to check params).
      with_squares, cost, {"g": params, "sq": params},
      lambda both: _normal_builder(both["g"]), jax.random.key(7), 4000,
      chunk_size=1000,
    )  # fmt: skip
    self.assertEqual(int(moments.num_nonfinite), 0)
    want_sq = {"loc": want_var.loc, "scale": want_var.scale}
    z = diagnostics.bias_in_stderrs(moments, {"g": exact_mean, "sq": want_sq})
    chex.assert_trees_all_equal_shapes(z["g"], params)
    for leaf in jax.tree.leaves(z):
      self.assertTrue(np.all(np.abs(leaf) < 5.0), z)


if __name__ == "__main__":
  absltest.main()
