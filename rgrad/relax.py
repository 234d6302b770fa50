r"""REBAR and RELAX: score function estimators with learned relaxed controls.

For Bernoulli draws :math:`b = H(z)`, :math:`z = \eta + \log u - \log(1-u)`,
:math:`u \sim U(0, 1)` (:class:`rgrad.Bernoulli`), and a second uniform
:math:`v` that makes :math:`\tilde z \sim p(z \mid b)`
(``conditional_relaxed_logits``), every differentiable surrogate
:math:`c(z)` of the cost gives an unbiased estimator of
:math:`\nabla_\eta E_{p(b;\eta)}[f(b)]`,

.. math:: \hat g = \big[f(b) - c(\tilde z)\big]\,\nabla_\eta \log p(b)
          + \nabla_\eta c(z) - \nabla_\eta c(\tilde z),

with :math:`z` and :math:`\tilde z` differentiated through :math:`\eta` at
fixed noise :math:`(u, v)` and :math:`c(\tilde z)` held constant in the
first term. It is unbiased because the reparameterized :math:`z` and the
two-step :math:`b \sim p(b)`, :math:`\tilde z \sim p(z \mid b)` have the same
law, so :math:`\nabla_\eta E[c(z)] = E[\nabla_\eta c(z)]
= E[c(\tilde z) \nabla_\eta \log p(b)] + E[\nabla_\eta c(\tilde z)]`: the
three terms with :math:`c` have mean zero for *every* :math:`c`.

* **REBAR** (Tucker et al. 2017): :math:`c(z) = \eta_c\,
  f(\sigma(z / \lambda))`, the cost at the binary concrete relaxation with
  temperature :math:`\lambda` and scale :math:`\eta_c` (the paper's
  :math:`\eta`; here ``scale``, since :math:`\eta` are the logits).
* **RELAX** (Grathwohl et al. 2018, Section 3.2, discrete variables):
  :math:`c_\phi(z) = \eta_c\, f(\sigma(z/\lambda)) + r_\rho(z)`, REBAR's term
  plus a Flax (``linen``) MLP :math:`r_\rho` of the relaxed logits (or the
  network alone, ``rebar_term=False``).

**Learning the control.** Since :math:`E\hat g` is the gradient for every
:math:`\phi = (\log\lambda, \eta_c, \rho)`,

.. math:: \frac{\partial}{\partial\phi}\mathrm{Var}(\hat g)
          = \frac{\partial}{\partial\phi} E\big[\lVert\hat g\rVert^2\big]
          - \frac{\partial}{\partial\phi}\lVert E\hat g\rVert^2
          = E\Big[\frac{\partial \lVert\hat g\rVert^2}{\partial\phi}\Big]

(Grathwohl et al. 2018, Section 3.1; Tucker et al. 2017 adapt their scale
and temperature by the same identity), and each call estimates it by
:math:`\partial_\phi \frac1n \sum_k \lVert\hat g_k\rVert^2` over its own
draws, the norm taken over the returned estimates (on ``params``, after the
pull-back). :func:`rebar` and
:func:`relax` are :class:`rgrad.base.StatefulEstimator` s: ``estimate``
returns the estimates computed with the control of its input state (which
depends only on earlier calls' draws, so they stay unbiased), then one Optax
step of that variance gradient, from the same draws, gives the new state.

**The cost** must be a JAX-traceable function, differentiable at relaxed
draws in :math:`(0, 1)^d` (twice, for the control's update: the update
differentiates :math:`\nabla_\eta f(\sigma(z/\lambda))` in
:math:`\lambda`), and its value at the binary points must be the cost of the
draw. A cost that only works on 0/1 (a table lookup ``table[b.astype(int)]``)
or is flat between them (``jnp.round``) breaks the identity above and biases
the estimate; one that cannot be traced, or returns an integer, raises.

References:
  Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR: Low-variance,
  unbiased gradient estimates for discrete latent variable models. NeurIPS
  2017, https://arxiv.org/abs/1703.07370.
  Grathwohl, Choi, Wu, Roeder, Duvenaud. Backpropagation through the Void:
  Optimizing control variates for black-box gradient estimation. ICLR 2018,
  https://arxiv.org/abs/1711.00123.
"""

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgrad import _internal
from rgrad import base

# What REBAR and RELAX need of the distribution: the score of the draw and
# the relaxed logits z(u), z~(b, v).
CAPABILITIES = ("score", "conditional_relaxation")

