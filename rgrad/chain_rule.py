r"""The chain rule: composing hand-derived derivatives.

For a composition :math:`h = f \circ g`, the derivative of the whole is the
product of the derivatives of the parts, each evaluated where the chain
passes:

.. math:: \frac{dh}{dx}(x) = \frac{df}{dg}\big(g(x)\big)\,\frac{dg}{dx}(x).

*Seed example.* A car goes 2 times as fast as a bike and a bike 4 times as
fast as a walker, so the car goes :math:`2 \cdot 4 = 8` times as fast as the
walker: with :math:`g(x) = 4x` and :math:`f(g) = 2g`,
:math:`d f(g(x))/dx = 2 \cdot 4 = 8` (see :func:`car_bike_walker`).

For a chain :math:`y = f_k(\dots f_2(f_1(x)))` with intermediate values
:math:`x_0 = x, x_i = f_i(x_{i-1})` and Jacobians
:math:`J_i = \partial f_i / \partial x_{i-1}`, the derivative is
:math:`J = J_k \cdots J_2 J_1`. The product is associative, which leaves a
choice of order, and the order is what distinguishes the modes of automatic
differentiation:

* **forward mode** pushes a tangent :math:`t` from the input outwards,
  :math:`J t = J_k(\cdots(J_1 t))`, one Jacobian-vector product (JVP) per
  primitive, alongside the values (:func:`chain_jvp`);
* **reverse mode** first runs the chain forward, storing every
  :math:`x_{i-1}`, then pulls a cotangent :math:`v` back from the output,
  :math:`v^\top J = ((v^\top J_k) \cdots) J_1`, one vector-Jacobian product
  (VJP) per primitive (:func:`chain_vjp`). For a scalar output with
  :math:`v = 1` this is the gradient in one sweep (:func:`chain_grad`);
* **full Jacobians** multiply the matrices :math:`J_i` themselves
  (:func:`chain_jacobian`).

None of these touch `jax.grad`: every factor is a hand derivative from
:mod:`rgrad.primitives`, so `jax.grad` remains an independent check.

References:
  Griewank & Walther, Evaluating Derivatives, 2nd ed., SIAM 2008 (Ch. 3).
  Baydin et al., Automatic Differentiation in Machine Learning: a Survey,
  JMLR 2018, https://arxiv.org/abs/1502.05767 (Section 3).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad import primitives as prims

# ---------------------------------------------------------------------------
# Building chains.
# ---------------------------------------------------------------------------


class Chain(NamedTuple):
  r"""A composition :math:`f_1 \circ f_2 \circ \dots \circ f_k`.

  Attributes:
    primitives: the primitives in mathematical order, **outermost first**:
      `Chain((f, g))` is :math:`f \circ g`, i.e. `x -> f(g(x))`.
  """

  primitives: tuple[prims.Primitive, ...]

  @property
  def name(self) -> str:
    return " o ".join(p.name for p in self.primitives)


def compose(*functions: prims.Primitive | str) -> Chain:
  r"""Composes primitives, outermost first: `compose(f, g)` is :math:`f\circ g`.

  Args:
    *functions: :class:`~rgrad.primitives.Primitive` objects or registry
      names (looked up with :func:`~rgrad.primitives.get_primitive`).

  Returns:
    A :class:`Chain`.

  Raises:
    ValueError: for an empty chain, an unknown name, or a vector primitive
      applied after a reduction to a scalar (e.g. softmax of a log-sum-exp).
    TypeError: for anything that is neither a primitive nor a name.
  """
  if not functions:
    raise ValueError("compose: needs at least one primitive.")
  resolved = []
  for f in functions:
    if isinstance(f, str):
      f = prims.get_primitive(f)
    elif not isinstance(f, prims.Primitive):
      raise TypeError(
        f"compose: expected a Primitive or a registry name, got {f!r}."
      )
    resolved.append(f)
  # Walk from the innermost primitive: once the value is a scalar, only
  # elementwise primitives make sense.
  reduced = None
  for f in reversed(resolved):
    if reduced is not None and not f.elementwise:
      raise ValueError(
        f"compose: {f.name!r} acts on vectors but is applied after"
        f" {reduced!r}, which returns a scalar."
      )
    if f.reduces:
      reduced = f.name
  return Chain(tuple(resolved))


def _innermost_first(chain: Chain) -> tuple[prims.Primitive, ...]:
  if not isinstance(chain, Chain):
    raise TypeError(f"Expected a Chain (see compose), got {type(chain)}.")
  return tuple(reversed(chain.primitives))


def chain_value(chain: Chain, x: jax.typing.ArrayLike) -> jax.Array:
  """Evaluates the chain, `f_1(f_2(...f_k(x)))`."""
  x = jnp.asarray(x)
  for f in _innermost_first(chain):
    x = f.fn(x)
  return x


# ---------------------------------------------------------------------------
# Forward mode: push a tangent through.
# ---------------------------------------------------------------------------


def chain_jvp(
  chain: Chain, x: jax.typing.ArrayLike, tangent: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""Value and Jacobian-vector product, forward mode.

  Carries the pair :math:`(x_i, t_i)` from the input outwards with
  :math:`x_i = f_i(x_{i-1})` and :math:`t_i = J_i(x_{i-1})\,t_{i-1}`; no
  intermediate needs to be stored, so memory does not grow with the length.

  Args:
    chain: the composition.
    x: the input, `[...]`.
    tangent: :math:`t_0`, shaped like `x`.

  Returns:
    `(y, J t)` with `J t` shaped like `y`.

  Raises:
    ValueError: if `tangent` is not shaped like `x`.
  """
  x, t = jnp.asarray(x), jnp.asarray(tangent)
  if x.shape != t.shape:
    raise ValueError(
      f"chain_jvp: tangent shape {t.shape} differs from x shape {x.shape}."
    )
  for f in _innermost_first(chain):
    # The JVP uses x_{i-1}, so advance the tangent before the value.
    x, t = f.fn(x), f.jvp(x, t)
  return x, t


