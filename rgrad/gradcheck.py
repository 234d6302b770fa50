r"""Checking a hand-derived gradient against two independent references.

A hand-derived gradient is only as good as its check. :func:`check_gradients`
compares it, leaf by leaf over a parameter pytree, with

1. **automatic differentiation** (`jax.grad` for a scalar function,
   `jax.jacrev` for a vector one), which is exact up to rounding: in float64
   the two should agree to ~1e-10 relative;
2. **central finite differences**, which need nothing but the function:

   .. math:: \partial_i f(x) \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h}.

   The error has a truncation part :math:`h^2 |f'''| / 6` and a rounding part
   :math:`\epsilon |f| / h`; balancing the two gives the step
   :math:`h \propto \epsilon^{1/3}` and an error of order
   :math:`\epsilon^{2/3} \approx 4\cdot10^{-11}` times the scale of
   :math:`f` and its derivatives, so in practice ~1e-7. We use
   :math:`h_i = \epsilon^{1/3} \max(|x_i|, 1)`, rounded so that
   :math:`x_i \pm h_i` is exact, and give finite differences their own,
   looser tolerance. Finite differences are meaningless at kinks (relu at 0)
   and need :math:`x \pm h` inside the domain.

Both comparisons are normwise per leaf (and per point when batched) and
relative to the leaf's reference scale, the max norm of its autodiff
gradient, so that they mean the same at every scale of the function; a leaf
whose reference is exactly zero has no scale and is held to an absolute bound
instead (see :class:`Tolerances`, and ``LeafReport.rule`` for which applied).

The result is a :class:`GradCheckReport`: one :class:`LeafReport` per leaf
with the max absolute and max relative error against each reference, a
`passed` flag against the tolerances, and a readable table (`str(report)`).

References:
  Nocedal & Wright, Numerical Optimization, 2nd ed., Springer 2006
  (Section 8.1, finite-difference derivative approximations).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tolerances:
  r"""Pass criteria, normwise per leaf (and per point when batched).

  With :math:`g` the hand gradient of one leaf at one point,
  :math:`g_\text{ref}` the reference and :math:`\|\cdot\|` the max norm
  over the leaf's entries:

  * **relative rule**, when :math:`\|g_\text{ref}\| > 0`:
    :math:`\|g - g_\text{ref}\| \le \text{rtol}\, \|g_\text{ref}\|`.
    Scale-free: multiplying the function by any constant changes nothing, so
    a wrong gradient fails at every scale (an absolute tolerance passes
    anything small enough);
  * **absolute rule**, when :math:`g_\text{ref}` is exactly zero (no scale
    to be relative to): :math:`\|g\| \le \text{atol}`. This bound is in
    the units of the gradient, so it is only meaningful when those are
    known; it applies to exact zeros only, never to small gradients.

  Finite differences carry their own, looser pair, relative to the same
  reference scale :math:`\|g_\text{ref}\|` (the autodiff gradient, the
  accurate one): :math:`\|g - g_\text{fd}\| \le \text{fd\_rtol}\,
  \|g_\text{ref}\|`, or :math:`\le \text{fd\_atol}` when
  :math:`g_\text{ref} = 0`; their error is :math:`O(\epsilon^{2/3})` of
  the scale of :math:`f` and its derivatives, not :math:`O(\epsilon)`.
  Normwise means that a leaf's entries much smaller than its largest one
  are checked only to ``rtol`` times that largest one (a leaf whose gradient
  is zero up to cancellation reads as wrong: check it as its own leaf, or
  batched, point by point).
  """

  atol: float = 1e-10
  rtol: float = 1e-10
  fd_atol: float = 1e-6
  fd_rtol: float = 1e-6


RELATIVE = "relative"
ABSOLUTE = "absolute"
MIXED = "mixed"


@dataclasses.dataclass(frozen=True)
class LeafReport:
  r"""Errors of the hand gradient on one leaf of the parameters.

  At each point (the leading axis when batched), with the max norm over the
  leaf's entries: the absolute error :math:`\|g - g_\text{ref}\|` and the
  relative error :math:`\|g - g_\text{ref}\| / \|g_\text{ref}\|`, which
  is 0 for two exact zeros and inf for a nonzero error against an exactly
  zero reference; the ``*_max_*`` fields are their maxima over the points.
  ``rule`` says which pass rule of :class:`Tolerances` applied:
  ``"relative"`` (the reference is nonzero at every point), ``"absolute"``
  (it is exactly zero at every point) or ``"mixed"``;
  ``zero_reference_points`` counts the points of the absolute rule.
  `fd_*` fields are None when finite differences were not run.
  """

  path: str
  shape: tuple[int, ...]
  autodiff_max_abs: float
  autodiff_max_rel: float
  autodiff_passed: bool
  rule: str = RELATIVE
  zero_reference_points: int = 0
  fd_max_abs: float | None = None
  fd_max_rel: float | None = None
  fd_passed: bool | None = None

  @property
  def passed(self) -> bool:
    return self.autodiff_passed and self.fd_passed is not False


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
  """The result of :func:`check_gradients`: one :class:`LeafReport` per leaf."""

  name: str
  leaves: tuple[LeafReport, ...]
  tolerances: Tolerances
  num_points: int = 1

  @property
  def passed(self) -> bool:
    return all(leaf.passed for leaf in self.leaves)

  @property
  def autodiff_max_abs(self) -> float:
    return max(leaf.autodiff_max_abs for leaf in self.leaves)

  @property
  def autodiff_max_rel(self) -> float:
    return max(leaf.autodiff_max_rel for leaf in self.leaves)

  @property
  def fd_max_abs(self) -> float | None:
    values = [leaf.fd_max_abs for leaf in self.leaves]
    return None if None in values else max(values)

  @property
  def fd_max_rel(self) -> float | None:
    values = [leaf.fd_max_rel for leaf in self.leaves]
    return None if None in values else max(values)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict; non-finite errors become None (strict JSON)."""

    def clean(v):
      if isinstance(v, float) and not math.isfinite(v):
        return None
      return v

    return {
      "name": self.name,
      "passed": self.passed,
      "num_points": self.num_points,
      "tolerances": dataclasses.asdict(self.tolerances),
      "leaves": [
        {k: clean(v) for k, v in dataclasses.asdict(leaf).items()}
        | {"shape": list(leaf.shape), "passed": leaf.passed}
        for leaf in self.leaves
      ],
    }

  def table(self) -> str:
    """A fixed-width table, one row per leaf."""
    status = "PASSED" if self.passed else "FAILED"
    tol = self.tolerances
    lines = [
      f"gradcheck {self.name!r}: {status} ({self.num_points} point(s);"
      f" autodiff atol={tol.atol:g} rtol={tol.rtol:g}, finite differences"
      f" atol={tol.fd_atol:g} rtol={tol.fd_rtol:g}; normwise, rel rule"
      " where the reference is nonzero, abs rule where it is exactly 0)",
      f"{'leaf':<24}{'shape':<14}{'rule':>5}{'ad max abs':>12}"
      f"{'ad max rel':>12}{'ok':>4}{'fd max abs':>12}{'fd max rel':>12}"
      f"{'ok':>4}",
    ]

    def fmt(v):
      return f"{'-':>12}" if v is None else f"{v:>12.2e}"

    def ok(v):
      return f"{'-':>4}" if v is None else f"{'yes' if v else 'NO':>4}"

    for leaf in self.leaves:
      lines.append(
        f"{leaf.path[:23]:<24}{str(leaf.shape)[:13]:<14}"
        f"{leaf.rule[:3]:>5}{fmt(leaf.autodiff_max_abs)}{fmt(leaf.autodiff_max_rel)}"
        f"{ok(leaf.autodiff_passed)}{fmt(leaf.fd_max_abs)}"
        f"{fmt(leaf.fd_max_rel)}{ok(leaf.fd_passed)}"
      )
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.table()