_TRACE_ERRORS = (
  jax.errors.TracerArrayConversionError,
  jax.errors.ConcretizationTypeError,
  jax.errors.TracerBoolConversionError,
  jax.errors.TracerIntegerConversionError,
)


class RebarControl(NamedTuple):
  """REBAR's control parameters :math:`\\phi = (\\log\\lambda, \\eta_c)`.

  Attributes:
    log_temperature: :math:`\\log\\lambda`, a float scalar.
    scale: :math:`\\eta_c`, a float scalar (any sign).
  """

  log_temperature: jax.Array
  scale: jax.Array


class RelaxControl(NamedTuple):
  """RELAX's control parameters.

  Attributes:
    log_temperature: :math:`\\log\\lambda` of the REBAR term, a scalar.
    scale: :math:`\\eta_c` of the REBAR term, a scalar (neither is used,
      and neither moves, with ``rebar_term=False``).
    network: the flax ``params`` of the surrogate MLP :math:`r_\\rho`.
  """

  log_temperature: jax.Array
  scale: jax.Array
  network: Any


class RelaxState(NamedTuple):
  """The state of :func:`rebar` and :func:`relax`.

  Attributes:
    control: a :class:`RebarControl` or :class:`RelaxControl`, the control
      the next call's estimates use.
    opt_state: the Optax state of the control's optimizer.
    step: the number of ``estimate`` calls so far, an int32 scalar (a call
      whose variance gradient is not finite counts, but leaves `control`
      and `opt_state` as they were).
  """

  control: RebarControl | RelaxControl
  opt_state: optax.OptState
  step: jax.Array


class _Surrogate(nn.Module):
  """An MLP, inputs ``[m]`` -> a scalar; the output layer starts at zero."""

  hidden_sizes: tuple[int, ...]
  dtype: Any

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.hidden_sizes:
      h = nn.tanh(nn.Dense(width, param_dtype=self.dtype, dtype=self.dtype)(h))
    out = nn.Dense(
      1,
      kernel_init=nn.initializers.zeros,
      param_dtype=self.dtype,
      dtype=self.dtype,
    )(h)
    return out[0]


class _Config(NamedTuple):
  """What one REBAR/RELAX estimator is, fixed when it is built."""

  name: str
  rebar_term: bool
  hidden_sizes: tuple[int, ...] | None  # None: no network (REBAR)
  num_latents: int | None


# ---------------------------------------------------------------------------
# The per-draw estimates at a given control.
# ---------------------------------------------------------------------------


def _traceable(function: base.CostFunction, name: str) -> Callable:
  """`function`, raising a TypeError that says why if it cannot be traced."""

  def cost(x):
    try:
      value = function(x)
    except _TRACE_ERRORS as e:
      raise TypeError(
        f"{name}: function must be a JAX-traceable function of the draw, "
        "differentiable at relaxed draws in (0, 1) (REBAR and RELAX "
        "evaluate and differentiate it there); tracing it raised "
        f"{type(e).__name__}: {e}"
      ) from e
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
      raise TypeError(
        f"{name}: function must return a floating cost, differentiable at "
        f"relaxed draws in (0, 1); got dtype {value.dtype}."
      )
    return value

  cost.__name__ = str(getattr(function, "__name__", type(function).__name__))
  return cost


def _surrogate(config: _Config, control, function, z: jax.Array):
  """``(c(z), f(sigma(z / lambda)) or None)`` for one draw's relaxed logits."""
  value = jnp.zeros((), z.dtype)
  cost = None
  if config.rebar_term:
    temperature = jnp.exp(control.log_temperature).astype(z.dtype)
    cost = function(jax.nn.sigmoid(z / temperature))
    value = value + control.scale.astype(z.dtype) * cost
  if config.hidden_sizes is not None:
    # The module is rebuilt in the dtype of its parameters (init's).
    dtype = control.log_temperature.dtype
    network = _Surrogate(config.hidden_sizes, dtype)
    variables = {"params": control.network}
    inputs = z.reshape(-1).astype(dtype)
    if config.num_latents is None:  # one shared MLP per coordinate, summed
      per_coordinate = jax.vmap(lambda zi: network.apply(variables, zi[None]))(
        inputs
      )
      value = value + jnp.sum(per_coordinate).astype(z.dtype)
    else:
      value = value + network.apply(variables, inputs).astype(z.dtype)
  return value, cost


