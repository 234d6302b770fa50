r"""Example problems for `experiments/compare/`: ``make_problem()`` functions.

Each ``make_problem()`` returns ``(function, params, dist_builder)`` for
:func:`rgrad.compare`; ``function`` maps one draw to a scalar and is
jit/vmap-friendly (its data are closed-over constants). Next to each is its
exact gradient, ``<make_problem>_gradient(params)`` (a pytree like
``params``, the gradient of :math:`E[f]`), written out by hand or by
quadrature, sharing no code with the estimators:

* :func:`gaussian_quadratic` (a Gaussian-process-like quadratic, d = 100):
  closed form, :func:`gaussian_quadratic_gradient`;
* :func:`logistic_elbo` (Bayesian logistic regression on the breast-cancer
  data, d = 31): no closed form, but a one-dimensional quadrature per data
  point, exact to ~1e-13, :func:`logistic_elbo_gradient`;
* :func:`bernoulli_latent` (a coupled quadratic of d = 10 Bernoulli
  latents): closed form, :func:`bernoulli_latent_gradient`.

Each gradient function reads the dimension off ``params``, so it also fits
``make_problem(dim=...)`` at other sizes.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

import rgrad
from experiments.logistic_regression import data as logistic_data
from experiments.logistic_regression import model as logistic_model


def _normal(params):
  return rgrad.Normal(params["loc"], params["scale"])


def _kernel(dim: int) -> np.ndarray:
  """The squared-exponential kernel on a grid of [0, 1] plus the identity."""
  grid = np.linspace(0.0, 1.0, dim)
  kernel = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / 0.1) ** 2)
  return kernel + np.eye(dim)


def gaussian_quadratic(dim: int = 100):
  r"""A Gaussian-process-like quadratic :math:`x^\top A x / 2` in d = 100.

  :math:`A` is the squared-exponential kernel matrix on a grid of
  :math:`[0, 1]` (length scale 0.1) plus the identity, under
  :math:`N(\mu, \mathrm{diag}\,\sigma^2)` with :math:`\mu = 1`,
  :math:`\sigma = 0.5`.
  """
  a = jnp.asarray(_kernel(dim))

  def function(x):
    return 0.5 * x @ (a @ x)

  params = {"loc": jnp.ones(dim), "scale": jnp.full(dim, 0.5)}
  return function, params, _normal


def gaussian_quadratic_gradient(params):
  r"""The exact gradient of :func:`gaussian_quadratic`'s expectation.

  For :math:`x \sim N(\mu, \mathrm{diag}\,\sigma^2)`,
  :math:`E[x^\top A x / 2] = (\mu^\top A \mu + \sum_j A_{jj}\sigma_j^2)/2`,
  so :math:`\nabla_\mu = A\mu` (:math:`A` symmetric) and
  :math:`\nabla_{\sigma_j} = A_{jj}\sigma_j`.

  Args:
    params: ``{"loc": [d], "scale": [d]}``.

  Returns:
    ``{"loc": [d], "scale": [d]}``.
  """
  loc, scale = params["loc"], params["scale"]
  a = jnp.asarray(_kernel(loc.shape[0]), loc.dtype)
  return {"loc": a @ loc, "scale": jnp.diag(a) * scale}


# -- Bayesian logistic regression ------------------------------------------


def _laplace_point(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
  r"""The MAP :math:`\hat w` and the mean-field Laplace scales, by Newton.

  The log joint :math:`\sum_i \log\sigma(t_i w^\top x_i) - \|w\|^2/2` is
  strictly concave; Newton's method from :math:`w = 0` converges in a few
  steps. The scales are :math:`\sigma_j = H_{jj}^{-1/2}`, :math:`H` the
  negative Hessian at :math:`\hat w`: the best diagonal Gaussian, in
  :math:`\mathrm{KL}(q\,\|\,p)`, to the Laplace approximation
  :math:`N(\hat w, H^{-1})` (Bishop 2006, Section 10.1.2).
  """
  t = 2.0 * y - 1.0
  w = np.zeros(x.shape[1])
  for _ in range(50):
    s = 1.0 / (1.0 + np.exp(t * (x @ w)))  # sigma(-t w.x)
    grad = x.T @ (t * s) - w
    hess = (x * (s * (1.0 - s))[:, None]).T @ x + np.eye(x.shape[1])
    step = np.linalg.solve(hess, grad)
    w = w + step
    if np.max(np.abs(step)) < 1e-12:
      break
  s = 1.0 / (1.0 + np.exp(t * (x @ w)))
  hess = (x * (s * (1.0 - s))[:, None]).T @ x + np.eye(x.shape[1])
  return w, 1.0 / np.sqrt(np.diag(hess))


def _training_data():
  split = logistic_data.load_breast_cancer()
  return split.x_train, split.y_train


def logistic_elbo():
  r"""The expectation part of a logistic-regression ELBO, breast-cancer data.

  Bayesian logistic regression as in Mohamed et al. (2020, Section 8) and
  ``experiments/logistic_regression``: the 455 training points of
  scikit-learn's breast-cancer set (30 standardised features and a bias,
  :math:`d = 31`; :func:`experiments.logistic_regression.data.
  load_breast_cancer` with its default split), labels
  :math:`t_i = 2y_i - 1`, prior :math:`p(w) = N(0, I)` and the cost

  .. math:: f(w) = \log p(y \mid X, w) + \log p(w)
            = \sum_i \log\sigma(t_i\, w^\top x_i) - \tfrac12\|w\|^2
              - \tfrac d2 \log 2\pi,

  under the mean-field posterior :math:`q(w) = N(\mu,
  \operatorname{diag} e^{2s})` (params ``{"loc": mu, "log_scale": s}``,
  :class:`rgrad.LogScaleNormal`, the experiment's parameterisation). The
  ELBO is :math:`E_q[f] + \mathcal{H}[q]`; the entropy
  :math:`\mathcal{H}[q] = \sum_j s_j + \tfrac d2 (1 + \log 2\pi)` is
  analytic (gradient :math:`(0, 1)`) and is not part of the compared
  expectation.

  The params are a fixed, documented point near the end of training: the
  MAP :math:`\hat w` and the mean-field Laplace scales
  :math:`\sigma_j = H_{jj}^{-1/2}` (:math:`H` the negative Hessian of the
  log joint at :math:`\hat w`; :math:`|\hat w_j| \le 1.31`, scales 0.24
  to 0.68). The ELBO's optimum is close by, so the comparison is of the
  regime that dominates late training: :math:`\nabla_\mu E_q[f]` (0.03 to
  3.5 in absolute value) is small next to one draw's noise, and
  :math:`\nabla_s E_q[f]` (-1.65 to -0.89) is near -1, where it cancels
  the entropy's gradient.
  """
  x_np, y_np = _training_data()
  loc, scale = _laplace_point(x_np, y_np)
  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  dim = x.shape[1]
  log_norm = 0.5 * dim * math.log(2.0 * math.pi)

  def function(w):
    log_likelihood = jnp.sum(logistic_model.log_likelihood(w, x, y))
    return log_likelihood - 0.5 * w @ w - log_norm

  params = {
    "loc": jnp.asarray(loc, x.dtype),
    "log_scale": jnp.asarray(np.log(scale), x.dtype),
  }
  return function, params, logistic_model.posterior


def logistic_elbo_gradient(params):
  r"""The gradient of :func:`logistic_elbo`'s expectation, by quadrature.

  :math:`E_q[\log p(y \mid X, w)]` has no closed form; each data point's
  term is a one-dimensional Gaussian integral over :math:`w^\top x_i`,
  which :func:`rgrad.exact.logistic_expected_log_likelihood` computes by
  quadrature with a hand-written gradient (exact to ~1e-13 relative; it
  shares no code with the estimators). The prior's part is closed form:
  :math:`E_q[\log p(w)] = -\tfrac12\sum_j(\mu_j^2 + e^{2s_j}) -
  \tfrac d2\log 2\pi`, gradient :math:`(-\mu, -e^{2s})`.

  Args:
    params: ``{"loc": [31], "log_scale": [31]}``.

  Returns:
    ``{"loc": [31], "log_scale": [31]}``.
  """
  x, y = _training_data()
  loc, log_scale = params["loc"], params["log_scale"]
  _, likelihood = rgrad.exact.logistic_expected_log_likelihood(
    loc, log_scale, jnp.asarray(x, loc.dtype), jnp.asarray(y, loc.dtype)
  )
  return {
    "loc": likelihood["loc"] - loc,
    "log_scale": likelihood["log_scale"] - jnp.exp(2.0 * log_scale),
  }


# -- Bernoulli latents -------------------------------------------------------


def _bernoulli_constants(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Logits, targets and the couplings (symmetric, zero diagonal) of `dim`."""
  logits = np.linspace(-2.0, 2.0, dim)
  targets = 0.499 + 0.05 * np.cos(np.arange(dim))
  r = np.random.default_rng(0).standard_normal((dim, dim))
  couplings = np.triu(r, 1)
  couplings = 0.5 * (couplings + couplings.T) / math.sqrt(dim)
  return logits, targets, couplings


def _bernoulli(params):
  return rgrad.Bernoulli(params["logits"])


def bernoulli_latent(dim: int = 10):
  r"""A coupled quadratic of d = 10 Bernoulli latents (REBAR's toy, in d).

  Tucker et al. (2017, Section 6.1) compare estimators on
  :math:`E_{b \sim \mathrm{Bernoulli}(\sigma(\eta))}[(b - t)^2]`,
  :math:`t = 0.499`, whose gradient :math:`\sigma'(\eta)(1 - 2t)` is tiny
  next to the noise. Here the toy is taken to :math:`d` latents with
  pairwise couplings, so that the cost is not additive (the coordinates'
  estimates interact, as in a latent-variable model):

  .. math:: f(b) = \sum_j (b_j - t_j)^2 + b^\top W b, \qquad
            b_j \sim \mathrm{Bernoulli}(\sigma(\eta_j)),

  with logits :math:`\eta` evenly spaced on :math:`[-2, 2]` (probabilities
  0.12 to 0.88), targets :math:`t_j = 0.499 + 0.05\cos j` and
  :math:`W = (R + R^\top)/(2\sqrt d)`, :math:`R` the strict upper triangle
  of a standard normal matrix (NumPy seed 0), zero diagonal. The cost is
  polynomial, so it is defined on the whole cube and the relaxations
  (concrete, straight-through) evaluate it between the vertices. The
  estimators that apply (by capability) are the score function,
  leave-one-out, ARM, DisARM and the concrete and straight-through
  relaxations (biased); REBAR and RELAX are stateful. At the default
  :math:`d = 10`, :func:`rgrad.exact.bernoulli_estimator_moments` gives the
  exact variance of each but the concrete one (which it has for additive
  costs only).

  References:
    Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR: Low-variance,
    unbiased gradient estimates for discrete latent variable models.
    NeurIPS 2017, https://arxiv.org/abs/1703.07370.
  """
  logits, targets, couplings = _bernoulli_constants(dim)
  t, w = jnp.asarray(targets), jnp.asarray(couplings)

  def function(b):
    return jnp.sum(jnp.square(b - t)) + b @ (w @ b)

  return function, {"logits": jnp.asarray(logits)}, _bernoulli


def bernoulli_latent_gradient(params):
  r"""The exact gradient of :func:`bernoulli_latent`'s expectation.

  With :math:`p = \sigma(\eta)`, independence, :math:`b_j^2 = b_j` and
  :math:`W_{jj} = 0`, :math:`E f = \sum_j \big(p_j(1 - 2t_j) + t_j^2\big) +
  p^\top W p`, so, by :math:`\partial p_j/\partial \eta_j = p_j(1 - p_j)`,

  .. math:: \nabla_\eta E f = p(1 - p) \odot (1 - 2t + 2Wp).

  Args:
    params: ``{"logits": [d]}``.

  Returns:
    ``{"logits": [d]}``.
  """
  eta = params["logits"]
  _, targets, couplings = _bernoulli_constants(eta.shape[0])
  t, w = jnp.asarray(targets, eta.dtype), jnp.asarray(couplings, eta.dtype)
  p = jax.nn.sigmoid(eta)
  return {"logits": p * (1.0 - p) * (1.0 - 2.0 * t + 2.0 * (w @ p))}
