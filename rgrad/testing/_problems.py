r"""Reference problems with closed-form gradients and estimator variances.

The Gaussian family of Mohamed et al. (2020), Figures 2-3, in any
dimension: the additive cost :math:`F(x) = \sum_{i \le d} \phi(x_i)` with
:math:`\phi` one of

* ``"quadratic"``: :math:`(x - k)^2`,
* ``"bump"``: :math:`\exp(-k x^2)`,
* ``"cosine"``: :math:`\cos(k x)`,

under :math:`N(\mu, \mathrm{diag}\,\sigma^2)`, ``params = {"loc": mu,
"scale": sigma}`` (each ``[d]``). Everything below is a closed form: no
quadrature, no Monte Carlo, no code shared with the estimators (nor with
:mod:`rgrad.exact`, which computes the same numbers by quadrature, so the
two check each other).

**One formula.** Each of :math:`\phi, \phi^2, \phi', \phi'^2` is a sum of
terms :math:`c\, x^q e^{-b x^2} \cos(\omega x + \varphi)`, and with
:math:`X \sim N(\mu, \sigma^2)`, :math:`\epsilon = (X - \mu)/\sigma`,
completing the square gives (for :math:`a = 1 + 2b\sigma^2 > 0`)

.. math::
  E\big[X^q \epsilon^p e^{-bX^2 + i\omega X}\big]
  = a^{-1/2} \exp\!\Big(\frac{m^2}{2v} - \frac{\mu^2}{2\sigma^2}\Big)\,
    E\big[Y^q ((Y - \mu)/\sigma)^p\big],
  \quad Y \sim N(m, v),\; v = \sigma^2 / a,\; m = (\mu + i\omega\sigma^2)/a,

a polynomial moment of a Gaussian with a complex mean (by analytic
continuation), expanded binomially in :math:`Y = m + \sqrt v\, Z` with
:math:`E Z^{2r} = (2r - 1)!!`; the cosine is the real part after the phase
:math:`e^{i\varphi}`.

**Moments of the estimators** of coordinate :math:`i`'s gradient, with
:math:`\phi_i = \phi(x_i)` and :math:`S = \sum_{j \ne i}\phi(x_j)`
independent of :math:`x_i`:

* exact gradient: :math:`\partial_{\mu_i} E F = E[\phi_i \epsilon_i]/\sigma_i`,
  :math:`\partial_{\sigma_i} E F = E[\phi_i (\epsilon_i^2 - 1)]/\sigma_i`
  (the score form; equal to the pathwise form :math:`E\phi'`,
  :math:`E[\phi'\epsilon]` by Stein's lemma, which the tests check);
* pathwise (Section 5): :math:`g_\mu = \phi'(x_i)`, :math:`g_\sigma =
  \phi'(x_i)\epsilon_i`, variances :math:`E\phi'^2 - (E\phi')^2` and
  :math:`E[\phi'^2\epsilon^2] - (E[\phi'\epsilon])^2`;
* score function (Section 4): :math:`g = (\phi_i + S)\, s(x_i)` with
  :math:`s_\mu = \epsilon/\sigma`,
  :math:`s_\sigma = (\epsilon^2 - 1)/\sigma`, so
  :math:`E g^2 = E[\phi_i^2 s^2] + 2 E S\, E[\phi_i s^2] + E[S^2] E[s^2]`,
  :math:`E[s_\mu^2] = 1/\sigma^2`, :math:`E[s_\sigma^2] = 2/\sigma^2`: the
  variance grows linearly in :math:`d`.

The variances are of one row of the plain estimators (``"pathwise"``,
``"score_function"``); other estimators' exact variances come from
:mod:`rgrad.exact` or the user (:func:`rgrad.testing.assert_variance`).

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Figures 2-3,
  Sections 4-5).
"""

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import distributions

COSTS = ("quadratic", "bump", "cosine")

# (coefficient, q, b, omega, phase): c x^q exp(-b x^2) cos(omega x + phase).
_Term = tuple[Any, int, Any, Any, float]


class ReferenceProblem(NamedTuple):
  """A problem with exact answers, for :func:`rgrad.testing.assert_unbiased`.

  Attributes:
    name: e.g. ``"cosine(k=1.0, d=3)"``.
    function: the cost, one draw ``[d]`` -> scalar.
    params: ``{"loc": [d], "scale": [d]}``.
    dist_builder: ``params -> rgrad.Normal``.
    value: :math:`E F`, a scalar.
    gradient: the exact gradient, a pytree like ``params``.
    variances: estimator name (``"pathwise"``, ``"score_function"``) -> the
      exact variance of one row, a pytree like ``params``.
  """

  name: str
  function: Callable[[jax.Array], jax.Array]
  params: dict[str, jax.Array]
  dist_builder: Callable[[Any], Any]
  value: jax.Array
  gradient: dict[str, jax.Array]
  variances: Mapping[str, dict[str, jax.Array]]


