r"""REBAR and RELAX as stateful estimators that learn their control.

:func:`rebar` and :func:`relax` wrap :mod:`rgrad.relax._core`'s estimates in
a :class:`rgrad.base.StatefulEstimator` whose ``estimate`` also takes one
Optax step of :math:`\partial_\phi E\lVert\hat g\rVert^2` (the package
docstring derives it).
"""

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgrad import _internal
from rgrad import base
from rgrad.relax import _core
from rgrad.relax._core import RebarControl
from rgrad.relax._core import RelaxControl


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


# ---------------------------------------------------------------------------
# The stateful estimators.
# ---------------------------------------------------------------------------


def _stateful(
  config: _core.Config,
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
    function, dist, pullback, draws = _core.prepare(
      config, function, params, dist_builder, key, num_samples
    )
    del key

    def second_moment(control):
      jac, costs = _core.control_jacobians(
        config, control, function, dist, pullback, *draws
      )
      return jnp.mean(_core.squared_norms(jac)), (jac, costs)

    # One pass: the estimates at the state's control (returned), and the
    # gradient in phi of mean_k ||g_k||^2 at the same draws (the update).
    (_, (jacobians, costs)), grads = jax.value_and_grad(
      second_moment, has_aux=True
    )(state.control)
    _core.check_costs(costs, config)
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
  scale = _internal.concrete(_internal.check_real_scalar(scale, name, "scale"))
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
  config = _core.Config("rebar.estimate", True, None, None)

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
  config = _core.relax_config(name, hidden_sizes, num_latents, rebar_term)
  config = config._replace(name="relax.estimate")
  _internal.check_int(seed, name, what="seed", minimum=0)
  hidden_sizes = config.hidden_sizes
  width = 1 if num_latents is None else num_latents

  def init_control():
    float_dtype = _dtype(dtype)  # at init, as for rebar
    network = _core.Surrogate(hidden_sizes, float_dtype)
    inputs = jnp.zeros((width,), float_dtype)
    return RelaxControl(
      jnp.asarray(np.log(temperature), float_dtype),
      jnp.asarray(scale, float_dtype),
      network.init(jax.random.key(seed), inputs)["params"],
    )

  return _stateful(config, init_control, optimizer)
