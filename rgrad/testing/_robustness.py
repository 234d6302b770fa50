r"""Robustness checks that every registered estimator must pass.

Two properties of the estimator contract (:mod:`rgrad.base`) that no
statistical test sees, written once so that the test suite runs them over
every entry of :data:`rgrad.ESTIMATORS` and a user can run them on an
estimator of their own:

* **Non-finite in, NaN out** (:func:`assert_propagates_non_finite`). A cost
  that is NaN or infinite at some draws must never yield a finite-looking
  estimate. Outside ``jax.jit`` the estimator raises a ValueError that counts
  the non-finite costs; under ``jit`` (where nothing can be raised) every row
  whose value depends on a non-finite cost is NaN in every leaf, the other
  rows are exactly what a finite cost gives, and rows that form an antithetic
  pair (``rows="pairs"``) are NaN together. The gradient of a cost written
  with ``jnp.where`` is finite where the cost is not, which is the case this
  check is built around.
* **Any callable is a cost** (:func:`assert_accepts_any_callable`): a plain
  function, a NumPy function (``np.sum``, as optax's tests pass costs), a
  ``jax.numpy`` function, a ``functools.partial``, a callable object that is
  neither hashable nor weak-referenceable and a bound method all give the
  same jacobians, with and without ``jit``.

Both take an :class:`rgrad.EstimatorSpec` or a registry name and pick a
default problem for the spec's ``objective`` (:func:`default_problem`); pass
``params`` and ``dist_builder`` for another one. A failure raises
AssertionError with a message that names the estimator and the property.
"""

import functools
import re
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad import base
from rgrad import distributions
from rgrad import registry

# The pseudo-random pattern of the poisoned cost: sin(_FREQUENCY * sum_j
# x_j (1 + _STEP j)) is above _THRESHOLD (NaN) or below -_THRESHOLD (-inf) for
# about a quarter of the draws each, wherever the distribution puts them. The
# positional weights make it vary over binary draws too (977 is within 0.04 of
# 311 pi, so sin(977 s) is near 0 at every small integer s): for three
# Bernoulli coordinates 2 of the 8 states are NaN and 2 are -inf.
_FREQUENCY = 977.0
_STEP = 0.25
_THRESHOLD = 0.7
_NUM_SAMPLES = 8
_COUNT = re.compile(r"(\d+) of (\d+) .*non-finite")


class Problem(NamedTuple):
  """A problem to run an estimator on.

  Attributes:
    function: the cost (``objective="expectation"``) or the log-joint (the
      variational objectives), a plain Python function of one draw.
    params: pytree of parameters.
    dist_builder: ``params`` -> distribution.
    num_samples: a valid ``num_samples`` for the spec.
  """

  function: Callable[[jax.Array], jax.Array]
  params: Any
  dist_builder: base.DistBuilder
  num_samples: int


def _cost(x):
  x = jnp.asarray(x)
  return jnp.sum(jnp.sin(x) + 0.25 * jnp.square(x))


def _log_joint(z):
  return -0.5 * jnp.sum(jnp.square(z - 0.5))


def _normal(params):
  return distributions.Normal(params["loc"], params["scale"])


def _bernoulli(params):
  return distributions.Bernoulli(params["logits"])


def _needs_discrete(spec: registry.EstimatorSpec) -> bool:
  """A capability the Gaussians lack (ARM, the relaxations, REBAR...)."""
  normal = distributions.Normal(0.0, 1.0)
  return bool(_internal.missing_capabilities(normal, spec.distributions))


def _log_scale_normal(params):
  return distributions.LogScaleNormal(params["loc"], params["log_scale"])


def _spec(spec: registry.EstimatorSpec | str) -> tuple[str, Any]:
  if isinstance(spec, str):
    return spec, registry.get_estimator(spec)
  registry.check_spec(spec)
  return getattr(spec.fn, "__name__", type(spec.fn).__name__), spec


