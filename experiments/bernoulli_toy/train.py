r"""Training: Adam on theta with one estimator, as one compiled program.

For one target :math:`t` and one seed, a step draws the estimator's rows
from ``fold_in(train_key, step)``, averages them into the gradient estimate
of :math:`\partial_\theta E[(b - t)^2]`, :math:`b \sim
\mathrm{Bernoulli}(\sigma(\theta))`, and takes an Adam step; a stateful
estimator (:class:`rgrad.base.StatefulEstimator`: REBAR, RELAX) carries its
state through the steps. The steps are a ``jax.lax.scan`` (chunks of
``log_every`` steps inside a scan over the logs), the runs are ``jax.vmap``-ed
over seeds and targets, and the whole is jitted once per estimator.

At step 0 and after every chunk the run records theta, :math:`p =
\sigma(\theta)`, the exact loss :math:`E[f] = (1-p) t^2 + p (1-t)^2`, the
mean and variance of ``num_variance_draws`` fresh, independent step
estimates at the current theta (and, for a stateful estimator, the current
state, which these draws do not update), with the standard error of the
variance from the fourth central moment, and the estimator's exact mean and
variance there (:mod:`.references`). The draws use keys ``fold_in(
measure_key, log)``, independent of the training draws.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

import rgrad

# Fields recorded at every log, besides those of the estimator's state.
RECORD_FIELDS = (
  "theta",
  "p",
  "loss",
  "grad_mean",
  "grad_variance",
  "grad_variance_stderr",
)


class Hyper(NamedTuple):
  """The static part of one estimator's program (hashable)."""

  estimator: str
  num_rows: int  # draws the estimator takes per step
  num_steps: int
  log_every: int
  learning_rate: float
  theta_init: float
  num_variance_draws: int


def cost_function(target: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """:math:`f(b) = (b - t)^2` for one draw ``b`` of shape ``[1]``."""
  return lambda b: jnp.sum((b - target) ** 2)


def exact_loss(theta: jax.Array, target: jax.Array) -> jax.Array:
  """:math:`E[f] = (1 - p) t^2 + p (1 - t)^2`, :math:`p = \\sigma(\\theta)`."""
  p = jax.nn.sigmoid(theta)
  return (1.0 - p) * target**2 + p * (1.0 - target) ** 2


def _variance_and_stderr(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Unbiased sample variance of `x` ``[n]`` and its standard error.

  :math:`\\mathrm{Var}(s^2) = (\\mu_4 - \\frac{n-3}{n-1}\\sigma^4)/n`, with the
  fourth central moment and the variance estimated from `x`.
  """
  n = x.shape[0]
  centred = x - jnp.mean(x)
  variance = jnp.sum(centred**2) / (n - 1)
  m4 = jnp.mean(centred**4)
  var_of_var = (m4 - (n - 3) / (n - 1) * variance**2) / n
  return variance, jnp.sqrt(jnp.maximum(var_of_var, 0.0))


# Unit moments at (theta [1], estimator state, target) -> (mean, variance).
ExactMoments = Callable[
  [jax.Array, Any, jax.Array], tuple[jax.Array, jax.Array]
]


def make_train(
  hyper: Hyper,
  *,
  record_state: Callable[[Any], dict[str, jax.Array]] | None = None,
  exact_moments: ExactMoments | None = None,
  units: int = 1,
) -> Callable[[jax.Array, jax.Array], dict[str, Any]]:
  """The jitted program ``(targets [T], seed_keys [S]) -> records``.

  Args:
    hyper: the estimator and the sizes.
    record_state: estimator state -> dict of scalars to record at each log
      (e.g. a learned temperature).
    exact_moments: the exact mean and variance of one *unit* of the
      estimator at the current theta and state (traceable; from
      :mod:`rgrad.exact`, see :mod:`.references`), evaluated in the same
      program at every log.
    units: the independent units a step averages: the step's exact
      variance is the unit variance / `units`.

  Returns:
    A jitted function whose records are a dict of arrays ``[T, S, L]``
    (``L = num_steps / log_every + 1`` logs, step 0 first): the
    :data:`RECORD_FIELDS`, with `exact_moments` ``exact_mean`` and
    ``exact_variance`` (of the step's estimate), and under ``"state"`` the
    fields of `record_state`.
  """
  spec = rgrad.get_estimator(hyper.estimator)
  optimizer = optax.adam(hyper.learning_rate)
  num_logs = hyper.num_steps // hyper.log_every

  def estimate(theta, est_state, target, key):
    """One step's gradient estimate (the mean of its rows), new state."""
    cost = cost_function(target)
    if spec.stateful:
      jac, est_state = spec.fn.estimate(
        cost, theta, rgrad.Bernoulli, key, hyper.num_rows, est_state
      )
    else:
      jac = spec.fn(cost, theta, rgrad.Bernoulli, key, hyper.num_rows)
    chex.assert_shape(jac, (hyper.num_rows, 1))
    return jnp.mean(jac, axis=0), est_state

  def run_one(target, seed_key):
    train_key, measure_key = jax.random.split(seed_key)
    theta = jnp.full((1,), hyper.theta_init)
    est_state = spec.fn.init(theta) if spec.stateful else ()
    carry = (theta, optimizer.init(theta), est_state)

    def step(carry, step_index):
      theta, opt_state, est_state = carry
      key = jax.random.fold_in(train_key, step_index)
      grad, est_state = estimate(theta, est_state, target, key)
      updates, opt_state = optimizer.update(grad, opt_state, theta)
      return (optax.apply_updates(theta, updates), opt_state, est_state), None

    def measure(carry, log_index):
      theta, _, est_state = carry
      keys = jax.random.split(
        jax.random.fold_in(measure_key, log_index), hyper.num_variance_draws
      )
      grads, _ = jax.vmap(lambda k: estimate(theta, est_state, target, k))(
        keys
      )  # [num_variance_draws, 1]
      variance, stderr = _variance_and_stderr(grads[:, 0])
      record = {
        "theta": theta[0],
        "p": jax.nn.sigmoid(theta[0]),
        "loss": exact_loss(theta[0], target),
        "grad_mean": jnp.mean(grads[:, 0]),
        "grad_variance": variance,
        "grad_variance_stderr": stderr,
        "state": record_state(est_state) if record_state else {},
      }
      if exact_moments is not None:
        mean, unit_variance = exact_moments(theta, est_state, target)
        record["exact_mean"] = jnp.reshape(mean, ())
        record["exact_variance"] = jnp.reshape(unit_variance, ()) / units
      return record

    def chunk(carry, log_index):
      # Measure, then take the next `log_every` steps. The measurement is
      # traced once (it holds the exact references, the larger part of the
      # program), so there is one chunk more than needed: the steps after
      # the last measurement are discarded.
      record = measure(carry, log_index)
      steps = log_index * hyper.log_every + jnp.arange(hyper.log_every)
      carry, _ = jax.lax.scan(step, carry, steps)
      return carry, record

    _, records = jax.lax.scan(chunk, carry, jnp.arange(num_logs + 1))
    return records

  over_seeds = jax.vmap(run_one, in_axes=(None, 0))
  over_targets = jax.vmap(over_seeds, in_axes=(0, None))
  return jax.jit(over_targets)