# ---------------------------------------------------------------------------
# Input validation.
# ---------------------------------------------------------------------------


def _leaf_names(tree: PyTree) -> list[str]:
  paths, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [jax.tree_util.keystr(p) or "<root>" for p, _ in paths]


def _validate_params(params: PyTree, require_float64: bool, batched: bool):
  leaves = jax.tree_util.tree_leaves(params)
  names = _leaf_names(params)
  if not leaves:
    raise ValueError("check_gradients: params has no leaves.")
  if require_float64 and not jax.config.jax_enable_x64:
    raise TypeError(
      "check_gradients: float64 was requested (require_float64=True) but"
      " jax_enable_x64 is off; call jax.config.update('jax_enable_x64', True)"
      " first."
    )
  num_points = None
  for name, leaf in zip(names, leaves, strict=True):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
        f"check_gradients: leaf {name} has dtype {dtype}; gradients need"
        " floating-point parameters."
      )
    if require_float64 and dtype != jnp.float64:
      raise TypeError(
        f"check_gradients: leaf {name} has dtype {dtype}, but float64 was"
        " requested (require_float64=True); cast it with"
        " .astype(jnp.float64)."
      )
    shape = jnp.shape(leaf)
    if math.prod(shape) == 0:
      raise ValueError(
        f"check_gradients: leaf {name} is empty (shape {shape})."
      )
    if batched:
      if not shape:
        raise ValueError(
          f"check_gradients: batched=True needs a leading points axis, but"
          f" leaf {name} is a scalar."
        )
      if num_points is not None and shape[0] != num_points:
        raise ValueError(
          f"check_gradients: leaf {name} has {shape[0]} points, others"
          f" {num_points}."
        )
      num_points = shape[0]
  return names, (num_points or 1)