def default_problem(
  spec: registry.EstimatorSpec | str,
  *,
  params: Any = None,
  dist_builder: base.DistBuilder | None = None,
  num_samples: int | None = None,
) -> Problem:
  r"""The problem the checks run `spec` on, unless told otherwise.

  ``"expectation"``: :math:`f(x) = \sum_i \sin x_i + x_i^2 / 4` under a
  two-coordinate ``Normal`` (params ``{"loc", "scale"}``), or for an
  estimator that needs a capability the Gaussians lack (ARM, DisARM, the
  relaxations) under a three-coordinate ``Bernoulli`` (params
  ``{"logits"}``). The variational
  objectives: the log-joint :math:`-\tfrac12 \lVert z - 0.5 \rVert^2`
  under a ``LogScaleNormal`` (params ``{"loc", "log_scale"}``), as in
  tests/variational_test.py. ``num_samples`` defaults to 8 (at least the
  spec's ``min_num_samples``, even for pairs).
  """
  _, spec = _spec(spec)
  if spec.objective == "expectation" and _needs_discrete(spec):
    function = _cost
    default_params = {"logits": jnp.array([0.5, -0.3, 0.2])}
    default_builder = _bernoulli
  elif spec.objective == "expectation":
    function = _cost
    default_params = {
      "loc": jnp.array([0.5, -0.3]),
      "scale": jnp.array([1.0, 0.8]),
    }
    default_builder = _normal
  else:
    function = _log_joint
    default_params = {
      "loc": jnp.array([0.3, -0.2]),
      "log_scale": jnp.array([-0.1, 0.2]),
    }
    default_builder = _log_scale_normal
  if num_samples is None:
    num_samples = max(_NUM_SAMPLES, spec.min_num_samples)
    num_samples += num_samples % 2 if spec.rows == "pairs" else 0
  return Problem(
    function=function,
    params=default_params if params is None else params,
    dist_builder=default_builder if dist_builder is None else dist_builder,
    num_samples=num_samples,
  )


def _call(spec, function, problem, key):
  """The per-sample jacobians of one call (a first step if stateful)."""
  args = (function, problem.params, problem.dist_builder, key)
  if spec.stateful:
    state = spec.fn.init(problem.params)
    jacobians, _ = spec.fn.estimate(*args, problem.num_samples, state)
    return jacobians
  return spec.fn(*args, problem.num_samples)


def _modes(jit: bool | None) -> tuple[bool, ...]:
  return (False, True) if jit is None else (bool(jit),)


def _poisoned(function, everywhere: bool):
  """`function`, NaN or -inf at about half the draws (or NaN at all)."""

  def cost(x):
    value = jnp.asarray(function(x))
    if everywhere:
      return jnp.where(True, jnp.nan, value)
    # Written with jnp.where, so its gradient is finite where it is not.
    flat = jnp.ravel(jnp.asarray(x, value.dtype))
    weights = 1.0 + _STEP * jnp.arange(flat.shape[0], dtype=value.dtype)
    pattern = jnp.sin(_FREQUENCY * jnp.sum(flat * weights))
    value = jnp.where(pattern > _THRESHOLD, jnp.nan, value)
    return jnp.where(pattern < -_THRESHOLD, -jnp.inf, value)

  return cost


def _row_flags(jacobians, num_samples):
  """Per row: every entry NaN, every entry finite (over all leaves)."""
  leaves = [
    np.asarray(j).reshape(num_samples, -1) for j in jax.tree.leaves(jacobians)
  ]
  flat = np.concatenate(leaves, axis=1)
  return np.isnan(flat).all(axis=1), np.isfinite(flat).all(axis=1), flat


def _tolerance(flat: np.ndarray) -> float:
  eps = np.finfo(flat.dtype).eps if flat.dtype.kind == "f" else 1e-15
  return 64 * eps


def _check_poisoned_rows(who, spec, problem, reference, poisoned):
  n = problem.num_samples
  what = "NaN/-inf at some draws"
  ref_nan, ref_finite, ref_flat = _row_flags(reference, n)
  if not ref_finite.all():
    raise AssertionError(
      f"{who}: the finite reference cost gave non-finite rows "
      f"{np.flatnonzero(~ref_finite).tolist()}; the problem is unusable."
    )
  is_nan, is_finite, flat = _row_flags(poisoned, n)
  partial = ~(is_nan | is_finite)
  if partial.any():
    raise AssertionError(
      f"{who}: with a cost that is {what}, under jit, rows "
      f"{np.flatnonzero(partial).tolist()} are partly non-finite; a row that "
      "depends on a non-finite cost must be NaN in every leaf and entry."
    )
  if not is_nan.any():
    raise AssertionError(
      f"{who}: with a cost that is {what}, under jit, every row is finite: "
      "the non-finite costs were masked and the estimate looks valid."
    )
  scale = np.maximum(np.abs(ref_flat[is_finite]), 1.0)
  leaked = (
    np.abs(flat[is_finite] - ref_flat[is_finite]) > _tolerance(ref_flat) * scale
  )
  if leaked.any():
    raise AssertionError(
      f"{who}: under jit, finite rows {np.flatnonzero(is_finite).tolist()} "
      "differ from what the finite cost gives at the same draws: a "
      "non-finite cost changed rows without making them NaN."
    )
  if spec.rows == "pairs":
    half = n // 2
    if (is_nan[:half] != is_nan[half:]).any():
      raise AssertionError(
        f"{who}: rows i and i + {half} are an antithetic pair and must be "
        f"NaN together; NaN rows are {np.flatnonzero(is_nan).tolist()}."
      )