def _normal(params: dict[str, jax.Array]) -> distributions.Normal:
  return distributions.Normal(params["loc"], params["scale"])


def _terms(cost: str, k: float) -> dict[str, list[_Term]]:
  """phi, phi^2, phi' and phi'^2 of `cost` as lists of terms."""
  half_pi = 0.5 * math.pi
  if cost == "quadratic":
    quartic = [
      (math.comb(4, j) * (-k) ** (4 - j), j, 0.0, 0.0, 0.0) for j in range(5)
    ]
    return {
      "f": [
        (1.0, 2, 0.0, 0.0, 0.0),
        (-2.0 * k, 1, 0.0, 0.0, 0.0),
        (k * k, 0, 0.0, 0.0, 0.0),
      ],
      "f2": quartic,
      "df": [(2.0, 1, 0.0, 0.0, 0.0), (-2.0 * k, 0, 0.0, 0.0, 0.0)],
      "df2": [
        (4.0, 2, 0.0, 0.0, 0.0),
        (-8.0 * k, 1, 0.0, 0.0, 0.0),
        (4.0 * k * k, 0, 0.0, 0.0, 0.0),
      ],
    }
  if cost == "bump":
    return {
      "f": [(1.0, 0, k, 0.0, 0.0)],
      "f2": [(1.0, 0, 2.0 * k, 0.0, 0.0)],
      "df": [(-2.0 * k, 1, k, 0.0, 0.0)],
      "df2": [(4.0 * k * k, 2, 2.0 * k, 0.0, 0.0)],
    }
  # cosine: cos^2 = (1 + cos 2kx)/2; (-k sin kx)^2 = k^2 (1 - cos 2kx)/2;
  # -k sin(kx) = -k cos(kx - pi/2).
  return {
    "f": [(1.0, 0, 0.0, k, 0.0)],
    "f2": [(0.5, 0, 0.0, 0.0, 0.0), (0.5, 0, 0.0, 2.0 * k, 0.0)],
    "df": [(-k, 0, 0.0, k, -half_pi)],
    "df2": [
      (0.5 * k * k, 0, 0.0, 0.0, 0.0),
      (-0.5 * k * k, 0, 0.0, 2.0 * k, 0.0),
    ],
  }


def _double_factorial_moment(r: int) -> float:
  """E Z^r for Z ~ N(0, 1): (r - 1)!! for even r, 0 for odd."""
  return 0.0 if r % 2 else float(math.prod(range(r - 1, 0, -2)))


def _term_moment(
  term: _Term, p: int, loc: jax.Array, scale: jax.Array
) -> jax.Array:
  """E[c X^q exp(-b X^2) cos(omega X + phase) eps^p], X ~ N(loc, scale^2)."""
  c, q, b, omega, phase = term
  var = scale * scale
  a = 1.0 + 2.0 * b * var
  v = var / a
  m = (loc + 1j * omega * var) / a
  log_front = m * m / (2.0 * v) - loc * loc / (2.0 * var)
  s = jnp.sqrt(v)
  shift = (m - loc) / scale
  poly = 0.0
  for i in range(q + 1):
    for j in range(p + 1):
      ez = _double_factorial_moment(i + j)
      if ez:
        poly = poly + (
          math.comb(q, i)
          * m ** (q - i)
          * s**i
          * math.comb(p, j)
          * shift ** (p - j)
          * (s / scale) ** j
          * ez
        )
  value = jnp.exp(log_front + 1j * phase) * poly / jnp.sqrt(a)
  return c * jnp.real(value)


def _moment(terms: list[_Term], p: int, loc, scale) -> jax.Array:
  return sum(_term_moment(t, p, loc, scale) for t in terms)


