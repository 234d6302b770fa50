r"""Exact references along the runs, from :mod:`rgrad.exact`.

At every logged theta the run is compared with

* the true gradient :math:`\partial_\theta E[f] = p (1 - p) ((1-t)^2 - t^2)
  = p (1 - p)(1 - 2t)` (closed form, :func:`exact_gradient`);
* the estimator's exact mean and variance at that theta, from
  :func:`rgrad.exact.bernoulli_estimator_moments` (enumeration of b and
  quadrature over the uniform noise; it shares no code with the
  estimators). It gives the moments of one *unit* (one draw; one pair for
  ARM/DisARM; the K-draw batch mean for leave-one-out); a step averages
  ``units`` independent units, so the step's exact variance is the unit
  variance divided by ``units`` and its mean is the unit mean. The
  relaxations' means are their own (biased) means, not the true gradient.

REBAR's exact moments (:func:`rgrad.exact.rebar_moments`) need its current
temperature and scale, which its state carries (:func:`state_record` picks
them out at every log). RELAX's control variate is a learned network, for
which no exact reference exists: its exact curves are null, and
:func:`exact_note` says why.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rgrad
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
_NOTES = {
  "relax": (
    "no exact reference: RELAX's control variate is a learned network; "
    "measured curves only"
  ),
}


def exact_gradient(theta: np.ndarray, target: np.ndarray) -> np.ndarray:
  """:math:`p (1 - p)(1 - 2t)`, the true gradient (broadcasts)."""
  p = 1.0 / (1.0 + np.exp(-np.asarray(theta, np.float64)))
  return p * (1.0 - p) * (1.0 - 2.0 * np.asarray(target, np.float64))


def has_exact(name: str) -> bool:
  """Whether the runs of `name` get exact moments."""
  return name in STATELESS or name == "rebar"


def exact_note(name: str) -> str | None:
  """Why `name` has no exact curve (None when it has one)."""
  if has_exact(name):
    return None
  return _NOTES.get(name, f"no exact reference for {name!r} in rgrad.exact")


def state_record(name: str) -> Callable[[Any], dict[str, jax.Array]]:
  """Estimator state -> the scalars its exact moments need, per log."""
  if name != "rebar":
    return lambda state: {}
  return lambda state: {
    "temperature": jnp.asarray(state.temperature).reshape(()),
    "scale": jnp.asarray(state.scale).reshape(()),
  }


def _cost(target: float) -> Callable[[Any], Any]:
  return lambda b: jnp.sum((b - target) ** 2)


def unit_moments(
  name: str,
  target: float,
  theta: float,
  num_group_samples: int,
  state: dict[str, float] | None = None,
) -> tuple[float, float] | None:
  """Exact ``(mean, variance)`` of one unit of `name` at `theta`, or None."""
  logits = np.array([theta], np.float64)
  if name in STATELESS:
    kwargs = (
      {"num_samples": num_group_samples} if name == "leave_one_out" else {}
    )
    moments = exact_lib.bernoulli_estimator_moments(
      name, _cost(target), logits, **kwargs
    )
  elif name == "rebar":
    moments = exact_lib.rebar_moments(
      _cost(target),
      float(theta),
      temperature=state["temperature"],
      scale=state["scale"],
    )
  else:
    return None
  mean = float(np.asarray(moments.mean).reshape(-1)[0])
  variance = float(np.asarray(moments.variance).reshape(-1)[0])
  return mean, variance


def run_references(
  name: str,
  targets: np.ndarray,
  records: dict[str, np.ndarray],
  units: int,
  num_group_samples: int,
) -> dict[str, np.ndarray | None]:
  """The exact curves of one estimator's runs.

  Args:
    name: the estimator.
    targets: ``[T]``.
    records: the run's records, arrays ``[T, S, L]`` (``theta`` and, for
      REBAR, ``temperature`` and ``scale``).
    units: independent units per step.
    num_group_samples: K, for leave-one-out.

  Returns:
    ``exact_gradient`` (the true gradient) and, or None without a
    reference, ``exact_mean`` and ``exact_variance`` (of the step's
    gradient: the unit variance / `units`), each ``[T, S, L]``.
  """
  theta = np.asarray(records["theta"], np.float64)
  out = {
    "exact_gradient": exact_gradient(theta, targets[:, None, None]),
    "exact_mean": None,
    "exact_variance": None,
  }
  if not has_exact(name):
    return out
  mean = np.empty_like(theta)
  variance = np.empty_like(theta)
  for index in np.ndindex(theta.shape):
    state = None
    if name == "rebar":
      state = {k: float(records[k][index]) for k in ("temperature", "scale")}
    mean[index], variance[index] = unit_moments(
      name,
      float(targets[index[0]]),
      float(theta[index]),
      num_group_samples,
      state,
    )
  out["exact_mean"] = mean
  out["exact_variance"] = variance / units
  return out


def theta_grid_references(
  names: tuple[str, ...],
  targets: np.ndarray,
  thetas: np.ndarray,
  num_group_samples: int,
) -> dict[str, list[list[float]]]:
  """Exact *unit* variances on a common theta grid, ``[T][G]`` per name.

  Only the stateless estimators (REBAR's moments depend on its learned
  state; RELAX has none): at the same theta for every estimator, so that
  e.g. DisARM <= ARM can be checked pointwise.
  """
  out = {}
  for name in names:
    if name not in STATELESS:
      continue
    out[name] = [
      [
        unit_moments(name, float(t), float(theta), num_group_samples)[1]
        for theta in thetas
      ]
      for t in targets
    ]
  return out


def registry_temperature(name: str) -> float | None:
  """The temperature the registry entry of `name` runs with, if any."""
  fn = rgrad.get_estimator(name).fn
  keywords = getattr(fn, "keywords", None) or {}
  return keywords.get("temperature")
