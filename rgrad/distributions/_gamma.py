r"""The Gamma distribution, whose pathwise gradient is implicit.

``jax.random.gamma`` differentiates its draws by implicit reparameterization
(Figurnov et al. 2018), so the Gamma has pathwise draws without an explicit
:math:`x = g(\epsilon; \theta)`; its score is derived by hand.
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
  :math:`y \sim \mathrm{Gamma}(\alpha, 1)` from ``jax.random.gamma``, whose
  derivative w.r.t. :math:`\alpha` is the implicit reparameterization
  gradient :math:`dy/d\alpha = -\partial_\alpha F(y;\alpha) / p(y;\alpha)`
  (Figurnov et al. 2018), so the pathwise estimator applies.

  Attributes:
    concentration: :math:`\alpha > 0`, ``[*batch_shape, d]`` (or scalar).
    rate: :math:`\beta > 0`, broadcast against `concentration`.
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
    _base.check_positive(concentration, name, "concentration")
    _base.check_positive(rate, name, "rate")
    object.__setattr__(self, "concentration", concentration)
    object.__setattr__(self, "rate", rate)

  def sample(
    self, key: chex.PRNGKey, sample_shape: _base.SampleShape = ()
  ) -> jax.Array:
    shape = _base.as_sample_shape(sample_shape) + self.concentration.shape
    unit = jax.random.gamma(
      key, self.concentration, shape, dtype=self.concentration.dtype
    )
    return unit / self.rate

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
