r"""Exact gradients and estimator moments for Bernoulli variables, enumerated.

For :math:`b \sim \mathrm{Bernoulli}(\sigma(\eta))` factorized over
:math:`d` coordinates (:math:`p = \sigma(\eta)`) and any cost :math:`f` on
:math:`\{0,1\}^d`, the expectation is a finite sum over the :math:`2^d`
states and, by the score identity
:math:`\partial_{\eta_i}\log P(b) = b_i - p_i`,

.. math::
  \nabla_{\eta_i} E[f(b)] = \sum_b P(b)\,(f(b) - E f)\,(b_i - p_i).

Each estimator's law is written out from its definition (the formulas of
the issue-12 design, from the papers), never by calling it:

* score function, one draw: :math:`g_i = f(b)(b_i - p_i)`;
* leave-one-out with :math:`K` draws (Kool et al. 2019), the batch mean
  :math:`G_i = \frac{1}{K-1}\sum_k (f_k - \bar f)(b_{k,i} - p_i)`, which is
  the U-statistic of the kernel
  :math:`H(x, y) = \frac12 (f(x) - f(y))(s(x) - s(y))` over the
  :math:`\binom K2` pairs; Hoeffding's formula gives its variance from
  single-draw moments, for any :math:`K`;
* ARM (Yin & Zhou 2019), one antithetic pair :math:`u, 1-u`:
  :math:`g_i = (f(b) - f(\tilde b))(u_i - \frac12)` with
  :math:`b = 1[u > 1-p]`, :math:`\tilde b = 1[u < p]`; and DisARM (Dong,
  Mnih & Tucker 2020), :math:`g_i = \frac12 (f(b) - f(\tilde b))
  (-1)^{\tilde b_i} 1[b_i \ne \tilde b_i]\,\sigma(|\eta_i|)`. Per coordinate
  the pair :math:`(b_j, \tilde b_j)` is constant on three cells of
  :math:`u_j`: :math:`[0, m_j]` gives :math:`(0, 1)`,
  :math:`[M_j, 1]` gives :math:`(1, 0)` and :math:`[m_j, M_j]` gives
  :math:`(c_j, c_j)`, :math:`c_j = 1[p_j > \frac12]`, with
  :math:`m = \min(p, 1-p)`, :math:`M = \max(p, 1-p)`. Summing over the
  :math:`3^d` cells, with :math:`\int_{\text{cell}} (u_i - \frac12)^k du_i`
  in closed form, is exact for any cost.

Units. The moments are those of one *unit*: one draw (score function), one
antithetic pair's estimate (ARM, DisARM: the mean of the pair's two rows,
which both hold it) and one K-draw batch mean (leave-one-out, VIMCO).
:func:`rgrad.gradient_moments` reports for pair and group estimators the
*effective per-row* variance, ``group_size`` times the variance of a unit
(2 x for pairs, K x for a batch): multiply these by that to compare.

References:
  Yin, Zhou. ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks. ICLR 2019, https://arxiv.org/abs/1807.11143.
  Dong, Mnih, Tucker. DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables. NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free!
  ICLR 2019 workshop. Hoeffding. A Class of Statistics with Asymptotically
  Normal Distribution. Ann. Math. Statist. 19(3), 1948.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.exact import _enumeration as en
from rgrad.exact import _iwae
from rgrad.exact import _relaxed
from rgrad.exact._relaxed import DEFAULT_NUM_PANELS
from rgrad.exact._variances import EstimatorMoments

# ARM and DisARM sum over 3^d cells.
MAX_PAIR_DIM = 10

ESTIMATORS = (
  "score_function",
  "leave_one_out",
  "arm",
  "disarm",
  "concrete",
  "straight_through",
  "vimco",
)
# The estimators whose unit is a batch of K draws (num_samples), and what
# the others' is.
_BATCH_ESTIMATORS = ("leave_one_out", "vimco")
_UNIT = "fixed (one draw, or one antithetic pair)"


@jax.jit
def _draw_arrays(eta):
  """P(b) [2^d], p [d] and the scores b - p [2^d, d] of every state."""
  states = en.bernoulli_states(eta.shape[0])
  probs = jnp.exp(en.state_log_probs(states, eta))
  p = jax.nn.sigmoid(eta)
  return probs, p, jnp.asarray(states, eta.dtype) - p


class _Draw:
  """One Bernoulli draw's enumeration: states, probabilities, cost table."""

  def __init__(self, name, cost, logits, additive, maximum=None):
    self.logits = en.check_logits(name, logits)
    self.shape = self.logits.shape
    self.eta = self.logits.reshape(-1)
    self.d = self.eta.size
    en.check_dimension(name, self.d, maximum or en.MAX_BERNOULLI_DIM, "logits")
    self.states = en.bernoulli_states(self.d)  # [2^d, d], NumPy
    self.probs, self.p, self.scores = _draw_arrays(self.eta)
    dtype = self.eta.dtype
    if additive:
      # F(b) = sum_j f(b_j) = d f(0) + (f(1) - f(0)) sum_j b_j.
      f01 = en.cost_table(name, cost, np.array([[0.0], [1.0]]), (), dtype)
      self.costs = self.d * f01[0] + jnp.asarray(self.states, dtype) @ jnp.full(
        (self.d,), f01[1] - f01[0]
      )
    else:
      self.costs = en.cost_table(name, cost, self.states, self.shape, dtype)

  def unflatten(self, x: jax.Array) -> jax.Array:
    return x.reshape(self.shape)


