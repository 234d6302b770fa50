r"""Enumeration helpers behind the discrete references of :mod:`rgrad.exact`.

A factorized Bernoulli with logits :math:`\eta` (any shape, :math:`d`
entries) has :math:`2^d` states; state :math:`s \in \{0, \dots, 2^d-1\}` is
the vector whose entry :math:`j` (in C order) is bit :math:`j` of :math:`s`.
Its probability is :math:`P(b) = \prod_j p_j^{b_j}(1-p_j)^{1-b_j}`,
:math:`p = \sigma(\eta)`, computed in log space
(:math:`\log p = -\mathrm{softplus}(-\eta)`), so that it stays exact for
logits of any size. The cost is evaluated once per state (a table), and
every reference gathers from that table.

This module is private to :mod:`rgrad.exact` (its names may change).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal

# Most Bernoulli states enumerated (d <= 12) and most one-hot states.
MAX_BERNOULLI_DIM = 12
MAX_STATES = 2**16


def check_logits(name: str, logits: Any, what: str = "logits") -> jax.Array:
  """`logits` as a float64-or-wider real array; raises on bad input.

  Raises:
    TypeError: not real.
    ValueError: empty, or (when concrete) non-finite.
  """
  array = jnp.asarray(logits)
  if not (
    jnp.issubdtype(array.dtype, jnp.floating)
    or jnp.issubdtype(array.dtype, jnp.integer)
  ):
    raise TypeError(f"{name}: {what} must be real, got dtype {array.dtype}.")
  if array.size == 0:
    raise ValueError(f"{name}: {what} must not be empty.")
  array = array.astype(jnp.result_type(array, float))
  value = _internal.concrete(array)
  if value is not None and not np.all(np.isfinite(value)):
    raise ValueError(
      f"{name}: {what} must be finite; got "
      f"{int(np.sum(~np.isfinite(value)))} non-finite of {value.size}."
    )
  return array


def check_dimension(name: str, size: int, maximum: int, what: str) -> None:
  if size > maximum:
    raise ValueError(
      f"{name}: {what} has {size} entries; exact enumeration is limited to "
      f"{maximum} (2^{size} states would not fit)."
    )


def check_positive(name: str, value: Any, what: str) -> jax.Array:
  """A positive scalar (checked when concrete), as a float array."""
  if value is None:
    raise ValueError(f"{name}: {what} is required (a positive float).")
  array = jnp.asarray(value)
  if array.shape != () or not jnp.issubdtype(
    jnp.result_type(array, float), jnp.floating
  ):
    raise ValueError(
      f"{name}: {what} must be a real scalar, got {array.shape} {array.dtype}"
    )
  concrete = _internal.concrete(array)
  if concrete is not None and not (np.isfinite(concrete) and concrete > 0):
    raise ValueError(
      f"{name}: {what} must be positive and finite, got {value}."
    )
  return array.astype(jnp.result_type(array, float))


def bernoulli_states(d: int) -> np.ndarray:
  """All ``2**d`` states as float 0/1 rows, ``[2**d, d]`` (NumPy)."""
  index = np.arange(2**d)[:, None]
  return ((index >> np.arange(d)[None, :]) & 1).astype(np.float64)


def log_probs(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """:math:`(\\log p, \\log(1 - p))` for :math:`p = \\sigma(\\eta)`."""
  return -jax.nn.softplus(-logits), -jax.nn.softplus(logits)


def state_log_probs(states: np.ndarray, logits: jax.Array) -> jax.Array:
  """:math:`\\log P(b)` of every row of `states` [n, d] under flat `logits`."""
  log_p, log_q = log_probs(logits)
  states = jnp.asarray(states, logits.dtype)
  return states @ log_p + (1.0 - states) @ log_q


_TRACE_ERRORS = (
  jax.errors.TracerArrayConversionError,
  jax.errors.ConcretizationTypeError,
  jax.errors.TracerBoolConversionError,
  jax.errors.TracerIntegerConversionError,
)


def cost_table(
  name: str,
  cost: Callable[[Any], Any],
  states: np.ndarray,
  shape: tuple[int, ...],
  dtype: Any,
  what: str = "cost",
) -> jax.Array:
  """The cost at every state: ``[num_states]``.

  Each row of `states` is reshaped to `shape` (the draw's shape) before the
  cost sees it. The cost is mapped over the states with ``jax.vmap``; a cost
  written in NumPy alone (one that cannot trace) is instead called on each
  state as a NumPy array. The states are constants, so this works under
  ``jax.jit`` too, as long as such a cost closes over no traced value.

  Raises:
    TypeError: `cost` is not callable or not scalar-valued.
  """
  cost = _internal.as_cost(cost, what, name)
  rows = np.asarray(states, np.float64).reshape((-1,) + tuple(shape))
  try:
    table = jax.vmap(cost)(jnp.asarray(rows, dtype))
  except _TRACE_ERRORS:
    # A NumPy-only cost: the states are concrete, so call it on each.
    table = jnp.asarray(np.stack([np.asarray(cost(r)) for r in rows]), dtype)
  table = jnp.asarray(table)
  if table.shape != (rows.shape[0],):
    raise TypeError(
      f"{name}: {what} must map one draw of shape {tuple(shape)} to a "
      f"scalar; it returned shape {tuple(table.shape[1:])}."
    )
  check_finite_table(name, table, what)
  return table.astype(jnp.result_type(table.dtype, dtype))


def check_finite_table(name: str, table: jax.Array, what: str) -> None:
  value = _internal.concrete(table)
  if value is not None and not np.all(np.isfinite(value)):
    raise ValueError(
      f"{name}: {what} is non-finite (NaN or inf) at "
      f"{int(np.sum(~np.isfinite(value)))} of {value.size} enumerated "
      "states; the exact result would be meaningless."
    )


def check_finite_results(name: str, **results: jax.Array) -> None:
  """Raises if a concrete result is NaN or inf, naming it."""
  for label, result in results.items():
    value = _internal.concrete(result)
    if value is not None and not np.all(np.isfinite(value)):
      raise ValueError(
        f"{name}: the exact {label} is non-finite (NaN or inf); the cost "
        "overflows float64 at some state or node (rescale it)."
      )
