r"""Backpropagation by hand: an MLP and backpropagation through time.

Backpropagation is reverse-mode differentiation (see :mod:`rgrad.chain_rule`)
applied to a network: run it forward, keep what the backward pass will need
(the inputs and pre-activations of every layer), then pull the cotangent of
the scalar loss back layer by layer. Each layer needs only two VJPs from
:mod:`rgrad.primitives`: the elementwise activation,
:math:`\bar z = \bar h \odot \phi'(z)`, and the affine map,
:math:`\bar x = W^\top \bar z,\ \bar W = \bar z x^\top,\ \bar b = \bar z`
(summed over the batch).

For a recurrent network the same weights act at every step, so their
gradient is a sum over time, and the cotangent of the hidden state flows
backwards through time (BPTT): :math:`\bar h_{t-1} = W_{hh}^\top
(\bar h_t \odot \tanh'(a_t))`. Its size after :math:`T` steps is a product of
:math:`T` Jacobians, which is why RNN gradients vanish or explode.

Both loss-and-gradient functions return what
`jax.value_and_grad(loss, argnums=...)` returns, so they are drop-in
checkable; neither calls `jax.grad`.

References:
  Rumelhart, Hinton & Williams, Learning representations by back-propagating
  errors, Nature 1986.
  Werbos, Backpropagation through time: what it does and how to do it,
  Proc. IEEE 1990.
  Pascanu, Mikolov & Bengio, On the difficulty of training recurrent neural
  networks, ICML 2013, https://arxiv.org/abs/1211.5063.
"""

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp

from rgrad import primitives as prims

MLPParams = Sequence[dict[str, jax.Array]]  # [{"w": [out, in], "b": [out]}]

# ---------------------------------------------------------------------------
# A multilayer perceptron.
# ---------------------------------------------------------------------------


def _activation(name: str) -> prims.Primitive:
  prim = prims.get_primitive(name)
  if not prim.elementwise:
    raise ValueError(
      f"activation must be an elementwise primitive (e.g. 'tanh', 'relu'),"
      f" got {name!r}."
    )
  return prim


def mlp_init(
  key: chex.PRNGKey, layer_sizes: Sequence[int], dtype=jnp.float64
) -> list[dict[str, jax.Array]]:
  r"""LeCun-normal weights :math:`W \sim N(0, 1/\text{fan\_in})`, zero biases.

  Args:
    key: a `jax.random.key`, consumed.
    layer_sizes: `[in, hidden..., out]`, at least two sizes, all >= 1.
    dtype: parameter dtype.

  Returns:
    A list of `{"w": [out, in], "b": [out]}`, one per layer.
  """
  if len(layer_sizes) < 2 or min(layer_sizes) < 1:
    raise ValueError(
      f"mlp_init: layer_sizes needs >= 2 positive sizes, got {layer_sizes}."
    )
  keys = jax.random.split(key, len(layer_sizes) - 1)
  del key
  params = []
  for k, fan_in, fan_out in zip(
    keys, layer_sizes[:-1], layer_sizes[1:], strict=True
  ):
    w = jax.random.normal(k, (fan_out, fan_in), dtype) / jnp.sqrt(fan_in)
    params.append({"w": w, "b": jnp.zeros((fan_out,), dtype)})
  return params


def _check_mlp(params: MLPParams, x: jax.Array) -> None:
  if not isinstance(params, (list, tuple)) or not params:
    raise ValueError(
      "mlp: params must be a non-empty list/tuple of {'w', 'b'} dicts."
    )
  if x.ndim != 2:
    raise ValueError(f"mlp: x must be [batch, in], got shape {x.shape}.")
  width = x.shape[1]
  for i, layer in enumerate(params):
    if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
      raise ValueError(f"mlp: layer {i} must be a dict with keys 'w', 'b'.")
    w, b = layer["w"], layer["b"]
    if jnp.ndim(w) != 2 or jnp.shape(w)[1] != width:
      raise ValueError(
        f"mlp: layer {i} 'w' must be [out, {width}], got {jnp.shape(w)}."
      )
    if jnp.shape(b) != (jnp.shape(w)[0],):
      raise ValueError(
        f"mlp: layer {i} 'b' must be [{jnp.shape(w)[0]}], got {jnp.shape(b)}."
      )
    width = jnp.shape(w)[0]