def _moments(name, draw, mean, variance) -> EstimatorMoments:
  en.check_finite_results(name, mean=mean, variance=variance)
  return EstimatorMoments(
    mean=draw.unflatten(mean), variance=draw.unflatten(variance)
  )


def bernoulli_expectation(
  cost: Callable[[jax.Array], Any], logits: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""Exact :math:`E[f(b)]` and its gradient in the logits, by enumeration.

  Sums over all :math:`2^d` states of :math:`b \sim
  \mathrm{Bernoulli}(\sigma(\eta))` (see the module docstring); the
  gradient is :math:`\sum_b P(b)(f(b) - E f)(b - p)`.

  Args:
    cost: any callable on float 0/1 arrays of the shape of `logits`
      returning a scalar (JAX, or NumPy alone: such a cost is called once
      per state).
    logits: :math:`\eta`, any shape, at most 12 entries.

  Returns:
    ``(value, gradient)``: a scalar and an array shaped like `logits`.

  Raises:
    ValueError: more than 12 logits, non-finite logits or costs.
    TypeError: a cost that is not callable or not scalar-valued.
  """
  name = "bernoulli_expectation"
  draw = _Draw(name, cost, logits, additive=False)
  value = draw.probs @ draw.costs
  gradient = (draw.probs * (draw.costs - value)) @ draw.scores
  en.check_finite_results(name, value=value, gradient=gradient)
  return value, draw.unflatten(gradient)


def one_hot_categorical_expectation(
  cost: Callable[[jax.Array], Any], logits: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""Exact :math:`E[f(x)]` and its gradient for independent one-hot draws.

  `logits` ``[*batch, k]`` define :math:`n = \prod \text{batch}`
  independent categoricals with probabilities
  :math:`\pi = \mathrm{softmax}(\eta)`; :math:`x` is their one-hot float
  encoding, ``[*batch, k]``. The sum runs over the :math:`k^n` joint states;
  with the score :math:`x - \pi`,
  :math:`\nabla_\eta E f = \sum_x P(x)(f(x) - E f)(x - \pi)`.

  Args:
    cost: callable on one-hot float arrays shaped like `logits`, scalar.
    logits: ``[*batch, k]``, :math:`k \ge 2`, with at most 65,536 joint
      states.

  Returns:
    ``(value, gradient)``, the gradient shaped like `logits`.

  Raises:
    ValueError: scalar logits, :math:`k < 2`, too many states, non-finite
      logits or costs.
    TypeError: a bad cost.
  """
  name = "one_hot_categorical_expectation"
  logits = en.check_logits(name, logits)
  if logits.ndim < 1 or logits.shape[-1] < 2:
    raise ValueError(
      f"{name}: logits must have shape [*batch, k] with k >= 2 categories, "
      f"got {logits.shape}."
    )
  k = logits.shape[-1]
  n = logits.size // k
  if k**n > en.MAX_STATES:
    raise ValueError(
      f"{name}: logits of shape {logits.shape} have {k}^{n} joint states; "
      f"exact enumeration is limited to {en.MAX_STATES}."
    )
  flat = logits.reshape(n, k)
  index = np.arange(k**n)[:, None] // (k ** np.arange(n))[None, :] % k
  one_hot = np.eye(k)[index]  # [k^n, n, k]
  log_pi = jax.nn.log_softmax(flat, axis=-1)  # [n, k]
  probs = jnp.exp(jnp.sum(log_pi[np.arange(n)[None, :], index], axis=-1))
  costs = en.cost_table(
    name, cost, one_hot.reshape(k**n, -1), logits.shape, logits.dtype
  )
  value = probs @ costs
  scores = jnp.asarray(one_hot, logits.dtype) - jnp.exp(log_pi)
  gradient = jnp.einsum("s,snk->nk", probs * (costs - value), scores)
  en.check_finite_results(name, value=value, gradient=gradient)
  return value, gradient.reshape(logits.shape)


# ---------------------------------------------------------------------------
# Single-draw and batch estimators: score function, leave-one-out.
# ---------------------------------------------------------------------------


# Each core is a jitted function of arrays only (the cost enters as its
# table), so that repeated calls outside jit reuse one compilation.


@jax.jit
def score_function_core(costs, probs, scores):
  """Mean and variance of f(x) s(x) from tables [S], [S] and [S, d].

  Also the one-hot references' (:mod:`rgrad.exact._categorical`).
  """
  g = costs[:, None] * scores  # [2^d, d]
  mean = probs @ g
  return mean, probs @ jnp.square(g - mean)


@functools.partial(jax.jit, static_argnames="k")
def leave_one_out_core(costs, probs, scores, p, k):
  """Leave-one-out batch-mean moments; ``p`` gives E s^2 = p (1 - p).

  Holds for one-hot scores too (``p`` the flattened probabilities).
  """
  value = probs @ costs
  centred = costs - value  # H is invariant to a shift of f
  fs = centred[:, None] * scores  # [2^d, d]
  gradient = probs @ fs
  var_f = probs @ jnp.square(centred)
  q = p * (1.0 - p)  # E s^2
  # zeta_1 = Var E[H | x] = Var((f - Ef) s) / 4;
  # zeta_2 = Var H = (E[(f - Ef)^2 s^2] + Var f * p (1 - p)) / 2 (expanding
  # E[(f_x - f_y)^2 (s_x - s_y)^2] over independent x, y, E s = 0).
  zeta_1 = 0.25 * (probs @ jnp.square(fs - gradient))
  zeta_2 = 0.5 * (probs @ jnp.square(fs) + var_f * q)
  variance = (2.0 / (k * (k - 1))) * (2.0 * (k - 2) * zeta_1 + zeta_2)
  return gradient, variance


# ---------------------------------------------------------------------------
# ARM and DisARM: sums over the 3^d cells of the pair (b, b~).
# ---------------------------------------------------------------------------


def _pair_cells(costs, eta):
  """Per cell: its (b, b~) cost difference and per-coordinate cell moments."""
  d = eta.shape[0]
  cells = np.arange(3**d)[:, None] // (3 ** np.arange(d))[None, :] % 3
  lo = jax.nn.sigmoid(-jnp.abs(eta))  # min(p, 1 - p)
  hi = jax.nn.sigmoid(jnp.abs(eta))  # max(p, 1 - p) = sigmoid(|eta|)
  a = 0.5 * jnp.tanh(0.5 * jnp.abs(eta))  # hi - 1/2 = 1/2 - lo
  middle = (eta > 0).astype(eta.dtype)  # b = b~ = 1[p > 1/2] in the middle
  zero, one = jnp.zeros_like(eta), jnp.ones_like(eta)
  b_of = jnp.stack([zero, middle, one])  # [3, d]: b by cell
  bt_of = jnp.stack([one, middle, zero])  # b~ by cell
  col = np.arange(d)[None, :]
  powers = jnp.asarray(2 ** np.arange(d), jnp.int32)
  b_index = jnp.sum(b_of[cells, col].astype(jnp.int32) * powers, axis=1)
  bt_index = jnp.sum(bt_of[cells, col].astype(jnp.int32) * powers, axis=1)
  delta = costs[b_index] - costs[bt_index]  # [3^d]
  # Integrals of (u - 1/2)^k over the cells [0, lo], [lo, hi], [hi, 1].
  m0 = jnp.stack([lo, hi - lo, lo])
  m1 = jnp.stack([-0.5 * lo * hi, zero, 0.5 * lo * hi])
  # int_0^lo (u - 1/2)^2 = (1/8 - a^3)/3 = lo (1/4 + a/2 + a^2)/3.
  edge = lo * (0.25 + 0.5 * a + a * a) / 3.0
  m2 = jnp.stack([edge, 2.0 * a**3 / 3.0, edge])
  length = m0[cells, col]  # [3^d, d]
  ones = jnp.ones((3**d, 1), eta.dtype)
  before = jnp.concatenate([ones, jnp.cumprod(length, 1)[:, :-1]], 1)
  after = jnp.concatenate(
    [jnp.cumprod(length[:, ::-1], 1)[:, :-1][:, ::-1], ones], 1
  )
  others = before * after  # prod_{j != i} length_j
  return cells, delta, length, others, m1[cells, col], m2[cells, col], hi


@jax.jit
def _arm(costs, eta):
  _, delta, length, others, m1, m2, _ = _pair_cells(costs, eta)
  dl = delta[:, None]
  mean = jnp.sum(others * dl * m1, axis=0)
  # E[(g_i - mu_i)^2] cell by cell: int (delta (u - 1/2) - mu)^2 du_i.
  variance = jnp.sum(
    others * (dl**2 * m2 - 2.0 * mean * dl * m1 + mean**2 * length), axis=0
  )
  return mean, variance


@jax.jit
def _disarm(costs, eta):
  cells, delta, length, others, _, _, hi = _pair_cells(costs, eta)
  weight = others[:, 0] * length[:, 0]  # P(cell)
  sign = jnp.asarray(cells - 1, eta.dtype)  # (-1)^{b~_i} 1[b_i != b~_i]
  g = 0.5 * delta[:, None] * sign * hi  # [3^d, d]
  mean = weight @ g
  return mean, weight @ jnp.square(g - mean)


# ---------------------------------------------------------------------------
# The dispatcher.
# ---------------------------------------------------------------------------


def bernoulli_estimator_moments(
  estimator: str,
  cost: Callable[[jax.Array], Any],
  logits: jax.typing.ArrayLike,
  *,
  temperature: jax.typing.ArrayLike | None = None,
  num_samples: int | None = None,
  additive: bool = False,
  num_panels: int = DEFAULT_NUM_PANELS,
) -> EstimatorMoments:
  r"""Exact per-unit mean and variance of a Bernoulli gradient estimator.

  For :math:`b \sim \mathrm{Bernoulli}(\sigma(\eta))`, the mean and the
  per-coordinate variance (the diagonal of the covariance) of one *unit* of
  `estimator`'s estimate of :math:`\nabla_\eta E[f(b)]`:

  * ``"score_function"``: one draw; enumeration, any cost, d <= 12;
  * ``"leave_one_out"``: the mean of a batch of K = `num_samples` >= 2
    draws; enumeration with Hoeffding's U-statistic variance, d <= 12;
  * ``"arm"``, ``"disarm"``: one antithetic pair's estimate; sums over the
    3^d cells, any cost, d <= 10;
  * ``"concrete"``, ``"straight_through"`` (`temperature` required): biased
    for :math:`\nabla E f(b)`; their own mean and variance by quadrature
    over the noise (:mod:`rgrad.exact._relaxed`). ``"concrete"`` needs
    d = 1 or an additive cost; ``"straight_through"`` takes any cost
    differentiable at the states, d <= 12 (any d when additive). The cost
    must be a JAX function (they differentiate it);
  * ``"vimco"``: `cost` is the log-joint, and the unit is the K-sample batch
    estimate of the gradient of *minus* the IWAE bound (see
    :func:`vimco_moments`).

  The unbiased estimators' means equal :func:`bernoulli_expectation`'s
  gradient, a check of the written-out laws. For ARM/DisARM and
  leave-one-out/VIMCO the variance is that of the unit (pair mean, batch
  mean); :func:`rgrad.gradient_moments`' ``variance`` is the effective
  per-row variance, ``group_size`` times it (2 for pairs, K for batches).

  Args:
    estimator: one of the names above (the registry's).
    cost: scalar cost on float 0/1 arrays shaped like `logits`; with
      `additive`, a scalar function :math:`f` of one real coordinate, the
      cost being :math:`F(b) = \sum_i f(b_i)` (relaxations evaluate
      :math:`f` on [0, 1]).
    logits: :math:`\eta`, any shape.
    temperature: the relaxations' temperature, positive.
    num_samples: K, for the batch estimators only.
    additive: whether `cost` is the per-coordinate :math:`f`.
    num_panels: quadrature panels per half-line (relaxations; static).

  Returns:
    :class:`EstimatorMoments` with ``mean`` and ``variance`` shaped like
    `logits`.

  Raises:
    ValueError: an unknown estimator (the message lists them), a missing
      or superfluous `temperature`/`num_samples`, too many logits for the
      method, non-finite logits or results, d > 1 with a non-additive cost
      for ``"concrete"``.
    TypeError: a bad cost or count.
  """
  name = "bernoulli_estimator_moments"
  if not isinstance(estimator, str) or estimator not in ESTIMATORS:
    raise ValueError(
      f"{name}: estimator must be one of {list(ESTIMATORS)}, got "
      f"{estimator!r} (REBAR and RELAX: rgrad.exact.rebar_moments and "
      "relax_moments)."
    )
  _internal.check_estimator_options(
    name, estimator, temperature, num_samples, _BATCH_ESTIMATORS, _UNIT
  )
  if estimator == "vimco":
    if additive:
      raise ValueError(f"{name}: additive does not apply to 'vimco'.")
    return _iwae.vimco_moments(cost, logits, num_samples)
  if estimator == "concrete":
    return _relaxed.concrete_moments(
      cost, logits, temperature, additive=additive, num_panels=num_panels
    )
  if estimator == "straight_through":
    if additive or jnp.size(logits) == 1:
      return _relaxed.straight_through_moments(
        cost, logits, temperature, additive=additive, num_panels=num_panels
      )
    draw = _Draw(name, cost, logits, additive=False)
    return _relaxed.straight_through_general(
      name, cost, draw, temperature, num_panels
    )
  maximum = MAX_PAIR_DIM if estimator in ("arm", "disarm") else None
  draw = _Draw(name, cost, logits, additive, maximum)
  if estimator == "score_function":
    moments = score_function_core(draw.costs, draw.probs, draw.scores)
  elif estimator == "leave_one_out":
    moments = leave_one_out_core(
      draw.costs, draw.probs, draw.scores, draw.p, num_samples
    )
  elif estimator == "arm":
    moments = _arm(draw.costs, draw.eta)
  else:
    moments = _disarm(draw.costs, draw.eta)
  return _moments(name, draw, *moments)
