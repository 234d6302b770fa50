"""Tests for rgrad.distributions: hand-derived scores, densities, pytrees."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import distributions
from tests import power

# Fixed, well-conditioned parameters; each case has a batch dimension where the
# class supports one, so broadcasting in log_prob/score is exercised too.
_LOC = np.array([[0.3, -1.2, 2.0], [1.5, 0.0, -0.7]])  # [2, 3]
_SCALE = np.array([[0.5, 1.3, 2.2], [0.8, 1.0, 0.3]])  # [2, 3]
_TRIL = np.array([[1.2, 0.0, 0.0], [0.4, 0.7, 0.0], [-0.3, 0.5, 1.6]])  # [3, 3]


_NUM_DRAWS = 20_000


@jax.jit
def _draws(dist):
  """The draws every test uses, [_NUM_DRAWS, *batch, *event].

  One jitted call per class: eager sampling compiles op by op (Gamma's
  rejection loop especially), and each new sample shape compiles anew; that
  dominated this file's time.
  """
  return dist.sample(jax.random.key(0), (_NUM_DRAWS,))


def _cases():
  """(name, class, fields) for every distribution."""
  return (
    ("normal", distributions.Normal, dict(loc=_LOC, scale=_SCALE)),
    (
      "log_scale_normal",
      distributions.LogScaleNormal,
      dict(loc=_LOC, log_scale=np.log(_SCALE)),
    ),
    (
      "mvn_tril",
      distributions.MultivariateNormalTriL,
      dict(loc=_LOC, scale_tril=np.stack([_TRIL, 0.5 * _TRIL + np.eye(3)])),
    ),
    ("bernoulli", distributions.Bernoulli, dict(logits=_LOC)),
    ("categorical", distributions.Categorical, dict(logits=_LOC)),
    ("one_hot_categorical", distributions.OneHotCategorical, dict(logits=_LOC)),
    (
      "gamma",
      distributions.Gamma,
      dict(concentration=_SCALE + 0.2, rate=_SCALE[::-1]),
    ),
  )


def _reference_log_prob(name, fields, x):
  """log p(x) from jax.scipy.stats, sharing no code with rgrad."""
  stats = jax.scipy.stats
  if name == "normal":
    return stats.norm.logpdf(x, fields["loc"], fields["scale"]).sum(-1)
  if name == "log_scale_normal":
    scale = np.exp(fields["log_scale"])
    return stats.norm.logpdf(x, fields["loc"], scale).sum(-1)
  if name == "mvn_tril":
    tril = fields["scale_tril"]
    cov = tril @ np.swapaxes(tril, -1, -2)
    per_batch = jax.vmap(stats.multivariate_normal.logpdf)
    return jax.vmap(per_batch, in_axes=(0, None, None))(x, fields["loc"], cov)
  if name == "bernoulli":
    return stats.bernoulli.logpmf(x, jax.nn.sigmoid(fields["logits"])).sum(-1)
  if name == "categorical":
    probs = jax.nn.softmax(fields["logits"], -1)
    probs = jnp.broadcast_to(probs, x.shape + probs.shape[-1:])
    return jnp.log(jnp.take_along_axis(probs, x[..., None], -1)[..., 0])
  if name == "one_hot_categorical":
    probs = np.exp(fields["logits"])
    probs /= probs.sum(-1, keepdims=True)
    return jnp.log(jnp.sum(x * probs, -1))
  if name == "gamma":
    a, b = fields["concentration"], fields["rate"]
    return stats.gamma.logpdf(x, a, scale=1.0 / b).sum(-1)
  raise ValueError(name)


@functools.cache
def _computed(name):
  """Draws, scores, autodiff scores and log-densities for case `name`.

  One compiled program per distribution, shared by the tests below: compiling
  (Gamma's sampler above all) dominates this file's time, not computing.
  """
  cls, fields = {c[0]: c[1:] for c in _cases()}[name]
  dist = cls(**fields)
  names = cls._fields
  values = tuple(jnp.asarray(fields[n]) for n in names)

  def log_prob(values, x):
    return cls(**dict(zip(names, values, strict=True))).log_prob(x).sum()

  @jax.jit
  def compute(dist, values):
    xs = dist.sample(jax.random.key(0), (_NUM_DRAWS,))
    few = xs[:4]  # A few draws, each one x of the batch and event shape.
    auto, scores = jax.vmap(
      lambda x: (jax.grad(log_prob)(values, x), dist.score(x))
    )(few)
    return {
      "draws": xs,
      "few": few,
      "autodiff": auto,
      "scores": scores,
      "log_prob": dist.log_prob(few),
      "reference_log_prob": _reference_log_prob(name, fields, few),
    }

  return compute(dist, values)


class ScoreTest(parameterized.TestCase):
  """Hand-derived scores against jax.grad of log_prob, in float64."""

  @parameterized.named_parameters(*_cases())
  def test_score_matches_autodiff(self, cls, fields):
    name = [c[0] for c in _cases() if c[1] is cls][0]
    out = _computed(name)
    got = out["scores"]
    self.assertIsInstance(got, cls)
    for n, e in zip(cls._fields, out["autodiff"], strict=True):
      chex.assert_shape(getattr(got, n), (4,) + fields[n].shape)
      np.testing.assert_allclose(getattr(got, n), e, rtol=1e-10, atol=1e-10)

  def test_mvn_score_formula(self):
    """The closed form tril(L^{-T}(z z^T - I)), with explicit inverses."""
    x = np.array([0.9, -0.4, 1.7])
    mu = np.array([0.1, 0.2, -0.3])
    z = np.linalg.solve(_TRIL, x - mu)
    inv_t = np.linalg.inv(_TRIL).T
    expected = np.tril(inv_t @ (np.outer(z, z) - np.eye(3)))
    score = distributions.MultivariateNormalTriL(mu, _TRIL).score(x)
    np.testing.assert_allclose(score.scale_tril, expected, rtol=1e-10)
    np.testing.assert_allclose(score.loc, inv_t @ z, rtol=1e-10)

  def test_normal_score_reuses_primitive_partials(self):
    x = np.array([0.2, 1.0, -3.0])
    loc, scale = _LOC[0], _SCALE[0]
    z = (x - loc) / scale
    score = distributions.Normal(loc, scale).score(x)
    np.testing.assert_allclose(score.loc, z / scale, rtol=1e-12)
    np.testing.assert_allclose(score.scale, (z**2 - 1) / scale, rtol=1e-12)
    log_score = distributions.LogScaleNormal(loc, np.log(scale)).score(x)
    np.testing.assert_allclose(log_score.log_scale, z**2 - 1, rtol=1e-12)


class NoiseTest(parameterized.TestCase):
  """sample_with_noise / score_from_noise against sample / score."""

  @parameterized.named_parameters(*_cases())
  def test_same_draws_and_scores(self, cls, fields):
    dist = cls(**fields)
    key = jax.random.key(3)
    x, noise = jax.jit(lambda k: dist.sample_with_noise(k, (6,)))(key)
    # The draws are exactly those of sample() with the same key.
    np.testing.assert_array_equal(
      x, jax.jit(lambda k: dist.sample(k, (6,)))(key)
    )
    chex.assert_equal_shape([x, noise])
    weights = jnp.linspace(-2.0, 3.0, 6)
    expected = jax.vmap(dist.score)(x)
    for w, got in [
      (w, fn(rows, w))
      for w in (None, weights)
      for fn, rows in (
        (jax.jit(dist.score_from_noise), noise),
        (dist.batch_score, x),
      )
    ]:
      self.assertIsInstance(got, cls)
      scale = jnp.ones(6) if w is None else w
      for n in cls._fields:
        want = getattr(expected, n) * scale.reshape(
          (6,) + (1,) * fields[n].ndim
        )
        chex.assert_shape(getattr(got, n), (6,) + fields[n].shape)
        # z = eps exactly against z = (x - mu)/sigma: equal up to rounding.
        np.testing.assert_allclose(
          getattr(got, n), want, rtol=1e-10, atol=1e-10
        )

  @parameterized.named_parameters(
    ("normal", distributions.Normal, "standard_normal"),
    ("log_scale_normal", distributions.LogScaleNormal, "standard_normal"),
    ("mvn_tril", distributions.MultivariateNormalTriL, "standard_normal"),
    ("bernoulli", distributions.Bernoulli, "uniform"),
    ("one_hot_categorical", distributions.OneHotCategorical, "gumbel"),
    ("gamma", distributions.Gamma, "log_unit_gamma"),
  )
  def test_noise_is_standard_normal_for_gaussians(self, cls, kind):
    fields = next(f for _, k, f in _cases() if k is cls)
    dist = cls(**fields)
    x, noise = dist.sample_with_noise(jax.random.key(4), (4,))
    if kind == "standard_normal":
      eps = jax.random.normal(jax.random.key(4), x.shape, x.dtype)
      np.testing.assert_array_equal(noise, eps)
    elif kind == "uniform":
      # Bernoulli: u ~ U(tiny, 1) and b = 1[u > sigmoid(-logits)].
      tiny = np.finfo(x.dtype).tiny
      u = jax.random.uniform(jax.random.key(4), x.shape, x.dtype, tiny, 1.0)
      np.testing.assert_array_equal(noise, u)
      np.testing.assert_array_equal(
        x, u > 1.0 / (1.0 + np.exp(fields["logits"]))
      )
    elif kind == "gumbel":
      # One-hot categorical: Gumbel noise and the Gumbel-max draw.
      g = jax.random.gumbel(jax.random.key(4), x.shape, x.dtype)
      np.testing.assert_array_equal(noise, g)
      np.testing.assert_array_equal(
        x, np.eye(3)[np.argmax(fields["logits"] + np.asarray(g), -1)]
      )
    elif kind == "log_unit_gamma":
      # log y of x = y / rate: finite where x underflows (small alpha).
      np.testing.assert_allclose(
        noise, np.log(x * dist.rate), rtol=1e-12, atol=1e-12
      )
    else:
      np.testing.assert_array_equal(noise, x)

  def test_bad_noise_and_weights(self):
    dist = distributions.Normal(_LOC, _SCALE)
    with self.assertRaisesRegex(
      ValueError, r"noise must have shape \[num_samples, \*\[2, 3\]\]"
    ):
      dist.score_from_noise(np.zeros((5, 3)))
    with self.assertRaisesRegex(ValueError, r"weights must have shape \(5,\)"):
      dist.score_from_noise(np.zeros((5, 2, 3)), np.ones(4))
    gamma = distributions.Gamma(_SCALE, _SCALE)
    with self.assertRaisesRegex(ValueError, "noise must have shape"):
      gamma.score_from_noise(np.ones((2, 3)))
    mvn = distributions.MultivariateNormalTriL(_LOC, _TRIL)
    with self.assertRaisesRegex(ValueError, r"weights must have shape \(5,\)"):
      mvn.score_from_noise(np.zeros((5, 2, 3)), np.ones(()))


class LogProbAndSampleTest(parameterized.TestCase):
  @parameterized.named_parameters(*_cases())
  def test_log_prob_matches_scipy(self, cls, fields):
    del fields
    out = _computed([c[0] for c in _cases() if c[1] is cls][0])
    np.testing.assert_allclose(
      out["log_prob"], out["reference_log_prob"], rtol=1e-10
    )

  @parameterized.named_parameters(*_cases())
  def test_shapes(self, cls, fields):
    dist = cls(**fields)
    batch, event = dist.batch_shape, dist.event_shape
    self.assertEqual(batch, (2,))
    self.assertEqual(event, () if cls is distributions.Categorical else (3,))
    # Shapes only: eval_shape traces without compiling.
    key = jax.random.key(3)
    xs = jax.eval_shape(lambda: dist.sample(key, (7, 4)))
    chex.assert_shape(xs, (7, 4) + batch + event)
    chex.assert_shape(jax.eval_shape(dist.log_prob, xs), (7, 4) + batch)
    chex.assert_shape(jax.eval_shape(dist.sample, key), batch + event)
    chex.assert_shape(
      jax.eval_shape(lambda: dist.sample(key, 5)), (5,) + batch + event
    )
    # One x of the batch and event shape: score leaves have the field shapes.
    score = jax.eval_shape(dist.score, jax.eval_shape(dist.sample, key))
    for n in cls._fields:
      chex.assert_shape(getattr(score, n), fields[n].shape)

  @parameterized.named_parameters(*_cases())
  def test_reparameterized_flag(self, cls, fields):
    del fields
    discrete = (
      distributions.Bernoulli,
      distributions.Categorical,
      distributions.OneHotCategorical,
    )
    self.assertEqual(cls.reparameterized, cls not in discrete)

  @parameterized.named_parameters(*_cases())
  @pytest.mark.slow  # Below the parameterization: generated tests get it.
  def test_sample_mean_and_variance(self, cls, fields):
    """Sample means and variances against their closed forms.

    Means within 5 standard errors: with 20,000 draws that detects a mean
    off by 5 / sqrt(20000) = 3.5% of the standard deviation (several
    means are 0, so the statement is in units of the spread). Variances
    within 5 of their standard errors (from the fourth moment): detects a
    spread off by 5 sqrt((kurtosis - 1) / n) of the variance: 5% for the
    Gaussians, <= 20% for every case (asserted; the largest are the
    Categorical's rarest category, p = 0.08, 19%, and the Gamma, kurtosis up
    to 15, 14%) -- a sampler with the wrong scale, which the means cannot
    see.
    """
    n = _NUM_DRAWS
    xs = _computed([c[0] for c in _cases() if c[1] is cls][0])["draws"]
    if cls is distributions.Normal:
      mean, variance = fields["loc"], fields["scale"] ** 2
    elif cls is distributions.LogScaleNormal:
      mean, variance = fields["loc"], np.exp(2 * fields["log_scale"])
    elif cls is distributions.MultivariateNormalTriL:
      tril = fields["scale_tril"]  # [2, 3, 3]: the marginal variances
      mean = fields["loc"]
      variance = np.einsum("bij,bij->bi", tril, tril)  # diag(L L^T)
    elif cls is distributions.Bernoulli:
      mean = 1.0 / (1.0 + np.exp(-fields["logits"]))
      variance = mean * (1 - mean)
    elif cls in (distributions.Categorical, distributions.OneHotCategorical):
      probs = np.exp(fields["logits"])
      probs /= probs.sum(-1, keepdims=True)
      mean = probs  # frequencies of each category
      variance = probs * (1 - probs)
      if cls is distributions.Categorical:
        xs = jax.nn.one_hot(xs, 3)
    else:
      mean = fields["concentration"] / fields["rate"]
      variance = fields["concentration"] / fields["rate"] ** 2
    xs = np.asarray(xs, np.float64)
    stderr = np.std(xs, axis=0, ddof=1) / np.sqrt(n)
    power.assert_unbiased(np.mean(xs, 0), stderr, mean, what=cls.__name__)
    centred = xs - xs.mean(0)
    sample_variance = centred.var(0, ddof=1)
    mu4 = np.mean(centred**4, axis=0)
    variance_se = np.sqrt((mu4 - sample_variance**2 * (n - 3) / (n - 1)) / n)
    rel = power.assert_variance(
      sample_variance, variance_se, variance, what=cls.__name__
    )
    self.assertLess(np.max(rel), 0.2, cls.__name__)

  @pytest.mark.slow
  def test_mvn_sample_covariance(self):
    dist = distributions.MultivariateNormalTriL(_LOC[0], _TRIL)
    n = _NUM_DRAWS
    xs = np.asarray(_draws(dist))
    centered = xs - _LOC[0]
    products = centered[:, :, None] * centered[:, None, :]  # [n, 3, 3]
    stderr = products.std(0) / np.sqrt(n)
    cov = _TRIL @ _TRIL.T
    # 5 SE of each product's mean: <= 5% of its scale sqrt(cov_ii cov_jj)
    # (asserted; Var(a b) = cov_aa cov_bb + cov_ab^2 for Gaussians).
    scales = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    self.assertLess(np.max(5 * stderr / scales), 0.053)
    np.testing.assert_array_less(np.abs(products.mean(0) - cov), 5 * stderr)

  def test_mvn_ignores_upper_triangle(self):
    upper = _TRIL + np.triu(np.full((3, 3), 7.0), k=1)
    clean = distributions.MultivariateNormalTriL(_LOC[0], _TRIL)
    dirty = distributions.MultivariateNormalTriL(_LOC[0], upper)
    key = jax.random.key(6)
    np.testing.assert_array_equal(clean.sample(key), dirty.sample(key))
    x = clean.sample(key)
    np.testing.assert_allclose(dirty.log_prob(x), clean.log_prob(x))
    np.testing.assert_allclose(
      dirty.score(x).scale_tril, clean.score(x).scale_tril
    )
    # The pathwise gradient w.r.t. the ignored entries is zero as well.
    grad = jax.grad(
      lambda t: (
        distributions.MultivariateNormalTriL(_LOC[0], t).sample(key).sum()
      )
    )(upper)
    np.testing.assert_array_equal(np.triu(grad, k=1), 0.0)


class PytreeTest(parameterized.TestCase):
  @parameterized.named_parameters(*_cases())
  def test_flatten_roundtrip_and_jit(self, cls, fields):
    dist = cls(**fields)
    leaves, treedef = jax.tree.flatten(dist)
    self.assertLen(leaves, len(cls._fields))
    rebuilt = jax.tree.unflatten(treedef, leaves)
    self.assertIsInstance(rebuilt, cls)
    x = _computed([c[0] for c in _cases() if c[1] is cls][0])["few"]
    np.testing.assert_allclose(
      jax.jit(lambda d, x: d.log_prob(x))(dist, x), dist.log_prob(x)
    )
    paths = [
      jax.tree_util.keystr(p) for p, _ in jax.tree.leaves_with_path(dist)
    ]
    self.assertEqual(paths, [f".{n}" for n in cls._fields])

  def test_tree_map_skips_validation(self):
    """Cotangents and scores are distribution-shaped with negative 'scales'."""
    dist = distributions.Normal(_LOC, _SCALE)
    negated = jax.tree.map(lambda v: -v, dist)
    np.testing.assert_array_equal(negated.scale, -_SCALE)

  def test_vmap_over_distributions(self):
    dist = distributions.Normal(_LOC, _SCALE)  # batch [2] as a vmap axis
    x = np.zeros(3)
    per_row = jax.vmap(lambda d: d.log_prob(x))(dist)
    np.testing.assert_allclose(per_row, dist.log_prob(np.zeros((2, 3))))

  def test_immutable_and_replace(self):
    dist = distributions.Normal(_LOC, _SCALE)
    with self.assertRaisesRegex(AttributeError, "immutable"):
      dist.loc = 0.0
    moved = dist.replace(loc=_LOC + 1.0)
    np.testing.assert_array_equal(moved.loc, _LOC + 1.0)
    with self.assertRaisesRegex(ValueError, r"unknown fields \['mean'\]"):
      dist.replace(mean=1.0)
    with self.assertRaisesRegex(ValueError, "scale must be positive"):
      dist.replace(scale=-_SCALE)

  def test_broadcast_and_int_parameters(self):
    dist = distributions.Normal(np.array([1, 2, 3]), 2.0)
    self.assertTrue(jnp.issubdtype(dist.loc.dtype, jnp.floating))
    chex.assert_shape(dist.scale, (3,))
    self.assertIn("Normal(loc=float", repr(dist))


class ValidationTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("zero_scale", lambda: distributions.Normal(0.0, 0.0), "scale"),
    (
      "neg_scale",
      lambda: distributions.Normal([0.0, 1.0], [1.0, -1.0]),
      "scale",
    ),
    ("nan_scale", lambda: distributions.Normal(0.0, np.nan), "NaN"),
    (
      "mvn_diag",
      lambda: distributions.MultivariateNormalTriL(
        np.zeros(2), np.array([[1.0, 0.0], [0.3, -0.1]])
      ),
      r"diag\(scale_tril\) must be positive",
    ),
    ("gamma_shape", lambda: distributions.Gamma(-1.0, 1.0), "concentration"),
    ("gamma_rate", lambda: distributions.Gamma(1.0, 0.0), "rate"),
  )
  def test_non_positive_values(self, make, message):
    with self.assertRaisesRegex(ValueError, message):
      make()

  def test_count_in_message(self):
    with self.assertRaisesRegex(
      ValueError, r"got 2 non-positive or NaN .* of 3"
    ):
      distributions.Normal(np.zeros(3), np.array([1.0, 0.0, -2.0]))

  @parameterized.named_parameters(
    (
      "normal",
      lambda: distributions.Normal(np.zeros(3), np.ones(4)),
      r"do not broadcast: loc\(3,\), scale\(4,\)",
    ),
    (
      "gamma",
      lambda: distributions.Gamma(np.ones(2), np.ones(5)),
      "do not broadcast",
    ),
    (
      "mvn_square",
      lambda: distributions.MultivariateNormalTriL(np.zeros(3), np.eye(2)),
      r"scale_tril must have shape \[\.\.\., 3, 3\]",
    ),
    (
      "mvn_scalar_loc",
      lambda: distributions.MultivariateNormalTriL(0.0, np.eye(1)),
      "loc must be at least 1-D",
    ),
    (
      "mvn_batch",
      lambda: distributions.MultivariateNormalTriL(
        np.zeros((2, 3)), np.broadcast_to(np.eye(3), (4, 3, 3))
      ),
      "batch shapes .* do not broadcast",
    ),
    (
      "categorical_scalar",
      lambda: distributions.Categorical(1.0),
      r"logits must have shape \[\.\.\., k\]",
    ),
  )
  def test_bad_shapes(self, make, message):
    with self.assertRaisesRegex(ValueError, message):
      make()

  def test_shapes_checked_under_jit(self):
    with self.assertRaisesRegex(ValueError, "do not broadcast"):
      jax.jit(lambda a, b: distributions.Normal(a, b).loc)(
        np.zeros(3), np.ones(2)
      )

  def test_values_unchecked_under_jit(self):
    """Traced values cannot be checked; construction must still trace."""
    loc = jax.jit(lambda s: distributions.Normal(0.0, s).scale)(-1.0)
    np.testing.assert_array_equal(loc, -1.0)

  def test_non_array_and_complex(self):
    with self.assertRaisesRegex(TypeError, "loc must be array-like"):
      distributions.Normal(object(), 1.0)
    with self.assertRaisesRegex(TypeError, "scale must be real"):
      distributions.Normal(0.0, 1.0 + 1.0j)

  @parameterized.named_parameters(
    ("normal", distributions.Normal(_LOC, _SCALE), np.zeros(3)),
    ("gamma", distributions.Gamma(_SCALE, _SCALE), np.ones((2, 4))),
    ("bernoulli", distributions.Bernoulli(_LOC), np.zeros((3, 2))),
    (
      "mvn",
      distributions.MultivariateNormalTriL(_LOC, _TRIL),
      np.zeros((2, 2)),
    ),
    ("categorical", distributions.Categorical(_LOC), np.zeros((3,), int)),
  )
  def test_bad_x_shape(self, dist, x):
    with self.assertRaisesRegex(ValueError, "x must have shape"):
      dist.log_prob(x)
    with self.assertRaisesRegex(ValueError, "x must have shape"):
      dist.score(x)

  def test_categorical_needs_integers(self):
    dist = distributions.Categorical(_LOC)
    with self.assertRaisesRegex(TypeError, "integer category indices"):
      dist.log_prob(np.zeros(2))


class PublicFaceTest(absltest.TestCase):
  """The package's public names stay put whichever private file holds them."""

  # Every public name of the single-file module this package replaced.
  _PUBLIC = (
    "Bernoulli",
    "Categorical",
    "Distribution",
    "Gamma",
    "LogScaleNormal",
    "MultivariateNormalTriL",
    "Normal",
    "OneHotCategorical",
    "SampleShape",
    "WeakDerivative",
  )

  def test_public_names_are_unchanged(self):
    public = [n for n in dir(distributions) if not n.startswith("_")]
    self.assertCountEqual(public, self._PUBLIC)
    self.assertCountEqual(distributions.__all__, self._PUBLIC)

  def test_top_level_names_are_the_same_objects(self):
    for name in self._PUBLIC:
      if hasattr(rgrad, name):
        self.assertIs(getattr(rgrad, name), getattr(distributions, name))


if __name__ == "__main__":
  absltest.main()
