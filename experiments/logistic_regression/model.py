r"""The model: Bayesian logistic regression and its mean-field posterior.

Weights :math:`w \in \mathbb{R}^{31}` with the prior :math:`p(w) = N(0, I)`;
labels :math:`y_i \in \{0, 1\}` with
:math:`p(y_i \mid x_i, w) = \sigma(t_i\, w^\top x_i)`, :math:`t_i = 2 y_i - 1`,
so that :math:`\log p(y_i \mid x_i, w) = -\operatorname{softplus}(-t_i\,
w^\top x_i)`. The variational posterior is a diagonal Gaussian
:math:`q(w) = N(\mu, \operatorname{diag}(e^{2 s}))` with the parameters
``{"loc": mu, "log_scale": s}`` (:class:`rgrad.LogScaleNormal`), and

.. math:: \mathrm{ELBO}(\mu, s) = E_q\Big[\sum_{i=1}^N \log p(y_i \mid x_i,
          w)\Big] - \mathrm{KL}(q \,\|\, p), \qquad
          \mathrm{KL} = \tfrac12 \sum_j \big(e^{2 s_j} + \mu_j^2 - 1 -
          2 s_j\big).

The KL term is analytic, with the gradient
:math:`(\partial_\mu, \partial_s)\,\mathrm{KL} = (\mu, e^{2s} - 1)`; only the
expected log-likelihood is estimated. A minibatch :math:`B` of size
:math:`|B|` estimates the sum over the :math:`N` training points by
:math:`\frac{N}{|B|}\sum_{i \in B}`.

References:
  Mohamed et al., Monte Carlo Gradient Estimation in Machine Learning, JMLR
  2020, https://arxiv.org/abs/1906.10652 (Section 8).
"""

import jax
import jax.numpy as jnp

import rgrad

Params = dict[str, jax.Array]  # {"loc": [d], "log_scale": [d]}


def posterior(params: Params) -> rgrad.LogScaleNormal:
  """The variational posterior q(w) of ``{"loc", "log_scale"}``."""
  return rgrad.LogScaleNormal(params["loc"], params["log_scale"])


def init_params(dim: int, init_log_scale: float, dtype) -> Params:
  """Mean 0 and every log-scale `init_log_scale` (0: q is the prior)."""
  return {
    "loc": jnp.zeros((dim,), dtype),
    "log_scale": jnp.full((dim,), init_log_scale, dtype),
  }


def log_likelihood(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """:math:`\\log p(y_i \\mid x_i, w)` per point: w ``[..., d]``, x ``[n, d]``.

  Returns ``[..., n]``.
  """
  logits = w @ x.T  # [..., n]
  return -jax.nn.softplus(-(2.0 * y - 1.0) * logits)


def negative_log_likelihood_cost(x: jax.Array, y: jax.Array, scale):
  """The estimators' cost: one draw ``w [d]`` -> ``-scale * sum log p``.

  ``scale`` is :math:`N/|B|` for a minibatch (1 for the whole set); the
  gradient of :math:`E_q` of this cost plus the KL gradient is the gradient
  of the negative ELBO.
  """
  return lambda w: -scale * jnp.sum(log_likelihood(w, x, y))


def kl_divergence(params: Params) -> jax.Array:
  """KL(q || N(0, I)), closed form."""
  loc, log_scale = params["loc"], params["log_scale"]
  return 0.5 * jnp.sum(jnp.exp(2 * log_scale) + loc**2 - 1.0 - 2 * log_scale)


def kl_gradient(params: Params) -> Params:
  """:math:`(\\mu, e^{2s} - 1)`, the exact gradient of :func:`kl_divergence`."""
  return {
    "loc": params["loc"],
    "log_scale": jnp.expm1(2 * params["log_scale"]),
  }
