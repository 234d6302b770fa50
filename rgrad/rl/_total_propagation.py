r"""Total propagation (PIPPS): pathwise and score gradients mixed per step.

Backpropagation through time carries :math:`\zeta_t = \partial
C_{\ge t}/\partial x_t` backwards; in chaotic or unstable dynamics its
variance explodes with the horizon, while the score function's does not
(Parmas et al., 2018). Total propagation combines the two *at every step*,
per coordinate of the action distribution's parameters, and propagates the
combination, so a bad estimate at one step is not carried further back:

.. math::

  g^{RP}_{\mu,t} = \frac{\partial c_t}{\partial u_t}
    + \Big(\frac{\partial x_{t+1}}{\partial u_t}\Big)^\top \zeta_{t+1},
  \qquad
  g^{LR}_{\mu,t} = \frac{\epsilon_t}{\sigma}(G_t - b_t),

  g_{\mu,t} = w_t\, g^{RP}_{\mu,t} + (1 - w_t)\, g^{LR}_{\mu,t},
  \qquad
  w_t = \frac{\widehat{\mathrm{Var}}[g^{LR}_{\mu,t}]}
        {\widehat{\mathrm{Var}}[g^{RP}_{\mu,t}]
         + \widehat{\mathrm{Var}}[g^{LR}_{\mu,t}]},

  \zeta_t = \frac{\partial c_t}{\partial x_t}
    + \Big(\frac{\partial x_{t+1}}{\partial x_t}\Big)^\top \zeta_{t+1}
    + \Big(\frac{\partial \mu_t}{\partial x_t}\Big)^\top g_{\mu,t},
  \qquad \zeta_T = \frac{\partial c_T}{\partial x_T},

with the parameters' gradient
:math:`\sum_t (\partial\mu_t/\partial\theta)^\top g_{\mu,t}`; for
:math:`\log\sigma` the same mixture of
:math:`g^{RP}_{\log\sigma,t} = g^{RP}_{\mu,t}\cdot\sigma\epsilon_t` and
:math:`g^{LR}_{\log\sigma,t} = (\|\epsilon_t\|^2 - m)(G_t - b_t)` is added
(its own weight). The variances are over the batch, one per coordinate
(inverse-variance weighting of two unbiased estimates). All of it is a
reverse ``lax.scan`` with one ``jax.vjp`` of ``step`` and of
``observe``/``mean_fn`` per step.

**Unbiasedness.** With weights that do not depend on the rollout, both
:math:`g^{RP}` and :math:`g^{LR}` have conditional mean
:math:`\partial_\mu E[C_{\ge t} \mid x_t]` (by induction
:math:`E[\zeta_t \mid x_t] = \nabla V_t(x_t)`), so any such mixture is
unbiased. ``weights=1`` is the pathwise gradient and ``weights=0`` the score
function with the same baseline, exactly. Weights estimated from the same
rollouts (``weights="batch"``, PIPPS's original) correlate with them and
bias the estimate by :math:`O(1/N)`. The default ``"cross_fit"`` removes
that: the batch is split into halves, each half runs its own
``"batch"``-weighted backward pass, and each half's estimates are then
computed with the weights of the *other* half's pass, which is independent
of it; conditionally on the other half the weights are fixed, so the
estimate is exactly unbiased. It costs two backward passes; the rows of one
call are dependent across halves (one group: the batch), so estimate
standard errors from independent calls (batch means).

**Which weights.** Cross-fitting buys exact unbiasedness with robustness.
Where the pathwise terms are heavy-tailed (dynamics that pass near an
unstable equilibrium: a rare rollout carries a huge Jacobian product), a
half without such a rollout estimates a small pathwise variance, hence a
large pathwise weight, which then multiplies the other half's outlier; the
batch's own weights instead see the outlier and down-weight it. On gymnax's
Pendulum-v1 at T = 200 that is the difference between 10^4 times and under
10 times the better estimator's variance
(``experiments.policy_gradient.pendulum``); on the LQR, with no heavy
tails, the two agree, and the batch weights' O(1/N) bias is measurable
(``experiments.lqr``). Both need halves large enough for the variances:
with halves of 8 rollouts the weights' noise alone costs several times the
variance.

References:
  Parmas, Rasmussen, Peters, Doya. PIPPS: Flexible Model-Based Policy Search
  Robust to the Curse of Chaos. ICML 2018,
  https://proceedings.mlr.press/v80/parmas18a.html (Sec. 3, total
  propagation; Sec. 4, the inverse-variance weights).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad.rl import _environments as _env
from rgrad.rl import _policy_gradients as _pg
from rgrad.rl import _problems

WEIGHTS = ("cross_fit", "batch")


def _is_float(leaf) -> bool:
  return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def _split(state):
  """The floating leaves of `state` and a function that puts them back."""
  leaves, treedef = jax.tree.flatten(state)
  mask = [_is_float(leaf) for leaf in leaves]
  floats = tuple(leaf for leaf, f in zip(leaves, mask, strict=True) if f)

  def merge(new_floats):
    it = iter(new_floats)
    return treedef.unflatten(
      [next(it) if f else leaf for leaf, f in zip(leaves, mask, strict=True)]
    )

  return floats, merge


def _group_weights(rp, lr, num_groups):
  """Per-row weights Var_LR / (Var_RP + Var_LR), variances within groups.

  `rp`, `lr`: [N, k]; returns [N, k], rows of a group sharing a weight.
  """
  n, k = rp.shape
  var_rp = jnp.var(rp.reshape(num_groups, n // num_groups, k), axis=1, ddof=1)
  var_lr = jnp.var(lr.reshape(num_groups, n // num_groups, k), axis=1, ddof=1)
  total = var_rp + var_lr
  # Two constant estimates are equal (both unbiased); any weight is right.
  w = jnp.where(total > 0, var_lr / jnp.where(total > 0, total, 1.0), 0.5)
  return jnp.repeat(w, n // num_groups, axis=0)


def _backward(
  environment, mean_fn, params, trajectory, step_keys, adv, weights
):
  """The reverse scan; `weights` is an int (groups) or [T, N, m + 1] array.

  Returns (per-rollout grads, the weights used [T, N, m + 1]).
  """
  horizon = trajectory.actions.shape[1]
  sigma = jnp.exp(params["log_sigma"])
  m = environment.action_dim
  lr_mu, lr_ls = _pg.likelihood_ratio_terms(
    trajectory.eps, params["log_sigma"], adv
  )
  lr = jnp.concatenate([lr_mu, lr_ls[..., None]], axis=-1)  # [N, T, m + 1]

  def time_major(x):
    return jnp.moveaxis(x, 1, 0)

  states = jax.tree.map(lambda s: time_major(s[:, :horizon]), trajectory.states)
  final = jax.tree.map(lambda s: s[:, horizon], trajectory.states)

  def terminal(x):
    floats, merge = _split(x)
    if environment.terminal_cost is None:
      return jax.tree.map(jnp.zeros_like, floats)
    return jax.grad(lambda f: jnp.sum(environment.terminal_cost(merge(f))))(
      floats
    )

  def step_pullback(x, key, u, zeta_next):
    floats, merge = _split(x)

    def step(f, u):
      x_next, cost = environment.step(key, merge(f), u)
      return _split(x_next)[0], jnp.reshape(cost, ())

    (_, cost), vjp = jax.vjp(step, floats, u)
    return vjp((zeta_next, jnp.ones_like(cost)))  # (d/dx, d/du)

  def policy_pullback(x, g_mu):
    floats, merge = _split(x)

    def mean(p, f):
      return mean_fn(p, environment.observe(merge(f)))

    _, vjp = jax.vjp(mean, params, floats)
    return vjp(g_mu)  # (d/dparams, d/dx)

  def body(carry, inputs):
    zeta_next, acc = carry
    x, key, u, eps, lr_t, w_fixed = inputs
    g_x, g_u = jax.vmap(step_pullback)(x, key, u, zeta_next)
    rp = jnp.concatenate(
      [g_u, jnp.sum(g_u * sigma * eps, axis=-1, keepdims=True)], axis=-1
    )  # [N, m + 1]
    if isinstance(weights, int):
      w = _group_weights(rp, lr_t, weights)
    else:
      w = w_fixed
    g = w * rp + (1.0 - w) * lr_t
    g_params, g_x_policy = jax.vmap(policy_pullback)(x, g[:, :m])
    g_params["log_sigma"] = g_params["log_sigma"] + g[:, m]
    zeta = jax.tree.map(jnp.add, g_x, g_x_policy)
    acc = jax.tree.map(jnp.add, acc, g_params)
    return (zeta, acc), w

  n = trajectory.actions.shape[0]
  zeros = jax.tree.map(lambda p: jnp.zeros((n, *jnp.shape(p)), p.dtype), params)
  fixed = (
    jnp.zeros((horizon, n, m + 1), lr.dtype)
    if isinstance(weights, int)
    else weights
  )
  inputs = (
    states,
    time_major(step_keys),
    time_major(trajectory.actions),
    time_major(trajectory.eps),
    time_major(lr),
    fixed,
  )
  (_, grads), used = jax.lax.scan(
    body, (jax.vmap(terminal)(final), zeros), inputs, reverse=True
  )
  return grads, used


def _check_weights(weights, horizon, num_rollouts, m, name):
  if isinstance(weights, str):
    if weights not in WEIGHTS:
      raise ValueError(
        f"{name}: weights must be one of {WEIGHTS} or fixed numbers in [0, 1], "
        f"got {weights!r}."
      )
    if weights == "cross_fit":
      _internal.check_int(num_rollouts, name, what="num_rollouts", minimum=4)
      if num_rollouts % 2:
        raise ValueError(
          f"{name}: num_rollouts must be even for weights='cross_fit' (two "
          f"halves), got {num_rollouts}."
        )
    else:
      _internal.check_int(num_rollouts, name, what="num_rollouts", minimum=2)
    return weights
  w = jnp.asarray(weights)
  try:
    w = jnp.broadcast_to(w, (horizon, m + 1))
  except ValueError as e:
    raise ValueError(
      f"{name}: fixed weights must broadcast to ({horizon}, {m + 1}) (per "
      f"step; action-mean coordinates then log_sigma), got shape {w.shape}."
    ) from e
  return jnp.broadcast_to(w[:, None], (horizon, num_rollouts, m + 1))


def total_propagation_policy_gradients(
  environment: _env.Environment | _problems.LQR,
  params: dict,
  key: jax.Array,
  horizon: int,
  num_rollouts: int,
  *,
  mean_fn: Callable[[dict, Any], jax.Array] = _env.linear_mean,
  weights: str | jax.typing.ArrayLike = "cross_fit",
  baseline: str = "none",
  baseline_values: jax.typing.ArrayLike | None = None,
  value_fn: Callable[..., jax.Array] | None = None,
  value_params: Any = None,
  return_trajectory: bool = False,
) -> Any:
  r"""Total propagation (PIPPS), per rollout (module docstring).

  Args:
    environment, params, key, horizon, mean_fn: as
      :func:`rgrad.rl.score_function_policy_gradients`.
    num_rollouts: :math:`N`; even and :math:`\ge 4` for ``"cross_fit"``,
      :math:`\ge 2` for ``"batch"``.
    weights: ``"cross_fit"`` (default; unbiased), ``"batch"`` (PIPPS's
      original; :math:`O(1/N)` bias), or fixed weights of the pathwise part,
      broadcastable to ``[T, m + 1]`` (the action-mean coordinates, then
      ``log_sigma``): 1 gives the pathwise gradient, 0 the score function.
    baseline, baseline_values, value_fn, value_params: the score part's
      baseline, as :func:`rgrad.rl.score_function_policy_gradients`.
    return_trajectory: also return the :class:`Trajectory`.

  Returns:
    A pytree like `params`, leaves ``[num_rollouts, *leaf.shape]``. Rows are
    i.i.d. with fixed weights and no batch baseline; with ``"batch"`` or
    ``"cross_fit"`` weights (or ``baseline="leave_one_out"``) they form one
    group, the batch. With `return_trajectory`, ``(grads, trajectory)``.

  Raises:
    ValueError, TypeError: bad arguments (named in the message).
  """
  name = "total_propagation_policy_gradients"
  environment, horizon, num_rollouts = _pg.checked_args(
    environment, mean_fn, params, key, horizon, num_rollouts, name
  )
  spec = _pg.check_baseline(
    baseline,
    baseline_values,
    value_fn,
    value_params,
    horizon,
    num_rollouts,
    name,
  )
  m = environment.action_dim
  weights = _check_weights(weights, horizon, num_rollouts, m, name)
  noise = _pg.policy_noise(environment, params, key, horizon, num_rollouts)
  del key
  trajectory = jax.lax.stop_gradient(
    _env.rollout(environment, mean_fn, params, noise)
  )
  adv = _pg.advantages(trajectory, spec)
  args = (environment, mean_fn, params, trajectory, noise.step_keys, adv)
  if isinstance(weights, str) and weights == "batch":
    grads, _ = _backward(*args, 1)
  elif isinstance(weights, str):
    # Each half's own pass must read that half only, its leave-one-out
    # baseline included, for the other half's weights to be independent.
    own_adv = _pg.advantages(trajectory, spec, num_groups=2)
    _, own = _backward(*args[:-1], own_adv, 2)  # [T, N, m + 1] per half.
    half = num_rollouts // 2
    other = jnp.concatenate([own[:, half:], own[:, :half]], axis=1)
    grads, _ = _backward(*args, other)
  else:
    grads, _ = _backward(*args, weights.astype(adv.dtype))
  return (grads, trajectory) if return_trajectory else grads
