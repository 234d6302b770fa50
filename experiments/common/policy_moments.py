r"""Per-rollout policy gradients as chunks of the moments engine.

Shared by the measurement experiments of :mod:`rgrad.rl`
(``experiments.lqr``, ``experiments.policy_gradient.pendulum``).
:func:`rgrad.diagnostics.moments` streams ``chunk_fn(key, size, args)``
with ``args`` traced, so one compilation serves every problem or policy of
the same shapes: the engine compiles once per (estimator, horizon) and chunk
shape. A chunk of an i.i.d. estimator is ``size`` rollouts' gradients; a
chunk of a batch estimator (leave-one-out, total propagation: the rows of
one call share their batch, one group) is ``size`` independent batch means
of ``batch_size`` rollouts each, vmapped, whose moments are restated per
row (:func:`rgrad.diagnostics.per_row`): the variance is the *effective*
per-rollout variance, ``batch_size`` times that of a batch mean, and the
standard error of the mean is that of independent batch means, which is
honest for dependent rows.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax

from rgrad import diagnostics

# (estimator, args, key, horizon, num_rollouts) -> per-rollout gradients.
GradientsFn = Callable[[str, Any, jax.Array, int, int], Any]


class Chunk(NamedTuple):
  """``chunk_fn`` of :func:`rgrad.diagnostics.moments` (hashable: static).

  Attributes:
    gradients: a module-level :data:`GradientsFn` (compared by identity, so
      the compilation is reused).
    estimator: the name passed to `gradients`.
    horizon: T.
    batch_size: rollouts per unit; above 1 for an estimator whose rows
      share their batch, 1 otherwise.
  """

  gradients: GradientsFn
  estimator: str
  horizon: int
  batch_size: int = 1

  def __call__(self, key, size, args):
    if self.batch_size == 1:
      return self.gradients(self.estimator, args, key, self.horizon, size)

    def batch_mean(k):
      g = self.gradients(self.estimator, args, k, self.horizon, self.batch_size)
      return jax.tree.map(lambda x: x.mean(axis=0), g)

    return jax.vmap(batch_mean)(jax.random.split(key, size))


def moments(
  gradients: GradientsFn,
  estimator: str,
  horizon: int,
  args: Any,
  key: jax.Array,
  *,
  num_samples: int,
  chunk_size: int,
  batch_size: int = 1,
) -> diagnostics.GradientMoments:
  """Moments of `num_samples` rollouts' gradients, per rollout.

  Args:
    gradients, estimator, horizon: see :class:`Chunk`.
    args: traced arguments of `gradients` (the problem, the policy).
    key: consumed.
    num_samples: rollouts; a multiple of `batch_size`.
    chunk_size: rollouts per chunk; a multiple of `batch_size`.
    batch_size: as :class:`Chunk` (1: rows i.i.d.).

  Returns:
    Per-row moments with the fourth-moment standard errors of the variance.
  """
  m = diagnostics.moments(
    Chunk(gradients, estimator, horizon, batch_size),
    key,
    num_samples // batch_size,
    args,
    chunk_size=chunk_size // batch_size,
    higher_moments=True,
  )
  return diagnostics.per_row(m, batch_size) if batch_size > 1 else m