def mlp_forward(
  params: MLPParams, x: jax.typing.ArrayLike, activation: str = "tanh"
) -> tuple[jax.Array, tuple[tuple[jax.Array, jax.Array], ...]]:
  r"""Forward pass, keeping what the backward pass needs.

  :math:`h_0 = x,\ z_l = W_l h_{l-1} + b_l,\ h_l = \phi(z_l)` for hidden
  layers; the last layer is linear, :math:`\hat y = z_L`.

  Args:
    params: list of `{"w": [out, in], "b": [out]}`.
    x: inputs, `[batch, in]`.
    activation: name of an elementwise registry primitive ('tanh', 'relu').

  Returns:
    `(outputs [batch, out], cache)` with `cache[l] = (h_{l-1}, z_l)`, the
    input and pre-activation of layer `l`.
  """
  x = jnp.asarray(x)
  _check_mlp(params, x)
  phi = _activation(activation)
  cache = []
  h = x
  for i, layer in enumerate(params):
    z = prims.affine(h, layer["w"], layer["b"])  # [batch, out_l]
    cache.append((h, z))
    h = z if i == len(params) - 1 else phi.fn(z)
  return h, tuple(cache)


def mlp_loss(
  params: MLPParams,
  x: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  activation: str = "tanh",
) -> jax.Array:
  r"""Mean squared error of the MLP over the batch, :math:`\frac{1}{BO}
  \sum_{n,o} (\hat y_{no} - y_{no})^2`."""
  outputs, _ = mlp_forward(params, x, activation)
  return prims.mean_squared_error(outputs, targets)


def mlp_loss_and_grads(
  params: MLPParams,
  x: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  activation: str = "tanh",
) -> tuple[jax.Array, MLPParams]:
  r"""Loss and hand-derived gradients for every parameter, by backprop.

  Backward recursion, from :math:`\bar z_L = \partial\ell/\partial\hat y`:

  .. math:: \bar W_l = \bar z_l^\top h_{l-1}, \quad
            \bar b_l = \textstyle\sum_n \bar z_{l,n}, \quad
            \bar h_{l-1} = \bar z_l W_l, \quad
            \bar z_{l-1} = \bar h_{l-1} \odot \phi'(z_{l-1}).

  Args:
    params: list/tuple of `{"w": [out, in], "b": [out]}`.
    x: inputs, `[batch, in]`.
    targets: `[batch, out]`.
    activation: 'tanh', 'relu' or another elementwise registry primitive
      (relu uses the subgradient 0 at 0).

  Returns:
    `(loss, grads)`, like `jax.value_and_grad(mlp_loss)(params, x, targets)`:
    `grads` has the container type and structure of `params`.
  """
  outputs, cache = mlp_forward(params, x, activation)
  targets = jnp.asarray(targets)
  chex.assert_equal_shape((outputs, targets))
  phi = _activation(activation)
  loss = prims.mean_squared_error(outputs, targets)
  cotangent = prims.mean_squared_error_grads(outputs, targets).predictions
  grads = [None] * len(params)
  for i in reversed(range(len(params))):
    h_in, z = cache[i]
    if i < len(params) - 1:
      # Through the activation: the Jacobian of an elementwise map is
      # diagonal, so its VJP is a product.
      cotangent = phi.vjp(z, cotangent)
    g = prims.affine_vjp(h_in, params[i]["w"], params[i]["b"], cotangent)
    grads[i] = {"w": g.w, "b": g.b}
    cotangent = g.x  # [batch, in_l], the cotangent of h_{l-1}
  return loss, type(params)(grads)


# ---------------------------------------------------------------------------
# Backpropagation through time for a vanilla tanh RNN.
# ---------------------------------------------------------------------------

_RNN_KEYS = ("b_h", "b_y", "w_hh", "w_hy", "w_xh")


