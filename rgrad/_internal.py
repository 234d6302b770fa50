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


def check_estimator_options(
  name: str,
  estimator: str,
  temperature: Any,
  num_samples: Any,
  batch_estimators: tuple[str, ...],
  unit: str,
) -> None:
  """Checks the options of an exact reference's `estimator`, each by name.

  ``temperature`` is required for the relaxations (``"concrete"``,
  ``"straight_through"``) and refused otherwise; ``num_samples`` (K >= 2,
  checked by :func:`check_int`) is required for the `batch_estimators`,
  whose unit is a batch of K draws, and refused for the others, whose unit
  is `unit` (said in the message).

  Raises:
    ValueError: a missing or superfluous option, or K < 2.
    TypeError: a `num_samples` that is not an int.
  """
  relaxed = estimator in ("concrete", "straight_through")
  if relaxed and temperature is None:
    raise ValueError(
      f"{name}: temperature is required for {estimator!r} (the registry "
      "uses 2/3 for 'concrete' and 1 for 'straight_through')."
    )
  if not relaxed and temperature is not None:
    raise ValueError(
      f"{name}: temperature applies to 'concrete' and 'straight_through' "
      f"only, not to {estimator!r}."
    )
  if estimator in batch_estimators:
    if num_samples is None:
      raise ValueError(
        f"{name}: num_samples (K >= 2, the batch) is required for "
        f"{estimator!r}."
      )
    check_int(num_samples, name, minimum=2)
  elif num_samples is not None:
    users = " and ".join(repr(e) for e in batch_estimators)
    raise ValueError(
      f"{name}: num_samples applies to {users} only; the unit of "
      f"{estimator!r} is {unit}."
    )


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


# Libraries whose distributions rgrad.interop adapts. An object is recognised
# by the top-level package of its class's module, so that no library is
# imported until one of its objects is seen.
FOREIGN_LIBRARIES = ("distrax", "numpyro", "tensorflow_probability")


def foreign_library(dist: Any) -> str | None:
  """The library in :data:`FOREIGN_LIBRARIES` `dist` comes from, or None."""
  library = type(dist).__module__.partition(".")[0]
  return library if library in FOREIGN_LIBRARIES else None


def adapt(dist: Any) -> Any:
  """`dist`, or rgrad's view of it if it is a foreign distribution.

  rgrad's own distributions (and any other object) pass through untouched,
  at the cost of one string comparison; a distrax, TFP-on-JAX or NumPyro
  distribution goes through :func:`rgrad.interop.adapt`, imported here and
  only here, lazily (it imports the foreign library it needs).
  """
  if foreign_library(dist) is None:
    return dist
  from rgrad.interop import _adapters  # Lazy on purpose: see above.

  return _adapters.adapt(dist)


def builder(dist_builder: base.DistBuilder) -> base.DistBuilder:
  """`dist_builder` composed with :func:`adapt`.

  The one place where estimators turn ``dist_builder(params)`` into
  something they query: :func:`build` calls it, and so does every
  ``jax.vjp(dist_builder, params)`` and every ``dist_builder(p).sample``
  of the estimators, so that a foreign distribution is converted inside the
  traced function and gradients flow from ``params`` through the foreign
  constructor into rgrad's distribution. Idempotent.
  """
  if getattr(dist_builder, "_rgrad_adapted", False):
    return dist_builder

  def adapted(params):
    return adapt(dist_builder(params))

  adapted._rgrad_adapted = True
  return adapted


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
    raw = dist_builder(params)
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
  dist = adapt(raw)
  missing = missing_capabilities(dist, ("sample",) + tuple(capabilities))
  if missing:
    details = "; ".join(
      f"{c!r} ({', '.join(base.CAPABILITIES[c].methods)}: "
      f"{base.CAPABILITIES[c].summary})"
      for c in missing
    )
    got = type(dist).__name__
    if dist is not raw:
      # Converted to rgrad's family, or wrapped in the generic adapter.
      view = (
        f"rgrad.distributions.{got}"
        if type(dist).__module__.startswith("rgrad.distributions")
        else "its generic adapter"
      )
      got = (
        f"{type(raw).__module__}.{type(raw).__qualname__} (adapted by "
        f"rgrad.interop as {view})"
      )
    raise TypeError(
      f"{name}: dist_builder must return an rgrad distribution (see "
      f"rgrad.distributions) with the capabilities {list(capabilities)}; got "
      f"{got}, which lacks {details}."
    )
  return dist


