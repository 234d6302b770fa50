r"""Primitives with hand-derived derivatives.

Every function here comes with its derivative worked out by hand, in closed
form, and written so that both stay finite wherever the result is
representable: for `sigmoid`, `softplus`, `tanh`, `softmax`, `logsumexp` and
the cross-entropy that means :math:`|x|` up to :math:`10^4` even in float32
(tested), while `exp` and its derivative overflow for :math:`x > 88.7` in
float32 (:math:`709.8` in float64) and `log`'s derivative and the negative
powers blow up near 0. The derivatives are the
reference that :mod:`rgrad.chain_rule` and :mod:`rgrad.backprop` compose, and
the test-suite checks every one against `jax.grad`.

The section is organised as follows.

1. Elementwise maps :math:`f: \mathbb{R} \to \mathbb{R}` (exp, log, sin, cos,
   tanh, sigmoid, softplus, relu, powers :math:`x^p`), each with
   :math:`f'(x)`.
2. Vector maps on the last axis: softmax (Jacobian and a Jacobian-free VJP)
   and log-sum-exp.
3. Maps with several arguments: the affine map :math:`Wx + b`, the mean
   squared error, the softmax cross-entropy, and the Gaussian log-density.
   Their partial derivatives come back as a `NamedTuple` with one field per
   argument.
4. A registry: `PRIMITIVES` maps a name to a :class:`Primitive` (value,
   derivative, JVP, VJP, Jacobian and domain) for every unary primitive, so
   that chains can be built from names; :func:`get_primitive` looks one up.

The file is longer than rgrad's other modules on purpose: it is one catalogue,
read top to bottom like a textbook section, and the registry at its end needs
every primitive above it.
"""

import math
import types
from collections.abc import Callable
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

# A Python float, not a jnp array: no computation (and no backend start-up,
# which would forbid a later `jax.distributed.initialize`) at import time, and
# full precision whether or not float64 is switched on after the import.
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)

# ---------------------------------------------------------------------------
# 1. Elementwise maps and their derivatives.
# ---------------------------------------------------------------------------