def rnn_init(
  key: chex.PRNGKey,
  input_size: int,
  hidden_size: int,
  output_size: int,
  *,
  recurrent_scale: float = 1.0,
  dtype=jnp.float64,
) -> dict[str, jax.Array]:
  r"""Parameters of :math:`h_t = \tanh(W_{hh} h_{t-1} + W_{xh} x_t + b_h)`,
  :math:`y_t = W_{hy} h_t + b_y`.

  :math:`W_{hh} \sim N(0, s^2/H)` with `s = recurrent_scale`: its spectral
  radius is then about `s`, which (with tanh' <= 1) sets whether gradients
  through time shrink (s < 1) or may grow (s > 1).

  Returns:
    `{"w_hh": [H, H], "w_xh": [H, I], "b_h": [H], "w_hy": [O, H],
    "b_y": [O]}`.
  """
  if min(input_size, hidden_size, output_size) < 1:
    raise ValueError("rnn_init: all sizes must be >= 1.")
  k_hh, k_xh, k_hy = jax.random.split(key, 3)
  del key
  h, i, o = hidden_size, input_size, output_size
  return {
    "w_hh": recurrent_scale * jax.random.normal(k_hh, (h, h), dtype) / h**0.5,
    "w_xh": jax.random.normal(k_xh, (h, i), dtype) / i**0.5,
    "b_h": jnp.zeros((h,), dtype),
    "w_hy": jax.random.normal(k_hy, (o, h), dtype) / h**0.5,
    "b_y": jnp.zeros((o,), dtype),
  }


def _check_rnn(params, h0, xs, targets=None, step_weights=None):
  if not isinstance(params, dict) or set(params) != set(_RNN_KEYS):
    raise ValueError(f"rnn: params must be a dict with keys {_RNN_KEYS}.")
  hidden = jnp.shape(params["w_hh"])[0] if jnp.ndim(params["w_hh"]) else 0
  expected = {
    "w_hh": (hidden, hidden),
    "w_xh": (hidden, jnp.shape(xs)[-1] if jnp.ndim(xs) else 0),
    "b_h": (hidden,),
    "w_hy": (jnp.shape(params["w_hy"])[0], hidden),
    "b_y": (jnp.shape(params["w_hy"])[0],),
  }
  if jnp.ndim(xs) != 2 or jnp.shape(xs)[0] < 1:
    raise ValueError(
      f"rnn: xs must be [T, input], T >= 1, got {jnp.shape(xs)}."
    )
  for name, shape in expected.items():
    if jnp.shape(params[name]) != shape:
      raise ValueError(
        f"rnn: params[{name!r}] must have shape {shape}, got"
        f" {jnp.shape(params[name])}."
      )
  if jnp.shape(h0) != (hidden,):
    raise ValueError(f"rnn: h0 must be [{hidden}], got {jnp.shape(h0)}.")
  num_steps = jnp.shape(xs)[0]
  if targets is not None and jnp.shape(targets) != (
    num_steps,
    expected["b_y"][0],
  ):
    raise ValueError(
      f"rnn: targets must be [T, output] = {(num_steps, expected['b_y'][0])},"
      f" got {jnp.shape(targets)}."
    )
  if step_weights is not None and jnp.shape(step_weights) != (num_steps,):
    raise ValueError(
      f"rnn: step_weights must be [T] = ({num_steps},), got"
      f" {jnp.shape(step_weights)}."
    )