def _validate_grads(names, params, grads, ref, out_shape, batch_shape):
  params_def = jax.tree_util.tree_structure(params)
  grads_def = jax.tree_util.tree_structure(grads)
  if params_def != grads_def:
    raise ValueError(
      "check_gradients: the hand gradient's tree structure differs from the"
      f" params'.\n  params: {params_def}\n  hand gradient: {grads_def}"
    )
  for name, g, r in zip(
    names,
    jax.tree_util.tree_leaves(grads),
    jax.tree_util.tree_leaves(ref),
    strict=True,
  ):
    if tuple(g.shape) != tuple(r.shape):
      raise ValueError(
        f"check_gradients: hand gradient for leaf {name} has shape"
        f" {tuple(g.shape)}, expected {tuple(r.shape)} (= points"
        f" {batch_shape} + output {out_shape} + leaf shape)."
      )


# ---------------------------------------------------------------------------
# The references.
# ---------------------------------------------------------------------------


def _autodiff_reference(function: Callable, scalar: bool) -> Callable:
  return jax.grad(function) if scalar else jax.jacrev(function)


def finite_difference_gradient(function: Callable, params: PyTree) -> PyTree:
  r"""Central finite differences of `function` at one point, every leaf.

  Args:
    function: `params -> array` (scalar or not).
    params: a pytree of floating arrays.

  Returns:
    A pytree like `params` whose leaves are `[*out_shape, *leaf.shape]` (the
    `jax.jacrev` layout; `leaf.shape` for a scalar function).
  """
  leaves, treedef = jax.tree_util.tree_flatten(params)
  out_shape = jnp.shape(jax.eval_shape(function, params))
  result = []
  for index, leaf in enumerate(leaves):
    leaf = jnp.asarray(leaf)
    eps = jnp.finfo(leaf.dtype).eps
    flat = leaf.reshape(-1)  # [n]
    h = eps ** (1.0 / 3.0) * jnp.maximum(jnp.abs(flat), 1.0)
    # Round the step so that x + h is exactly representable: the quotient then
    # divides by the step that was actually taken.
    h = (flat + h) - flat
    steps = jnp.diag(h)  # [n, n], row i = h_i e_i

    def shifted(step, index=index, leaf=leaf):
      new = list(leaves)
      new[index] = leaf + step.reshape(leaf.shape)
      return function(jax.tree_util.tree_unflatten(treedef, new))

    plus = jax.vmap(shifted)(steps)  # [n, *out_shape]
    minus = jax.vmap(shifted)(-steps)
    quotient = (plus - minus) / (2.0 * h.reshape((-1,) + (1,) * len(out_shape)))
    # [n, *out] -> [*out, n] -> [*out, *leaf.shape]
    quotient = jnp.moveaxis(quotient, 0, -1)
    result.append(quotient.reshape(out_shape + leaf.shape))
  return jax.tree_util.tree_unflatten(treedef, result)


def _per_point_max(x, batched):
  """Max of |x| over each point's entries: ``[num_points]`` (1 if unbatched).

  NaN propagates (np.max does), so a NaN entry shows and fails.
  """
  x = np.abs(np.asarray(x, np.float64))
  x = x.reshape((x.shape[0] if batched else 1, -1))
  return np.max(x, axis=1)


def _compare(hand, other, scale, atol, rtol, batched):
  """Normwise errors of `hand` against `other`, relative to `scale`.

  Args:
    hand: the hand gradient of one leaf.
    other: the reference to compare with (autodiff or finite differences).
    scale: ``[num_points]``, the leaf's reference scale at each point: the
      max norm of the autodiff gradient.
    atol, rtol: the rules of :class:`Tolerances`.
    batched: whether the leading axis is the points'.

  Returns:
    ``(max abs error, max rel error, passed)``.
  """
  hand = np.asarray(hand, np.float64)
  diff = _per_point_max(hand - np.asarray(other, np.float64), batched)
  zero = scale == 0.0
  with np.errstate(invalid="ignore", divide="ignore"):
    # 0/0 (two exact zeros) reads 0, x/0 reads inf; NaN stays NaN.
    rel = np.where(zero & (diff == 0.0), 0.0, diff / scale)
  ok = np.where(zero, diff <= atol, diff <= rtol * scale)
  # A NaN or inf anywhere -- in the hand gradient or in the reference --
  # must fail and show in the maxima, never be skipped.
  ok = bool(np.all(ok)) and bool(np.all(np.isfinite(hand)))
  ok = ok and bool(np.all(np.isfinite(scale)))
  return float(np.max(diff)), float(np.max(rel)), ok


