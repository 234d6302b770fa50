r"""Statistical assertions: is an estimator unbiased, is its variance right?

:func:`assert_unbiased` runs an estimator (any: a registered name, an
:class:`rgrad.EstimatorSpec`, a function with the shared signature or a
:class:`rgrad.base.StatefulEstimator`) through the moments engine and tests
every coordinate of the mean against the exact gradient:

* **z per coordinate.** :math:`z_j = (\bar g_j - g_j) / \mathrm{se}_j`,
  with the standard error that the estimator's row structure calls for
  (pair or group means, :func:`rgrad.diagnostics.gradient_moments`; call
  means for a stateful estimator) and the reference's own accuracy folded
  in (:func:`rgrad.diagnostics.z_score`).
* **Holm's correction.** With :math:`m` coordinates and two-sided p-values
  sorted :math:`p_{(1)} \le \dots \le p_{(m)}`, reject while
  :math:`p_{(r)} \le \alpha / (m - r + 1)`. The probability that a correct
  estimator fails is at most ``false_alarm_rate`` :math:`= \alpha`, whatever
  the dependence between coordinates (Holm 1979).
* **Power by construction.** The *detectable bias* of coordinate :math:`j`
  is :math:`(z_{1-\alpha/2m} + z_{\text{power}})\,\mathrm{se}_j`: a bias that
  large is caught with probability at least ``power`` (Bonferroni's threshold
  is Holm's strictest). Given ``detectable_bias`` (relative) and no
  ``num_samples``, the sample size is chosen so that every coordinate's
  detectable bias is at most ``detectable_bias`` times its reference scale
  :math:`\max(|g_j|, \tfrac{1}{10}\max_{\text{leaf}} |g|)` (a coordinate whose
  exact gradient is zero is held to a tenth of its leaf's scale), from the
  exact variance when given, else from an independent pilot run.

:func:`assert_variance` does the same for the per-row variance against an
exact variance, with the standard error of the sample variance from the
fourth moment, :math:`\sqrt{(\mu_4 - \sigma^4 (n-3)/(n-1))/n}`.

Both return a :class:`Report` (one row per coordinate: value, exact, z,
p-value, detectable bias) and raise ``AssertionError`` with its table when
the test rejects.

References:
  Holm. A simple sequentially rejective multiple test procedure.
  Scandinavian Journal of Statistics 6(2), 1979.
"""

import functools
import math
import statistics
from typing import Any
from typing import NamedTuple

import jax
import numpy as np

from rgrad import _internal
from rgrad import base
from rgrad import diagnostics
from rgrad import registry

_NORMAL = statistics.NormalDist()
# Pilot variance estimates are noisy; the pilot's sample size is scaled up
# by this much so that a pilot that reads the variance 20% low still gives
# the stated power.
_PILOT_SAFETY = 1.25


class Coordinate(NamedTuple):
  """One coordinate of a :class:`Report`."""

  coordinate: str
  value: float
  exact: float
  stderr: float
  z: float
  p_value: float
  rejected: bool
  detectable: float  # relative to the coordinate's reference scale


class Report(NamedTuple):
  """The outcome of :func:`assert_unbiased` or :func:`assert_variance`.

  Attributes:
    kind: ``"mean"`` or ``"variance"``.
    estimator: the estimator's name (or repr).
    num_samples: rows drawn.
    false_alarm_rate: the family-wise :math:`\\alpha` of the Holm test.
    power: the power at which ``Coordinate.detectable`` is stated.
    num_nonfinite: units with a non-finite entry (any makes the test fail).
    coordinates: one :class:`Coordinate` per coordinate.
  """

  kind: str
  estimator: str
  num_samples: int
  false_alarm_rate: float
  power: float
  num_nonfinite: int
  coordinates: tuple[Coordinate, ...]

  @property
  def passed(self) -> bool:
    return self.num_nonfinite == 0 and not any(
      c.rejected for c in self.coordinates
    )

  @property
  def max_detectable(self) -> float:
    return max(c.detectable for c in self.coordinates)

  def table(self) -> str:
    head = (
      f"{self.kind} test of {self.estimator}: "
      f"{'passed' if self.passed else 'FAILED'}; {self.num_samples} rows, "
      f"Holm at family-wise false-alarm rate {self.false_alarm_rate:g}; "
      f"'detectable' is the relative error caught with probability "
      f"{self.power:g}"
    )
    if self.num_nonfinite:
      head += f"; {self.num_nonfinite} non-finite units"
    lines = [
      head,
      f"{'coordinate':<22}{'value':>14}{'exact':>14}{'stderr':>11}"
      f"{'z':>9}{'p':>10}{'detectable':>12}",
    ]
    for c in self.coordinates:
      lines.append(
        f"{c.coordinate:<22}{c.value:>14.6g}{c.exact:>14.6g}{c.stderr:>11.3g}"
        f"{c.z:>9.2f}{c.p_value:>10.2g}{c.detectable:>11.2%}"
        + ("  REJECTED" if c.rejected else "")
      )
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.table()


