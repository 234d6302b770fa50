r"""Exact references along the runs, from :mod:`rgrad.exact`.

At every logged theta the run is compared with

* the true gradient :math:`\partial_\theta E[f] = p (1 - p) ((1-t)^2 - t^2)
  = p (1 - p)(1 - 2t)` (closed form, :func:`exact_gradient`);
* the estimator's exact mean and variance at that theta (and state), from
  :func:`rgrad.exact.bernoulli_estimator_moments` (enumeration of b and
  quadrature over the uniform noise; it shares no code with the
  estimators). It gives the moments of one *unit* (one draw; one pair for
  ARM/DisARM; the K-draw batch mean for leave-one-out); a step averages
  ``units`` independent units, so the step's exact variance is the unit
  variance divided by ``units`` (:mod:`.train`) and its mean is the unit
  mean. The relaxations' means are their own (biased) means, not the true
  gradient.

The references are JAX functions, so they are evaluated inside the training
program at every log (:func:`exact_moments_fn`), vmapped with the runs;
called one theta at a time outside ``jit`` they would take seconds each.

REBAR's and RELAX's exact moments take their current control (temperature,
scale and, for RELAX, the network) from their state.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rgrad
from experiments.bernoulli_toy import train
from rgrad import exact as exact_lib

# Estimators whose unit moments rgrad.exact.bernoulli_estimator_moments
# computes at any theta, without state.
STATELESS = (
  "score_function",
  "leave_one_out",
  "arm",
  "disarm",
  "concrete",
  "straight_through",
)
_RELAXATIONS = ("concrete", "straight_through")


def exact_gradient(theta: np.ndarray, target: np.ndarray) -> np.ndarray:
  """:math:`p (1 - p)(1 - 2t)`, the true gradient (broadcasts)."""
  p = 1.0 / (1.0 + np.exp(-np.asarray(theta, np.float64)))
  return p * (1.0 - p) * (1.0 - 2.0 * np.asarray(target, np.float64))


def has_exact(name: str) -> bool:
  """Whether the runs of `name` get exact moments."""
  return name in STATELESS or name in ("rebar", "relax")


def exact_note(name: str) -> str | None:
  """Why `name` has no exact curve (None when it has one)."""
  if has_exact(name):
    return None
  return f"no exact reference for {name!r} in rgrad.exact; measured only"


def registry_temperature(name: str) -> float:
  """The temperature the registry entry of `name` runs with."""
  fn = rgrad.get_estimator(name).fn
  keywords = getattr(fn, "keywords", None) or {}
  if "temperature" not in keywords:
    raise ValueError(f"the registry entry {name!r} states no temperature.")
  return float(keywords["temperature"])


def state_record(name: str) -> Callable[[Any], dict[str, jax.Array]] | None:
  """Estimator state -> the scalars to record per log, or None.

  REBAR and RELAX (:class:`rgrad.RelaxState`): the learned temperature and
  scale of the REBAR term.
  """
  if name not in ("rebar", "relax"):
    return None
  return lambda state: {
    "temperature": jnp.exp(state.control.log_temperature),
    "scale": state.control.scale,
  }


def mlp_surrogate(network: Any, z: jax.Array) -> jax.Array:
  r"""RELAX's network :math:`r_\rho(z)` from its flax parameters, by hand.

  The registry's ``relax`` entry is :func:`rgrad.relax` with its defaults: a
  tanh MLP of one relaxed logit (``Dense_0 .. Dense_k``, tanh after all but
  the last, a scalar output), summed over coordinates. Written out here
  from the parameters, independently of the estimator's flax module; a
  wrong reading of them would show as measured variances away from the
  exact ones once the network has moved from its zero start.
  """
  layers = sorted(network, key=lambda layer: int(layer.rsplit("_", 1)[1]))

  def one(zi):
    h = zi[None]
    for i, layer in enumerate(layers):
      h = h @ network[layer]["kernel"] + network[layer]["bias"]
      if i < len(layers) - 1:
        h = jnp.tanh(h)
    return h[0]

  return jnp.sum(jax.vmap(one)(jnp.reshape(z, (-1,))))


def exact_moments_fn(
  name: str, num_group_samples: int
) -> train.ExactMoments | None:
  r"""``(theta [1], state, target) -> (mean, variance)`` of one unit, or None.

  Traceable (evaluated under ``jit`` and ``vmap``). REBAR: at the state's
  temperature and scale (:func:`rgrad.exact.rebar_moments`); RELAX: with the
  state's surrogate :math:`c_\phi(z) = \eta_c f(\sigma(z/\lambda)) +
  r_\rho(z)` (:func:`rgrad.exact.relax_moments`, :func:`mlp_surrogate`).
  """
  if name in STATELESS:
    kwargs = {}
    if name == "leave_one_out":
      kwargs["num_samples"] = num_group_samples
    if name in _RELAXATIONS:
      kwargs["temperature"] = registry_temperature(name)

    def moments(theta, state, target):
      del state
      m = exact_lib.bernoulli_estimator_moments(
        name, train.cost_function(target), theta, **kwargs
      )
      return m.mean, m.variance

    return moments
  if name == "rebar":

    def rebar(theta, state, target):
      m = exact_lib.rebar_moments(
        train.cost_function(target),
        theta,
        temperature=jnp.exp(state.control.log_temperature),
        scale=state.control.scale,
      )
      return m.mean, m.variance

    return rebar
  if name == "relax":

    def relax(theta, state, target):
      cost = train.cost_function(target)
      control = state.control
      temperature = jnp.exp(control.log_temperature)

      def surrogate(z):
        rebar_term = control.scale * cost(jax.nn.sigmoid(z / temperature))
        return rebar_term + mlp_surrogate(control.network, z)

      m = exact_lib.relax_moments(
        cost, theta, surrogate, resolution=temperature
      )
      return m.mean, m.variance

    return relax
  return None


def theta_grid_references(
  names: tuple[str, ...],
  targets: np.ndarray,
  thetas: np.ndarray,
  num_group_samples: int,
) -> dict[str, list[list[float]]]:
  """Exact *unit* variances on a common theta grid, ``[T][G]`` per name.

  Only the stateless estimators (REBAR's and RELAX's moments depend on
  their learned state): at the same theta for every estimator, so that e.g.
  DisARM <= ARM can be checked pointwise.
  """
  out = {}
  if thetas.size == 0:
    return out
  for name in names:
    if name not in STATELESS:
      continue
    moments = exact_moments_fn(name, num_group_samples)

    def unit_variance(theta, target, moments=moments):
      return moments(theta[None], None, target)[1][0]

    on_grid = jax.jit(jax.vmap(jax.vmap(unit_variance, (0, None)), (None, 0)))
    out[name] = np.asarray(on_grid(jnp.asarray(thetas), jnp.asarray(targets)))
    out[name] = out[name].tolist()
  return out