def rnn_forward(
  params: dict[str, jax.Array],
  h0: jax.typing.ArrayLike,
  xs: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Runs the RNN over a sequence with `lax.scan`.

  Args:
    params: see :func:`rnn_init`.
    h0: initial state, `[H]`.
    xs: inputs, `[T, I]`.

  Returns:
    `(ys [T, O], hs [T, H], pre_activations [T, H])` where
    `pre_activations[t]` is :math:`a_t = W_{hh} h_{t-1} + W_{xh} x_t + b_h`.
  """
  h0, xs = jnp.asarray(h0), jnp.asarray(xs)
  _check_rnn(params, h0, xs)

  def step(h_prev, x_t):
    a = params["w_hh"] @ h_prev + params["w_xh"] @ x_t + params["b_h"]
    h = prims.tanh(a)
    return h, (h, a)

  _, (hs, pre) = jax.lax.scan(step, h0, xs)
  ys = prims.affine(hs, params["w_hy"], params["b_y"])  # [T, O]
  return ys, hs, pre


def rnn_loss(
  params: dict[str, jax.Array],
  h0: jax.typing.ArrayLike,
  xs: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  step_weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r""":math:`L = \sum_t w_t\, \mathrm{MSE}(y_t, \text{target}_t)`, a loss at
  every step (weights :math:`w_t = 1` by default).

  One-hot `step_weights` isolate a single step's loss, e.g. the last one for
  :math:`\partial\ell_T/\partial h_0`.

  Args:
    params: see :func:`rnn_init`.
    h0: `[H]`.
    xs: `[T, I]`.
    targets: `[T, O]`.
    step_weights: `[T]` or None.
  """
  ys, _, _ = rnn_forward(params, h0, xs)
  targets = jnp.asarray(targets)
  _check_rnn(params, h0, xs, targets, step_weights)
  per_step = jnp.mean(jnp.square(ys - targets), axis=-1)  # [T]
  if step_weights is None:
    return jnp.sum(per_step)
  return jnp.sum(jnp.asarray(step_weights) * per_step)


def rnn_loss_and_grads(
  params: dict[str, jax.Array],
  h0: jax.typing.ArrayLike,
  xs: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  step_weights: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array]]:
  r"""Loss and hand-derived gradients by backpropagation through time.

  A forward `lax.scan` stores :math:`h_t` and :math:`a_t`; a reverse
  `lax.scan` then carries :math:`\bar h_{t}` (the gradient arriving from
  the future) and the running sums of the parameter gradients:

  .. math::
    \bar y_t &= w_t \cdot 2 (y_t - \text{target}_t) / O, \\
    \bar h_t &= W_{hy}^\top \bar y_t + W_{hh}^\top \bar a_{t+1}, \qquad
    \bar a_t = \bar h_t \odot \tanh'(a_t), \\
    \bar W_{hy} &\mathrel{+}= \bar y_t h_t^\top, \quad
    \bar b_y \mathrel{+}= \bar y_t, \quad
    \bar W_{hh} \mathrel{+}= \bar a_t h_{t-1}^\top, \quad
    \bar W_{xh} \mathrel{+}= \bar a_t x_t^\top, \quad
    \bar b_h \mathrel{+}= \bar a_t,

  and finally :math:`\bar h_0 = W_{hh}^\top \bar a_1`. Memory is
  O(T H) for the stored states plus O(parameters) for the sums; time is
  O(T) sequential steps, so T in the thousands compiles to one loop.

  Args:
    params: see :func:`rnn_init`.
    h0: `[H]`.
    xs: `[T, I]`.
    targets: `[T, O]`.
    step_weights: `[T]` or None (all ones).

  Returns:
    `(loss, (param_grads, h0_grad))`, like
    `jax.value_and_grad(rnn_loss, argnums=(0, 1))`.
  """
  h0, xs, targets = jnp.asarray(h0), jnp.asarray(xs), jnp.asarray(targets)
  ys, hs, pre = rnn_forward(params, h0, xs)
  _check_rnn(params, h0, xs, targets, step_weights)
  num_steps, out_size = targets.shape
  weights = (
    jnp.ones((num_steps,), ys.dtype)
    if step_weights is None
    else jnp.asarray(step_weights, ys.dtype)
  )
  loss = jnp.sum(weights * jnp.mean(jnp.square(ys - targets), axis=-1))
  # Per-step output cotangents, all at once: d/dy_t of w_t * MSE_t.
  dys = weights[:, None] * 2.0 * (ys - targets) / out_size  # [T, O]
  hs_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # [T, H]

  def backward_step(carry, inputs):
    dh_next, sums = carry
    x_t, h_t, h_prev, a_t, dy_t = inputs
    # Output layer y_t = W_hy h_t + b_y: cotangent into h_t, weight grads.
    out = prims.affine_vjp(h_t, params["w_hy"], params["b_y"], dy_t)
    # h_t feeds y_t and (through a_{t+1}) the future: add both paths.
    dh = out.x + dh_next
    da = prims.tanh_derivative(a_t) * dh  # through h_t = tanh(a_t)
    sums = {
      "w_hy": sums["w_hy"] + out.w,
      "b_y": sums["b_y"] + out.b,
      "w_hh": sums["w_hh"] + jnp.outer(da, h_prev),
      "w_xh": sums["w_xh"] + jnp.outer(da, x_t),
      "b_h": sums["b_h"] + da,
    }
    # a_t = W_hh h_{t-1} + ...: what flows on to step t - 1.
    return (params["w_hh"].T @ da, sums), None

  zeros = jax.tree.map(jnp.zeros_like, dict(params))
  (dh0, grads), _ = jax.lax.scan(
    backward_step,
    (jnp.zeros_like(h0), zeros),
    (xs, hs, hs_prev, pre, dys),
    reverse=True,
  )
  return loss, (grads, dh0)