def _rule(num_zero: int, num_points: int) -> str:
  if num_zero == 0:
    return RELATIVE
  return ABSOLUTE if num_zero == num_points else MIXED


# ---------------------------------------------------------------------------
# The check.
# ---------------------------------------------------------------------------


def check_gradients(
  function: Callable[[PyTree], jax.Array],
  grad_function: Callable[[PyTree], PyTree],
  params: PyTree,
  *,
  name: str = "",
  tolerances: Tolerances | None = None,
  finite_differences: bool = True,
  require_float64: bool = True,
  batched: bool = False,
) -> GradCheckReport:
  r"""Compares a hand-derived gradient with autodiff and finite differences.

  Args:
    function: the plain function, `params -> array`; a scalar output is
      checked against `jax.grad`, any other against `jax.jacrev`.
    grad_function: the hand derivative (jit-compatible; it is compiled with
      the references), `params -> pytree like params` with
      leaves `[*out_shape, *leaf.shape]` (the `jax.jacrev` layout; just
      `leaf.shape` for a scalar function).
    params: the point, a pytree of floating arrays.
    name: a label for the report.
    tolerances: see :class:`Tolerances` (default: its defaults).
    finite_differences: also compare with central finite differences.
    require_float64: demand float64 leaves (and `jax_enable_x64`).
    batched: every leaf of `params` has a leading axis of points;
      `function` and `grad_function` are for one point and are vmapped, and
      the errors are maxima over all points.

  Returns:
    A :class:`GradCheckReport`.

  Raises:
    TypeError: non-floating leaves, or leaves that are not float64 (or x64
      disabled) when `require_float64`.
    ValueError: empty params or leaves, a mismatched number of points, or a
      hand gradient whose structure or leaf shapes differ from the reference
      (the message names the leaf).
  """
  tolerances = Tolerances() if tolerances is None else tolerances
  names, num_points = _validate_params(params, require_float64, batched)
  point = jax.tree_util.tree_map(lambda p: p[0], params) if batched else params
  out_struct = jax.eval_shape(function, point)
  out_shape = tuple(out_struct.shape)
  if math.prod(out_shape) == 0:
    raise ValueError(
      f"check_gradients: function returns an empty array {out_shape}."
    )
  reference = _autodiff_reference(function, scalar=out_shape == ())
  fd = lambda p: finite_difference_gradient(function, p)
  if batched:
    grad_function, reference, fd = (
      jax.vmap(grad_function),
      jax.vmap(reference),
      jax.vmap(fd),
    )
  batch_shape = (num_points,) if batched else ()
  # Shapes first (tracing only), so that a mismatch names its leaf ...
  _validate_grads(
    names,
    params,
    jax.eval_shape(grad_function, params),
    jax.eval_shape(reference, params),
    out_shape,
    batch_shape,
  )
  # ... then the hand gradient and both references in one program: one
  # compilation per check instead of one per operation.
  hand, ref, fd_ref = jax.jit(
    lambda p: (
      grad_function(p),
      reference(p),
      fd(p) if finite_differences else None,
    )
  )(params)

  leaves = []
  hand_leaves = jax.tree_util.tree_leaves(hand)
  ref_leaves = jax.tree_util.tree_leaves(ref)
  fd_leaves = (
    jax.tree_util.tree_leaves(fd_ref)
    if finite_differences
    else [None] * len(names)
  )
  shapes = [jnp.shape(p) for p in jax.tree_util.tree_leaves(params)]
  for leaf_name, shape, g, r, f in zip(
    names, shapes, hand_leaves, ref_leaves, fd_leaves, strict=True
  ):
    scale = _per_point_max(r, batched)  # [num_points]
    # Against an exact zero ||g - ref|| = ||g||: the absolute rule.
    ad_abs, ad_rel, ad_ok = _compare(
      g, r, scale, tolerances.atol, tolerances.rtol, batched
    )
    num_zero = int(np.sum(scale == 0.0))
    fd_fields = {}
    if f is not None:
      fd_abs, fd_rel, fd_ok = _compare(
        g, f, scale, tolerances.fd_atol, tolerances.fd_rtol, batched
      )
      fd_fields = dict(fd_max_abs=fd_abs, fd_max_rel=fd_rel, fd_passed=fd_ok)
    leaves.append(
      LeafReport(
        path=leaf_name,
        shape=tuple(shape[1:] if batched else shape),
        autodiff_max_abs=ad_abs,
        autodiff_max_rel=ad_rel,
        autodiff_passed=ad_ok,
        rule=_rule(num_zero, scale.size),
        zero_reference_points=num_zero,
        **fd_fields,
      )
    )
  return GradCheckReport(
    name=name,
    leaves=tuple(leaves),
    tolerances=tolerances,
    num_points=num_points,
  )