# ---------------------------------------------------------------------------
# Reverse mode: pull a cotangent back.
# ---------------------------------------------------------------------------


def chain_vjp(
  chain: Chain, x: jax.typing.ArrayLike
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
  r"""Value and a pullback :math:`v \mapsto v^\top J`, reverse mode.

  The forward sweep stores every intermediate input :math:`x_{i-1}` (the
  "tape"); the pullback then walks the chain backwards,
  :math:`\bar x_{i-1} = \bar x_i^\top J_i(x_{i-1})`, starting from
  :math:`\bar x_k = v`. Same calling convention as `jax.vjp`.

  Args:
    chain: the composition.
    x: the input.

  Returns:
    `(y, pullback)`, where `pullback(v)` takes `v` shaped like `y` and returns
    :math:`v^\top J` shaped like `x`.
  """
  tape = []  # x_0, ..., x_{k-1}: the input of each primitive.
  y = jnp.asarray(x)
  for f in _innermost_first(chain):
    tape.append(y)
    y = f.fn(y)
  y_shape = y.shape

  def pullback(v: jax.typing.ArrayLike) -> jax.Array:
    v = jnp.asarray(v)
    if v.shape != y_shape:
      raise ValueError(
        f"chain_vjp: cotangent shape {v.shape} differs from output shape"
        f" {y_shape}."
      )
    # Outermost primitive first: it was applied last, to the last input.
    for f, x_in in zip(chain.primitives, reversed(tape), strict=True):
      v = f.vjp(x_in, v)
    return v

  return y, pullback


def chain_grad(
  chain: Chain, x: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""Value and gradient of a scalar-valued chain, by one reverse sweep.

  The gradient is the VJP with the cotangent :math:`v = 1`:
  :math:`\nabla y = 1 \cdot J_k J_{k-1} \cdots J_1`.

  Raises:
    ValueError: if the chain's output is not a scalar.
  """
  y, pullback = chain_vjp(chain, x)
  if y.shape != ():
    raise ValueError(
      f"chain_grad: needs a scalar output, got shape {y.shape}; use"
      " chain_vjp or chain_jacobian."
    )
  return y, pullback(jnp.ones_like(y))


# ---------------------------------------------------------------------------
# Full Jacobians: products of matrices.
# ---------------------------------------------------------------------------


def jacobian_product(
  df_dg: jax.typing.ArrayLike,
  dg_dx: jax.typing.ArrayLike,
  g_shape: tuple[int, ...],
) -> jax.Array:
  r"""The chain rule for Jacobians: :math:`\frac{df}{dx} = \frac{df}{dg}
  \frac{dg}{dx}`.

  Jacobians use the `jax.jacfwd` layout, `out.shape + in.shape`, so the
  product contracts the trailing `g` axes of `df_dg` with the leading `g`
  axes of `dg_dx`: :math:`(\partial f/\partial x)_{a,c} = \sum_b
  (\partial f/\partial g)_{a,b} (\partial g/\partial x)_{b,c}`. The shape
  of `g` is needed because it cannot be read off the two arrays (a `[n]`
  Jacobian may be a gradient or a derivative of a vector).

  Args:
    df_dg: `f.shape + g_shape`.
    dg_dx: `g_shape + x.shape`.
    g_shape: shape of the intermediate value `g`.

  Returns:
    `f.shape + x.shape`.

  Raises:
    ValueError: if the `g` axes of the two Jacobians do not match `g_shape`.
  """
  df_dg, dg_dx = jnp.asarray(df_dg), jnp.asarray(dg_dx)
  g_shape = tuple(g_shape)
  k = len(g_shape)
  if df_dg.shape[df_dg.ndim - k :] != g_shape or dg_dx.shape[:k] != g_shape:
    raise ValueError(
      f"jacobian_product: df/dg {df_dg.shape} and dg/dx {dg_dx.shape} do not"
      f" share the intermediate shape {g_shape}."
    )
  return jnp.tensordot(df_dg, dg_dx, axes=k)


def chain_jacobian(
  chain: Chain, x: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""Value and full Jacobian :math:`J = J_k \cdots J_1`, as matrix products.

  The product is accumulated from the input side (forward accumulation),
  :math:`J_{1..i} = J_i J_{1..i-1}`, with :func:`jacobian_product`; every
  factor is in the `jax.jacfwd` layout `out.shape + in.shape`.

  Args:
    chain: the composition.
    x: the input, a scalar or a vector `[n]`.

  Returns:
    `(y, J)` with `J` of shape `y.shape + x.shape`.

  Raises:
    ValueError: if `x` has rank above 1.
  """
  x = jnp.asarray(x)
  if x.ndim > 1:
    raise ValueError(
      f"chain_jacobian: x must be a scalar or a vector, got shape {x.shape}."
    )
  y = x
  # dx/dx: the identity, [*x.shape, *x.shape].
  jac = jnp.eye(x.size, dtype=x.dtype).reshape(x.shape + x.shape)
  for f in _innermost_first(chain):
    # [*y_i.shape, *y_{i-1}.shape] @ [*y_{i-1}.shape, *x.shape]
    jac = jacobian_product(f.jacobian(y), jac, y.shape)
    y = f.fn(y)
  return y, jac


# ---------------------------------------------------------------------------
# The seed example and closure under composition.
# ---------------------------------------------------------------------------


def car_bike_walker(x: jax.typing.ArrayLike = 1.0) -> tuple[jax.Array, ...]:
  r"""The seed example: :math:`g(x) = 4x` (bike per walker), :math:`f(g) =
  2g` (car per bike); returns `(f(g(x)), df/dx)` with `df/dx = 2 * 4 = 8`."""
  chain = compose(
    prims.scale_primitive(2.0, "car_per_bike"),
    prims.scale_primitive(4.0, "bike_per_walker"),
  )
  return chain_grad(chain, jnp.asarray(x, dtype=float))


def as_primitive(chain: Chain, name: str | None = None) -> prims.Primitive:
  r"""Wraps a chain as a :class:`~rgrad.primitives.Primitive`.

  Its derivative, JVP, VJP and Jacobian are the chain-rule products above, so
  composites compose again (:math:`(f\circ g)\circ h`) exactly like
  primitives.
  """
  elementwise = all(p.elementwise for p in chain.primitives)
  reduces = any(p.reduces for p in chain.primitives)

  def derivative(x):
    if elementwise:
      # A chain of elementwise maps is elementwise: f'(x) = J t with t = 1.
      return chain_jvp(chain, x, jnp.ones_like(jnp.asarray(x)))[1]
    return chain_jacobian(chain, x)[1]

  def image(lo, hi, n):
    for p in reversed(chain.primitives):
      lo, hi = p.image(lo, hi, n)
      n = 1 if p.reduces else n
    return lo, hi

  return prims.Primitive(
    name=name or f"({chain.name})",
    fn=lambda x: chain_value(chain, x),
    derivative=derivative,
    jvp=lambda x, t: chain_jvp(chain, x, t)[1],
    vjp=lambda x, v: chain_vjp(chain, x)[1](v),
    jacobian=lambda x: chain_jacobian(chain, x)[1],
    domain=chain.primitives[-1].domain,
    image=image,
    elementwise=elementwise,
    reduces=reduces,
  )


# ---------------------------------------------------------------------------
# Random chains, kept inside every domain.
# ---------------------------------------------------------------------------


def sample_chain(
  key: jax.Array,
  depth: int,
  *,
  dim: int = 4,
  interval: tuple[float, float] = (-2.0, 2.0),
  max_abs: float = 20.0,
  margin: float = 0.05,
  names: tuple[str, ...] | None = None,
) -> Chain:
  r"""Draws a random chain of `depth` registry primitives that stays valid.

  Interval arithmetic keeps every intermediate value inside the next
  primitive's domain: starting from inputs in `interval`, a primitive is a
  candidate only if the current interval lies inside its domain with a
  `margin` to spare (so :math:`\log` never sees a value near 0, and central
  finite differences do not step out of the domain), and if its image stays
  within :math:`[-\text{max\_abs}, \text{max\_abs}]` (so repeated
  exponentials cannot overflow). Vector primitives are candidates while the
  value is a vector; after log-sum-exp only elementwise ones are.

  Args:
    key: a `jax.random.key`, consumed.
    depth: number of primitives, >= 1.
    dim: size of the input vector, >= 1.
    interval: `(lo, hi)` that will contain the inputs.
    max_abs: bound on every intermediate value.
    margin: minimum distance to a finite domain boundary.
    names: the registry names to draw from (default: all).

  Returns:
    A :class:`Chain` valid for every input in `interval^dim`.

  Raises:
    ValueError: for `depth < 1`, `dim < 1`, an unknown name, or when no
      primitive can continue the chain.
  """
  if depth < 1 or dim < 1:
    raise ValueError(
      f"sample_chain: depth and dim must be >= 1, got {depth}, {dim}."
    )
  pool = [prims.get_primitive(n) for n in (names or sorted(prims.PRIMITIVES))]
  lo, hi = interval
  n = dim
  drawn = []  # innermost first
  for step in range(depth):
    candidates = []
    for p in pool:
      d_lo, d_hi = p.domain
      if not (lo - d_lo > margin and d_hi - hi > margin):
        continue
      if not p.elementwise and n == 1:
        continue  # softmax or log-sum-exp of a scalar is trivial.
      i_lo, i_hi = p.image(lo, hi, n)
      if not (math.isfinite(i_lo) and math.isfinite(i_hi)):
        continue
      if max(abs(i_lo), abs(i_hi)) > max_abs:
        continue
      candidates.append((p, i_lo, i_hi))
    if not candidates:
      raise ValueError(
        f"sample_chain: no primitive accepts inputs in [{lo}, {hi}] at step"
        f" {step}."
      )
    index = int(
      jax.random.randint(jax.random.fold_in(key, step), (), 0, len(candidates))
    )
    p, lo, hi = candidates[index]
    n = 1 if p.reduces else n
    drawn.append(p)
  del key
  return compose(*reversed(drawn))
