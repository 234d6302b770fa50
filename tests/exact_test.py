"""Tests for rgrad.exact: references against closed forms and Monte Carlo."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from jax.experimental import jet

import rgrad
from rgrad import exact

_TOL = 1e-10

# (loc, scale) pairs, including a narrow and a wide Gaussian.
_LOC_SCALES = (
  ("standard", 0.0, 1.0),
  ("narrow", 0.7, 0.3),
  ("wide", -1.1, 2.2),
)


def _cos_gradient(k, mu, sigma):
  # E[cos kX] = cos(k mu) exp(-k^2 sigma^2 / 2).
  damp = np.exp(-0.5 * k**2 * sigma**2)
  return (-k * np.sin(k * mu) * damp, -(k**2) * sigma * np.cos(k * mu) * damp)


def _gauss_bump_gradient(k, mu, sigma):
  # E[exp(-kX^2)] = (1 + 2k s^2)^(-1/2) exp(-k mu^2 / (1 + 2k s^2)).
  t = 1.0 + 2.0 * k * sigma**2
  value = t**-0.5 * np.exp(-k * mu**2 / t)
  d_mu = value * (-2.0 * k * mu / t)
  # d/ds: dt/ds = 4ks; d value/dt = value * (-1/(2t) + k mu^2 / t^2).
  d_sigma = value * (-0.5 / t + k * mu**2 / t**2) * 4.0 * k * sigma
  return d_mu, d_sigma


def _quadratic_moments(k, mu, sigma, baseline=0.0):
  """Hand-derived single-sample moments for f(x) = (x - k)^2.

  With a = mu - k, f(X) = a^2 + 2 a s eps + s^2 eps^2 and standard normal
  moments E eps^{2,4,6,8} = 1, 3, 15, 105; Rayleigh moments E R^{1..4} =
  sqrt(pi/2), 2, 3 sqrt(pi/2), 8; Maxwell moments E M^{2,4} = 3, 15.
  """
  a, s, b = mu - k, sigma, baseline
  big_a = a**2 - b  # constant term of f - b
  return {
    "gradient": (2.0 * a, 2.0 * s),
    # f'(X) = 2(a + s eps); f'(X) eps = 2(a eps + s eps^2).
    "pathwise": (4.0 * s**2, 4.0 * (a**2 + 2.0 * s**2)),
    # (f - b) eps / s and (f - b)(eps^2 - 1) / s; E[(eps^2-1)^2 eps^{0,2,4}]
    # = 2, 10, 78.
    "score_function": (
      (big_a**2 + 12 * a**2 * s**2 + 6 * big_a * s**2 + 15 * s**4) / s**2
      - 4 * a**2,
      (2 * big_a**2 + 40 * a**2 * s**2 + 20 * big_a * s**2 + 78 * s**4) / s**2
      - 4 * s**2,
    ),
    # Coupled mean: c (f(mu+sR) - f(mu-sR)) = 4 a R / sqrt(2 pi).
    # Coupled scale: 2 a M (1 - U) + s M^2 (1 - U^2); E(1-U)^2 = 1/3,
    # E(1-U^2)^2 = 8/15.
    "measure_valued_coupled": (
      16.0 * a**2 / math.pi - 4.0 * a**2,
      4.0 * a**2 + 4.0 * s**2,
    ),
    # Uncoupled: sums of the two arms' variances.
    "measure_valued_uncoupled": (
      8.0 * a**2 / math.pi - 2.0 * a**2 + 4.0 * s**2 / math.pi,
      16.0 * a**2 + 8.0 * s**2,
    ),
  }


def _moments(name, f, loc, scale, baseline=0.0):
  """The (mean, variance) of each estimator, by its public *_moments."""
  if name == "pathwise":
    return exact.pathwise_moments(f, loc, scale)
  if name == "score_function":
    return exact.score_function_moments(f, loc, scale, baseline=baseline)
  coupling = name == "measure_valued_coupled"
  return exact.measure_valued_moments(f, loc, scale, coupling)


_ESTIMATORS = (
  "pathwise",
  "score_function",
  "measure_valued_coupled",
  "measure_valued_uncoupled",
)


class ExactGradientTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(k=(0.5, 3.0, 10.0), loc_scale=_LOC_SCALES[:2])
  def test_cos(self, k, loc_scale):
    _, mu, sigma = loc_scale
    got = self.variant(
      lambda m, s: exact.exact_gradient(lambda x: jnp.cos(k * x), m, s)
    )(mu, sigma)
    want = _cos_gradient(k, mu, sigma)
    np.testing.assert_allclose(got, want, rtol=0, atol=_TOL)

  @parameterized.named_parameters(*_LOC_SCALES)
  def test_quadratic(self, mu, sigma):
    got = exact.exact_gradient(lambda x: (x - 0.4) ** 2, mu, sigma)
    want = _quadratic_moments(0.4, mu, sigma)["gradient"]
    np.testing.assert_allclose(got, want, rtol=_TOL, atol=_TOL)

  @parameterized.named_parameters(*_LOC_SCALES)
  def test_gauss_bump(self, mu, sigma):
    # k sigma^2 = 2.4 for the wide case, inside the documented limit (~3).
    k = 0.5
    got = exact.exact_gradient(lambda x: jnp.exp(-k * x**2), mu, sigma)
    np.testing.assert_allclose(
      got, _gauss_bump_gradient(k, mu, sigma), rtol=0, atol=_TOL
    )

  def test_large_offset_costs_no_digits(self):
    # The cost is centred before the score identity is applied.
    got = exact.exact_gradient(lambda x: 1e6 + jnp.cos(x), 0.3, 0.9)
    np.testing.assert_allclose(got, _cos_gradient(1.0, 0.3, 0.9), atol=1e-9)

  def test_vmap_over_parameter_f_closes_over(self):
    ks = jnp.linspace(0.1, 8.0, 7)
    mu, sigma = 0.7, 1.1

    def grad_for(k):
      return exact.exact_gradient(lambda x: jnp.cos(k * x), mu, sigma)

    got = jax.jit(jax.vmap(grad_for))(ks)
    want = _cos_gradient(np.asarray(ks), mu, sigma)
    np.testing.assert_allclose(got, want, rtol=0, atol=_TOL)

  def test_broadcasting_and_vmap_over_loc_scale(self):
    locs = jnp.array([-0.5, 0.0, 1.5])
    scales = jnp.array([[0.5], [1.2]])  # broadcasts to [2, 3]
    got = exact.exact_gradient(jnp.cos, locs, scales)
    chex.assert_shape(got, (2, 3))
    want = _cos_gradient(1.0, np.asarray(locs), np.asarray(scales))
    np.testing.assert_allclose(got, want, rtol=0, atol=_TOL)
    got_vmap = jax.vmap(lambda m, s: exact.exact_gradient(jnp.cos, m, s))(
      locs, scales[1, 0] * jnp.ones(3)
    )
    np.testing.assert_allclose(got_vmap, np.asarray(got)[:, 1], atol=_TOL)

  def test_traced_grad_matches_closed_form(self):
    # The reference is itself differentiable in (loc, scale): its derivative
    # in loc is the second derivative of E[cos X].
    k, mu, sigma = 2.0, 0.3, 0.8
    d2 = jax.grad(
      lambda m: exact.exact_gradient(lambda x: jnp.cos(k * x), m, sigma).loc
    )(mu)
    want = -(k**2) * np.cos(k * mu) * np.exp(-0.5 * k**2 * sigma**2)
    np.testing.assert_allclose(d2, want, atol=_TOL)


class PublicNamesTest(absltest.TestCase):
  def test_package_keeps_the_public_names(self):
    # rgrad.exact became a package: the names rgrad re-exports still work.
    for name in (
      "exact_gradient",
      "pathwise_variance",
      "score_function_variance",
      "measure_valued_variance",
    ):
      self.assertIs(getattr(rgrad, name), getattr(exact, name))
    for name in exact.__all__:
      self.assertTrue(hasattr(exact, name), name)

  def test_normal_rule_integrates_normal_moments(self):
    nodes, weights = exact.normal_rule(20)
    for m, want in ((0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0), (3, 0.0)):
      np.testing.assert_allclose(
        np.sum(weights * nodes**m), want, rtol=1e-13, atol=1e-13
      )


class EstimatorMeansTest(parameterized.TestCase):
  """Each estimator's quadrature mean equals the gradient.

  This validates each quadrature rule (Hermite, Maxwell, split Rayleigh,
  Maxwell x Legendre) and each written-out estimator law at once.
  """

  @parameterized.product(
    estimator=_ESTIMATORS,
    cost=("cos3", "bump", "cubic_exp"),
    loc_scale=_LOC_SCALES,
  )
  def test_mean_is_gradient(self, estimator, cost, loc_scale):
    _, mu, sigma = loc_scale
    f = {
      "cos3": lambda x: jnp.cos(3.0 * x),
      "bump": lambda x: jnp.exp(-0.5 * x**2),
      # Not symmetric, odd and even parts both non-trivial.
      "cubic_exp": lambda x: 0.1 * x**3 - x + jnp.exp(0.5 * x),
    }[cost]
    mean = _moments(estimator, f, mu, sigma).mean
    want = exact.exact_gradient(f, mu, sigma)
    np.testing.assert_allclose(mean, want, rtol=_TOL, atol=_TOL)


class VarianceClosedFormTest(parameterized.TestCase):
  @parameterized.product(estimator=_ESTIMATORS, loc_scale=_LOC_SCALES)
  def test_quadratic_cost(self, estimator, loc_scale):
    _, mu, sigma = loc_scale
    k = 0.4
    f = lambda x: (x - k) ** 2
    public = {
      "pathwise": exact.pathwise_variance,
      "score_function": exact.score_function_variance,
      "measure_valued_coupled": lambda *a: exact.measure_valued_variance(
        *a, coupling=True
      ),
      "measure_valued_uncoupled": lambda *a: exact.measure_valued_variance(
        *a, coupling=False
      ),
    }[estimator]
    got = public(f, mu, sigma)
    self.assertIsInstance(got, exact.LocScale)
    want = _quadratic_moments(k, mu, sigma)[estimator]
    np.testing.assert_allclose(got, want, rtol=_TOL, atol=_TOL)

  @parameterized.parameters(0.5, 2.0, 5.0)
  def test_pathwise_cos(self, k):
    # f'(X) = -k sin kX, E sin^2 kX = (1 - cos(2k mu) e^{-2k^2 s^2}) / 2; the
    # integrand oscillates at 2k, so k sigma = 5 is at the documented limit.
    mu, sigma = 0.7, 1.0
    got = exact.pathwise_variance(lambda x: jnp.cos(k * x), mu, sigma).loc
    mean = -k * np.sin(k * mu) * np.exp(-0.5 * k**2 * sigma**2)
    second = k**2 * (1 - np.cos(2 * k * mu) * np.exp(-2 * k**2 * sigma**2)) / 2
    np.testing.assert_allclose(got, second - mean**2, rtol=_TOL, atol=_TOL)

  def test_score_function_baseline(self):
    k, mu, sigma, b = 0.4, 0.7, 1.3, 2.5
    got = exact.score_function_variance(
      lambda x: (x - k) ** 2, mu, sigma, baseline=b
    )
    want = _quadratic_moments(k, mu, sigma, baseline=b)["score_function"]
    np.testing.assert_allclose(got, want, rtol=_TOL, atol=_TOL)

  def test_coupling_reduces_variance_for_cos(self):
    f = lambda x: jnp.cos(2.0 * x)
    coupled = exact.measure_valued_variance(f, 0.3, 0.7, coupling=True)
    uncoupled = exact.measure_valued_variance(f, 0.3, 0.7, coupling=False)
    self.assertLess(float(coupled.loc), float(uncoupled.loc))
    self.assertLess(float(coupled.scale), float(uncoupled.scale))

  def test_variances_jit_and_vmap_over_closed_over_parameter(self):
    ks = jnp.array([0.1, 0.4, 1.0])
    mu, sigma = 0.7, 1.3

    @jax.jit
    @jax.vmap
    def all_variances(k):
      f = lambda x: (x - k) ** 2
      return (
        exact.pathwise_variance(f, mu, sigma),
        exact.score_function_variance(f, mu, sigma),
        exact.measure_valued_variance(f, mu, sigma, True),
        exact.measure_valued_variance(f, mu, sigma, False),
      )

    got = all_variances(ks)
    for i, k in enumerate(np.asarray(ks)):
      want = _quadratic_moments(k, mu, sigma)
      for j, name in enumerate(_ESTIMATORS):
        np.testing.assert_allclose(
          [got[j].loc[i], got[j].scale[i]], want[name], rtol=_TOL, atol=_TOL
        )


def _cos_variances(k, mu, sigma):
  """Closed-form single-sample variances for f(x) = cos(kx).

  With b = k sigma, a = 2 k sigma and E[eps^m e^{i t eps}] = (-i)^m phi^(m)(t)
  for phi(t) = e^{-t^2/2}: E[e^{it eps} eps^2] = (1 - t^2) phi(t) and
  E[e^{it eps} (eps^2 - 1)^2] = (t^4 - 4t^2 + 2) phi(t); cos^2 = (1 + cos 2kx)
  / 2.
  """
  b, a = k * sigma, 2.0 * k * sigma
  c2 = np.cos(2.0 * k * mu) * np.exp(-0.5 * a**2)
  # Pathwise: Var[k sin kX] and Var[k sin(kX) eps].
  sin_mean = np.sin(k * mu) * np.exp(-0.5 * b**2)
  path_loc = k**2 * (1.0 - c2) / 2.0 - (k * sin_mean) ** 2
  # E[sin^2(kX) eps^2] = (1 - cos(2k mu)(1 - a^2) phi(a)) / 2;
  # E[sin(kX) eps] = b cos(k mu) phi(b).
  path_scale = k**2 * (
    (1.0 - c2 * (1.0 - a**2)) / 2.0
    - (b * np.cos(k * mu) * np.exp(-0.5 * b**2)) ** 2
  )
  # Score function: cos(kX) eps / sigma and cos(kX)(eps^2 - 1) / sigma.
  sf_loc = (1.0 + c2 * (1.0 - a**2)) / 2.0 - (b * sin_mean) ** 2
  sf_scale = (2.0 + c2 * (a**4 - 4.0 * a**2 + 2.0)) / 2.0 - (
    b**2 * np.cos(k * mu) * np.exp(-0.5 * b**2)
  ) ** 2
  return {
    "pathwise": (path_loc, path_scale),
    "score_function": (sf_loc / sigma**2, sf_scale / sigma**2),
  }


class ManyPointsTest(parameterized.TestCase):
  """Rules with many nodes: finite (laggauss overflowed past ~180 nodes)."""

  @parameterized.parameters(100, 200, 300, 500)
  def test_laguerre_rule_moments(self, num_points):
    # int u^m e^{-u} du = m!; the rule is exact for m < 2n.
    nodes, weights = exact.laguerre_rule(num_points)
    self.assertTrue(np.all(np.isfinite(nodes)) and np.all(weights >= 0))
    self.assertTrue(np.all(np.diff(nodes) > 0))
    for m in range(0, 25):
      np.testing.assert_allclose(
        np.sum(weights * nodes**m), float(math.factorial(m)), rtol=1e-12
      )

  def test_laguerre_rule_matches_numpy_where_numpy_works(self):
    nodes, weights = exact.laguerre_rule(100)
    want_nodes, want_weights = np.polynomial.laguerre.laggauss(100)
    np.testing.assert_allclose(nodes, want_nodes, rtol=1e-12)
    np.testing.assert_allclose(weights, want_weights, rtol=1e-9, atol=1e-15)

  @parameterized.parameters(200, 300)
  def test_agrees_with_100_points_and_closed_forms(self, num_points):
    mu, sigma, k = 0.7, 1.0, 0.4
    quadratic = _quadratic_moments(k, mu, sigma)
    f = lambda x: (x - k) ** 2
    kw = dict(num_points=num_points)
    for coupling in (True, False):
      name = "measure_valued_" + ("coupled" if coupling else "uncoupled")
      got = exact.measure_valued_variance(f, mu, sigma, coupling, **kw)
      np.testing.assert_allclose(got, quadratic[name], rtol=_TOL, atol=_TOL)
    # cos(3x) is resolved by 100 points: every reference agrees.
    g = lambda x: jnp.cos(3.0 * x)
    for fn in (
      exact.exact_gradient,
      exact.pathwise_variance,
      exact.score_function_variance,
      lambda *a, **kw: exact.measure_valued_variance(*a, coupling=True, **kw),
      lambda *a, **kw: exact.measure_valued_variance(*a, coupling=False, **kw),
    ):
      many = fn(g, mu, sigma, **kw)
      self.assertTrue(np.all(np.isfinite(many)))
      np.testing.assert_allclose(many, fn(g, mu, sigma), rtol=_TOL, atol=_TOL)
    closed = _cos_variances(3.0, mu, sigma)
    for name, fn in (
      ("pathwise", exact.pathwise_variance),
      ("score_function", exact.score_function_variance),
    ):
      np.testing.assert_allclose(
        fn(g, mu, sigma, **kw), closed[name], rtol=_TOL, atol=_TOL
      )

  @parameterized.product(k=(8.0, 10.0), num_points=(250, 300))
  def test_fast_cosine_resolved_with_more_points(self, k, num_points):
    # cos(kX)^2 oscillates like cos(2kX): 100 points fail at k sigma = 10
    # (70.39 for a pathwise variance of 50), 250 resolve it.
    mu, sigma = 1.0, 1.0
    f = lambda x: jnp.cos(k * x)
    closed = _cos_variances(k, mu, sigma)
    for name, fn in (
      ("pathwise", exact.pathwise_variance),
      ("score_function", exact.score_function_variance),
    ):
      got = fn(f, mu, sigma, num_points=num_points)
      np.testing.assert_allclose(got, closed[name], rtol=_TOL, atol=1e-9)

  def test_100_points_do_not_resolve_cos_10x(self):
    # The documented limit: the reference is wrong there, not just noisy.
    got = exact.pathwise_variance(lambda x: jnp.cos(10.0 * x), 1.0, 1.0).loc
    self.assertGreater(abs(float(got) - 50.0), 1.0)


# The costs of Mohamed et al.'s Figures 2-3 with their closed-form moments.
_COSTS = {
  "square": (lambda x, k: (x - k) ** 2, exact.quadratic_moments),
  "exp_sq": (lambda x, k: jnp.exp(-k * x**2), exact.gaussian_bump_moments),
  "cos": (lambda x, k: jnp.cos(k * x), exact.cosine_moments),
}


def _monte_carlo(values):
  """Mean, variance and their standard errors (the latter's from mu_4)."""
  values = np.asarray(values, np.float64)
  n = values.shape[0]
  mean, var = values.mean(0), values.var(0, ddof=1)
  mu4 = np.mean((values - mean) ** 4, axis=0)
  var_se = np.sqrt((mu4 - var**2 * (n - 3) / (n - 1)) / n)
  return mean, np.sqrt(var / n), var, var_se


class ClosedFormMomentsTest(parameterized.TestCase):
  @parameterized.product(cost=tuple(_COSTS), k=(0.5, 2.0), scale=(0.5, 1.0))
  def test_against_quadrature(self, cost, k, scale):
    # The closed forms share nothing with the quadrature: their values match
    # cost_mean_and_variance, and their derivatives in (loc, scale) match
    # exact_gradient of f and of f^2 (E f^2 = Var + mean^2).
    fn, closed = _COSTS[cost]
    loc = 1.0
    f = lambda x: fn(x, k)
    got = exact.cost_mean_and_variance(f, loc, scale, num_points=160)
    np.testing.assert_allclose(got, closed(k, loc, scale), rtol=1e-10)

    def mean(loc, scale):
      return closed(k, loc, scale)[0]

    def second(loc, scale):
      m, v = closed(k, loc, scale)
      return v + m**2

    f2 = lambda x: fn(x, k) ** 2
    for g, moment in ((f, mean), (f2, second)):
      expected = exact.exact_gradient(g, loc, scale, num_points=160)
      got = jax.grad(moment, argnums=(0, 1))(loc, scale)
      np.testing.assert_allclose(got, tuple(expected), rtol=1e-9, atol=1e-12)

  @parameterized.parameters(*_COSTS)
  def test_against_monte_carlo(self, cost):
    # 10^6 draws: 5 standard errors are < 1.3% of each mean and < 3% of
    # each variance here (both asserted), so a wrong closed form (a missing
    # factor, a sign) cannot pass.
    fn, closed = _COSTS[cost]
    k, loc, scale = 1.3, 0.8, 0.9
    x = loc + scale * np.random.default_rng(0).standard_normal(1_000_000)
    mean, mean_se, var, var_se = _monte_carlo(fn(x, k))
    want_mean, want_var = closed(k, loc, scale)
    self.assertLess(abs(mean - want_mean), 5 * mean_se)
    self.assertLess(abs(var - want_var), 5 * var_se)
    self.assertLess(5 * var_se, 0.03 * var)
    self.assertLess(5 * mean_se, 0.013 * abs(want_mean))


@functools.partial(jax.jit, static_argnames=("closed", "power"))
def _mean_derivatives(k, loc, scale, *, closed, power):
  """[m(loc), m'(loc), ..., m^(6)(loc)], m(mu) = E f(mu + scale eps)^power.

  From the closed forms (power 1: the mean; 2: variance + mean^2), by
  Taylor-mode differentiation (`jet`), no quadrature.
  """

  def m(mu):
    mean, var = closed(k, mu, scale)
    return mean if power == 1 else var + mean**2

  one = jnp.ones_like(loc)
  primal, series = jet.jet(m, (loc,), ((one,) + (0 * one,) * 5,))
  return jnp.stack([primal, *series])


def _expectation(derivatives, poly, scale):
  r"""E[g(loc + scale eps) q(eps)] from the derivatives of m = E g.

  Gaussian integration by parts n times gives E[g He_n(eps)] = scale^n
  m^(n)(loc) for the probabilists' Hermite polynomials He_n; `poly` holds
  q's power-basis coefficients (degree <= 6).
  """
  herme = np.polynomial.hermite_e.poly2herme(poly)
  return sum(a * scale**n * derivatives[n] for n, a in enumerate(herme))


def _closed_form_delta_variance(cost, k, loc, scale, coefficient):
  """Var[(f - c h)(X) s(X)] for each parameter, from closed forms alone.

  With h = f0 + f1 s eps + f2 s^2 eps^2 / 2 and the scores eps / s and
  (eps^2 - 1) / s, every term is E[f^p q(eps)] for a polynomial q (p = 0,
  1, 2), see `_expectation`; the means of f and f^2 are closed forms.
  """
  fn, closed = _COSTS[cost]
  f = lambda x: fn(x, k)
  f0, f1, f2 = f(loc), jax.grad(f)(loc), jax.grad(jax.grad(f))(loc)
  h = np.array([f0, f1 * scale, 0.5 * f2 * scale**2])
  one = np.eye(9)[0]  # E[1 * q] = q's zeroth Hermite coefficient
  m1, m2 = (
    np.asarray(_mean_derivatives(k, loc, scale, closed=closed, power=p))
    for p in (1, 2)
  )
  times = lambda a, b: np.polynomial.polynomial.polymul(a, b)
  scores = (np.array([0.0, 1.0]) / scale, np.array([-1.0, 0.0, 1.0]) / scale)
  out = []
  for s, c in zip(scores, coefficient, strict=True):
    s2 = times(s, s)
    second = (
      _expectation(m2, s2, scale)
      - 2 * c * _expectation(m1, times(h, s2), scale)
      + c**2 * _expectation(one, times(times(h, h), s2), scale)
    )
    first = _expectation(m1, s, scale) - c * _expectation(
      one, times(h, s), scale
    )
    out.append(second - first**2)
  return out


class DeltaMethodTest(parameterized.TestCase):
  def test_expansion_of_cos(self):
    k, loc = 1.7, 0.4
    h = exact.delta_expansion(lambda x: jnp.cos(k * x), loc)
    self.assertIsInstance(h, exact.DeltaExpansion)
    np.testing.assert_allclose(
      [h.value, h.slope, h.curvature],
      [np.cos(k * loc), -k * np.sin(k * loc), -(k**2) * np.cos(k * loc)],
      rtol=1e-14,
    )
    x = jnp.linspace(-2.0, 2.0, 5)
    np.testing.assert_allclose(
      h(x),
      np.cos(k * loc)
      - k * np.sin(k * loc) * (x - loc)
      - 0.5 * k**2 * np.cos(k * loc) * (x - loc) ** 2,
      rtol=1e-14,
    )

  def test_expansion_of_a_quadratic_is_the_quadratic(self):
    f = lambda x: 3.0 * (x - 0.5) ** 2 - x
    h = exact.delta_expansion(f, 1.2)
    x = jnp.linspace(-3.0, 3.0, 7)
    np.testing.assert_allclose(h(x), f(x), rtol=1e-14)

  @parameterized.product(cost=tuple(_COSTS), c=(0.0, 0.7, 1.0))
  def test_against_closed_forms(self, cost, c):
    # A different coefficient per parameter checks that each is applied to
    # its own component.
    k, loc, scale = 1.3, 0.8, 1.1
    fn = _COSTS[cost][0]
    coefficient = (c, 0.5 * c)
    got = exact.delta_method_variance(
      lambda x: fn(x, k), loc, scale, coefficient
    )
    self.assertIsInstance(got, exact.LocScale)
    want = _closed_form_delta_variance(cost, k, loc, scale, coefficient)
    scale_of = max(1.0, *np.abs(want))
    np.testing.assert_allclose(got, want, rtol=_TOL, atol=_TOL * scale_of)

  def test_zero_coefficient_is_the_score_function(self):
    f = lambda x: jnp.cos(2.0 * x)
    got = exact.delta_method_variance(f, 0.3, 0.8, 0.0, baseline=0.4)
    want = exact.score_function_variance(f, 0.3, 0.8, baseline=0.4)
    np.testing.assert_allclose(got, want, rtol=1e-14)

  def test_exact_control_variate_has_roundoff_variance(self):
    # h = f for a quadratic: with c = 1 the residual is roundoff, and so is
    # its variance (two passes: ~1e-30, not the ~1e-14 of E g^2 - (E g)^2).
    f = lambda x: (x - 2.0) ** 2
    got = exact.delta_method_variance(f, 1.0, 1.0, 1.0)
    self.assertLess(max(got), 1e-25)
    h = exact.delta_expansion(f, 1.0)
    _, var = exact.cost_mean_and_variance(lambda x: f(x) - h(x), 1.0, 1.0)
    self.assertLess(float(var), 1e-25)

  @parameterized.product(cost=tuple(_COSTS), c=(0.0, 0.7), scale=(0.5, 1.3))
  def test_residual_moments_against_stein(self, cost, c, scale):
    # g = f - c h, a = X - loc ~ N(0, s^2); with m(mu) = E f (closed form),
    # Stein's lemma gives E[f a] = s^2 m' and E[f a^2] = s^2 m + s^4 m'', so
    # E h = f0 + f2 s^2 / 2, Var h = f1^2 s^2 + f2^2 s^4 / 2 and
    # Cov(f, h) = f1 s^2 m' + f2 s^4 m'' / 2.
    fn, closed = _COSTS[cost]
    k, loc = 1.3, 0.8
    f = lambda x: fn(x, k)
    f0, f1, f2 = f(loc), jax.grad(f)(loc), jax.grad(jax.grad(f))(loc)
    m = lambda mu: closed(k, mu, scale)[0]
    m1, m2 = jax.grad(m)(loc), jax.grad(jax.grad(m))(loc)
    mean_f, var_f = closed(k, loc, scale)
    s2 = scale**2
    mean_h = f0 + 0.5 * f2 * s2
    var_h = f1**2 * s2 + 0.5 * f2**2 * s2**2
    cov = f1 * s2 * m1 + 0.5 * f2 * s2**2 * m2
    want = (mean_f - c * mean_h, var_f - 2 * c * cov + c**2 * var_h)
    h = exact.delta_expansion(f, loc)
    # exp(-2 k x^2) at k s^2 = 2.2 needs more than the default 100 nodes.
    got = exact.cost_mean_and_variance(
      lambda x: f(x) - c * h(x), loc, scale, num_points=120
    )
    np.testing.assert_allclose(got, want, rtol=_TOL, atol=1e-12)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, "loc must be a scalar"):
      exact.delta_method_variance(jnp.cos, jnp.zeros(2), 1.0, 1.0)
    with self.assertRaisesRegex(ValueError, "c_mu, c_sigma"):
      exact.delta_method_variance(jnp.cos, 0.0, 1.0, jnp.ones(3))