def exp(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`e^x`."""
  return jnp.exp(x)


def exp_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx} e^x = e^x`."""
  # The exponential is its own derivative (the defining ODE y' = y).
  return jnp.exp(x)


def log(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\log x` for :math:`x > 0`."""
  return jnp.log(x)


def log_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx} \log x = 1/x`."""
  # Inverse-function rule: log is the inverse of exp, so 1 / exp(log x) = 1/x.
  return 1.0 / jnp.asarray(x)


def sin(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\sin x`."""
  return jnp.sin(x)


def sin_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx}\sin x = \cos x`."""
  # From sin(x + h) = sin x cos h + cos x sin h with cos h = 1 - O(h^2).
  return jnp.cos(x)


def cos(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\cos x`."""
  return jnp.cos(x)


def cos_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx}\cos x = -\sin x`."""
  # From cos(x + h) = cos x cos h - sin x sin h.
  return -jnp.sin(x)


def tanh(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\tanh x`."""
  return jnp.tanh(x)


def tanh_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx}\tanh x = 1 - \tanh^2 x = \operatorname{sech}^2 x`.

  Written as :math:`4e/(1+e)^2` with :math:`e = e^{-2|x|}`: the textbook
  :math:`1 - \tanh^2 x` cancels to 0 in float32 once :math:`|x| > 9`, while
  this form keeps full relative precision and cannot overflow.
  """
  # sech^2 x = 4 / (e^x + e^-x)^2 = 4 e^{-2|x|} / (1 + e^{-2|x|})^2.
  e = jnp.exp(-2.0 * jnp.abs(x))
  return 4.0 * e / jnp.square(1.0 + e)


def sigmoid(x: jax.typing.ArrayLike) -> jax.Array:
  r"""The logistic function :math:`\sigma(x) = 1 / (1 + e^{-x})`."""
  # lax.logistic is evaluated without overflow for either sign of x.
  return jax.lax.logistic(x)


def sigmoid_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\sigma'(x) = \sigma(x)(1 - \sigma(x)) = e/(1+e)^2`, :math:`e =
  e^{-|x|}`.

  The product form rounds :math:`1 - \sigma(x)` to 0 in float32 for
  :math:`x > 17`; the symmetric form (:math:`\sigma'` is even) is exact to
  rounding for every :math:`x` and never overflows.
  """
  # sigma(x)(1 - sigma(x)) = e^-x / (1 + e^-x)^2, and sigma' is even in x.
  e = jnp.exp(-jnp.abs(x))
  return e / jnp.square(1.0 + e)


def softplus(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\operatorname{softplus}(x) = \log(1 + e^x)`."""
  # log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}); logaddexp evaluates exactly
  # that, so it neither overflows for x = 1e4 nor rounds to 0 for x = -1e4.
  return jnp.logaddexp(x, 0.0)


def softplus_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx}\log(1 + e^x) = e^x / (1 + e^x) = \sigma(x)`."""
  # Stays finite for large |x| because sigmoid does.
  return sigmoid(x)


def relu(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\max(x, 0)`."""
  # `where` rather than `maximum`: autodiff of maximum splits the tie at 0 and
  # returns 1/2, which is a valid subgradient but not the one we document.
  x = jnp.asarray(x)
  return jnp.where(x > 0, x, jnp.zeros_like(x))


def relu_derivative(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\frac{d}{dx}\max(x, 0) = \mathbb{1}[x > 0]`.

  At :math:`x = 0` relu is not differentiable; its subdifferential is
  :math:`[0, 1]` and we use the subgradient **0** (as `jax.nn.relu` does).
  """
  x = jnp.asarray(x)
  return jnp.where(x > 0, jnp.ones_like(x), jnp.zeros_like(x))


def power(x: jax.typing.ArrayLike, p: float) -> jax.Array:
  r""":math:`x^p` (for non-integer :math:`p` only :math:`x > 0` is real)."""
  return jnp.power(x, p)


def power_derivative(x: jax.typing.ArrayLike, p: float) -> jax.Array:
  r""":math:`\frac{d}{dx} x^p = p\,x^{p-1}`."""
  # Binomial expansion: (x + h)^p = x^p + p x^{p-1} h + O(h^2).
  return p * jnp.power(x, p - 1.0)


def scale(x: jax.typing.ArrayLike, c: float) -> jax.Array:
  r"""The linear map :math:`c\,x` (the chain rule's seed example uses it)."""
  return c * jnp.asarray(x)


def scale_derivative(x: jax.typing.ArrayLike, c: float) -> jax.Array:
  r""":math:`\frac{d}{dx} c\,x = c`."""
  return jnp.full_like(jnp.asarray(x), c)


# ---------------------------------------------------------------------------
# 2. Vector maps on the last axis: softmax and log-sum-exp.
# ---------------------------------------------------------------------------


def softmax(x: jax.typing.ArrayLike) -> jax.Array:
  r"""Softmax over the last axis, :math:`s_i = e^{x_i} / \sum_j e^{x_j}`.

  Shifting by :math:`\max_j x_j` leaves :math:`s` unchanged (it cancels
  between numerator and denominator) and keeps every exponent :math:`\le 0`,
  so nothing overflows.
  """
  x = jnp.asarray(x)
  # The shift is a constant of the function, so no gradient flows through it.
  shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  e = jnp.exp(shifted)
  return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_jacobian(x: jax.typing.ArrayLike) -> jax.Array:
  r"""Jacobian of :func:`softmax`, :math:`\operatorname{diag}(s) - s s^\top`.

  Derivation: :math:`\partial s_i/\partial x_j = s_i(\delta_{ij} - s_j)`,
  from the quotient rule on :math:`e^{x_i} / Z` with
  :math:`\partial Z/\partial x_j = e^{x_j}`.

  Args:
    x: logits, `[..., n]`.

  Returns:
    `[..., n, n]`, symmetric in its last two axes.
  """
  s = softmax(x)
  eye = jnp.eye(s.shape[-1], dtype=s.dtype)
  return s[..., :, None] * eye - s[..., :, None] * s[..., None, :]


def softmax_vjp(x: jax.typing.ArrayLike, v: jax.typing.ArrayLike) -> jax.Array:
  r"""VJP of :func:`softmax` without forming the Jacobian.

  .. math:: v^\top J = v^\top(\operatorname{diag}(s) - s s^\top)
            = s \odot (v - \langle v, s\rangle).

  O(n) time and memory instead of O(n^2). `J` is symmetric, so this is also
  the JVP :math:`J v`.

  Args:
    x: logits, `[..., n]`.
    v: cotangent, `[..., n]`.

  Returns:
    `[..., n]`.
  """
  s = softmax(x)
  return s * (v - jnp.sum(v * s, axis=-1, keepdims=True))


def logsumexp(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\log\sum_i e^{x_i}` over the last axis, computed as
  :math:`m + \log\sum_i e^{x_i - m}` with :math:`m = \max_i x_i`."""
  x = jnp.asarray(x)
  m = jax.lax.stop_gradient(jnp.max(x, axis=-1))
  return m + jnp.log(jnp.sum(jnp.exp(x - m[..., None]), axis=-1))


def logsumexp_grad(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\nabla_x \log\sum_j e^{x_j} = \operatorname{softmax}(x)`.

  Derivation: :math:`\partial_i \log Z = (\partial_i Z)/Z = e^{x_i}/Z`.
  """
  return softmax(x)


# ---------------------------------------------------------------------------
# 3. Maps with several arguments.
# ---------------------------------------------------------------------------


def _check_affine_shapes(x: jax.Array, w: jax.Array, b: jax.Array) -> None:
  if w.ndim != 2:
    raise ValueError(f"affine: w must be [out, in], got shape {w.shape}.")
  if x.ndim < 1 or x.shape[-1] != w.shape[1]:
    raise ValueError(
      f"affine: x must be [..., in] with in = w.shape[1] = {w.shape[1]}, got"
      f" x of shape {x.shape}."
    )
  if b.shape != (w.shape[0],):
    raise ValueError(
      f"affine: b must be [out] = ({w.shape[0]},), got shape {b.shape}."
    )


class AffineGrads(NamedTuple):
  """Derivatives of :func:`affine` with respect to each argument."""

  x: jax.Array
  w: jax.Array
  b: jax.Array


def affine(
  x: jax.typing.ArrayLike, w: jax.typing.ArrayLike, b: jax.typing.ArrayLike
) -> jax.Array:
  r"""The affine map :math:`y = W x + b`, batched over leading axes of `x`.

  Args:
    x: inputs, `[..., in]`.
    w: weights, `[out, in]`.
    b: bias, `[out]`.

  Returns:
    `[..., out]`, i.e. `x @ w.T + b`.

  Raises:
    ValueError: if the shapes do not line up.
  """
  x, w, b = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
  _check_affine_shapes(x, w, b)
  return x @ w.T + b


def affine_jacobians(
  x: jax.typing.ArrayLike, w: jax.typing.ArrayLike, b: jax.typing.ArrayLike
) -> AffineGrads:
  r"""Full Jacobians of :math:`y = Wx + b` for one input vector.

  .. math:: \frac{\partial y_i}{\partial x_k} = W_{ik}, \quad
            \frac{\partial y_i}{\partial W_{jk}} = \delta_{ij} x_k, \quad
            \frac{\partial y_i}{\partial b_j} = \delta_{ij}.

  Args:
    x: one input, `[in]`.
    w: `[out, in]`.
    b: `[out]`.

  Returns:
    :class:`AffineGrads` with `x: [out, in]`, `w: [out, out, in]`,
    `b: [out, out]`.
  """
  x, w, b = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
  _check_affine_shapes(x, w, b)
  if x.ndim != 1:
    raise ValueError(f"affine_jacobians: x must be [in], got {x.shape}.")
  eye = jnp.eye(w.shape[0], dtype=w.dtype)
  return AffineGrads(x=w, w=eye[:, :, None] * x[None, None, :], b=eye)


def affine_vjp(
  x: jax.typing.ArrayLike,
  w: jax.typing.ArrayLike,
  b: jax.typing.ArrayLike,
  cotangent: jax.typing.ArrayLike,
) -> AffineGrads:
  r"""Pulls a cotangent :math:`\bar y` back through :math:`y = Wx + b`.

  Contracting the Jacobians of :func:`affine_jacobians` with :math:`\bar y`,
  and summing over the batch (the parameters are shared by every row):

  .. math:: \bar x = W^\top \bar y, \quad \bar W = \sum_n \bar y_n x_n^\top,
            \quad \bar b = \sum_n \bar y_n.

  Args:
    x: inputs, `[..., in]`.
    w: `[out, in]`.
    b: `[out]`.
    cotangent: :math:`\bar y`, `[..., out]` (same leading axes as `x`).

  Returns:
    :class:`AffineGrads` shaped like `(x, w, b)`.
  """
  x, w, b = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
  cotangent = jnp.asarray(cotangent)
  _check_affine_shapes(x, w, b)
  if cotangent.shape != x.shape[:-1] + (w.shape[0],):
    raise ValueError(
      f"affine_vjp: cotangent must be {x.shape[:-1] + (w.shape[0],)}, got"
      f" {cotangent.shape}."
    )
  flat_x = x.reshape(-1, x.shape[-1])  # [batch, in]
  flat_ct = cotangent.reshape(-1, w.shape[0])  # [batch, out]
  return AffineGrads(
    x=cotangent @ w, w=flat_ct.T @ flat_x, b=jnp.sum(flat_ct, axis=0)
  )


class MeanSquaredErrorGrads(NamedTuple):
  """Gradients of :func:`mean_squared_error`."""

  predictions: jax.Array
  targets: jax.Array


def _check_same_shape(name: str, a: jax.Array, b: jax.Array) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{name}: shapes differ, {a.shape} vs {b.shape}.")


def mean_squared_error(
  predictions: jax.typing.ArrayLike, targets: jax.typing.ArrayLike
) -> jax.Array:
  r""":math:`\frac1N \sum_{i=1}^N (\hat y_i - y_i)^2` over all N elements.

  Raises:
    ValueError: if the shapes differ (no silent broadcasting) or are empty.
  """
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  _check_same_shape("mean_squared_error", predictions, targets)
  if predictions.size == 0:
    raise ValueError("mean_squared_error: empty arrays have no mean.")
  return jnp.mean(jnp.square(predictions - targets))


def mean_squared_error_grads(
  predictions: jax.typing.ArrayLike, targets: jax.typing.ArrayLike
) -> MeanSquaredErrorGrads:
  r""":math:`\partial/\partial\hat y_i = 2(\hat y_i - y_i)/N =
  -\partial/\partial y_i`."""
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  _check_same_shape("mean_squared_error_grads", predictions, targets)
  if predictions.size == 0:
    raise ValueError("mean_squared_error_grads: empty arrays have no mean.")
  # Power rule on each square, times the 1/N of the mean.
  d = 2.0 * (predictions - targets) / predictions.size
  return MeanSquaredErrorGrads(predictions=d, targets=-d)


class SoftmaxCrossEntropyGrads(NamedTuple):
  """Gradients of :func:`softmax_cross_entropy`."""

  logits: jax.Array
  labels: jax.Array


def log_softmax(x: jax.typing.ArrayLike) -> jax.Array:
  r""":math:`\log\operatorname{softmax}(x) = x - \log\sum_j e^{x_j}`."""
  x = jnp.asarray(x)
  return x - logsumexp(x)[..., None]


def softmax_cross_entropy(
  logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> jax.Array:
  r"""Cross-entropy :math:`-\sum_k p_k \log\operatorname{softmax}(z)_k`.

  Targets are **probability vectors** `labels` (one-hot or soft) on the last
  axis, as in `optax.softmax_cross_entropy`; turn integer labels into one-hot
  ones with `jax.nn.one_hot(labels, num_classes)`. Probability targets cover
  both cases with one formula, and the gradient with respect to the targets
  is then defined too.

  Computed through :func:`log_softmax`, which is finite for logits of any
  finite size (no :math:`\log 0` after an underflowing softmax).

  Args:
    logits: :math:`z`, `[..., num_classes]`.
    labels: :math:`p`, `[..., num_classes]`, same shape.

  Returns:
    The loss per example, `[...]`.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  _check_same_shape("softmax_cross_entropy", logits, labels)
  return -jnp.sum(labels * log_softmax(logits), axis=-1)


def softmax_cross_entropy_grads(
  logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> SoftmaxCrossEntropyGrads:
  r"""Hand-derived gradients of :func:`softmax_cross_entropy` per example.

  With :math:`\ell = -\sum_k p_k z_k + (\sum_k p_k)\log\sum_j e^{z_j}`:

  .. math:: \partial\ell/\partial z_i = s_i \textstyle\sum_k p_k - p_i
            \;(= s_i - p_i \text{ when } \sum_k p_k = 1), \qquad
            \partial\ell/\partial p_i = -\log s_i.

  Returns:
    :class:`SoftmaxCrossEntropyGrads`, each `[..., num_classes]`.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  _check_same_shape("softmax_cross_entropy_grads", logits, labels)
  s = softmax(logits)
  total = jnp.sum(labels, axis=-1, keepdims=True)
  return SoftmaxCrossEntropyGrads(
    logits=s * total - labels, labels=-log_softmax(logits)
  )


# ---------------------------------------------------------------------------
# The Gaussian log-density.
# ---------------------------------------------------------------------------


class NormalLogProbGrads(NamedTuple):
  """Elementwise partial derivatives of :math:`\\log N(x; \\mu, \\sigma)`."""

  x: jax.Array
  loc: jax.Array
  scale: jax.Array
  log_scale: jax.Array


def normal_log_prob(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Elementwise Gaussian log-density.

  .. math:: \log N(x; \mu, \sigma) = -\tfrac12 z^2 - \log\sigma
            - \tfrac12\log 2\pi, \qquad z = (x - \mu) / \sigma.

  Args:
    x: points, broadcastable against `loc` and `scale`.
    loc: means :math:`\mu`.
    scale: standard deviations :math:`\sigma > 0`.

  Returns:
    The log-density, with the broadcast shape of the arguments.
  """
  z = (x - loc) / scale
  return -0.5 * jnp.square(z) - jnp.log(scale) - _HALF_LOG_TWO_PI


def normal_log_prob_grads(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike,
) -> NormalLogProbGrads:
  r"""Hand-derived partial derivatives of :func:`normal_log_prob`.

  With :math:`z = (x - \mu)/\sigma` and :math:`\ell = \log N(x; \mu, \sigma)`:

  .. math::
    \partial_x \ell = -z/\sigma, \quad \partial_\mu \ell = z/\sigma, \quad
    \partial_\sigma \ell = (z^2 - 1)/\sigma, \quad
    \partial_{\log\sigma} \ell = z^2 - 1.

  Args:
    x: points, broadcastable against `loc` and `scale`.
    loc: means.
    scale: standard deviations, positive.

  Returns:
    A :class:`NormalLogProbGrads` of arrays with the broadcast shape.
  """
  x, loc, scale = jnp.broadcast_arrays(x, loc, scale)
  z = (x - loc) / scale
  # d/dmu of -z^2/2 is z * (1/sigma); d/dx is its negative.
  d_loc = z / scale
  # d/dsigma of (-z^2/2 - log sigma) = z^2/sigma - 1/sigma.
  d_log_scale = jnp.square(z) - 1.0
  # Chain rule through sigma = exp(log sigma): d/dlog sigma = sigma * d/dsigma.
  return NormalLogProbGrads(
    x=-d_loc, loc=d_loc, scale=d_log_scale / scale, log_scale=d_log_scale
  )


# ---------------------------------------------------------------------------
# 4. The registry of unary primitives.
# ---------------------------------------------------------------------------


class Primitive(NamedTuple):
  r"""A unary primitive with its hand-derived derivative.

  Attributes:
    name: registry name.
    fn: the value, `x -> y`.
    derivative: elementwise primitives: :math:`f'(x)`, shaped like `x`;
      vector primitives: the Jacobian of one vector `[n]` (`[n, n]` for
      softmax, the gradient `[n]` for log-sum-exp).
    jvp: `(x, tangent) -> J tangent`, shaped like `y`.
    vjp: `(x, cotangent) -> cotangent^T J`, shaped like `x`.
    jacobian: `x -> dy/dx` of shape `y.shape + x.shape` for `x` of rank 0 or
      1 (the `jax.jacfwd` layout).
    domain: open interval `(lo, hi)` on which the primitive is finite and
      differentiable (relu: everywhere but its kink at 0; 1/x: its positive
      branch). Random chains are drawn to stay inside it.
    image: `(lo, hi, n) -> (lo', hi')`, an interval that contains
      `fn(x)` for every `x` in `[lo, hi]^n`; used to keep random chains
      inside the domains of the later primitives.
    elementwise: whether `fn` acts on each element separately.
    reduces: whether `fn` maps `[n]` to a scalar (log-sum-exp).
    edge_points: hard inputs at which value and derivative are still finite
      in float64 (0, +-1e4, boundaries of the domain); the gradient checks
      visit them besides random points.
  """

  name: str
  fn: Callable[[jax.Array], jax.Array]
  derivative: Callable[[jax.Array], jax.Array]
  jvp: Callable[[jax.Array, jax.Array], jax.Array]
  vjp: Callable[[jax.Array, jax.Array], jax.Array]
  jacobian: Callable[[jax.Array], jax.Array]
  domain: tuple[float, float]
  image: Callable[[float, float, int], tuple[float, float]]
  elementwise: bool = True
  reduces: bool = False
  edge_points: tuple[float, ...] = ()


def _diagonal_jacobian(d: jax.Array) -> jax.Array:
  # An elementwise map has a diagonal Jacobian: dy_i/dx_j = delta_ij f'(x_i).
  flat = d.reshape(-1)
  return jnp.diag(flat).reshape(d.shape + d.shape)


def elementwise_primitive(
  name: str,
  fn: Callable[[jax.Array], jax.Array],
  derivative: Callable[[jax.Array], jax.Array],
  domain: tuple[float, float] = (-math.inf, math.inf),
  image: Callable[[float, float, int], tuple[float, float]] | None = None,
  edge_points: tuple[float, ...] = (0.0, -1e4, 1e4),
) -> Primitive:
  r"""Wraps an elementwise :math:`f` and :math:`f'` into a :class:`Primitive`.

  An elementwise map has the diagonal Jacobian :math:`\operatorname{diag}
  f'(x)`, so both products reduce to a multiplication:
  JVP :math:`= f'(x)\odot t` and VJP :math:`= f'(x)\odot v`.

  Args:
    name: registry name.
    fn: the value.
    derivative: :math:`f'`, elementwise.
    domain: see :class:`Primitive`.
    image: see :class:`Primitive`; by default `fn` is taken to be increasing.
    edge_points: see :class:`Primitive`.
  """
  if image is None:

    def image(lo, hi, n):
      del n
      return float(fn(lo)), float(fn(hi))

  return Primitive(
    name=name,
    fn=fn,
    derivative=derivative,
    jvp=lambda x, t: derivative(x) * t,
    vjp=lambda x, v: derivative(x) * v,
    jacobian=lambda x: _diagonal_jacobian(derivative(jnp.asarray(x))),
    domain=domain,
    image=image,
    edge_points=edge_points,
  )


def power_primitive(p: float, name: str | None = None) -> Primitive:
  r"""The primitive :math:`x \mapsto x^p`, on :math:`x > 0`."""

  def image(lo, hi, n):
    del n
    a, b = lo**p, hi**p
    return min(a, b), max(a, b)

  return elementwise_primitive(
    name or f"power_{p:g}",
    lambda x: power(x, p),
    lambda x: power_derivative(x, p),
    domain=(0.0, math.inf),
    image=image,
    edge_points=(1e-4, 1.0, 1e4),
  )


def scale_primitive(c: float, name: str | None = None) -> Primitive:
  r"""The primitive :math:`x \mapsto c x`."""

  def image(lo, hi, n):
    del n
    return min(c * lo, c * hi), max(c * lo, c * hi)

  return elementwise_primitive(
    name or f"scale_{c:g}",
    lambda x: scale(x, c),
    lambda x: scale_derivative(x, c),
    image=image,
  )


def _bounded_image(lo, hi, n):
  del lo, hi, n
  return -1.0, 1.0


def _softmax_image(lo, hi, n):
  # s_i = e^{x_i} / sum_j e^{x_j} >= e^lo / (n e^hi).
  return math.exp(lo - hi) / n, 1.0


def _logsumexp_image(lo, hi, n):
  # max_i x_i <= logsumexp(x) <= max_i x_i + log n.
  return lo, hi + math.log(n)


def _make_registry() -> Mapping[str, Primitive]:
  prims = [
    # e^x overflows float64 beyond x ~ 709.
    elementwise_primitive(
      "exp", exp, exp_derivative, edge_points=(0.0, -1e4, 700.0)
    ),
    elementwise_primitive(
      "log",
      log,
      log_derivative,
      domain=(0.0, math.inf),
      edge_points=(1e-300, 1.0, 1e4),
    ),
    elementwise_primitive("sin", sin, sin_derivative, image=_bounded_image),
    elementwise_primitive("cos", cos, cos_derivative, image=_bounded_image),
    elementwise_primitive("tanh", tanh, tanh_derivative),
    elementwise_primitive("sigmoid", sigmoid, sigmoid_derivative),
    elementwise_primitive("softplus", softplus, softplus_derivative),
    elementwise_primitive("relu", relu, relu_derivative),
    power_primitive(2.0, "square"),
    power_primitive(3.0, "cube"),
    power_primitive(0.5, "sqrt"),
    power_primitive(-1.0, "reciprocal"),
    Primitive(
      name="softmax",
      fn=softmax,
      derivative=softmax_jacobian,
      # J is symmetric, so J t and v^T J are the same product.
      jvp=softmax_vjp,
      vjp=softmax_vjp,
      jacobian=softmax_jacobian,
      domain=(-math.inf, math.inf),
      image=_softmax_image,
      elementwise=False,
      edge_points=(0.0, -1e4, 1e4),
    ),
    Primitive(
      name="logsumexp",
      fn=logsumexp,
      derivative=logsumexp_grad,
      jvp=lambda x, t: jnp.sum(logsumexp_grad(x) * t, axis=-1),
      vjp=lambda x, v: jnp.asarray(v)[..., None] * logsumexp_grad(x),
      jacobian=logsumexp_grad,
      domain=(-math.inf, math.inf),
      image=_logsumexp_image,
      elementwise=False,
      reduces=True,
      edge_points=(0.0, -1e4, 1e4),
    ),
  ]
  return types.MappingProxyType({p.name: p for p in prims})


PRIMITIVES: Mapping[str, Primitive] = _make_registry()
"""Read-only mapping from name to every registered unary :class:`Primitive`."""


def get_primitive(name: str) -> Primitive:
  """Looks up a primitive by name.

  Raises:
    ValueError: naming the unknown primitive and listing the known ones.
  """
  try:
    return PRIMITIVES[name]
  except (KeyError, TypeError):
    known = ", ".join(sorted(PRIMITIVES))
    raise ValueError(
      f"Unknown primitive {name!r}; known primitives: {known}."
    ) from None
