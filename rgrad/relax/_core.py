r"""REBAR's and RELAX's estimates for a given control (:mod:`rgrad.relax`).

The surrogate :math:`c_\phi`, the draws :math:`(b, u, v)`, and
:func:`rebar_jacobians` / :func:`relax_jacobians`, the stateless estimators
at a fixed control. :mod:`rgrad.relax._stateful` learns the control; the
maths and the papers are in the package docstring.
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


class Surrogate(nn.Module):
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


class Config(NamedTuple):
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


def _surrogate(config: Config, control, function, z: jax.Array):
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
    network = Surrogate(config.hidden_sizes, dtype)
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


def control_jacobians(config, control, function, dist, pullback, b, u, v):
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


def prepare(config, function, params, dist_builder, key, num_samples):
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
  _, pullback = jax.vjp(_internal.builder(dist_builder), params)
  b, u, v = _draws(dist, key, num_samples)
  return function, dist, pullback, (b, u, v)


def squared_norms(jacobians) -> jax.Array:
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
  config = Config("rebar_jacobians", True, None, None)
  temperature = _internal.check_positive_scalar(temperature, config.name)
  scale = _internal.check_real_scalar(scale, config.name, "scale")
  function, dist, pullback, draws = prepare(
    config, function, params, dist_builder, key, num_samples
  )
  control = RebarControl(
    jnp.log(temperature), jnp.asarray(scale, jnp.result_type(float))
  )
  jacobians, costs = control_jacobians(
    config, control, function, dist, pullback, *draws
  )
  check_costs(costs, config)
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
  config = relax_config(name, hidden_sizes, num_latents, rebar_term)
  function, dist, pullback, draws = prepare(
    config, function, params, dist_builder, key, num_samples
  )
  jacobians, costs = control_jacobians(
    config, control, function, dist, pullback, *draws
  )
  check_costs(costs, config)
  return jacobians


def relax_config(name, hidden_sizes, num_latents, rebar_term) -> Config:
  """RELAX's :class:`Config`, its network sizes checked."""
  hidden_sizes = tuple(hidden_sizes)
  for width in hidden_sizes:
    _internal.check_int(width, name, what="hidden_sizes entries")
  if num_latents is not None:
    _internal.check_int(num_latents, name, what="num_latents")
  return Config(name, bool(rebar_term), hidden_sizes, num_latents)


def check_costs(costs, config):
  """Raises (where concrete) on a non-finite cost, naming what was costed."""
  what = (
    "costs (f(b), f(sigmoid(z/lambda)), f(sigmoid(z~/lambda)) per draw)"
    if config.rebar_term
    else "costs"
  )
  _internal.check_finite(costs, config.name, what)
