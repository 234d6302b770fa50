"""rgrad's shared internals: argument checks and small array helpers.

As chex's ``_src/asserts_internal.py`` is for chex, this module is the one
place for what several rgrad modules need and no user should: the checks
behind every public function's error messages (so that one mistake reads the
same wherever it is made), the concreteness test, leading-axis broadcasting
and NaN poisoning. It is private and may change at any time; modules import
it as ``from rgrad import _internal``, and no module uses another module's
underscore names.

Checks run where values are concrete (outside ``jax.jit``); under ``jit``
shapes are still checked (they are static) and values propagate, non-finite
ones as NaN, never masked.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import base


def concrete(value: Any) -> np.ndarray | None:
  """`value` as NumPy if it is concrete, None if it is a tracer."""
  try:
    return np.asarray(value)
  except (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
  ):
    return None


def leading(weights: jax.Array, like: jax.Array) -> jax.Array:
  """`weights` [n] reshaped to broadcast over `like` [n, ...], in its dtype."""
  shape = weights.shape + (1,) * (like.ndim - 1)
  return weights.reshape(shape).astype(like.dtype)


def prefix(name: str | None) -> str:
  return f"{name}: " if name else ""


def check_int(
  value: Any,
  name: str | None = None,
  *,
  what: str = "num_samples",
  minimum: int = 1,
  even: bool = False,
) -> int:
  """Checks that `value` is a static Python (or NumPy) int >= `minimum`.

  The one check behind every count in rgrad (``num_samples``,
  ``chunk_size``, ``num_coefficient_samples``...): `name` (the calling
  function) prefixes the messages, `what` names the argument, `even` asks
  for antithetic pairs.

  Raises:
    TypeError: not an int (``bool`` included: ``True`` samples is a bug).
    ValueError: below `minimum`, or odd when `even`.
  """
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(
      f"{prefix(name)}{what} must be a static Python int (list it in "
      f"static_argnames under jax.jit), got {type(value).__name__} "
      f"{value!r}."
    )
  if value < minimum:
    raise ValueError(f"{prefix(name)}{what} must be >= {minimum}, got {value}.")
  if even and value % 2:
    raise ValueError(
      f"{prefix(name)}{what} must be even (samples come in antithetic pairs), "
      f"got {value}."
    )
  return int(value)


def check_callable(value: Any, what: str, name: str | None = None) -> None:
  if not callable(value):
    raise TypeError(
      f"{prefix(name)}{what} must be callable, got {type(value).__name__}."
    )


def missing_capabilities(dist: Any, capabilities: tuple[str, ...]) -> list:
  """The capabilities in `capabilities` that `dist` lacks."""
  missing = []
  for cap in capabilities:
    methods = base.CAPABILITIES[cap].methods
    if cap == "reparameterized":
      ok = bool(getattr(type(dist), "reparameterized", False)) and callable(
        getattr(dist, "sample", None)
      )
    else:
      ok = all(callable(getattr(dist, m, None)) for m in methods)
    if not ok:
      missing.append(cap)
  return missing


def build(
  dist_builder: base.DistBuilder,
  params: Any,
  name: str,
  capabilities: tuple[str, ...] = ("sample",),
) -> Any:
  """Calls `dist_builder(params)` and checks the distribution's capabilities.

  Raises:
    ValueError: `params` that do not fit `dist_builder`.
    TypeError: a result that is not a distribution with the `capabilities`
      (the message names each missing one and what it is for).
  """
  check_callable(dist_builder, "dist_builder", name)
  try:
    dist = dist_builder(params)
  except (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
  ):
    raise  # A jit problem inside dist_builder, not a params misfit.
  except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
    raise ValueError(
      f"{name}: params do not fit dist_builder; dist_builder(params) raised "
      f"{type(e).__name__}: {e}"
    ) from e
  missing = missing_capabilities(dist, ("sample",) + tuple(capabilities))
  if missing:
    details = "; ".join(
      f"{c!r} ({', '.join(base.CAPABILITIES[c].methods)}: "
      f"{base.CAPABILITIES[c].summary})"
      for c in missing
    )
    raise TypeError(
      f"{name}: dist_builder must return an rgrad distribution (see "
      f"rgrad.distributions) with the capabilities {list(capabilities)}; got "
      f"{type(dist).__name__}, which lacks {details}."
    )
  return dist


def check_scalar_output(
  function: Callable[..., Any], x: jax.ShapeDtypeStruct, name: str
) -> None:
  """Checks, from shapes alone, that `function` maps `x` to a scalar."""
  out = jax.eval_shape(function, x)
  shape = getattr(out, "shape", None)
  if shape != ():
    got = f"shape {tuple(shape)}" if shape is not None else type(out).__name__
    raise ValueError(
      f"{name}: function must return a scalar cost for one sample of shape "
      f"{tuple(x.shape)}, got {got}."
    )


def check_scalar_cost(
  function: Callable[..., Any], dist: Any, key: jax.Array, name: str
) -> None:
  """Checks, from shapes alone, that `function` maps one draw to a scalar."""
  check_callable(function, "function", name)
  check_scalar_output(function, jax.eval_shape(dist.sample, key), name)


def check_finite(values: jax.Array, name: str, what: str = "costs") -> None:
  """Raises if concrete `values` contain NaN/inf; under jit they propagate."""
  array = concrete(values)
  if array is None:
    return
  bad = int(np.sum(~np.isfinite(array)))
  if bad:
    raise ValueError(
      f"{name}: {bad} of {array.size} {what} are non-finite (NaN or inf); "
      "the gradient estimate would be meaningless. Under jax.jit they "
      "propagate into non-finite jacobians instead."
    )


def poison_non_finite(jacobians: Any, costs: jax.Array) -> Any:
  """NaN rows of `jacobians` [n, ...] wherever `costs` [n] is not finite.

  A gradient can be finite where the cost is not (a cost written with
  ``jnp.where``); such a sample has no meaningful gradient, so it is made NaN
  rather than let a finite-looking mean hide it.
  """
  poison = jnp.where(jnp.isfinite(costs), 0.0, jnp.nan)  # [num_samples]
  return jax.tree.map(lambda j: j + leading(poison, j), jacobians)


def check_row_weights(
  weights: jax.typing.ArrayLike | None,
  num_samples: int,
  name: str,
  what: str = "weights",
) -> jax.Array | None:
  """None, or `weights` (a scalar or [num_samples]) broadcast to [n]."""
  if weights is None:
    return None
  weights = jnp.asarray(weights)
  if weights.shape not in ((), (num_samples,)):
    raise ValueError(
      f"{name}: {what} must be a scalar or have shape ({num_samples},), "
      f"got {tuple(weights.shape)}."
    )
  return jnp.broadcast_to(weights, (num_samples,))


def check_rows(
  dist: Any,
  rows: jax.typing.ArrayLike,
  what: str = "noise",
  owner: str | None = None,
) -> jax.Array:
  """Checks that `rows` is [num_samples, *one draw of dist]."""
  rows = jnp.asarray(rows)
  one = jax.eval_shape(dist.sample, jax.random.key(0))
  if rows.ndim < 1 or rows.shape[1:] != one.shape:
    raise ValueError(
      f"{owner or type(dist).__name__}: {what} must have shape "
      f"[num_samples, *{list(one.shape)}] (one draw per row), got "
      f"{list(rows.shape)}."
    )
  return rows