def as_cost(value: Any, what: str = "function", name: str | None = None):
  """`value`, checked callable, wrapped in a plain Python function.

  A cost may be any callable: a NumPy function (``np.sum``), a ``jax.numpy``
  one, a ``functools.partial``, a callable object, a bound method. JAX's
  transformations are not that tolerant: ``jax.jit`` (and ``jax.eval_shape``,
  which is built on it) keys its caches on weak references to the function,
  and a NumPy function (``numpy._ArrayFunctionDispatcher``) or an object with
  ``__slots__`` has none. The first such call raises "cannot create weak
  reference", and in jax 0.10 a later one crashes the interpreter
  (SIGSEGV in ``jax.eval_shape``). Every estimator passes the cost through
  here before any JAX transformation sees it, so that only this wrapper,
  which is always weak-referenceable and hashable, ever reaches one. The
  wrapper is new on every call: nothing is cached across estimator calls.

  Raises:
    TypeError: `value` is not callable.
  """
  check_callable(value, what, name)

  def cost(x):
    return value(x)

  cost.__name__ = cost.__qualname__ = str(
    getattr(value, "__name__", type(value).__name__)
  )
  return cost


def check_scalar_output(
  function: Callable[..., Any],
  x: jax.ShapeDtypeStruct,
  name: str,
  what: str = "function",
) -> Callable[..., Any]:
  """Checks, from shapes alone, that `function` maps `x` to a scalar.

  Returns:
    `function` wrapped by :func:`as_cost`, for the caller to use from then on.
  """
  function = as_cost(function, what, name)
  out = jax.eval_shape(function, x)
  shape = getattr(out, "shape", None)
  if shape != ():
    got = f"shape {tuple(shape)}" if shape is not None else type(out).__name__
    raise ValueError(
      f"{name}: {what} must return a scalar cost for one sample of shape "
      f"{tuple(x.shape)}, got {got}."
    )
  return function


def check_scalar_cost(
  function: Callable[..., Any], dist: Any, key: jax.Array, name: str
) -> Callable[..., Any]:
  """Checks, from shapes alone, that `function` maps one draw to a scalar.

  Returns:
    `function` wrapped by :func:`as_cost`, for the caller to use from then on.
  """
  check_callable(function, "function", name)
  return check_scalar_output(function, jax.eval_shape(dist.sample, key), name)


def check_finite(
  values: jax.typing.ArrayLike, name: str, what: str = "costs"
) -> None:
  """Raises if concrete `values` contain NaN/inf; under jit they propagate.

  The one finiteness check of rgrad: outside ``jit`` the ValueError counts
  the non-finite values ("k of n costs are non-finite"); under ``jit`` it
  does nothing and :func:`poison_non_finite` makes the affected rows NaN.
  """
  array = concrete(values)
  if array is None:
    return
  bad = int(np.sum(~np.isfinite(array)))
  if bad:
    raise ValueError(
      f"{name}: {bad} of {array.size} {what} are non-finite (NaN or inf); "
      "the gradient estimate would be meaningless. Under jax.jit they "
      "propagate into NaN jacobians instead."
    )