def _draws(dist, key, num_samples):
  """``(b, u, v)``: draws, their uniforms, and the conditional uniforms."""
  k_u, k_v = jax.random.split(key)
  b, u = jax.lax.stop_gradient(dist.sample_with_noise(k_u, (num_samples,)))
  # The open interval (tiny, 1), as Bernoulli.sample_with_noise draws u, so
  # that z~ = eta + log u' - log(1 - u') is finite.
  v = jax.random.uniform(
    k_v, u.shape, u.dtype, minval=jnp.finfo(u.dtype).tiny, maxval=1.0
  )
  return b, u, v


def _jacobians(config, control, function, dist, pullback, b, u, v):
  """Per-draw estimates on params, and the costs ``[n, evaluations]``."""

  def at_z(d, u_k):
    return _surrogate(config, control, function, d.relaxed_logits(u_k))

  def at_z_tilde(d, b_k, v_k):
    z_tilde = d.conditional_relaxed_logits(b_k, v_k)
    return _surrogate(config, control, function, z_tilde)

  # Gradients w.r.t. the distribution (its logits), per draw: cotangents
  # shaped like dist, leaves [n, *field].
  grad_z = jax.vmap(jax.value_and_grad(at_z, has_aux=True), (None, 0))
  grad_zt = jax.vmap(jax.value_and_grad(at_z_tilde, has_aux=True), (None, 0, 0))
  (_, cost_z), d_c_z = grad_z(dist, u)
  (c_zt, cost_zt), d_c_zt = grad_zt(dist, b, v)
  cost_b = jax.vmap(function)(b)  # [n]
  # c(z~) in the score's weight is a value: the score term carries no
  # gradient of it in eta (it does in phi, for the update).
  score = dist.score_from_noise(u, cost_b - c_zt)
  cotangents = jax.tree.map(lambda s, a, c: s + a - c, score, d_c_z, d_c_zt)
  (jacobians,) = jax.vmap(pullback)(cotangents)
  costs = [cost_b] + ([cost_z, cost_zt] if config.rebar_term else [])
  costs = jnp.stack(costs, axis=1)  # [n, evaluations]
  return _internal.poison_non_finite(jacobians, costs), costs


def _prepare(config, function, params, dist_builder, key, num_samples):
  """Checks, draws and the pull-back shared by every entry point."""
  name = config.name
  num_samples = _internal.check_int(num_samples, name)
  dist = _internal.build(dist_builder, params, name, CAPABILITIES)
  function = _internal.check_scalar_cost(
    _traceable(function, name), dist, key, name
  )
  if config.hidden_sizes is not None and config.num_latents is not None:
    size = math.prod(jax.eval_shape(dist.sample, key).shape)
    if size != config.num_latents:
      raise ValueError(
        f"{name}: the surrogate network was built for num_latents="
        f"{config.num_latents} relaxed logits, but a draw of "
        f"{type(dist).__name__} has {size}."
      )
  _, pullback = jax.vjp(dist_builder, params)
  b, u, v = _draws(dist, key, num_samples)
  return function, dist, pullback, (b, u, v)


def _squared_norms(jacobians) -> jax.Array:
  """``||g_k||^2`` over every leaf, per row ``[n]``."""
  return sum(
    jnp.sum(j.reshape(j.shape[0], -1) ** 2, axis=1)
    for j in jax.tree.leaves(jacobians)
  )


def rebar_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  temperature: jax.typing.ArrayLike = 0.5,
  scale: jax.typing.ArrayLike = 1.0,
) -> base.Params:
  r"""REBAR at a fixed temperature and scale (no learning; module docs).

  .. math:: \hat g = \big[f(b) - \eta_c f(\sigma(\tilde z/\lambda))\big]
            \nabla \log p(b) + \eta_c \nabla f(\sigma(z/\lambda))
            - \eta_c \nabla f(\sigma(\tilde z/\lambda)),

  unbiased for every :math:`\lambda > 0` and :math:`\eta_c`; the gradient
  w.r.t. the logits is pulled back to ``params`` with the VJP of
  ``dist_builder``. :func:`rebar` learns :math:`\lambda` and
  :math:`\eta_c`; this is its estimate at a given control.

  Args:
    function: one draw ``[*logits.shape]`` -> scalar cost, JAX-traceable and
      differentiable at relaxed draws in (0, 1).
    params: pytree of parameters.
    dist_builder: ``params`` -> a distribution with the ``score`` and
      ``conditional_relaxation`` capabilities (:class:`rgrad.Bernoulli`).
    key: PRNG key, consumed.
    num_samples: static number of draws, an int >= 1.
    temperature: :math:`\lambda > 0`, a scalar.
    scale: :math:`\eta_c`, a real scalar.

  Returns:
    A pytree like ``params``, leaves ``[num_samples, *leaf.shape]``, i.i.d.
    rows; a row with a non-finite cost is NaN under jit.

  Raises:
    ValueError: bad ``num_samples``, temperature or scale, ``params`` that
      do not fit ``dist_builder``, a non-scalar cost or (outside jit) a
      non-finite one.
    TypeError: a distribution without the capabilities, or a cost that is
      not traceable or not floating.
  """
  config = _Config("rebar_jacobians", True, None, None)
  temperature = _internal.check_positive_scalar(temperature, config.name)
  scale = _check_real_scalar(scale, config.name, "scale")
  function, dist, pullback, draws = _prepare(
    config, function, params, dist_builder, key, num_samples
  )
  control = RebarControl(jnp.log(temperature), scale)
  jacobians, costs = _jacobians(
    config, control, function, dist, pullback, *draws
  )
  _check_costs(costs, config)
  return jacobians


