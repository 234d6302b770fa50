r"""rgrad's estimators over distrax, TFP-on-JAX and NumPyro distributions.

A ``dist_builder`` may return a distribution of any of the three libraries
as it is::

  import distrax
  jac = rgrad.score_function_jacobians(
    f, params, lambda p: distrax.Normal(p["loc"], jnp.exp(p["log_scale"])),
    key, 1000)

Every estimator passes what ``dist_builder`` returns through
:func:`adapt` (in ``rgrad._internal.builder``, the one place where
estimators turn ``dist_builder(params)`` into something they query, and
inside the traced function, so that gradients flow from ``params`` through
the foreign constructor). The families rgrad has (Normal, Bernoulli,
Categorical, Gamma, and Independent of a factorized one over one axis) are
*converted* to rgrad's distribution of the same law, which has every
capability of :data:`rgrad.base.CAPABILITIES` that rgrad's own has (hand
scores, pathwise draws, weak derivatives, reflection, uniform noise,
relaxations); any other family gets the generic
:class:`ForeignDistribution` (the library's sampler, its ``log_prob`` and
the score by ``jax.grad`` of it), and an estimator that needs more than
that raises naming the missing capability. See
:mod:`rgrad.interop._adapters` for the conventions.

Nothing here imports distrax, TensorFlow Probability or NumPyro until an
object of that library is seen; ``pip install rgrad[interop]`` installs all
three (TFP's JAX substrate needs no TensorFlow).

:func:`rgrad.interop.numpyro_elbo.elbo_loss_and_grad` is an ELBO gradient
for a NumPyro model/guide pair with rgrad's baselines (leave-one-out, moving
average) or the score control variate with per-coordinate optimal
coefficients at the non-reparameterized sites, which NumPyro's
``TraceGraph_ELBO`` lacks.
"""

from rgrad.interop._adapters import LIBRARIES
from rgrad.interop._adapters import ForeignDistribution
from rgrad.interop._adapters import ReparameterizedForeignDistribution
from rgrad.interop._adapters import adapt
from rgrad.interop._adapters import library_of

__all__ = (
  "LIBRARIES",
  "ForeignDistribution",
  "ReparameterizedForeignDistribution",
  "adapt",
  "library_of",
)