def _resolve(estimator: Any) -> tuple[Any, Any, str]:
  """(fn, spec or None, display name): :func:`rgrad.registry.find_estimator`."""
  forms = (str, registry.EstimatorSpec, base.StatefulEstimator)
  if not isinstance(estimator, forms):
    _internal.check_callable(estimator, "estimator", "rgrad.testing")
  name, spec = registry.find_estimator(estimator)
  fn = estimator if spec is None else spec.fn
  if name is None:
    name = (
      spec.summary
      if spec is not None
      else (getattr(estimator, "__name__", None) or repr(estimator))
    )
  return fn, spec, name


@functools.partial(
  jax.jit,
  static_argnames=("estimator", "function", "dist_builder", "batch", "calls"),
)
def _stateful_call_means(
  params, key, *, estimator, function, dist_builder, batch, calls
):
  """[calls] call means of a stateful estimator, stepped in one scan."""

  def step(state, k):
    jac, state = estimator.estimate(
      function, params, dist_builder, k, batch, state
    )
    return state, jax.tree.map(lambda j: j.mean(0), jac)

  keys = jax.random.split(key, calls)
  return jax.lax.scan(step, estimator.init(params), keys)[1]


def _stateful_moments(
  estimator, function, params, dist_builder, key, num_samples, batch, higher
) -> diagnostics.GradientMoments:
  """Moments of the call means of a stateful estimator.

  A stateful estimator is unbiased given its past, so its call means are
  martingale differences around the gradient: uncorrelated, and their sample
  variance gives the standard error of their mean.
  """
  calls = num_samples // batch
  means = _stateful_call_means(
    params,
    key,
    estimator=estimator,
    function=function,
    dist_builder=dist_builder,
    batch=batch,
    calls=calls,
  )  # leaves [calls, ...]
  sums = diagnostics.chunk_moment_sums(means, higher_moments=higher)
  m = diagnostics.finalize_moments(sums, calls, higher_moments=higher)
  return diagnostics.per_row(m, batch)


def _options(fn, spec, chunk_size, rows, group_size) -> dict[str, Any]:
  """How to run `fn`: rows per call, and the registry's row structure."""
  stateful = isinstance(fn, base.StatefulEstimator)
  if rows is None and spec is not None and not stateful:
    rows, group_size = spec.rows, spec.group_size
  return {"chunk_size": chunk_size, "rows": rows, "group_size": group_size}


def _moments(
  fn, function, params, dist_builder, key, num_samples, opts, higher
):
  if isinstance(fn, base.StatefulEstimator):
    return _stateful_moments(
      fn,
      function,
      params,
      dist_builder,
      key,
      num_samples,
      opts["chunk_size"],
      higher,
    )
  return diagnostics.gradient_moments(
    fn,
    function,
    params,
    dist_builder,
    key,
    num_samples,
    chunk_size=opts["chunk_size"],
    higher_moments=higher,
    rows=opts["rows"],
    group_size=opts["group_size"],
  )


def _flat(tree: Any) -> tuple[list[str], np.ndarray]:
  """Coordinate names and values of a pytree, flattened."""
  names, values = [], []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    leaf = np.asarray(leaf, np.float64)
    prefix = jax.tree_util.keystr(path)
    for index in np.ndindex(leaf.shape):
      names.append(prefix + (str(list(index)) if index else ""))
      values.append(leaf[index])
  return names, np.asarray(values)


def _reference_scales(exact: Any) -> np.ndarray:
  """max(|g_j|, max_leaf |g| / 10), flattened like :func:`_flat`."""
  scales = []
  for leaf in jax.tree.leaves(exact):
    leaf = np.abs(np.asarray(leaf, np.float64))
    floor = 0.1 * (leaf.max() if leaf.size else 0.0)
    scales.append(np.maximum(leaf, floor).ravel())
  return np.concatenate(scales)


def _check_reference(value: Any, like: Any, name: str) -> None:
  if jax.tree.structure(value) != jax.tree.structure(like):
    raise ValueError(
      f"rgrad.testing: {name} must be a pytree like params "
      f"({jax.tree.structure(like)}), got {jax.tree.structure(value)}."
    )
  for v, p in zip(jax.tree.leaves(value), jax.tree.leaves(like), strict=True):
    v = np.asarray(v, np.float64)
    if v.shape != np.shape(p):
      raise ValueError(
        f"rgrad.testing: each leaf of {name} must have its parameter's "
        f"shape {np.shape(p)}, got {v.shape}."
      )
    if not np.all(np.isfinite(v)):
      raise ValueError(f"rgrad.testing: {name} has non-finite entries.")


