r"""The benchmark's problems: a diagonal Gaussian and a Bernoulli, costs.

The gradient of :math:`E_{N(\mu, \mathrm{diag}\,\sigma^2)}[f(x)]` in
``d`` dimensions, for the costs :data:`COST_FUNCTIONS`; which estimators run
on fewer samples (:data:`MEASURE_VALUED`) and which are also compared with a
floor of their own (:data:`OWN_FLOORS`). The discrete estimators (ARM,
DisARM, the relaxations: those that need a capability the Gaussian lacks,
:func:`is_discrete`) run on :math:`E_{\mathrm{Bernoulli}(\sigma(\eta))}
[f(b)]` in the same ``d`` and with the same cost instead, next to the score
function on that problem (:data:`DISCRETE_PROGRAMS`).
"""

import jax
import jax.numpy as jnp

import rgrad
from experiments.configs import benchmark_estimators as config_lib
from rgrad import distributions
from rgrad import testing


def quadratic_cost(x: jax.Array) -> jax.Array:
  """One draw x [d] -> 0.5 |x - 1|^2."""
  return 0.5 * jnp.sum(jnp.square(x - 1.0))


def cos_cost(x: jax.Array) -> jax.Array:
  """One draw x [d] -> sum_i cos(x_i)."""
  return jnp.sum(jnp.cos(x))


# Module-level functions, so that every chunk_fn built from them compares
# equal across calls (the engine's chunk_fn is a static jit argument).
COST_FUNCTIONS = {"quadratic": quadratic_cost, "cos": cos_cost}
assert tuple(COST_FUNCTIONS) == config_lib.COSTS

# The measure-valued estimators evaluate the cost O(d) times per sample: they
# run on `measure_valued_num_samples` and are held to their own floor.
MEASURE_VALUED = ("measure_valued", "measure_valued_uncoupled")
# Estimators compared with a floor of their own as well: name -> that floor.
OWN_FLOORS = {
  "measure_valued": "measure_valued_floor",
  "measure_valued_uncoupled": "measure_valued_floor",
  "delta_method": "delta_method_floor",
  "score_function": "weighted_floor",
  "leave_one_out": "weighted_floor",
  "antithetic_score_function": "weighted_floor",
}


# The programs of the Bernoulli problem that the discrete estimators are
# compared with: its floor (draws and costs), the naive score function and
# rgrad's score function, all on the Bernoulli.
DISCRETE_PROGRAMS = (
  "bernoulli_floor",
  "bernoulli_naive_score_function",
  "bernoulli_score_function",
)
# The problem each program's parameters belong to (Program.problem).
PROBLEMS = ("normal", "bernoulli")


def is_discrete(name: str) -> bool:
  """Whether the registry's estimator `name` runs on the Bernoulli problem."""
  return testing.needs_discrete(rgrad.get_estimator(name))


def normal_builder(params: dict[str, jax.Array]) -> distributions.Normal:
  """The benchmark's distribution, ``N(params["loc"], params["scale"]^2)``."""
  return distributions.Normal(params["loc"], params["scale"])


def initial_params(key: jax.Array, dim: int) -> dict[str, jax.Array]:
  """Random ``loc`` [d] and ``scale`` [d] (log-normal around 1)."""
  k_loc, k_scale = jax.random.split(key)
  return {
    "loc": jax.random.normal(k_loc, (dim,)),
    "scale": jnp.exp(0.3 * jax.random.normal(k_scale, (dim,))),
  }


def bernoulli_builder(params: dict[str, jax.Array]) -> distributions.Bernoulli:
  """The discrete estimators' distribution, ``Bernoulli(params["logits"])``."""
  return distributions.Bernoulli(params["logits"])


def initial_bernoulli_params(key: jax.Array, dim: int) -> dict[str, jax.Array]:
  """Random ``logits`` [d], standard normal."""
  return {"logits": jax.random.normal(key, (dim,))}
