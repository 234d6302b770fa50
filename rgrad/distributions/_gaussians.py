r"""The Gaussians: Normal, LogScaleNormal and MultivariateNormalTriL.

All three are drawn as :math:`x = \mu + A\epsilon` from standard normal
noise :math:`\epsilon` (:math:`A = \mathrm{diag}(\sigma)` or a Cholesky
factor :math:`L`), which gives them pathwise draws, scores from the noise
(:math:`z = \epsilon` exactly), the closed-form mean and covariance of the
delta method and the reflection :math:`x \mapsto 2\mu - x` of antithetic
sampling; the two diagonal ones also have weak derivatives.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad.distributions import _base
from rgrad.primitives import normal_log_prob
from rgrad.primitives import normal_log_prob_grads

_HALF_LOG_TWO_PI = 0.5 * np.log(2.0 * np.pi)


class _StandardNormalNoise:
  """Mixin: Gaussians drawn as ``x = loc + A eps`` from N(0, I) noise."""

  loc: jax.Array

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    raise NotImplementedError

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    """Draws, shape ``[*sample_shape, *batch_shape, *event_shape]``."""
    return self.sample_with_noise(key, sample_shape)[0]

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    """``(loc + A eps, eps)``, ``eps`` standard normal like ``loc``."""
    shape = _base.as_sample_shape(sample_shape) + self.loc.shape
    eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
    return self._from_noise(eps), eps


class _DiagonalGaussian(_StandardNormalNoise, _base.Factorized):
  r"""Shared code of Normal and LogScaleNormal: ``loc + scale * eps``.

  Both have the weak derivatives of Mohamed et al. Table 1 for one
  coordinate (:math:`W \sim` Rayleigh, i.e. Weibull with scale
  :math:`\sqrt2` and shape 2; :math:`M \sim` double-sided Maxwell):

  .. math::
    \partial_\mu E[f] = \frac{1}{\sqrt{2\pi}\,\sigma}
      \big(E f(\mu + \sigma W) - E f(\mu - \sigma W')\big), \qquad
    \partial_\sigma E[f] = \frac{1}{\sigma}
      \big(E f(\mu + \sigma M) - E f(\mu + \sigma \epsilon)\big).
  """

  scale: jax.Array

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    return self.loc + self.scale * eps

  def _scale_constant(self) -> jax.Array:
    """The weak derivative's constant for the second field."""
    raise NotImplementedError

  def weak_derivatives(
    self, key: chex.PRNGKey, num_samples: int, *, coupling: bool = True
  ) -> tuple[jax.Array, tuple[_base.WeakDerivative, ...]]:
    r"""Base draws and, per field, the two parts of its weak derivative.

    With ``coupling=True`` the two parts of each field share random numbers:
    :math:`W' = W`, and :math:`\epsilon = U M` with :math:`U \sim U(0, 1)`
    (a uniform multiple of a double-sided Maxwell draw is standard normal).

    Args:
      key: PRNG key, consumed.
      num_samples: static number of draws.
      coupling: share random numbers between the positive and negative parts.

    Returns:
      ``(base, parts)``: ``base`` ``[num_samples, *shape]`` draws of this
      distribution, and one :class:`~rgrad.distributions.WeakDerivative` per
      field, in the order of ``jax.tree.leaves(self)``.
    """
    shape = self.loc.shape
    dim = math.prod(shape)
    scale = self.scale
    dtype = self.loc.dtype
    k_base, k_mean_pos, k_mean_neg, k_scale_pos, k_scale_neg = jax.random.split(
      key, 5
    )
    del key
    noise_shape = (num_samples, dim)
    base = self.sample(k_base, (num_samples,))

    def rayleigh(k):
      # Rayleigh(1), density w e^{-w^2/2}, by inverting its CDF
      # 1 - e^{-w^2/2}: the law (and the uniform stream) of
      # jax.random.weibull_min(k, sqrt 2, 2), with a square root where
      # weibull_min takes a general power.
      u = jax.random.uniform(k, noise_shape, dtype)
      return jnp.sqrt(-2.0 * jnp.log1p(-u)).reshape((num_samples,) + shape)

    w_pos = rayleigh(k_mean_pos)
    w_neg = w_pos if coupling else rayleigh(k_mean_neg)
    m_pos = jax.random.double_sided_maxwell(
      k_scale_pos, 0.0, 1.0, noise_shape, dtype
    ).reshape((num_samples,) + shape)
    eps_neg = (
      jax.random.uniform(k_scale_neg, noise_shape, dtype).reshape(m_pos.shape)
      * m_pos
      if coupling
      else jax.random.normal(k_scale_neg, noise_shape, dtype).reshape(
        m_pos.shape
      )
    )
    loc_part = _base.WeakDerivative(
      constant=1.0 / (math.sqrt(2.0 * math.pi) * scale),
      positive=self.loc + scale * w_pos,
      negative=self.loc - scale * w_neg,
    )
    scale_part = _base.WeakDerivative(
      constant=self._scale_constant(),
      positive=self.loc + scale * m_pos,
      negative=self.loc + scale * eps_neg,
    )
    return base, (loc_part, scale_part)

  def mean_and_covariance(self) -> tuple[jax.Array, jax.Array]:
    """Mean (shape of a draw) and covariance ``[n, n]`` of the flat draw."""
    # `scale` is a field of Normal and exp(log_scale) for LogScaleNormal, so
    # gradients reach either parameterization.
    return self.loc, jnp.diag(jnp.square(self.scale).reshape(-1))

  def reflect(self, x: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`x' = 2\mu - x`, which has the law of :math:`x` (symmetry).

    Differentiable in the parameters: for :math:`x = \mu + \sigma\epsilon`
    it is :math:`\mu - \sigma\epsilon`, still a reparameterization.
    """
    return 2.0 * self.loc - x


class Normal(_DiagonalGaussian):
  r"""Diagonal Gaussian :math:`N(x; \mu, \mathrm{diag}(\sigma^2))`.

  Reparameterized as :math:`x = \mu + \sigma\epsilon`,
  :math:`\epsilon \sim N(0, I)`. The score reuses the hand-derived partials of
  :func:`rgrad.primitives.normal_log_prob_grads`:

  .. math:: \partial_\mu \log p = z/\sigma, \qquad
            \partial_\sigma \log p = (z^2 - 1)/\sigma, \qquad
            z = (x - \mu)/\sigma.

  Attributes:
    loc: means :math:`\mu`, shape ``[*batch_shape, d]`` (or scalar).
    scale: standard deviations :math:`\sigma > 0`, broadcast against `loc`.
  """

  _fields = ("loc", "scale")
  reparameterized = True
  loc: jax.Array
  scale: jax.Array

  def __init__(self, loc: jax.typing.ArrayLike, scale: jax.typing.ArrayLike):
    name = type(self).__name__
    loc = _base.as_float_array(loc, name, "loc")
    scale = _base.as_float_array(scale, name, "scale")
    loc, scale = _base.broadcast_parameters(name, loc=loc, scale=scale)
    _base.check_finite(loc, name, "loc")
    _base.check_positive(scale, name, "scale")
    _base.check_finite(scale, name, "scale")
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "scale", scale)

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Normal":
    r"""Weighted scores at :math:`x_i = \mu + \sigma\epsilon_i`.

    :math:`z_i = (x_i - \mu)/\sigma = \epsilon_i` exactly, so (see
    :func:`rgrad.primitives.normal_log_prob_grads`) with
    :math:`v_i = w_i/\sigma`:
    :math:`w_i \partial_\mu \log p = v_i \epsilon_i` and
    :math:`w_i \partial_\sigma \log p = v_i (\epsilon_i^2 - 1)`.
    """
    eps = self._check_rows(noise)
    v = 1.0 / self.scale
    if weights is not None:
      v = _internal.leading(self._check_weights(weights, eps.shape[0]), eps) * v
    return Normal._unchecked(loc=v * eps, scale=v * (eps * eps - 1.0))

  def _scale_constant(self) -> jax.Array:
    return 1.0 / self.scale

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _base.sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "Normal":
    r""":math:`\nabla_{(\mu, \sigma)} \log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return Normal._unchecked(loc=grads.loc, scale=grads.scale)


class LogScaleNormal(_DiagonalGaussian):
  r"""Diagonal Gaussian parameterized by :math:`(\mu, \log\sigma)`.

  Same law as :class:`Normal` with ``scale = exp(log_scale)``; the score is
  :math:`\partial_{\log\sigma} \log p = z^2 - 1` (chain rule through
  :math:`\sigma = e^{\log\sigma}`), again from
  :func:`rgrad.primitives.normal_log_prob_grads`.

  Attributes:
    loc: means, shape ``[*batch_shape, d]`` (or scalar).
    log_scale: log standard deviations, broadcast against `loc`.
  """

  _fields = ("loc", "log_scale")
  reparameterized = True
  loc: jax.Array
  log_scale: jax.Array

  def __init__(
    self, loc: jax.typing.ArrayLike, log_scale: jax.typing.ArrayLike
  ):
    name = type(self).__name__
    loc = _base.as_float_array(loc, name, "loc")
    log_scale = _base.as_float_array(log_scale, name, "log_scale")
    loc, log_scale = _base.broadcast_parameters(
      name, loc=loc, log_scale=log_scale
    )
    _base.check_finite(loc, name, "loc")
    _base.check_finite(log_scale, name, "log_scale")
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "log_scale", log_scale)

  @property
  def scale(self) -> jax.Array:
    return jnp.exp(self.log_scale)

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "LogScaleNormal":
    r"""Weighted scores at :math:`x_i = \mu + e^{\log\sigma}\epsilon_i`.

    With :math:`z_i = \epsilon_i` exactly:
    :math:`w_i \partial_\mu \log p = (w_i/\sigma)\, \epsilon_i` and
    :math:`w_i \partial_{\log\sigma} \log p = w_i (\epsilon_i^2 - 1)`.
    """
    eps = self._check_rows(noise)
    d_log_scale = eps * eps - 1.0
    if weights is None:
      return LogScaleNormal._unchecked(
        loc=eps / self.scale, log_scale=d_log_scale
      )
    w = _internal.leading(self._check_weights(weights, eps.shape[0]), eps)
    return LogScaleNormal._unchecked(
      loc=(w / self.scale) * eps, log_scale=w * d_log_scale
    )

  def _scale_constant(self) -> jax.Array:
    # sigma = exp(log sigma): d/dlog sigma = sigma d/dsigma, and sigma times
    # the scale's constant 1/sigma is 1.
    return jnp.ones_like(self.log_scale)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    return _base.sum_event(
      normal_log_prob(x, self.loc, self.scale), len(self.event_shape)
    )

  def score(self, x: jax.typing.ArrayLike) -> "LogScaleNormal":
    r""":math:`\nabla_{(\mu, \log\sigma)} \log p(x)` for one draw `x`."""
    grads = normal_log_prob_grads(self._check_x(x), self.loc, self.scale)
    return LogScaleNormal._unchecked(loc=grads.loc, log_scale=grads.log_scale)


class MultivariateNormalTriL(_StandardNormalNoise, _base.Distribution):
  r"""Full-covariance Gaussian :math:`N(\mu, L L^\top)`, Cholesky-parameterized.

  Reparameterized as :math:`x = \mu + L\epsilon`. Only the lower triangle of
  `scale_tril` is read (the strict upper triangle is ignored by every method,
  so its pathwise gradient and its score are both zero). With
  :math:`z = L^{-1}(x - \mu)`,
  :math:`\log p = -\tfrac12 z^\top z - \sum_i \log L_{ii} - \tfrac d2\log 2\pi`,
  and, since :math:`dz = -L^{-1} dL\, z`,

  .. math:: \nabla_\mu \log p = L^{-\top} z, \qquad
            \nabla_L \log p = \mathrm{tril}\big(L^{-\top}(z z^\top - I)\big)
            = \mathrm{tril}\big((L^{-\top}z) z^\top\big)
              - \mathrm{diag}(1/L_{ii}),

  the last step because :math:`L^{-\top}` is upper triangular with diagonal
  :math:`1/L_{ii}`.

  Attributes:
    loc: means, ``[*batch_shape, d]``.
    scale_tril: lower-triangular factors with positive diagonal,
      ``[*batch_shape, d, d]`` (batch shapes broadcast).
  """

  _fields = ("loc", "scale_tril")
  reparameterized = True
  loc: jax.Array
  scale_tril: jax.Array

  def __init__(
    self, loc: jax.typing.ArrayLike, scale_tril: jax.typing.ArrayLike
  ):
    name = type(self).__name__
    loc = _base.as_float_array(loc, name, "loc")
    scale_tril = _base.as_float_array(scale_tril, name, "scale_tril")
    if loc.ndim < 1:
      raise ValueError(f"{name}: loc must be at least 1-D [..., d], got [].")
    d = loc.shape[-1]
    if scale_tril.ndim < 2 or scale_tril.shape[-2:] != (d, d):
      raise ValueError(
        f"{name}: scale_tril must have shape [..., {d}, {d}] to match loc "
        f"{list(loc.shape)}, got {list(scale_tril.shape)}."
      )
    try:
      batch = jnp.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
    except ValueError as e:
      raise ValueError(
        f"{name}: batch shapes of loc {list(loc.shape)} and scale_tril "
        f"{list(scale_tril.shape)} do not broadcast."
      ) from e
    loc = jnp.broadcast_to(loc, batch + (d,))
    scale_tril = jnp.broadcast_to(scale_tril, batch + (d, d))
    _base.check_finite(loc, name, "loc")
    # Only the lower triangle is read; the strict upper one may hold anything.
    _base.check_finite(jnp.tril(scale_tril), name, "scale_tril")
    _base.check_positive(
      jnp.diagonal(scale_tril, axis1=-2, axis2=-1), name, "diag(scale_tril)"
    )
    object.__setattr__(self, "loc", loc)
    object.__setattr__(self, "scale_tril", scale_tril)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.loc.shape[:-1])

  @property
  def event_shape(self) -> tuple[int, ...]:
    return tuple(self.loc.shape[-1:])

  def _tril(self) -> jax.Array:
    return jnp.tril(self.scale_tril)

  def _whiten(self, x: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Returns ``(L, z)``, ``z = L^{-1}(x - loc)``, L broadcast against x."""
    x = jnp.asarray(x)
    shape = tuple(self.loc.shape)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
      raise ValueError(
        f"{type(self).__name__}: x must have shape [..., *{list(shape)}] "
        f"(batch and event shape), got {list(x.shape)}."
      )
    tril = jnp.broadcast_to(self._tril(), x.shape + x.shape[-1:])
    z = jax.scipy.linalg.solve_triangular(
      tril, (x - self.loc)[..., None], lower=True
    )[..., 0]
    return tril, z

  def mean_and_covariance(self) -> tuple[jax.Array, jax.Array]:
    """Mean ``[d]`` and covariance :math:`L L^T` ``[d, d]`` (no batch)."""
    if self.loc.ndim != 1:
      raise ValueError(
        f"{type(self).__name__}.mean_and_covariance: supported without "
        f"batch dimensions (loc [d]); got loc of shape {list(self.loc.shape)}."
      )
    tril = self._tril()  # The class reads the lower triangle only.
    return self.loc, tril @ tril.T

  def reflect(self, x: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`x' = 2\mu - x` (for :math:`x = \mu + L\epsilon`,
    :math:`\mu - L\epsilon`), which has the law of :math:`x`."""
    return 2.0 * self.loc - x

  def _from_noise(self, eps: jax.Array) -> jax.Array:
    """``loc + L eps``, shape ``[*sample_shape, *batch_shape, d]``."""
    return self.loc + jnp.einsum("...ij,...j->...i", self._tril(), eps)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    tril, z = self._whiten(x)
    log_det = jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)), -1)
    d = self.loc.shape[-1]
    return -0.5 * jnp.sum(jnp.square(z), -1) - log_det - d * _HALF_LOG_TWO_PI

  def score(self, x: jax.typing.ArrayLike) -> "MultivariateNormalTriL":
    r""":math:`\nabla_{(\mu, L)} \log p(x)` for one draw `x` (see class)."""
    return self._score_at(*self._whiten(x))

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "MultivariateNormalTriL":
    r"""Weighted scores at :math:`x_i = \mu + L\epsilon_i`.

    :math:`z_i = L^{-1}(x_i - \mu) = \epsilon_i` exactly, so the whitening
    solve of :meth:`score` is skipped; the rest is the same formula.
    """
    eps = self._check_rows(noise)
    tril = jnp.broadcast_to(self._tril(), eps.shape + eps.shape[-1:])
    return self._weighted(self._score_at(tril, eps), weights)

  def _score_at(
    self, tril: jax.Array, z: jax.Array
  ) -> "MultivariateNormalTriL":
    """The score from ``L`` (broadcast against z) and ``z = L^{-1}(x - mu)``."""
    # L^{-T} z, by a transposed triangular solve rather than an inverse.
    d_loc = jax.scipy.linalg.solve_triangular(
      tril, z[..., None], lower=True, trans="T"
    )[..., 0]
    inv_diag = 1.0 / jnp.diagonal(tril, axis1=-2, axis2=-1)
    d_tril = jnp.tril(d_loc[..., :, None] * z[..., None, :]) - (
      inv_diag[..., :, None] * jnp.eye(z.shape[-1], dtype=z.dtype)
    )
    return MultivariateNormalTriL._unchecked(loc=d_loc, scale_tril=d_tril)