def poison_non_finite(
  jacobians: Any, costs: jax.Array, rows: str = "iid"
) -> Any:
  """NaN rows of `jacobians` [n, ...] that depend on a non-finite cost.

  `costs` is ``[n, ...]``: row ``i`` is bad if any entry of ``costs[i]`` is
  NaN or infinite (a measure-valued row has ``2 F d`` costs). A gradient can
  be finite where the cost is not (a cost written with ``jnp.where``); such
  a sample has no meaningful gradient, so the row is made NaN, in every leaf
  and entry, rather than let a finite-looking mean hide it. `rows` says
  which rows a bad cost touches (:data:`rgrad.base.ROWS`):

  * ``"iid"``: its own row;
  * ``"pairs"``: both rows of its antithetic pair (``i`` and ``i + n/2``),
    the pair being the independent unit;
  * ``"batch"``: every row (the rows share a batch statistic, a
    leave-one-out mean or self-normalized weights).
  """
  costs = jnp.asarray(costs)
  bad = ~jnp.isfinite(costs.reshape(costs.shape[0], -1)).all(axis=1)  # [n]
  if rows == "pairs":
    half = costs.shape[0] // 2
    either = bad[:half] | bad[half:]
    bad = jnp.concatenate([either, either])
  elif rows == "batch":
    bad = jnp.broadcast_to(bad.any(), bad.shape)
  elif rows != "iid":
    raise ValueError(f"rows must be 'iid', 'pairs' or 'batch', got {rows!r}.")
  poison = jnp.where(bad, jnp.nan, 0.0)  # [num_samples]
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


def _real_scalar(value: Any, name: str | None, what: str) -> Any:
  """`value` as a real floating scalar array: NumPy if it is a Python or
  NumPy value, so that no JAX backend starts (estimators are configured at
  import time, before ``jax.distributed.initialize``), JAX otherwise."""
  xp = jnp if isinstance(value, jax.Array) else np
  try:
    array = xp.asarray(value)
  except TypeError as e:
    raise TypeError(
      f"{prefix(name)}{what} must be a real scalar, got {type(value).__name__}."
    ) from e
  if array.dtype == bool or not (
    np.issubdtype(array.dtype, np.floating)
    or np.issubdtype(array.dtype, np.integer)
  ):
    raise TypeError(
      f"{prefix(name)}{what} must be a real scalar, got dtype {array.dtype}."
    )
  if array.shape != ():
    raise ValueError(
      f"{prefix(name)}{what} must be a scalar, got shape {tuple(array.shape)}."
    )
  if not np.issubdtype(array.dtype, np.floating):
    array = array.astype(jnp.result_type(float))
  return array


def check_real_scalar(
  value: Any, name: str | None = None, what: str = "scale"
) -> jax.Array | float:
  """Checks that `value` is a real scalar, and (when concrete) finite.

  Returns:
    A Python or NumPy `value` as a Python float (weakly typed in JAX
    arithmetic, and no backend started), a JAX one as a floating array of
    shape ``()``.

  Raises:
    TypeError: not a real number or array.
    ValueError: not a scalar, or (concrete) not finite.
  """
  array = _real_scalar(value, name, what)
  known = concrete(array)
  if known is not None and not np.isfinite(known):
    raise ValueError(
      f"{prefix(name)}{what} must be finite, got {float(known)}."
    )
  return array if isinstance(array, jax.Array) else float(array)


def check_positive_scalar(
  value: Any, name: str | None = None, what: str = "temperature"
) -> jax.Array | float:
  """Checks that `value` is a real scalar, and (when concrete) > 0 and finite.

  The check behind every temperature (relaxations) and scale of rgrad. The
  shape is static, so it is checked under ``jit`` too; the value only where
  it is concrete (a learned temperature is traced, and is the caller's to
  keep positive, e.g. as the exponential of a free parameter).

  Returns:
    A Python or NumPy `value` as a Python float (weakly typed in JAX
    arithmetic, and no backend started), a JAX one as a floating array of
    shape ``()``.

  Raises:
    TypeError: not a real number or array.
    ValueError: not a scalar, or (concrete) not > 0 or not finite.
  """
  array = _real_scalar(value, name, what)
  known = concrete(array)
  if known is not None and not (np.isfinite(known) and known > 0):
    raise ValueError(
      f"{prefix(name)}{what} must be positive and finite, got {float(known)}."
    )
  return array if isinstance(array, jax.Array) else float(array)