def gaussian_problem(
  cost: str,
  k: float,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> ReferenceProblem:
  r"""The additive reference problem :math:`\sum_i \phi(x_i)`, all closed forms.

  Args:
    cost: one of :data:`COSTS`.
    k: the cost's parameter (centre, rate or frequency); ``"bump"`` needs
      :math:`1 + 4k\sigma^2 > 0` for its variances.
    loc: means, ``[d]`` (a scalar is ``d = 1``).
    scale: standard deviations ``> 0``, broadcastable to `loc`.

  Returns:
    A :class:`ReferenceProblem`.

  Raises:
    ValueError: an unknown `cost`, non-finite `k` or `loc`, or a `scale`
      that is not positive and finite.
  """
  if cost not in COSTS:
    raise ValueError(
      f"gaussian_problem: cost must be one of {COSTS}, got {cost!r}."
    )
  if not np.isfinite(k):
    raise ValueError(f"gaussian_problem: k must be finite, got {k}.")
  loc_np, scale_np = np.broadcast_arrays(
    np.atleast_1d(np.asarray(loc, float)), np.asarray(scale, float)
  )
  if loc_np.ndim != 1:
    raise ValueError(
      "gaussian_problem: loc must be a scalar or [d], got shape "
      f"{loc_np.shape}."
    )
  if not np.all(np.isfinite(loc_np)):
    raise ValueError("gaussian_problem: loc must be finite.")
  if not np.all((scale_np > 0) & np.isfinite(scale_np)):
    raise ValueError(
      f"gaussian_problem: scale must be positive and finite, got {scale_np}."
    )
  if cost == "bump" and np.any(1.0 + 4.0 * k * scale_np**2 <= 0):
    raise ValueError(
      "gaussian_problem: the bump's variance needs 1 + 4 k scale^2 > 0."
    )
  k = float(k)
  mu, sigma = jnp.asarray(loc_np), jnp.asarray(scale_np)
  terms = _terms(cost, k)
  phi = {name: [t for t in ts] for name, ts in terms.items()}

  def e(name, p):  # E[h(x_i) eps_i^p] per coordinate, [d]
    return _moment(phi[name], p, mu, sigma)

  mean_f, mean_f2 = e("f", 0), e("f2", 0)
  var_f = mean_f2 - mean_f**2
  gradient = {
    "loc": e("f", 1) / sigma,
    "scale": (e("f", 2) - mean_f) / sigma,
  }
  pathwise = {
    "loc": e("df2", 0) - e("df", 0) ** 2,
    "scale": e("df2", 2) - e("df", 1) ** 2,
  }
  # S = sum over the other coordinates.
  mean_s = jnp.sum(mean_f) - mean_f
  second_s = (jnp.sum(var_f) - var_f) + mean_s**2
  sq = sigma**2
  fourth = lambda name: e(name, 4) - 2.0 * e(name, 2) + e(name, 0)  # noqa: E731
  score_second = {
    "loc": (e("f2", 2) + 2.0 * mean_s * e("f", 2) + second_s) / sq,
    "scale": (fourth("f2") + 2.0 * mean_s * fourth("f") + 2.0 * second_s) / sq,
  }
  score = {p: score_second[p] - gradient[p] ** 2 for p in gradient}

  def function(x: jax.Array) -> jax.Array:
    if cost == "quadratic":
      return jnp.sum((x - k) ** 2)
    if cost == "bump":
      return jnp.sum(jnp.exp(-k * x * x))
    return jnp.sum(jnp.cos(k * x))

  return ReferenceProblem(
    name=f"{cost}(k={k:g}, d={mu.shape[0]})",
    function=function,
    params={"loc": mu, "scale": sigma},
    dist_builder=_normal,
    value=jnp.sum(mean_f),
    gradient=gradient,
    variances={"pathwise": pathwise, "score_function": score},
  )


def _conjugate_log_joint(z: jax.Array, x: jax.Array, noise: float) -> jax.Array:
  """log N(z; 0, I) + log N(x; z, noise^2 I), written out."""
  d = z.size
  return (
    -0.5 * jnp.sum(z**2)
    - 0.5 * jnp.sum(((x - z) / noise) ** 2)
    - d * jnp.log(noise)
    - d * jnp.log(2.0 * jnp.pi)
  )


def _closed_form_elbo(params, x, noise):
  """E_q log p(x|z) + E_q log p(z) + H[q], q = N(loc, exp(log_scale)^2)."""
  loc, log_scale = params["loc"], params["log_scale"]
  s2 = jnp.exp(2.0 * log_scale)
  d = loc.size
  lik = (
    -0.5 * jnp.sum((x - loc) ** 2 + s2) / noise**2
    - d * jnp.log(noise)
    - 0.5 * d * jnp.log(2.0 * jnp.pi)
  )
  prior = -0.5 * jnp.sum(loc**2 + s2) - 0.5 * d * jnp.log(2.0 * jnp.pi)
  entropy = jnp.sum(log_scale) + 0.5 * d * (1.0 + jnp.log(2.0 * jnp.pi))
  return lik + prior + entropy


def _quadrature_iwae(params, x, noise, num_importance, num_nodes):
  """IWAE bound of a 1-d latent by K-dim Gauss-Hermite quadrature over eps."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
  weights = weights / np.sqrt(2.0 * np.pi)  # a N(0, 1) rule
  grids = np.meshgrid(*([nodes] * num_importance), indexing="ij")
  eps = jnp.stack([g.ravel() for g in grids], axis=-1)  # [n^K, K]
  w = functools.reduce(np.multiply.outer, [weights] * num_importance).ravel()
  loc, log_scale = params["loc"][0], params["log_scale"][0]
  z = loc + jnp.exp(log_scale) * eps
  log_q = -0.5 * eps**2 - log_scale - 0.5 * jnp.log(2.0 * jnp.pi)
  log_p = jax.vmap(
    jax.vmap(lambda zk: _conjugate_log_joint(zk[None], x, noise))
  )(z)
  bound = jax.nn.logsumexp(log_p - log_q, axis=-1) - jnp.log(num_importance)
  return jnp.sum(w * bound)


def _log_scale_normal(params):
  return distributions.LogScaleNormal(params["loc"], params["log_scale"])


def conjugate_gaussian_problem(
  objective: str,
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  log_scale: jax.typing.ArrayLike,
  *,
  noise_scale: float = 0.7,
  num_importance: int = 2,
) -> ReferenceProblem:
  r"""A variational reference problem: the conjugate Gaussian model.

  :math:`z \sim N(0, I)`, :math:`x \mid z \sim N(z, s^2 I)`, with
  :math:`q = N(\text{loc}, \exp(\text{log\_scale})^2)`; ``function`` is the
  log-joint :math:`\log p(x, z)` that :func:`rgrad.stl_jacobians` and
  :func:`rgrad.dreg_jacobians` take.

  * ``"negative_elbo"``: the ELBO is closed-form (expected log-likelihood
    and prior of a Gaussian plus its entropy), any dimension; ``gradient``
    is :math:`-\nabla \mathrm{ELBO}` by ``jax.grad`` of that formula.
  * ``"negative_iwae_bound"``: the :math:`K`-sample IWAE bound has no closed
    form; for a 1-d latent it is a :math:`K`-dimensional Gauss-Hermite
    integral over the noise, computed on a tensor grid (80 nodes for
    :math:`K = 2`, 40 for :math:`K = 3`; the logsumexp's kink makes the
    error algebraic, about 1e-5 at these sizes, which a test should keep
    well below its standard error). Rows of one call are one batch: use
    ``chunk_size = num_importance``.

  ``variances`` is empty (no closed forms).

  Args:
    objective: ``"negative_elbo"`` or ``"negative_iwae_bound"``.
    x: the observation, ``[d]`` (``d = 1`` for the IWAE bound).
    loc, log_scale: the variational parameters, ``[d]``.
    noise_scale: :math:`s > 0`.
    num_importance: :math:`K` in {2, 3}, for the IWAE bound.

  Returns:
    A :class:`ReferenceProblem`.

  Raises:
    ValueError: an unknown objective, or shapes or sizes out of range.
  """
  if objective not in ("negative_elbo", "negative_iwae_bound"):
    raise ValueError(
      "conjugate_gaussian_problem: objective must be 'negative_elbo' or "
      f"'negative_iwae_bound', got {objective!r}."
    )
  x, loc, log_scale = (
    jnp.atleast_1d(jnp.asarray(v, float)) for v in (x, loc, log_scale)
  )
  if not x.shape == loc.shape == log_scale.shape or x.ndim != 1:
    raise ValueError(
      "conjugate_gaussian_problem: x, loc and log_scale must all be [d], got "
      f"{x.shape}, {loc.shape}, {log_scale.shape}."
    )
  if not noise_scale > 0:
    raise ValueError(f"noise_scale must be > 0, got {noise_scale}.")
  params = {"loc": loc, "log_scale": log_scale}
  noise = float(noise_scale)
  if objective == "negative_elbo":
    value = -_closed_form_elbo(params, x, noise)
    gradient = jax.grad(lambda p: -_closed_form_elbo(p, x, noise))(params)
    name = f"negative_elbo(d={x.shape[0]})"
  else:
    if x.shape != (1,) or num_importance not in (2, 3):
      raise ValueError(
        "conjugate_gaussian_problem: the IWAE bound needs d = 1 and "
        f"num_importance in (2, 3), got d={x.shape[0]}, {num_importance}."
      )
    nodes = {2: 80, 3: 40}[num_importance]
    bound = lambda p: _quadrature_iwae(p, x, noise, num_importance, nodes)  # noqa: E731
    value = -bound(params)
    gradient = jax.grad(lambda p: -bound(p))(params)
    name = f"negative_iwae_bound(K={num_importance})"
  return ReferenceProblem(
    name=name,
    function=functools.partial(_conjugate_log_joint, x=x, noise=noise),
    params=params,
    dist_builder=_log_scale_normal,
    value=value,
    gradient=gradient,
    variances={},
  )
