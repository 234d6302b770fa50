r"""The floors: what an estimator costs at least, as chunk_fns for the engine.

Each floor is a ``chunk_fn`` of :func:`rgrad.diagnostics.stream_moments`,
``(key, size, params) -> per-sample values``, timed like the estimators:

* :class:`Floor` draws the samples and evaluates the cost, no gradient; with
  ``num_evaluations = 4 d`` (the registry's ``cost_evaluations``) it is the
  measure-valued estimators' own floor, with ``builder =
  problem.bernoulli_builder`` the discrete estimators' floor;
* :class:`DeltaMethodFloor` evaluates the cost and the delta method's dense
  :math:`O(d^2)` quadratic control variate;
* :class:`WeightedFloor` reads the ``[n, d]`` draws a second time, as the
  score-function estimators (plain, leave-one-out, antithetic) must: they
  need :math:`f(x)`, a reduction over all coordinates, before weighting any
  coordinate;
* :class:`NaiveScoreFunction`, ``vmap`` of ``jax.grad`` of ``log_prob`` times
  the cost, is what every score-function estimator should beat (on either
  problem, by its ``builder``).

The engine's per-chunk moments of a program's output are part of every
program, so a floor returns leaves shaped like an estimator's two ``[n, d]``
gradients (:func:`like_estimates`) and both sides of a ratio pay the same for
them. The floors are NamedTuples, which compare by their fields, so equal
floors share a compilation (the engine's chunk_fn is a static argument).
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from experiments.benchmark_estimators import problem
from rgrad import control_variates


def like_estimates(
  eps: jax.Array, costs: jax.Array, num_leaves: int = 2
) -> tuple[jax.Array, ...]:
  """A floor's per-sample output, shaped like an estimator's.

  The engine streams the moments of whatever a chunk returns; an estimator
  returns one ``[n, d]`` leaf per parameter (the Gaussian's location and
  scale gradients, the Bernoulli's logits'), so a floor returns as many
  ``[n, d]`` leaves beside its costs, and floor and estimator pay the same
  for the moments. The leaves are the draws' noise ``eps``, not the draws: a
  second consumer of ``x = loc + scale * eps`` lets XLA on CPU recompute the
  sampler's inverse CDF, which would inflate the floor.
  """
  return (eps,) * num_leaves + (costs,)


class Floor(NamedTuple):
  """Draws from the Gaussian and evaluates the cost, no gradient.

  With ``num_evaluations = k > 1``, each draw is also evaluated at ``k - 1``
  shifted copies (distinct inputs, so nothing can be deduplicated): the floor
  of an estimator that evaluates the cost ``k`` times per sample.
  """

  cost: Callable[[jax.Array], jax.Array]
  num_evaluations: int = 1
  builder: Callable[[Any], Any] = problem.normal_builder

  def __call__(self, key: jax.Array, size: int, params: Any) -> Any:
    x, eps = self.builder(params).sample_with_noise(key, (size,))
    # x, eps: [n, d]
    leaves = len(jax.tree.leaves(params))
    if self.num_evaluations == 1:
      return like_estimates(eps, jax.vmap(self.cost)(x), leaves)  # costs [n]
    dim = x.shape[-1]
    shifts = jnp.arange(self.num_evaluations, dtype=x.dtype)[:, None] / dim
    xs = x[:, None, :] + shifts  # [n, k, d]
    costs = jax.vmap(jax.vmap(self.cost))(xs)  # [n, k]
    return like_estimates(eps, costs, leaves)


class DeltaMethodFloor(NamedTuple):
  """Draws, and evaluates the cost and the delta-method control variate.

  The delta method's own floor: no gradient, but the dense quadratic form
  h(x) that it evaluates per sample on top of the cost (built, like the
  estimator builds it, once per call from the traced parameters).
  """

  cost: Callable[[jax.Array], jax.Array]

  def __call__(self, key: jax.Array, size: int, params: Any) -> Any:
    h = control_variates.delta_method_control_variate(
      self.cost, params, problem.normal_builder
    ).value
    x, eps = problem.normal_builder(params).sample_with_noise(key, (size,))
    # x, eps: [n, d]
    costs = jnp.stack([jax.vmap(self.cost)(x), jax.vmap(h)(x)], -1)  # [n, 2]
    return like_estimates(eps, costs)


class WeightedFloor(NamedTuple):
  r"""Draws, evaluates the cost, then weights the noise by the cost.

  The floor of a score-function estimator: its per-sample output
  :math:`f(x)\,\nabla\log p(x)` needs :math:`f(x)`, a reduction over all
  :math:`d` coordinates, before any coordinate can be weighted, so the
  ``[n, d]`` draws are read a second time (the plain floor fuses draw and cost
  into one pass). Here the second pass is the cheapest such product,
  :math:`f(x)\,\epsilon` and :math:`f(x)\,\epsilon^2` for the noise
  :math:`\epsilon` of :math:`x = \mu + \sigma\epsilon`: two ``[n, d]``
  outputs, like the estimator's two leaves, and no score arithmetic. (The
  noise, not the draws: weighting ``x`` makes XLA on CPU recompute the
  sampler's inverse CDF for the second consumer, which would inflate this
  floor.)
  """

  cost: Callable[[jax.Array], jax.Array]

  def __call__(self, key: jax.Array, size: int, params: Any) -> Any:
    x, eps = problem.normal_builder(params).sample_with_noise(key, (size,))
    # x, eps: [n, d]
    costs = jax.vmap(self.cost)(x)[:, None]  # [n, 1]
    return costs * eps, costs * jnp.square(eps)  # [n, d] each


class NaiveScoreFunction(NamedTuple):
  """The score function by automatic differentiation of log_prob.

  Per-sample values like ``params`` (``[n, d]`` per leaf), from the same
  draws as :func:`rgrad.score_function_jacobians` with the same key.
  """

  cost: Callable[[jax.Array], jax.Array]
  builder: Callable[[Any], Any] = problem.normal_builder

  def __call__(self, key: jax.Array, size: int, params: Any) -> Any:
    builder = self.builder
    xs = jax.lax.stop_gradient(builder(params).sample(key, (size,)))
    costs = jax.vmap(self.cost)(xs)  # [n]
    grad_log_prob = jax.grad(lambda p, x: builder(p).log_prob(x))
    scores = jax.vmap(grad_log_prob, in_axes=(None, 0))(params, xs)
    return jax.tree.map(lambda s: s * costs[:, None].astype(s.dtype), scores)