class AdditiveVarianceTest(parameterized.TestCase):
  @parameterized.product(cost=tuple(_COSTS), c=(0.0, 0.6))
  def test_one_coordinate_is_the_1d_variance(self, cost, c):
    fn = _COSTS[cost][0]
    f = lambda x: fn(x, 1.3)
    got = exact.additive_delta_method_variance(f, 0.8, 1.1, 1, (c, c))
    want = exact.delta_method_variance(f, 0.8, 1.1, c)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    got = exact.additive_score_function_variance(f, 0.8, 1.1, 1)
    want = exact.score_function_variance(f, 0.8, 1.1)
    np.testing.assert_allclose(got, want, rtol=1e-13)

  @parameterized.product(cost=tuple(_COSTS), c=(0.0, 0.6))
  def test_against_monte_carlo(self, cost, c):
    # The estimate of d/dtheta_1 for F = sum_i g(x_i), g = f - c h, is
    # F(x) s_theta(x_1) up to a constant: 10^6 draws of d = 3 coordinates.
    # 5 standard errors of the variance are < 10% of it (the sigma score
    # times a chi-square cost is heavy-tailed), and they reject the 1-d
    # variance, which leaves out the other coordinates' terms (a factor 2 to
    # 20 here; both checked below).
    fn = _COSTS[cost][0]
    k, loc, scale, dim = 1.3, 0.8, 1.1, 3
    f = lambda x: fn(x, k)
    h = exact.delta_expansion(f, loc)
    eps = np.random.default_rng(1).standard_normal((1_000_000, dim))
    x = loc + scale * eps
    total = np.sum(np.asarray(f(x) - c * h(x)), axis=1)  # [n]
    scores = np.stack([eps[:, 0], eps[:, 0] ** 2 - 1.0], axis=1) / scale
    _, _, var, var_se = _monte_carlo(total[:, None] * scores)
    if c == 0.0:
      got = exact.additive_score_function_variance(f, loc, scale, dim)
      one_d = exact.score_function_variance(f, loc, scale)
    else:
      got = exact.additive_delta_method_variance(f, loc, scale, dim, (c, c))
      one_d = exact.delta_method_variance(f, loc, scale, c)
    self.assertTrue(np.all(5 * var_se < 0.1 * var), (var, var_se))
    np.testing.assert_array_less(np.abs(np.array(got) - var), 5 * var_se)
    self.assertTrue(np.all(np.abs(np.array(one_d) - var) > 5 * var_se))

  def test_traced_dimension_and_coefficient(self):
    f = lambda x: jnp.cos(2.0 * x)

    @jax.jit
    @jax.vmap
    def variances(d, c):
      return jnp.stack(exact.additive_delta_method_variance(f, 1.0, 1.0, d, c))

    dims = jnp.array([1.0, 2.0, 4.0])
    cs = jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    got = variances(dims, cs)
    for i in range(3):
      want = exact.additive_delta_method_variance(
        f, 1.0, 1.0, float(dims[i]), tuple(np.asarray(cs[i]))
      )
      np.testing.assert_allclose(got[i], want, rtol=1e-13)


class BadInputTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("zero", 0.0), ("negative", -1.0), ("nan", float("nan"))
  )
  def test_non_positive_scale(self, scale):
    for fn in (
      exact.exact_gradient,
      exact.pathwise_variance,
      exact.score_function_variance,
      exact.measure_valued_variance,
    ):
      with self.assertRaisesRegex(
        ValueError, "scale must be strictly positive"
      ):
        fn(jnp.cos, 0.0, scale)

  def test_one_bad_scale_in_array(self):
    with self.assertRaisesRegex(ValueError, "scale must be strictly positive"):
      exact.exact_gradient(jnp.cos, 0.0, jnp.array([1.0, -2.0]))

  def test_num_points(self):
    with self.assertRaisesRegex(ValueError, "num_points must be >= 2"):
      exact.exact_gradient(jnp.cos, 0.0, 1.0, num_points=1)
    with self.assertRaisesRegex(TypeError, "num_points must be a Python int"):
      exact.pathwise_variance(jnp.cos, 0.0, 1.0, num_points=10.0)

  def test_f_not_callable(self):
    with self.assertRaisesRegex(TypeError, "f must be a callable"):
      exact.exact_gradient(3.0, 0.0, 1.0)

  def test_f_not_scalar(self):
    with self.assertRaisesRegex(TypeError, "f must map a scalar to a scalar"):
      exact.exact_gradient(lambda x: jnp.stack([x, x]), 0.0, 1.0)

  def test_complex_loc(self):
    with self.assertRaisesRegex(TypeError, "loc must be real"):
      exact.exact_gradient(jnp.cos, 1j, 1.0)

  def test_coupling_not_bool(self):
    with self.assertRaisesRegex(TypeError, "coupling must be a Python bool"):
      exact.measure_valued_variance(jnp.cos, 0.0, 1.0, coupling="yes")


if __name__ == "__main__":
  absltest.main()