def _check_rate(value: float, name: str) -> float:
  if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
    raise ValueError(f"rgrad.testing: {name} must be in (0, 1), got {value!r}.")
  return float(value)


def _z_total(alpha: float, m: int, power: float) -> float:
  """z_{1 - alpha / 2m} + z_power."""
  return _NORMAL.inv_cdf(1.0 - alpha / (2 * m)) + _NORMAL.inv_cdf(power)


def _holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
  """Which hypotheses Holm's step-down procedure rejects."""
  m = p_values.size
  rejected = np.zeros(m, bool)
  for rank, index in enumerate(np.argsort(p_values, kind="stable")):
    if not p_values[index] <= alpha / (m - rank):
      break
    rejected[index] = True
  return rejected


def _round_up(n: float, unit: int) -> int:
  """`n` rounded up to a whole number of `unit`s, on a coarse grid.

  The number of units is rounded up to 1..8 or to m 2^e with m in 4..7 (at
  most 25% more rows), so that sized runs whose pilot variances differ a
  little reuse one compiled program: the moments engine compiles once per
  number of chunks, and a fresh size per call would recompile every time.
  More rows only add power; the report states the rows used.
  """
  units = int(max(1, math.ceil(n / unit)))
  if units > 8:
    exponent = units.bit_length() - 3  # units / 2^e is in [4, 8).
    units = -(-units // 2**exponent) * 2**exponent  # 8 * 2^e is exact too.
  return units * unit


def _report(kind, name, moments, value, exact, stderr, scales, alpha, power):
  names, values = _flat(value)
  _, exacts = _flat(exact)
  _, ses = _flat(stderr)
  z = np.asarray(diagnostics.z_score(values, exacts, ses), np.float64)
  p = np.array(
    [2.0 * _NORMAL.cdf(-abs(v)) if np.isfinite(v) else 0.0 for v in z]
  )
  rejected = _holm(p, alpha) | ~np.isfinite(z)
  detectable = _z_total(alpha, len(names), power) * ses / scales
  coordinates = tuple(
    Coordinate(
      n, float(v), float(e), float(s), float(zz), float(pp), bool(r), float(d)
    )
    for n, v, e, s, zz, pp, r, d in zip(
      names, values, exacts, ses, z, p, rejected, detectable, strict=True
    )
  )
  return Report(
    kind,
    name,
    moments.num_samples,
    alpha,
    power,
    int(moments.num_nonfinite),
    coordinates,
  )


def _sample_size(variance, scales, alpha, power, target, unit, what):
  """Rows so that every coordinate's detectable error is <= target * scale."""
  _, var = _flat(variance)
  z = _z_total(alpha, var.size, power)
  need = np.max((z * np.sqrt(np.maximum(var, 0.0)) / (target * scales)) ** 2)
  if not np.isfinite(need):
    raise ValueError(
      f"rgrad.testing: the {what} is not finite; cannot size the test."
    )
  return _round_up(need, unit)


def unbiasedness_report(
  estimator: Any,
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: jax.Array,
  *,
  exact: base.Params,
  num_samples: int | None = None,
  detectable_bias: float = 0.05,
  power: float = 0.95,
  false_alarm_rate: float = 1e-3,
  exact_variance: base.Params | None = None,
  pilot_num_samples: int = 20_000,
  max_num_samples: int = 20_000_000,
  chunk_size: int = 1024,
  rows: str | None = None,
  group_size: int | str | None = None,
) -> Report:
  r"""Tests that the estimator's mean is the exact gradient (module docs).

  :func:`assert_unbiased` raises when this report fails; use this to read
  the z-scores whatever the outcome (calibration, tables).

  Args:
    estimator: a registered name, an :class:`rgrad.EstimatorSpec`, an
      estimator function or a :class:`rgrad.base.StatefulEstimator`.
    function: the cost.
    params: pytree of concrete parameters.
    dist_builder: ``params`` -> distribution.
    key: PRNG key, consumed (split for the pilot run).
    exact: the exact gradient, a pytree like `params`.
    num_samples: rows to draw; None to choose them from `detectable_bias`.
    detectable_bias: the relative bias to detect with probability `power`
      (used when `num_samples` is None).
    power: see above, in (0, 1).
    false_alarm_rate: the family-wise probability that a correct estimator
      fails, in (0, 1).
    exact_variance: the effective per-row variance (see
      :func:`rgrad.diagnostics.gradient_moments`), to size the test without
      a pilot run.
    pilot_num_samples: rows of the pilot run that estimates the variance.
    max_num_samples: the most rows the chosen size may take.
    chunk_size: rows per estimator call (the batch size of a ``"batch"``
      group estimator or a stateful one).
    rows, group_size: the row structure, for an unregistered estimator with
      dependent rows.

  Returns:
    The :class:`Report` (``report.passed`` is the test's outcome).

  Raises:
    ValueError: bad arguments, or a chosen size above `max_num_samples`.
  """
  fn, spec, name = _resolve(estimator)
  alpha = _check_rate(false_alarm_rate, "false_alarm_rate")
  power = _check_rate(power, "power")
  _check_reference(exact, params, "exact")
  chunk_size = _internal.check_int(
    chunk_size, "assert_unbiased", what="chunk_size"
  )
  opts = _options(fn, spec, chunk_size, rows, group_size)
  scales = _reference_scales(exact)
  if num_samples is None:
    if not 0.0 < detectable_bias:
      raise ValueError(
        f"assert_unbiased: detectable_bias must be > 0, got {detectable_bias}."
      )
    if exact_variance is not None:
      _check_reference(exact_variance, params, "exact_variance")
      variance, safety = exact_variance, 1.0
    else:
      pilot_key, key = jax.random.split(key)
      pilot = _moments(
        fn,
        function,
        params,
        dist_builder,
        pilot_key,
        _round_up(pilot_num_samples, chunk_size),
        opts,
        False,
      )
      variance, safety = pilot.variance, _PILOT_SAFETY
    num_samples = _sample_size(
      variance,
      scales / math.sqrt(safety),
      alpha,
      power,
      detectable_bias,
      chunk_size,
      "variance",
    )
    if num_samples > max_num_samples:
      raise ValueError(
        f"assert_unbiased: detecting a {detectable_bias:.1%} bias in {name} "
        f"needs {num_samples} rows, more than max_num_samples="
        f"{max_num_samples}; raise it, or accept a larger detectable_bias."
      )
  num_samples = _internal.check_int(num_samples, "assert_unbiased")
  m = _moments(
    fn, function, params, dist_builder, key, num_samples, opts, False
  )
  return _report("mean", name, m, m.mean, exact, m.stderr, scales, alpha, power)


def assert_unbiased(*args: Any, **kwargs: Any) -> Report:
  """:func:`unbiasedness_report`, raising ``AssertionError`` when it fails.

  Same arguments as :func:`unbiasedness_report`; the error's message is the
  report's table (coordinate, mean, exact, z, p-value, detectable bias).
  """
  report = unbiasedness_report(*args, **kwargs)
  if not report.passed:
    raise AssertionError(report.table())
  return report


def variance_report(
  estimator: Any,
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: jax.Array,
  *,
  exact_variance: base.Params,
  num_samples: int,
  power: float = 0.95,
  false_alarm_rate: float = 1e-3,
  chunk_size: int = 1024,
  rows: str | None = None,
  group_size: int | str | None = None,
) -> Report:
  r"""Tests that the per-row variance is `exact_variance` (module docs).

  For dependent rows the variance tested is the *effective* per-row
  variance, ``group_size`` times the variance of a unit mean (see
  :func:`rgrad.diagnostics.gradient_moments`); for i.i.d. rows it is the
  variance of one row. The standard error of the sample variance comes from
  the sample fourth moment, so heavy-tailed estimates need many rows for it
  to be accurate; ``Coordinate.detectable`` is relative to the exact
  variance.

  Args:
    estimator: as for :func:`assert_unbiased`, and likewise `function`,
      `params`, `dist_builder`, `key`, `chunk_size`, `rows`, `group_size`,
      `power` and `false_alarm_rate`.
    exact_variance: a pytree like `params`, entries >= 0.
    num_samples: rows to draw.

  Returns:
    The :class:`Report` (``report.passed`` is the test's outcome).

  Raises:
    ValueError: bad arguments.
  """
  fn, spec, name = _resolve(estimator)
  alpha = _check_rate(false_alarm_rate, "false_alarm_rate")
  power = _check_rate(power, "power")
  _check_reference(exact_variance, params, "exact_variance")
  if any(np.any(np.asarray(v) < 0) for v in jax.tree.leaves(exact_variance)):
    raise ValueError("assert_variance: exact_variance must be >= 0.")
  num_samples = _internal.check_int(num_samples, "assert_variance", minimum=4)
  chunk_size = _internal.check_int(
    chunk_size, "assert_variance", what="chunk_size"
  )
  opts = _options(fn, spec, chunk_size, rows, group_size)
  m = _moments(fn, function, params, dist_builder, key, num_samples, opts, True)
  _, exact_flat = _flat(exact_variance)
  scales = np.where(exact_flat > 0, exact_flat, 1.0)
  return _report(
    "variance",
    name,
    m,
    m.variance,
    exact_variance,
    m.variance_stderr,
    scales,
    alpha,
    power,
  )


def assert_variance(*args: Any, **kwargs: Any) -> Report:
  """:func:`variance_report`, raising ``AssertionError`` when it fails."""
  report = variance_report(*args, **kwargs)
  if not report.passed:
    raise AssertionError(report.table())
  return report
