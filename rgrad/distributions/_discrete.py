r"""The discrete distributions, Bernoulli and Categorical.

Their draws are step functions of the logits, so they have no pathwise
sampler (``reparameterized = False``): the score function estimators are the
ones that apply.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.distributions import _base


class Bernoulli(_base.Factorized):
  r"""Independent Bernoulli variables with logits :math:`\eta`.

  :math:`\log p(x) = x\eta - \mathrm{softplus}(\eta)` for :math:`x \in \{0,1\}`,
  so :math:`\partial_\eta \log p(x) = x - \sigma(\eta)`. Draws are floats (0.0
  or 1.0) so that costs can be written arithmetically; they are not
  differentiable in :math:`\eta` (``reparameterized = False``).

  Every draw is made from uniform noise :math:`u \sim U(0, 1)` of its shape,

  .. math:: b = H(z), \qquad z = \eta + \log u - \log(1 - u), \qquad
            \text{i.e. } b = 1[u > \sigma(-\eta)],

  (:math:`z` is logistic with location :math:`\eta`, so
  :math:`P(b = 1) = \sigma(\eta)`). ``sample`` and ``sample_with_noise``
  share that route, so the noise ``u`` is what the antithetic estimators
  (ARM, DisARM: :math:`1 - u`) and the relaxations (concrete, REBAR, RELAX:
  :math:`z`) are functions of. The uniforms lie in the open interval
  :math:`(0, 1)` (the smallest is the dtype's ``tiny``), so :math:`z` is
  finite.

  Relaxations (differentiable in :math:`\eta`, the noise held fixed):

  * :meth:`relaxed_logits`: :math:`z(u)` above;
  * :meth:`conditional_relaxed_logits`: :math:`\tilde z \sim p(z \mid b)`
    from a second uniform :math:`v` (Tucker et al. 2017, Appendix A);
  * :meth:`relaxed_sample`: the binary concrete draw
    :math:`\sigma(z / \tau)` (Maddison et al. 2017).

  Attributes:
    logits: ``[*batch_shape, d]`` (or scalar), finite.

  References:
    Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017,
    https://arxiv.org/abs/1611.00712.
    Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR. NeurIPS 2017,
    https://arxiv.org/abs/1703.07370 (Appendix A).
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    logits = _base.as_float_array(logits, type(self).__name__, "logits")
    # An infinite logit makes log_prob inf - inf = NaN at its likely value.
    _base.check_finite(logits, type(self).__name__, "logits")
    object.__setattr__(self, "logits", logits)

  @property
  def probs(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    """Draws ``[*sample_shape, *logits.shape]`` (see sample_with_noise)."""
    return self.sample_with_noise(key, sample_shape)[0]

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    r"""``(b, u)``: uniforms ``u`` and the draws :math:`1[u > \sigma(-\eta)]`.

    ``u ~ U(tiny, 1)`` (the dtype's smallest normal number to 1), so that
    :math:`\log u` and :math:`\log(1 - u)` are finite.
    """
    shape = _base.as_sample_shape(sample_shape) + self.logits.shape
    dtype = self.logits.dtype
    u = jax.random.uniform(
      key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0
    )
    return self.sample_from_uniform(u), u

  def sample_from_uniform(self, u: jax.typing.ArrayLike) -> jax.Array:
    r"""The draw :math:`b = 1[u > \sigma(-\eta)]` made from uniforms ``u``.

    ``u`` is ``[..., *logits.shape]``; ``1 - u`` gives the antithetic draw of
    ARM and DisARM. No gradient flows (a draw is a step function).
    """
    u = self._check_noise(u, "u")
    threshold = jax.nn.sigmoid(-jax.lax.stop_gradient(self.logits))
    return (u > threshold).astype(self.logits.dtype)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    # x * eta - softplus(eta): finite for any logits, unlike log(sigmoid).
    values = x * self.logits - jax.nn.softplus(self.logits)
    return _base.sum_event(values, len(self.event_shape))

  def score(self, x: jax.typing.ArrayLike) -> "Bernoulli":
    x = self._check_x(x)
    return Bernoulli._unchecked(logits=x - jax.nn.sigmoid(self.logits))

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Bernoulli":
    r"""Weighted scores :math:`w_i (b_i - \sigma(\eta))` of ``noise``'s draws.

    ``noise`` is the uniforms ``u`` of :meth:`sample_with_noise`
    (``[num_samples, *logits.shape]``); the draws :math:`b_i` are recomputed
    from them (no gradient flows through them).
    """
    u = self._check_rows(noise)
    scores = self.sample_from_uniform(u) - jax.nn.sigmoid(self.logits)
    if weights is not None:
      weights = self._check_weights(weights, u.shape[0])
      scores = scores * _internal.leading(weights, scores)
    return Bernoulli._unchecked(logits=scores)

  def relaxed_logits(self, u: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`z = \eta + \log u - \log(1 - u)`; the draw is :math:`H(z)`.

    Differentiable in the logits (:math:`\partial z / \partial \eta = 1`);
    ``u`` (``[..., *logits.shape]``, in (0, 1)) is data.
    """
    u = jax.lax.stop_gradient(self._check_noise(u, "u"))
    return self.logits + jnp.log(u) - jnp.log1p(-u)

  def conditional_relaxed_logits(
    self, b: jax.typing.ArrayLike, v: jax.typing.ArrayLike
  ) -> jax.Array:
    r"""A draw :math:`\tilde z \sim p(z \mid b)` of the relaxed logits.

    Given the draw :math:`b` and fresh uniforms :math:`v \sim U(0, 1)`, with
    :math:`p = \sigma(\eta)` (Tucker et al. 2017, Appendix A),

    .. math:: u' = \begin{cases} (1 - p) + v p & b = 1 \\
                                  v (1 - p) & b = 0 \end{cases}, \qquad
              \tilde z = \eta + \log u' - \log(1 - u'),

    i.e. :math:`u'` is uniform on the part of (0, 1) where the draw is
    :math:`b`, so :math:`H(\tilde z) = b` and, mixed over
    :math:`b \sim p(b)`, :math:`\tilde z` has the law of
    :meth:`relaxed_logits`. Gradients flow through :math:`p` (``b`` and ``v``
    are data). Written with :math:`\log \sigma(\pm\eta)` and ``log1p``:
    :math:`b = 1`: :math:`\log u' = \log(1 - p(1 - v))`,
    :math:`\log(1 - u') = \log p + \log(1 - v)`; :math:`b = 0`:
    :math:`\log u' = \log v + \log(1 - p)`,
    :math:`\log(1 - u') = \log(1 - v(1 - p))`.

    Args:
      b: draws ``[..., *logits.shape]`` (0.0 or 1.0).
      v: uniforms in (0, 1), the shape of ``b``.

    Returns:
      :math:`\tilde z`, the shape of ``b``.
    """
    b = jax.lax.stop_gradient(self._check_noise(b, "b"))
    v = jax.lax.stop_gradient(self._check_noise(v, "v"))
    if b.shape != v.shape:
      raise ValueError(
        f"{type(self).__name__}.conditional_relaxed_logits: b and v must "
        f"have the same shape, got {list(b.shape)} and {list(v.shape)}."
      )
    eta = self.logits
    p = jax.nn.sigmoid(eta)
    one = b > 0.5
    log_u = jnp.where(
      one, jnp.log1p(-p * (1.0 - v)), jnp.log(v) + jax.nn.log_sigmoid(-eta)
    )
    log_1mu = jnp.where(
      one, jax.nn.log_sigmoid(eta) + jnp.log1p(-v), jnp.log1p(-v * (1.0 - p))
    )
    return eta + log_u - log_1mu

  def relaxed_sample(
    self, noise: jax.typing.ArrayLike, temperature: jax.typing.ArrayLike
  ) -> jax.Array:
    r"""The binary concrete draw :math:`\sigma(z(u) / \tau)` in (0, 1).

    :math:`z(u)` is :meth:`relaxed_logits`; as :math:`\tau \to 0` it
    tends to the draw :math:`H(z)` (Maddison et al. 2017, Section 3.3).

    Args:
      noise: the uniforms ``u`` of :meth:`sample_with_noise`.
      temperature: :math:`\tau`, a positive finite scalar.
    """
    tau = _internal.check_positive_scalar(
      temperature, f"{type(self).__name__}.relaxed_sample"
    )
    z = self.relaxed_logits(noise)
    return jax.nn.sigmoid(z / tau.astype(z.dtype))

  def _check_noise(self, value: jax.typing.ArrayLike, what: str) -> jax.Array:
    """`value` as an array of shape ``[..., *logits.shape]``."""
    value = jnp.asarray(value)
    shape = self._shape
    if (
      value.ndim < len(shape) or value.shape[value.ndim - len(shape) :] != shape
    ):
      raise ValueError(
        f"{type(self).__name__}: {what} must have shape [..., *{list(shape)}] "
        f"(the shape of the logits), got {list(value.shape)}."
      )
    return value


class Categorical(_base.Distribution):
  r"""Categorical over :math:`\{0, \dots, k-1\}` with logits :math:`\eta`.

  :math:`\log p(x) = \eta_x - \mathrm{logsumexp}(\eta)`, so
  :math:`\nabla_\eta \log p(x) = e_x - \mathrm{softmax}(\eta)`. Draws are
  integer indices (event shape ``()``); ``reparameterized = False``.

  Attributes:
    logits: ``[*batch_shape, k]``, finite or ``-inf`` (a category that is
      never drawn), at least one finite per distribution.
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    name = type(self).__name__
    logits = _base.as_float_array(logits, name, "logits")
    if logits.ndim < 1 or logits.shape[-1] < 1:
      raise ValueError(
        f"{name}: logits must have shape [..., k] with k >= 1, got "
        f"{list(logits.shape)}."
      )
    # -inf masks a category (it is never drawn); NaN and +inf make the
    # softmax NaN, as does a distribution whose every logit is -inf.
    _base.check_finite(logits, name, "logits", allow_negative_infinity=True)
    concrete = _internal.concrete(logits)
    if concrete is not None and not np.isfinite(concrete).any(-1).all():
      raise ValueError(
        f"{name}: logits must have at least one finite entry per "
        "distribution (all -inf leaves nothing to draw)."
      )
    object.__setattr__(self, "logits", logits)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.logits.shape[:-1])

  @property
  def event_shape(self) -> tuple[int, ...]:
    return ()

  @property
  def probs(self) -> jax.Array:
    return jax.nn.softmax(self.logits, axis=-1)

  def _check_x(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise TypeError(
        f"{type(self).__name__}: x must hold integer category indices, got "
        f"dtype {x.dtype}."
      )
    batch = self.batch_shape
    if x.ndim < len(batch) or x.shape[x.ndim - len(batch) :] != batch:
      raise ValueError(
        f"{type(self).__name__}: x must have shape [..., *{list(batch)}] "
        f"(batch shape), got {list(x.shape)}."
      )
    return x

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    shape = _base.as_sample_shape(sample_shape) + self.batch_shape
    logits = jax.lax.stop_gradient(self.logits)
    return jax.random.categorical(key, logits, axis=-1, shape=shape)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    log_probs = jax.nn.log_softmax(self.logits, axis=-1)
    log_probs = jnp.broadcast_to(log_probs, x.shape + log_probs.shape[-1:])
    return jnp.take_along_axis(log_probs, x[..., None], axis=-1)[..., 0]

  def score(self, x: jax.typing.ArrayLike) -> "Categorical":
    x = self._check_x(x)
    k = self.logits.shape[-1]
    one_hot = jax.nn.one_hot(x, k, dtype=self.logits.dtype)
    return Categorical._unchecked(logits=one_hot - self.probs)


class OneHotCategorical(_base.Distribution):
  r"""Categorical over the :math:`k` one-hot vectors, logits :math:`\eta`.

  The draw is a float vector :math:`x \in \{e_1, \dots, e_k\}` (event shape
  ``(k,)``), so that costs, relaxations and straight-through estimators can
  treat it as a point of the simplex; :class:`Categorical` draws the
  integer index instead. :math:`\log p(x) = x \cdot
  \mathrm{log\_softmax}(\eta)` and :math:`\nabla_\eta \log p(x) = x -
  \mathrm{softmax}(\eta)`; ``reparameterized = False``.

  Draws use the Gumbel-max trick: with Gumbel noise :math:`g` of the shape
  of the logits, :math:`x = \mathrm{one\_hot}(\arg\max_j (\eta_j + g_j))`
  (``sample`` and ``sample_with_noise`` share that route), and the concrete
  (Gumbel-softmax) relaxation of the same draw is
  :math:`\mathrm{softmax}((\eta + g)/\tau)` (:meth:`relaxed_sample`), which
  tends to :math:`x` as :math:`\tau \to 0`.

  Attributes:
    logits: ``[*batch_shape, k]``, finite (unlike :class:`Categorical`, no
      ``-inf`` masking: :math:`0 \cdot (-\infty)` would make ``log_prob``
      NaN at every draw).

  References:
    Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017,
    https://arxiv.org/abs/1611.00712.
    Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax.
    ICLR 2017, https://arxiv.org/abs/1611.01144.
  """

  _fields = ("logits",)
  reparameterized = False
  logits: jax.Array

  def __init__(self, logits: jax.typing.ArrayLike):
    name = type(self).__name__
    logits = _base.as_float_array(logits, name, "logits")
    if logits.ndim < 1 or logits.shape[-1] < 1:
      raise ValueError(
        f"{name}: logits must have shape [..., k] with k >= 1, got "
        f"{list(logits.shape)}."
      )
    _base.check_finite(logits, name, "logits")
    object.__setattr__(self, "logits", logits)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.logits.shape[:-1])

  @property
  def event_shape(self) -> tuple[int, ...]:
    return tuple(self.logits.shape[-1:])

  @property
  def probs(self) -> jax.Array:
    return jax.nn.softmax(self.logits, axis=-1)

  def _check_x(self, x: jax.typing.ArrayLike, what: str = "x") -> jax.Array:
    x = jnp.asarray(x)
    shape = tuple(self.logits.shape)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
      raise ValueError(
        f"{type(self).__name__}: {what} must have shape [..., *{list(shape)}] "
        f"(batch shape and k), got {list(x.shape)}."
      )
    return x

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    """One-hot draws ``[*sample_shape, *batch_shape, k]`` (floats)."""
    return self.sample_with_noise(key, sample_shape)[0]

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    r"""``(x, g)``: Gumbel noise and the Gumbel-max draw.

    :math:`g_j` i.i.d. standard Gumbel, the shape of the logits, and
    :math:`x = \mathrm{one\_hot}(\arg\max_j(\eta_j + g_j))`.
    """
    shape = _base.as_sample_shape(sample_shape) + tuple(self.logits.shape)
    g = jax.random.gumbel(key, shape, self.logits.dtype)
    return self._from_gumbel(g), g

  def _from_gumbel(self, g: jax.Array) -> jax.Array:
    logits = jax.lax.stop_gradient(self.logits)
    k = self.logits.shape[-1]
    return jax.nn.one_hot(jnp.argmax(logits + g, axis=-1), k, dtype=g.dtype)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return jnp.sum(x * jax.nn.log_softmax(self.logits, axis=-1), axis=-1)

  def score(self, x: jax.typing.ArrayLike) -> "OneHotCategorical":
    x = self._check_x(x)
    return OneHotCategorical._unchecked(logits=x - self.probs)

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "OneHotCategorical":
    r"""Weighted scores :math:`w_i (x_i - \mathrm{softmax}(\eta))`.

    :math:`x_i` is the Gumbel-max draw of the Gumbel noise ``noise[i]``.
    """
    g = self._check_rows(noise)
    scores = jax.lax.stop_gradient(self._from_gumbel(g)) - self.probs
    if weights is not None:
      weights = self._check_weights(weights, g.shape[0])
      scores = scores * _internal.leading(weights, scores)
    return OneHotCategorical._unchecked(logits=scores)

  def relaxed_sample(
    self, noise: jax.typing.ArrayLike, temperature: jax.typing.ArrayLike
  ) -> jax.Array:
    r"""The Gumbel-softmax draw :math:`\mathrm{softmax}((\eta + g)/\tau)`.

    Differentiable in the logits (the Gumbel noise ``g`` of
    :meth:`sample_with_noise` is data); a point of the open simplex that
    tends to the one-hot draw as :math:`\tau \to 0`.

    Args:
      noise: the Gumbel noise ``g``, ``[..., *batch_shape, k]``.
      temperature: :math:`\tau`, a positive finite scalar.
    """
    tau = _internal.check_positive_scalar(
      temperature, f"{type(self).__name__}.relaxed_sample"
    )
    g = jax.lax.stop_gradient(self._check_x(noise, "noise"))
    return jax.nn.softmax((self.logits + g) / tau.astype(g.dtype), axis=-1)
