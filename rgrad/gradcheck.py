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
  r"""Pass criteria, :math:`|g - g_\text{ref}| \le \text{atol} + \text{rtol}
  |g_\text{ref}|` elementwise.

  Finite differences carry their own, looser pair: their error is
  :math:`O(\epsilon^{2/3})`, not :math:`O(\epsilon)`.
  """

  atol: float = 1e-10
  rtol: float = 1e-10
  fd_atol: float = 1e-6
  fd_rtol: float = 1e-6


@dataclasses.dataclass(frozen=True)
class LeafReport:
  """Errors of the hand gradient on one leaf of the parameters.

  Relative errors are normwise at each point, :math:`\\|a - b\\|_\\infty /
  \\max(\\|a\\|_\\infty, \\|b\\|_\\infty, \\text{atol}/\\text{rtol})`,
  maximized over the points: symmetric, and not dominated by entries or whole
  gradients that are zero up to rounding (elementwise, 1e-17 against 5e-18
  would read as 0.5). Below atol/rtol in magnitude the pass criterion is
  absolute, and so is this error.
  `fd_*` fields are None when finite differences were not run.
  """

  path: str
  shape: tuple[int, ...]
  autodiff_max_abs: float
  autodiff_max_rel: float
  autodiff_passed: bool
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
      f" atol={tol.fd_atol:g} rtol={tol.fd_rtol:g})",
      f"{'leaf':<24}{'shape':<14}{'ad max abs':>12}{'ad max rel':>12}"
      f"{'ok':>4}{'fd max abs':>12}{'fd max rel':>12}{'ok':>4}",
    ]

    def fmt(v):
      return f"{'-':>12}" if v is None else f"{v:>12.2e}"

    def ok(v):
      return f"{'-':>4}" if v is None else f"{'yes' if v else 'NO':>4}"

    for leaf in self.leaves:
      lines.append(
        f"{leaf.path[:23]:<24}{str(leaf.shape)[:13]:<14}"
        f"{fmt(leaf.autodiff_max_abs)}{fmt(leaf.autodiff_max_rel)}"
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


def _errors(hand, ref, atol, rtol, batched):
  hand, ref = np.asarray(hand, np.float64), np.asarray(ref, np.float64)
  diff = np.abs(hand - ref)
  # Normwise at each point (the leading axis when batched).
  axes = tuple(range(1 if batched else 0, diff.ndim))
  num = np.max(diff, axis=axes, initial=0.0)
  # The denominator is floored at atol / rtol, the magnitude below which the
  # pass criterion is absolute: a gradient that is zero up to rounding then
  # reads as a tiny error, not as 100%, and `rel <= rtol` tracks `passed`.
  floor = atol / rtol if rtol > 0 else 0.0
  scale = np.maximum(
    np.maximum(
      np.max(np.abs(hand), axis=axes, initial=0.0),
      np.max(np.abs(ref), axis=axes, initial=0.0),
    ),
    floor,
  )
  with np.errstate(invalid="ignore", divide="ignore"):
    rel = np.where(scale > 0, num / np.where(scale > 0, scale, 1.0), 0.0)
  rel = np.where(np.isnan(num), np.nan, rel)
  # A NaN anywhere must fail, and must show in the maxima (np.max propagates
  # it), never be skipped.
  ok = bool(np.all(diff <= atol + rtol * np.abs(ref)))
  ok = ok and bool(np.all(np.isfinite(hand)))
  return float(np.max(diff)), float(np.max(rel)), ok


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
    ad_abs, ad_rel, ad_ok = _errors(
      g, r, tolerances.atol, tolerances.rtol, batched
    )
    fd_fields = {}
    if f is not None:
      fd_abs, fd_rel, fd_ok = _errors(
        g, f, tolerances.fd_atol, tolerances.fd_rtol, batched
      )
      fd_fields = dict(fd_max_abs=fd_abs, fd_max_rel=fd_rel, fd_passed=fd_ok)
    leaves.append(
      LeafReport(
        path=leaf_name,
        shape=tuple(shape[1:] if batched else shape),
        autodiff_max_abs=ad_abs,
        autodiff_max_rel=ad_rel,
        autodiff_passed=ad_ok,
        **fd_fields,
      )
    )
  return GradCheckReport(
    name=name,
    leaves=tuple(leaves),
    tolerances=tolerances,
    num_points=num_points,
  )
