r"""The costs of Figures 2-3 of Mohamed et al. (2020), and the parameters.

For :math:`X \sim N(\mu, \sigma^2)`:

* ``square``: :math:`f(x; k) = (x - k)^2`,
* ``exp_sq``: :math:`f(x; k) = \exp(-k x^2)`,
* ``cos``:    :math:`f(x; k) = \cos(k x)`.

Their closed-form moments under a Gaussian are in :mod:`rgrad.exact`
(:func:`rgrad.exact.quadratic_moments`, ...), where they check the
quadrature references.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from experiments.configs import estimator_variance as config_lib

# The Gaussian's parameters, in the order of every (mu, sigma) axis.
PARAMS = ("mu", "sigma")


class Cost(NamedTuple):
  r"""A scalar cost :math:`f(x; k)` applied elementwise.

  Attributes:
    fn: ``(x, k) -> f(x; k)``, elementwise in ``x``.
    label: the formula, for plots.
    k_positive: whether ``k`` must be > 0 (``exp_sq``: for k < 0,
      exp(-k x^2) grows like a Gaussian's inverse and the estimators'
      variances become infinite once k <= -1/(4 sigma^2); the paper uses
      k > 0).
  """

  fn: Callable[[jax.Array, jax.Array], jax.Array]
  label: str
  k_positive: bool


COSTS: dict[str, Cost] = {
  "square": Cost(
    fn=lambda x, k: jnp.square(x - k), label="(x - k)²", k_positive=False
  ),
  "exp_sq": Cost(
    fn=lambda x, k: jnp.exp(-k * jnp.square(x)),
    label="exp(-k x²)",
    k_positive=True,
  ),
  "cos": Cost(
    fn=lambda x, k: jnp.cos(k * x), label="cos(k x)", k_positive=False
  ),
}
assert tuple(COSTS) == config_lib.COSTS
