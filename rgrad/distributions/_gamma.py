r"""The Gamma distribution, whose pathwise gradient is implicit.

``jax.random.loggamma`` differentiates its draws by implicit
reparameterization (Figurnov et al. 2018), so the Gamma has pathwise draws
without an explicit :math:`x = g(\epsilon; \theta)`; its score is derived by
hand.
"""

import chex
import jax
import jax.numpy as jnp

from rgrad.distributions import _base


class Gamma(_base.Factorized):
  r"""Independent Gamma variables, shape :math:`\alpha`, rate :math:`\beta`.

  .. math:: \log p(x) = (\alpha - 1)\log x - \beta x + \alpha\log\beta
            - \log\Gamma(\alpha),

  .. math:: \partial_\alpha \log p = \log x + \log\beta - \psi(\alpha),
            \qquad \partial_\beta \log p = \alpha/\beta - x,

  with :math:`\psi` the digamma function. Draws are :math:`x = y/\beta`,
  :math:`y \sim \mathrm{Gamma}(\alpha, 1)`, whose derivative w.r.t.
  :math:`\alpha` is the implicit reparameterization gradient
  :math:`dy/d\alpha = -\partial_\alpha F(y;\alpha) / p(y;\alpha)`
  (Figurnov et al. 2018), so the pathwise estimator applies.

  Small shapes: for :math:`\alpha \ll 1` most of the mass of :math:`y` is
  below the smallest float (in float32, :math:`\alpha = 0.01` draws exact
  zeros about a third of the time), where :math:`\log x = -\infty`. rgrad
  keeps such parameters usable rather than refuse them: :math:`\log y` is
  drawn in log space (``jax.random.loggamma``, accurate for any
  :math:`\alpha`) and is the noise of :meth:`sample_with_noise`, so the
  score from the noise, :math:`\partial_\alpha \log p = \log y -
  \psi(\alpha)`, stays finite where the draw :math:`x = e^{\log y}/\beta`
  is 0, and the pathwise derivative :math:`dx/d\alpha = x\, d\log y/d\alpha`
  is 0 there. Only :meth:`score` at a draw that is exactly 0 is
  :math:`-\infty` (as it is, mathematically). The draws are those of
  ``jax.random.gamma`` with the same key, to rounding.

  Attributes:
    concentration: :math:`\alpha > 0`, finite, ``[*batch_shape, d]`` (or
      scalar).
    rate: :math:`\beta > 0`, finite, broadcast against `concentration`.
  """

  _fields = ("concentration", "rate")
  reparameterized = True
  concentration: jax.Array
  rate: jax.Array

  def __init__(
    self,
    concentration: jax.typing.ArrayLike,
    rate: jax.typing.ArrayLike,
  ):
    name = type(self).__name__
    concentration = _base.as_float_array(concentration, name, "concentration")
    rate = _base.as_float_array(rate, name, "rate")
    concentration, rate = _base.broadcast_parameters(
      name, concentration=concentration, rate=rate
    )
    for field, value in (("concentration", concentration), ("rate", rate)):
      _base.check_positive(value, name, field)
      _base.check_finite(value, name, field)
    object.__setattr__(self, "concentration", concentration)
    object.__setattr__(self, "rate", rate)

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    return self.sample_with_noise(key, sample_shape)[0]

  def sample_with_noise(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> tuple[jax.Array, jax.Array]:
    r"""``(x, log y)``: the draws and the logs of their unit-rate parts.

    :math:`x = e^{\log y}/\beta` with :math:`\log y` from
    ``jax.random.loggamma``; :math:`x` may underflow to 0, :math:`\log y`
    does not.
    """
    shape = _base.as_sample_shape(sample_shape) + self.concentration.shape
    log_unit = jax.random.loggamma(
      key, self.concentration, shape, dtype=self.concentration.dtype
    )
    return jnp.exp(log_unit) / self.rate, log_unit

  def score_from_noise(
    self,
    noise: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
  ) -> "Gamma":
    r"""Weighted scores at :math:`x_i = e^{\log y_i}/\beta`, from the noise.

    :math:`\partial_\alpha \log p = \log x + \log\beta - \psi(\alpha) =
    \log y - \psi(\alpha)`, finite even where :math:`x` underflows to 0.
    """
    log_unit = self._check_rows(noise)
    a, b = self.concentration, self.rate
    scores = Gamma._unchecked(
      concentration=log_unit - jax.scipy.special.digamma(a),
      rate=a / b - jnp.exp(log_unit) / b,
    )
    return self._weighted(scores, weights)

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._check_x(x)
    a, b = self.concentration, self.rate
    # xlogy keeps (alpha - 1) log x at 0 for alpha = 1, x = 0.
    values = (
      jax.scipy.special.xlogy(a - 1.0, x)
      - b * x
      + a * jnp.log(b)
      - jax.scipy.special.gammaln(a)
    )
    return _base.sum_event(values, len(self.event_shape))

  def score(self, x: jax.typing.ArrayLike) -> "Gamma":
    x = self._check_x(x)
    a, b = self.concentration, self.rate
    return Gamma._unchecked(
      concentration=jnp.log(x) + jnp.log(b) - jax.scipy.special.digamma(a),
      rate=a / b - x,
    )