def _check_raises(who, spec, problem, function, key, everywhere):
  what = "NaN everywhere" if everywhere else "NaN/-inf at some draws"
  try:
    _call(spec, function, problem, key)
  except ValueError as e:
    message = str(e)
    match = _COUNT.search(message)
    if not match:
      raise AssertionError(
        f"{who}: outside jit, a cost that is {what} raised a ValueError "
        f"that does not count the non-finite values ('k of n ... "
        f"non-finite'): {message}"
      ) from e
    bad, total = int(match.group(1)), int(match.group(2))
    if not 1 <= bad <= total or (everywhere and bad != total):
      raise AssertionError(
        f"{who}: outside jit, a cost that is {what} raised a ValueError "
        f"with the wrong count: {message}"
      ) from e
    return
  raise AssertionError(
    f"{who}: outside jit, a cost that is {what} raised no ValueError."
  )


class _Unhashable:
  """A callable object that can be neither hashed nor weak-referenced."""

  __slots__ = ("weight",)
  __hash__ = None  # type: ignore[assignment]

  def __init__(self, weight):
    self.weight = weight

  def __eq__(self, other):
    return isinstance(other, _Unhashable) and other.weight == self.weight

  def __call__(self, x):
    return self.weight * jnp.sum(x)


class _Model:
  """Holds a method to pass as a bound-method cost."""

  def __init__(self, weight):
    self.weight = weight

  def cost(self, x):
    return self.weight * jnp.sum(x)


def callables() -> dict[str, Callable[[jax.Array], Any]]:
  """The costs :func:`assert_accepts_any_callable` tries, all ``sum(x)``."""
  return {
    "numpy_function": np.sum,
    "jnp_function": jnp.sum,
    "partial_of_numpy": functools.partial(np.sum, axis=None),
    "unhashable_object": _Unhashable(1.0),
    "bound_method": _Model(1.0).cost,
  }


def _run(spec, problem, key, jit, *, non_finite, any_callable, who):
  """Runs the checks asked for; under jit, all calls in one program."""
  some = _poisoned(problem.function, everywhere=False)
  every = _poisoned(problem.function, everywhere=True)
  costs = {}
  if non_finite:
    costs.update(finite=problem.function, poisoned=some)
  if any_callable:
    costs.update(plain_function=_plain_sum, **callables())

  def all_jacobians(params, key):
    p = problem._replace(params=params)
    out = {}
    for kind, function in costs.items():
      try:
        out[kind] = _call(spec, function, p, key)
      except Exception as e:  # noqa: BLE001 - reported as the failure.
        if kind in ("finite", "poisoned", "plain_function"):
          raise
        raise AssertionError(
          f"{who}: {'under' if jit else 'outside'} jit, a "
          f"{kind.replace('_', ' ')} ({function!r}) as the cost raised "
          f"{type(e).__name__}: {e}"
        ) from e
    return out

  if jit:
    out = jax.jit(all_jacobians)(problem.params, key)
    if non_finite:
      _check_poisoned_rows(who, spec, problem, out["finite"], out["poisoned"])
  else:
    if non_finite:
      _check_raises(who, spec, problem, some, key, False)
      _check_raises(who, spec, problem, every, key, True)
      del costs["finite"], costs["poisoned"]
    out = all_jacobians(problem.params, key)
  if any_callable:
    _check_same_jacobians(
      who, problem, out, "under jit" if jit else "outside jit"
    )


def _plain_sum(x):
  return jnp.sum(x)


