r"""What a control variate is, and the one rgrad builds: the delta method.

A :class:`ControlVariate` is a function :math:`h` with a known
:math:`\mathbb{E}_p[h]`; a :data:`ControlVariateBuilder` makes one from the
cost, the parameters and the distribution. The delta method (Mohamed et al.
2020, Section 7.4; Paisley et al. 2012) takes the Taylor expansion of the cost
at a Gaussian's mean, whose expectation is known in closed form.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base


class ControlVariate(NamedTuple):
  r"""A control variate :math:`h` with a closed-form expectation.

  Attributes:
    value: ``x -> h(x)``, one sample of the event shape to a scalar. Its
      coefficients are fixed (built at the current parameters and not
      differentiated), so the estimators treat it like any cost.
    expected_value: ``params -> E_{p(x; params)}[h(x)]`` in closed form,
      differentiable in ``params``; its gradient is the
      :math:`\nabla_\theta \mathbb{E}_p[h]` that the control variate adds back.
  """

  value: Callable[[jax.Array], jax.Array]
  expected_value: Callable[[base.Params], jax.Array]


# (function, params, dist_builder) -> ControlVariate, built at `params`.
ControlVariateBuilder = Callable[
  [base.CostFunction, base.Params, base.DistBuilder], ControlVariate
]


def _mean_and_covariance(dist: Any) -> tuple[jax.Array, jax.Array]:
  """The distribution's mean and flat covariance, via its capability."""
  if _internal.missing_capabilities(dist, ("mean_and_covariance",)):
    raise TypeError(
      "The delta-method control variate needs a Gaussian (its expectation is "
      "known in closed form only there): dist_builder must return a "
      "distribution with the mean_and_covariance capability (Normal, "
      f"LogScaleNormal, MultivariateNormalTriL), got {type(dist).__name__}."
    )
  return dist.mean_and_covariance()


def _delta_method(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  order: int,
) -> ControlVariate:
  """Taylor expansion of `function` at the mean, to first or second order."""
  mean, _ = _mean_and_covariance(_internal.builder(dist_builder)(params))
  # The expansion point is a constant: h must not depend on the parameters
  # through its coefficients, or the estimators would differentiate them.
  mean = jax.lax.stop_gradient(mean)
  event_shape = mean.shape
  center = mean.reshape(-1)  # [n]
  name = "delta_method_control_variate"
  function = _internal.check_scalar_output(
    function, jax.ShapeDtypeStruct(event_shape, mean.dtype), name
  )

  def flat_function(v):  # [n] -> scalar
    return jnp.asarray(function(v.reshape(event_shape)))

  f0, grad = jax.value_and_grad(flat_function)(center)  # [], [n]
  if order == 2:
    # Forward-over-reverse: n Hessian-vector products, O(n^2) memory.
    hessian = jax.hessian(flat_function)(center)  # [n, n]
  else:
    hessian = jnp.zeros((center.size, center.size), grad.dtype)
  # Outside jit a non-finite expansion is an error; under jit it makes every
  # h(x), and so every row of the estimators that use it, non-finite.
  for what, value in (
    ("values of the cost at the mean", f0),
    ("entries of its gradient at the mean", grad),
    ("entries of its Hessian at the mean", hessian),
  ):
    _internal.check_finite(value, name, what)

  def value(x):
    delta = jnp.reshape(x, -1) - center  # [n]
    return f0 + grad @ delta + 0.5 * delta @ hessian @ delta

  def expected_value(params):
    # E[h] for x ~ N(m', S): with delta = m' - m,
    # f(m) + g.delta + (delta' H delta + tr(H S)) / 2.
    dist = _internal.builder(dist_builder)(params)
    loc, covariance = _mean_and_covariance(dist)
    delta = loc.reshape(-1) - center
    return (
      f0
      + grad @ delta
      + 0.5 * (delta @ hessian @ delta + jnp.sum(hessian * covariance))
    )

  return ControlVariate(value=value, expected_value=expected_value)


def delta_method_control_variate(
  function: base.CostFunction,
  params: base.Params,
  dist_builder: base.DistBuilder,
  *,
  order: int = 2,
) -> ControlVariate:
  r"""The delta-method control variate (Mohamed et al. 2020, Section 7.4).

  The Taylor expansion of the cost around the mean :math:`\mu` of a Gaussian
  :math:`p(x;\theta) = N(\mu, \Sigma)`,

  .. math:: h(x) = f(\mu) + \nabla f(\mu)^\top (x - \mu)
            + \tfrac12 (x-\mu)^\top \nabla^2 f(\mu)\, (x - \mu),

  has the expectation :math:`\mathbb{E}[h] = f(\mu) + \tfrac12\operatorname{tr}
  (\nabla^2 f(\mu)\,\Sigma)`, so that for a diagonal Gaussian

  .. math:: \nabla_\mu \mathbb{E}[h] = \nabla f(\mu), \qquad
            \nabla_{\sigma} \mathbb{E}[h] = \operatorname{diag}(\nabla^2 f(\mu))
            \odot \sigma,

  and for other parameterizations (``log_scale``, a Cholesky factor, any
  ``dist_builder``) the chain rule through ``dist_builder`` gives the rest.
  When :math:`f` is quadratic, :math:`h = f` and the control variate removes
  all the variance; when :math:`f` is close to quadratic over the bulk of
  :math:`p`, most of it.

  Cost: the Hessian is formed once per call with ``jax.hessian``
  (forward-over-reverse), i.e. :math:`n` Hessian-vector products and
  :math:`O(n^2)` memory for an event of :math:`n` coordinates, plus
  :math:`O(n^2)` per sample to evaluate :math:`h`. That is the regime the delta
  method is meant for (small :math:`n`, expensive :math:`f`); ``order=1`` drops
  the Hessian and costs one gradient.

  Args:
    function: one sample of the event shape -> scalar cost; twice
      differentiable.
    params: pytree of parameters, the expansion point is the mean of
      ``dist_builder(params)``.
    dist_builder: ``params -> Normal | LogScaleNormal |
      MultivariateNormalTriL``.
    order: 2 (the delta method) or 1 (first-order Taylor expansion, whose
      expectation is :math:`f(\mu)`; it helps the location gradient only).

  Returns:
    A :class:`ControlVariate`.

  Raises:
    TypeError: if the distribution is not one of the Gaussians above.
    ValueError: if `order` is not 1 or 2, or `function` is not scalar.

  References:
    Paisley, Blei, Jordan. Variational Bayesian Inference with Stochastic
    Search. ICML 2012, https://icml.cc/2012/papers/687.pdf.
  """
  if order not in (1, 2):
    raise ValueError(f"order must be 1 or 2, got {order!r}.")
  return _delta_method(function, params, dist_builder, order)
