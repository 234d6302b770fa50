r"""The types every rgrad estimator module shares, in one place.

optax keeps ``GradientTransformation`` and its Protocols in
``optax/_src/base.py``; rgrad does the same for its Monte Carlo half:

* the **shared estimator signature** (:class:`Estimator`)::

    jacobians = estimator(function, params, dist_builder, key, num_samples)

  ``function`` maps one draw ``x`` to a scalar cost, ``dist_builder(params)``
  returns a distribution, and ``jacobians`` is a pytree like ``params`` whose
  leaves carry a leading ``num_samples`` axis of per-sample estimates of
  :math:`\nabla_\theta E_{p(x;\theta)}[f(x)]` (their mean is the estimate);
* **stateful estimators** (:class:`StatefulEstimator`), in the shape of
  optax's ``GradientTransformation``: a pair of pure functions ``init`` and
  ``estimate``, the state a NamedTuple that ``estimate`` returns updated
  rather than mutates (a moving-average baseline today; learned control
  variates such as RELAX next);
* **distribution capabilities** (:data:`CAPABILITIES`): what an estimator
  needs of a distribution, by method, so that an estimator asks for a
  capability rather than a list of classes, and adding a distribution is one
  class with the methods it can support (the discrete ones: ``uniform_noise``
  for ARM/DisARM, ``relaxation`` for concrete and straight-through,
  ``conditional_relaxation`` for REBAR/RELAX);
* **row structures** (:data:`ROWS`): whether the ``num_samples`` rows an
  estimator returns are independent, antithetic pairs or groups that share a
  statistic (leave-one-out, importance-weighted batches); honest standard
  errors depend on it.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import Protocol

import chex
import jax

Params = chex.ArrayTree
# One draw x -> a scalar cost (any callable: jnp or NumPy functions, partials,
# callable objects, bound methods).
CostFunction = Callable[[jax.Array], jax.typing.ArrayLike]
# params -> a distribution (an rgrad.distributions.Distribution or any object
# with the capabilities the estimator needs).
DistBuilder = Callable[[Params], Any]


class Estimator(Protocol):
  """The shared signature of rgrad's stateless gradient estimators."""

  def __call__(
    self,
    function: CostFunction,
    params: Params,
    dist_builder: DistBuilder,
    key: chex.PRNGKey,
    num_samples: int,
  ) -> Params:
    """Returns a pytree like `params`, leaves ``[num_samples, *leaf.shape]``."""


class EstimatorState(Protocol):
  """Any NamedTuple of arrays (a pytree); see :class:`StatefulEstimator`."""


class InitFn(Protocol):
  def __call__(self, params: Params) -> EstimatorState:
    """The state before the first estimate, given the parameters."""


class EstimateFn(Protocol):
  def __call__(
    self,
    function: CostFunction,
    params: Params,
    dist_builder: DistBuilder,
    key: chex.PRNGKey,
    num_samples: int,
    state: EstimatorState,
  ) -> tuple[Params, EstimatorState]:
    """Per-sample jacobians (as :class:`Estimator`) and the updated state."""


class StatefulEstimator(NamedTuple):
  """An estimator that carries state between calls, as optax's transforms do.

  ``state = init(params)``, then at every step
  ``jacobians, state = estimate(function, params, dist_builder, key,
  num_samples, state)``. Both are pure: ``estimate`` returns a new state and
  leaves its argument as it was, so it runs under ``jax.jit`` and inside
  ``jax.lax.scan``. An estimate must not depend on the draws of its own call
  through the state it reads (that would bias it): the state is updated with
  this call's draws only after they have been used.

  Attributes:
    init: ``params -> state``.
    estimate: ``(function, params, dist_builder, key, num_samples, state) ->
      (jacobians, state)``.
  """

  init: InitFn
  estimate: EstimateFn


# ---------------------------------------------------------------------------
# What an estimator needs of a distribution.
# ---------------------------------------------------------------------------


class Capability(NamedTuple):
  """A capability of a distribution: the methods that provide it.

  Attributes:
    name: the capability's name (a key of :data:`CAPABILITIES`).
    methods: attributes the distribution must have (callables, or for
      ``reparameterized`` a true class attribute).
    summary: what it is for, for error messages.
  """

  name: str
  methods: tuple[str, ...]
  summary: str


CAPABILITIES: dict[str, Capability] = {
  c.name: c
  for c in (
    Capability(
      "sample",
      ("sample",),
      "draws x = sample(key, sample_shape)",
    ),
    Capability(
      "score",
      ("sample_with_noise", "score_from_noise", "batch_score"),
      "hand-derived scores grad_theta log p(x), from the draws or their "
      "noise (score-function estimators)",
    ),
    Capability(
      "reparameterized",
      ("reparameterized", "sample"),
      "draws that are differentiable functions of the parameters "
      "(reparameterized = True; pathwise estimators)",
    ),
    Capability(
      "log_prob",
      ("log_prob",),
      "log p(x), differentiable in the parameters (variational objectives)",
    ),
    Capability(
      "weak_derivatives",
      ("weak_derivatives",),
      "per-coordinate weak derivatives c (p+ - p-) of the density "
      "(measure-valued estimators)",
    ),
    Capability(
      "mean_and_covariance",
      ("mean_and_covariance",),
      "the mean and covariance in closed form (the delta-method control "
      "variate)",
    ),
    Capability(
      "reflection",
      ("reflect",),
      "a measure-preserving reflection x -> x' (antithetic sampling)",
    ),
    Capability(
      "uniform_noise",
      ("sample_with_noise", "sample_from_uniform"),
      "binary draws b = 1[u > sigmoid(-logits)] of uniform noise u "
      "(sample_with_noise returns u, sample_from_uniform(1 - u) the "
      "antithetic draw), the logits the only parameter (ARM, DisARM)",
    ),
    Capability(
      "relaxation",
      ("sample_with_noise", "relaxed_sample"),
      "a continuous relaxation relaxed_sample(noise, temperature) of the "
      "draw made from noise, differentiable in the parameters (concrete / "
      "Gumbel-softmax, straight-through)",
    ),
    Capability(
      "conditional_relaxation",
      ("sample_with_noise", "relaxed_logits", "conditional_relaxed_logits"),
      "the relaxed logits z(u) of the draw b = H(z) and a draw of z given b, "
      "conditional_relaxed_logits(b, v), both differentiable in the logits "
      "(REBAR, RELAX)",
    ),
  )
}

# How the num_samples rows an estimator returns depend on each other:
#   "iid":    independent rows; SE = sqrt(var / n).
#   "pairs":  rows i and i + n/2 form an antithetic pair; pairs are i.i.d.
#   "groups": consecutive groups of `group_size` rows (or the whole batch)
#             share a statistic (leave-one-out baselines, self-normalized
#             importance weights); groups are i.i.d.
# The structure is also what a non-finite cost touches: under jit its row is
# NaN in every leaf ("iid"), both rows of its pair ("pairs"), or every row
# of the batch for the built-in "batch" groups (leave-one-out, DReG), whose
# rows all read every cost (rgrad._internal.poison_non_finite).
ROWS = ("iid", "pairs", "groups")