def _check_same_jacobians(who, problem, out, mode):
  reference = out["plain_function"]
  _, finite, ref_flat = _row_flags(reference, problem.num_samples)
  if not finite.all():
    raise AssertionError(f"{who}: {mode}, sum(x) gave non-finite rows.")
  for kind in callables():
    jacobians = out[kind]
    what = kind.replace("_", " ")
    if jax.tree.structure(jacobians) != jax.tree.structure(reference):
      raise AssertionError(
        f"{who}: {mode}, a {what} as the cost gave a pytree unlike that of "
        "a plain function."
      )
    _, _, flat = _row_flags(jacobians, problem.num_samples)
    scale = np.maximum(np.abs(ref_flat), 1.0)
    if not (np.abs(flat - ref_flat) <= _tolerance(ref_flat) * scale).all():
      raise AssertionError(
        f"{who}: {mode}, a {what} as the cost gave jacobians that differ "
        "from those of the same plain function."
      )


def _check(spec, params, dist_builder, num_samples, jit, key, **checks):
  who, spec = _spec(spec)
  problem = default_problem(
    spec, params=params, dist_builder=dist_builder, num_samples=num_samples
  )
  key = jax.random.key(0) if key is None else key
  for jitted in _modes(jit):
    _run(spec, problem, key, jitted, who=who, **checks)


def assert_propagates_non_finite(
  spec: registry.EstimatorSpec | str,
  *,
  params: Any = None,
  dist_builder: base.DistBuilder | None = None,
  num_samples: int | None = None,
  jit: bool | None = None,
  key: jax.Array | None = None,
) -> None:
  """Asserts that non-finite costs raise outside jit and give NaN under it.

  The cost (or log-joint) of :func:`default_problem` is made NaN at about a
  quarter of the draws and ``-inf`` at another quarter, with ``jnp.where``
  so that its gradient stays finite there. Outside ``jit`` it must raise a
  ValueError whose message counts the non-finite values (``"k of n ...
  non-finite"``), and a cost that is NaN everywhere must count ``n of n``.
  Under ``jit``: every row is either NaN in every entry of every leaf or
  finite; at least one row is NaN; the finite rows equal those of the
  finite cost at the same key (a bad cost changes no row without making it
  NaN); and for ``rows="pairs"`` rows ``i`` and ``i + n/2`` are NaN
  together. Estimators whose rows share a batch statistic
  (``rows="groups"``) may make every row NaN.

  Args:
    spec: an :class:`rgrad.EstimatorSpec` or a registry name; stateful
      estimators are checked on their first step.
    params: parameters (default: those of :func:`default_problem`).
    dist_builder: ``params`` -> distribution (default: likewise).
    num_samples: rows per call (default: likewise).
    jit: True or False to check one mode, None (default) for both.
    key: the PRNG key of the calls.

  Raises:
    AssertionError: naming the estimator and the property that fails.
  """
  _check(
    spec,
    params,
    dist_builder,
    num_samples,
    jit,
    key,
    non_finite=True,
    any_callable=False,
  )


def assert_accepts_any_callable(
  spec: registry.EstimatorSpec | str,
  *,
  params: Any = None,
  dist_builder: base.DistBuilder | None = None,
  num_samples: int | None = None,
  jit: bool | None = None,
  key: jax.Array | None = None,
) -> None:
  r"""Asserts that every kind of callable works as the cost.

  Each of ``callables()`` (NumPy and ``jax.numpy`` functions, a
  ``functools.partial``, an unhashable callable object without a weak
  reference slot, a bound method; all compute :math:`\sum_i x_i`) must give
  the same jacobians as the plain function ``lambda x: jnp.sum(x)`` at the
  same key, finite, with and without ``jit``. For the variational
  objectives the sum is the log-joint.

  Args: as for :func:`assert_propagates_non_finite`.

  Raises:
    AssertionError: naming the estimator and the callable that fails.
  """
  _check(
    spec,
    params,
    dist_builder,
    num_samples,
    jit,
    key,
    non_finite=False,
    any_callable=True,
  )


def assert_robust(
  spec: registry.EstimatorSpec | str,
  *,
  params: Any = None,
  dist_builder: base.DistBuilder | None = None,
  num_samples: int | None = None,
  jit: bool | None = None,
  key: jax.Array | None = None,
) -> None:
  """Asserts both properties, sharing one compiled program under ``jit``.

  Runs :func:`assert_propagates_non_finite` and
  :func:`assert_accepts_any_callable`, with every call of one mode in one
  ``jax.jit`` program (compilation is most of their cost).

  Args: as for :func:`assert_propagates_non_finite`.

  Raises:
    AssertionError: naming the estimator and the property that fails.
  """
  _check(
    spec,
    params,
    dist_builder,
    num_samples,
    jit,
    key,
    non_finite=True,
    any_callable=True,
  )