def relax_jacobians(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  key: chex.PRNGKey,
  num_samples: int,
  *,
  control: RelaxControl,
  hidden_sizes: Sequence[int] = (10,),
  num_latents: int | None = None,
  rebar_term: bool = True,
) -> base.Params:
  r"""RELAX at a fixed control (no learning; module docs).

  .. math:: \hat g = \big[f(b) - c_\phi(\tilde z)\big]\nabla\log p(b)
            + \nabla c_\phi(z) - \nabla c_\phi(\tilde z),

  unbiased for every control :math:`\phi`; :func:`relax` learns it, and its
  ``estimate`` returns exactly these rows at its input state's control.

  Args:
    function, params, dist_builder, key, num_samples: as for
      :func:`rebar_jacobians`.
    control: a :class:`RelaxControl` whose ``network`` has the architecture
      that `hidden_sizes` and `num_latents` describe (e.g. the ``control``
      of a state of ``relax(hidden_sizes=..., num_latents=...)``).
    hidden_sizes, num_latents, rebar_term: the surrogate, as for
      :func:`relax`.

  Returns:
    As for :func:`rebar_jacobians`.

  Raises:
    As for :func:`rebar_jacobians`; TypeError: `control` not a
    :class:`RelaxControl`.
  """
  name = "relax_jacobians"
  if not isinstance(control, RelaxControl):
    raise TypeError(
      f"{name}: control must be an rgrad.RelaxControl, got "
      f"{type(control).__name__}."
    )
  config = _relax_config(name, hidden_sizes, num_latents, rebar_term)
  function, dist, pullback, draws = _prepare(
    config, function, params, dist_builder, key, num_samples
  )
  jacobians, costs = _jacobians(
    config, control, function, dist, pullback, *draws
  )
  _check_costs(costs, config)
  return jacobians


def _relax_config(name, hidden_sizes, num_latents, rebar_term) -> _Config:
  hidden_sizes = tuple(hidden_sizes)
  for width in hidden_sizes:
    _internal.check_int(width, name, what="hidden_sizes entries")
  if num_latents is not None:
    _internal.check_int(num_latents, name, what="num_latents")
  return _Config(name, bool(rebar_term), hidden_sizes, num_latents)


def _check_real_scalar(value, name, what):
  array = jnp.asarray(value)
  if array.shape != () or not jnp.issubdtype(array.dtype, jnp.number):
    raise ValueError(f"{name}: {what} must be a real scalar, got {value!r}.")
  known = _internal.concrete(array)
  if known is not None and not np.isfinite(known):
    raise ValueError(f"{name}: {what} must be finite, got {float(known)}.")
  return array.astype(jnp.result_type(float))


def _check_costs(costs, config):
  what = (
    "costs (f(b), f(sigmoid(z/lambda)), f(sigmoid(z~/lambda)) per draw)"
    if config.rebar_term
    else "costs"
  )
  _internal.check_finite(costs, config.name, what)


# ---------------------------------------------------------------------------
# The stateful estimators.
# ---------------------------------------------------------------------------


