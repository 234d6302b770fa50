r"""The IWAE bound of a Bernoulli posterior and VIMCO's moments, by enumeration.

For :math:`q = \mathrm{Bernoulli}(\sigma(\eta))` over :math:`d` binary
latents and a log-joint :math:`\log p(x, z)`, the :math:`K`-sample bound
(Burda et al. 2016) is :math:`L_K = E[\log \frac1K\sum_k w_k]`,
:math:`\log w_k = \log p(x, z_k) - \log q(z_k)`, over :math:`K` i.i.d.
:math:`z_k \sim q`. Enumerating the :math:`2^{dK}` tuples gives it exactly,
and its gradient by the score identity (the weights depend on
:math:`\eta` too, :math:`\nabla\log w_k = -s_k`, :math:`s_k = z_k - p`):

.. math:: \nabla L_K = E\Big[\sum_k (L - \tilde w_k)\,s_k\Big], \qquad
          L = \log\frac1K\sum_k w_k,\ \tilde w = \mathrm{softmax}(\log w).

VIMCO (Mnih & Rezende 2016) estimates :math:`\nabla(-L_K)` from one batch by
:math:`-\sum_k [(L - L_{-k}) - \tilde w_k]\,s_k`, with
:math:`L_{-k} = \log\frac1K(\sum_{j \ne k} w_j + \exp(\frac1{K-1}
\sum_{j\ne k}\log w_j))`; :func:`vimco_moments` gives its exact mean (which
must be :math:`-\nabla L_K`) and per-coordinate variance, written out here
independently of :mod:`rgrad.estimators`.

Tuples are processed in chunks with ``jax.lax.map`` (no Python loop), so
:math:`dK \le 20` (about a million tuples) fits in memory.

References:
  Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
  Mnih, Rezende. Variational Inference for Monte Carlo Objectives. ICML
  2016, https://arxiv.org/abs/1602.06725.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.exact import _enumeration as en
from rgrad.exact._variances import EstimatorMoments

MAX_TUPLE_BITS = 20
_CHUNK_BITS = 14


def _setup(name, log_joint, logits, num_importance):
  k = _internal.check_int(num_importance, name, what="num_importance")
  logits = en.check_logits(name, logits)
  eta = logits.reshape(-1)
  d = eta.size
  if d * k > MAX_TUPLE_BITS:
    raise ValueError(
      f"{name}: logits has {d} entries and num_importance is {k}: "
      f"2^{d * k} tuples; exact enumeration is limited to d * K <= "
      f"{MAX_TUPLE_BITS}."
    )
  states = en.bernoulli_states(d)
  table = en.cost_table(
    name, log_joint, states, logits.shape, eta.dtype, "log_joint"
  )
  log_q = en.state_log_probs(states, eta)  # [2^d]
  scores = jnp.asarray(states, eta.dtype) - jax.nn.sigmoid(eta)
  return logits, d, k, table - log_q, log_q, scores


def _chunked(d, k, fn):
  """Sums `fn(index [c, K])` (a pytree) over all tuples, chunk by chunk."""
  bits = d * k
  chunk_bits = min(bits, _CHUNK_BITS)
  starts = np.arange(2 ** (bits - chunk_bits)) << chunk_bits
  mask = 2**d - 1
  shifts = np.arange(k) * d

  def one(start):
    t = start + jnp.arange(2**chunk_bits)
    index = (t[:, None] >> shifts[None, :]) & mask  # [c, K] state indices
    return jax.tree.map(lambda x: jnp.sum(x, 0), fn(index))

  if starts.size == 1:  # one chunk: no loop to compile
    return one(0)
  sums = jax.lax.map(one, jnp.asarray(starts))
  return jax.tree.map(lambda x: jnp.sum(x, 0), sums)


def _bound_terms(log_w, log_q, scores, k, index):
  lw = log_w[index]  # [c, K]
  prob = jnp.exp(jnp.sum(log_q[index], -1))  # [c]
  bound = jax.nn.logsumexp(lw, -1) - math.log(k)  # L
  tilde = jax.nn.softmax(lw, -1)
  return lw, prob, bound, tilde


def iwae_bound_expectation(
  log_joint: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  num_importance: int,
) -> tuple[jax.Array, jax.Array]:
  r"""Exact :math:`L_K` and :math:`\nabla_\eta L_K` (module docstring).

  Args:
    log_joint: :math:`z \mapsto \log p(x, z)` on float 0/1 arrays shaped
      like `logits`, scalar (JAX, or NumPy alone).
    logits: :math:`\eta` of :math:`q`.
    num_importance: :math:`K \ge 1` (static); :math:`dK \le 20`.

  Returns:
    ``(value, gradient)``, the gradient shaped like `logits`.

  Raises:
    ValueError: :math:`dK > 20`, non-finite logits, log-joint or result.
    TypeError: a bad `log_joint` or `num_importance`.
  """
  name = "iwae_bound_expectation"
  logits, d, k, log_w, log_q, scores = _setup(
    name, log_joint, logits, num_importance
  )

  value, gradient = _bound(log_w, log_q, scores, k)
  en.check_finite_results(name, value=value, gradient=gradient)
  return value, gradient.reshape(logits.shape)


def vimco_moments(
  log_joint: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  num_importance: int,
) -> EstimatorMoments:
  r"""Exact mean and variance of VIMCO's batch estimate of :math:`-\nabla L_K`.

  The unit is one batch of :math:`K` draws; its estimate is the mean of the
  estimator's :math:`K` rows (each row is :math:`K` times its term).
  :func:`rgrad.gradient_moments` reports ``K`` times this variance (its
  effective per-row variance for ``group_size="batch"``).

  Args:
    log_joint, logits: as :func:`iwae_bound_expectation`.
    num_importance: :math:`K \ge 2`.

  Returns:
    :class:`EstimatorMoments`; the mean equals minus
    :func:`iwae_bound_expectation`'s gradient.
  """
  name = "vimco_moments"
  _internal.check_int(num_importance, name, what="num_importance", minimum=2)
  logits, d, k, log_w, log_q, scores = _setup(
    name, log_joint, logits, num_importance
  )
  mean, variance = _vimco(log_w, log_q, scores, k)
  en.check_finite_results(name, mean=mean, variance=variance)
  return EstimatorMoments(
    mean=mean.reshape(logits.shape), variance=variance.reshape(logits.shape)
  )


# The sums over tuples, jitted on the tables alone (the log-joint enters as
# its table), so that repeated calls outside jit reuse one compilation.


@functools.partial(jax.jit, static_argnames="k")
def _bound(log_w, log_q, scores, k):
  def terms(index):
    _, prob, bound, tilde = _bound_terms(log_w, log_q, scores, k, index)
    coef = prob[:, None] * (bound[:, None] - tilde)  # [c, K]
    grad = jnp.einsum("ck,ckd->cd", coef, scores[index])
    return prob * bound, grad

  return _chunked(scores.shape[1], k, terms)


@functools.partial(jax.jit, static_argnames="k")
def _vimco(log_w, log_q, scores, k):
  d = scores.shape[1]
  eye = jnp.eye(k, dtype=bool)

  def estimate(index):
    lw, prob, bound, tilde = _bound_terms(log_w, log_q, scores, k, index)
    # L_{-k}: log w_k replaced by the mean of the others' log weights.
    others = (jnp.sum(lw, -1, keepdims=True) - lw) / (k - 1)  # [c, K]
    swapped = jnp.where(eye[None], others[:, :, None], lw[:, None, :])
    leave_out = jax.nn.logsumexp(swapped, -1) - math.log(k)  # [c, K]
    coef = -((bound[:, None] - leave_out) - tilde)
    return prob, jnp.einsum("ck,ckd->cd", coef, scores[index])

  def first(index):
    prob, g = estimate(index)
    return prob[:, None] * g

  mean = _chunked(d, k, first)

  def second(index):
    prob, g = estimate(index)
    return prob[:, None] * jnp.square(g - mean)

  return mean, _chunked(d, k, second)