def _stateful(
  config: _Config,
  init_control: Callable[[], RebarControl | RelaxControl],
  optimizer: optax.GradientTransformation,
) -> base.StatefulEstimator:
  def init(params: base.Params) -> RelaxState:
    del params  # the control lives on the relaxed logits, not on params
    control = init_control()
    return RelaxState(
      control=control,
      opt_state=optimizer.init(control),
      step=jnp.zeros((), jnp.int32),
    )

  def estimate(function, params, dist_builder, key, num_samples, state):
    function, dist, pullback, draws = _prepare(
      config, function, params, dist_builder, key, num_samples
    )
    del key

    def second_moment(control):
      jac, costs = _jacobians(config, control, function, dist, pullback, *draws)
      return jnp.mean(_squared_norms(jac)), (jac, costs)

    # One pass: the estimates at the state's control (returned), and the
    # gradient in phi of mean_k ||g_k||^2 at the same draws (the update).
    (_, (jacobians, costs)), grads = jax.value_and_grad(
      second_moment, has_aux=True
    )(state.control)
    _check_costs(costs, config)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.control)
    control = optax.apply_updates(state.control, updates)
    # A non-finite gradient (a NaN cost under jit) leaves the control as it
    # was: its rows are NaN already, and later calls stay usable.
    finite = jnp.all(
      jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    keep = lambda new, old: jax.tree.map(  # noqa: E731
      lambda n, o: jnp.where(finite, n, o), new, old
    )
    new_state = RelaxState(
      control=keep(control, state.control),
      opt_state=keep(opt_state, state.opt_state),
      step=state.step + 1,
    )
    return jacobians, new_state

  return base.StatefulEstimator(init=init, estimate=estimate)


def _check_rate(learning_rate, name):
  if isinstance(learning_rate, bool) or not isinstance(
    learning_rate, (int, float, np.floating, np.integer)
  ):
    raise TypeError(
      f"{name}: learning_rate must be a Python float, got "
      f"{type(learning_rate).__name__}."
    )
  if not (math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(
      f"{name}: learning_rate must be positive and finite, got {learning_rate}."
    )
  return float(learning_rate)


def _optimizer(learning_rate, optimizer, name):
  if optimizer is None:
    return optax.adam(_check_rate(learning_rate, name))
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(
      f"{name}: optimizer must be an optax.GradientTransformation, got "
      f"{type(optimizer).__name__}."
    )
  return optimizer


def _initial_control(temperature, scale, name) -> tuple[float, float]:
  """The checked initial temperature and scale, as Python floats."""
  temperature = _internal.concrete(
    _internal.check_positive_scalar(temperature, name)
  )
  if temperature is None:
    raise ValueError(f"{name}: temperature must be concrete, not traced.")
  scale = _internal.concrete(_check_real_scalar(scale, name, "scale"))
  if scale is None:
    raise ValueError(f"{name}: scale must be concrete, not traced.")
  return float(temperature), float(scale)


def _dtype(dtype):
  return jnp.dtype(jnp.result_type(float) if dtype is None else dtype)


def rebar(
  temperature: float = 0.5,
  scale: float = 1.0,
  *,
  learning_rate: float = 1e-2,
  optimizer: optax.GradientTransformation | None = None,
  dtype: jax.typing.DTypeLike | None = None,
) -> base.StatefulEstimator:
  r"""REBAR with a learned temperature and scale (Tucker et al. 2017).

  Per draw, with :math:`\lambda = \exp(\text{log\_temperature})`,

  .. math:: \hat g = \big[f(b) - \eta_c f(\sigma(\tilde z/\lambda))\big]
            \nabla \log p(b) + \eta_c \nabla f(\sigma(z/\lambda))
            - \eta_c \nabla f(\sigma(\tilde z/\lambda))

  (:func:`rebar_jacobians`), unbiased for every control. Each ``estimate``
  returns the estimates at the state's :math:`(\log\lambda, \eta_c)`, then
  takes one Optax step on :math:`\partial_\phi \frac1n\sum_k \lVert\hat
  g_k\rVert^2`, the variance gradient (module docs: the mean of
  :math:`\hat g` does not depend on :math:`\phi`, so
  :math:`\partial_\phi \mathrm{Var}\,\hat g = E\,\partial_\phi
  \lVert\hat g\rVert^2`). Three evaluations of the cost per draw.

  Args:
    temperature: the initial :math:`\lambda > 0` (learned as its log).
    scale: the initial :math:`\eta_c`, a finite real.
    learning_rate: Adam's step size for the control, > 0 (unused if
      `optimizer` is given).
    optimizer: an ``optax.GradientTransformation`` for the control instead
      of Adam.
    dtype: float dtype of the control (default: JAX's default float).

  Returns:
    A :class:`rgrad.base.StatefulEstimator`; its state is a
    :class:`RelaxState` whose ``control`` is a :class:`RebarControl`.
    ``estimate(function, params, dist_builder, key, num_samples, state)``
    takes the arguments of :func:`rebar_jacobians`.

  Raises:
    ValueError: a temperature that is not positive and finite, a
      non-finite scale, a learning rate that is not positive.
    TypeError: a non-float learning rate, or an optimizer that is not an
      Optax transformation.
  """
  name = "rebar"
  temperature, scale = _initial_control(temperature, scale, name)
  optimizer = _optimizer(learning_rate, optimizer, name)
  config = _Config("rebar.estimate", True, None, None)

  def init_control():
    # Resolved at init, not here: x64 may be switched on after the import.
    float_dtype = _dtype(dtype)
    return RebarControl(
      jnp.asarray(np.log(temperature), float_dtype),
      jnp.asarray(scale, float_dtype),
    )

  return _stateful(config, init_control, optimizer)


def relax(
  temperature: float = 0.5,
  scale: float = 1.0,
  *,
  hidden_sizes: Sequence[int] = (10,),
  num_latents: int | None = None,
  rebar_term: bool = True,
  learning_rate: float = 1e-2,
  optimizer: optax.GradientTransformation | None = None,
  seed: int = 0,
  dtype: jax.typing.DTypeLike | None = None,
) -> base.StatefulEstimator:
  r"""RELAX for Bernoulli variables (Grathwohl et al. 2018, Section 3.2).

  .. math:: \hat g = \big[f(b) - c_\phi(\tilde z)\big]\nabla\log p(b)
            + \nabla c_\phi(z) - \nabla c_\phi(\tilde z), \qquad
            c_\phi(z) = \eta_c f(\sigma(z/\lambda)) + r_\rho(z),

  unbiased for every :math:`\phi = (\log\lambda, \eta_c, \rho)`;
  :math:`r_\rho` is a ``flax.linen`` MLP (tanh hidden layers, a linear
  output that starts at zero, so that RELAX starts as REBAR) of the relaxed
  logits, and :math:`\phi` is trained as in :func:`rebar`, by one Optax step
  per call on :math:`\partial_\phi \frac1n\sum_k\lVert\hat g_k\rVert^2`.

  Args:
    temperature: the initial :math:`\lambda > 0` of the REBAR term.
    scale: the initial :math:`\eta_c` of the REBAR term.
    hidden_sizes: widths of the MLP's hidden layers, ints >= 1 (may be
      empty: a linear surrogate).
    num_latents: the number of Bernoulli variables of one draw (the size of
      the logits): the MLP then reads all relaxed logits at once, as in the
      paper. None (default) makes :math:`r_\rho(z) = \sum_i m_\rho(z_i)`,
      one MLP of a single relaxed logit shared by every coordinate, which
      works for any number of variables.
    rebar_term: include :math:`\eta_c f(\sigma(z/\lambda))` (three cost
      evaluations per draw); False: :math:`c_\phi = r_\rho`, one evaluation
      (the cost then need not be differentiable at all).
    learning_rate, optimizer, dtype: as for :func:`rebar`.
    seed: the seed of the MLP's initialization (``init`` takes only
      ``params``).

  Returns:
    A :class:`rgrad.base.StatefulEstimator`; its state is a
    :class:`RelaxState` whose ``control`` is a :class:`RelaxControl`.

  Raises:
    ValueError: as for :func:`rebar`; bad `hidden_sizes` or `num_latents`.
    TypeError: as for :func:`rebar`; a non-int seed.
  """
  name = "relax"
  temperature, scale = _initial_control(temperature, scale, name)
  optimizer = _optimizer(learning_rate, optimizer, name)
  config = _relax_config(name, hidden_sizes, num_latents, rebar_term)
  config = config._replace(name="relax.estimate")
  _internal.check_int(seed, name, what="seed", minimum=0)
  hidden_sizes = config.hidden_sizes
  width = 1 if num_latents is None else num_latents

  def init_control():
    float_dtype = _dtype(dtype)  # at init, as for rebar
    network = _Surrogate(hidden_sizes, float_dtype)
    inputs = jnp.zeros((width,), float_dtype)
    return RelaxControl(
      jnp.asarray(np.log(temperature), float_dtype),
      jnp.asarray(scale, float_dtype),
      network.init(jax.random.key(seed), inputs)["params"],
    )

  return _stateful(config, init_control, optimizer)
