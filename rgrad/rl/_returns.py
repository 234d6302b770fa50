r"""Returns of sampled trajectories: the cost-to-go each score term needs.

REINFORCE with reward-to-go (Williams, 1992; Sutton & Barto, 2018, Sec. 13.3)
weights the score of the action at step :math:`t` by the cost from :math:`t`
on, :math:`G_t = \sum_{s \ge t} \gamma^{s-t} c_s`: by causality, costs before
:math:`t` are independent of :math:`u_t` given the past and add only
variance.
"""

import jax
import jax.numpy as jnp


def reward_to_go(
  costs: jax.Array, *, discount: float = 1.0, dones: jax.Array | None = None
) -> jax.Array:
  r""":math:`G_t = c_t + \gamma (1 - d_t) G_{t+1}` along the last axis.

  Args:
    costs: [..., T] per-step costs (or rewards: the recursion is linear).
    discount: :math:`\gamma \in [0, 1]`.
    dones: optional [..., T] booleans, True where the episode ended *after*
      step t (the cost at t counts, nothing after it does: gymnax's ``done``
      flag of the step that produced :math:`c_t`).

  Returns:
    [..., T] the discounted cost-to-go from each step, computed by a reverse
    ``lax.scan`` (one pass, O(T)).
  """
  costs = jnp.asarray(costs)
  if costs.ndim < 1:
    raise ValueError(
      f"reward_to_go: costs must have a time axis, got shape {costs.shape}."
    )
  if not 0.0 <= discount <= 1.0:
    raise ValueError(
      f"reward_to_go: discount must be in [0, 1], got {discount}."
    )
  if dones is None:
    keep = jnp.ones_like(costs)
  else:
    if jnp.shape(dones) != costs.shape:
      raise ValueError(
        f"reward_to_go: dones must have the shape of costs {costs.shape}, got "
        f"{jnp.shape(dones)}."
      )
    keep = 1.0 - jnp.asarray(dones, costs.dtype)

  def step(carry, x):
    c, k = x
    g = c + discount * k * carry
    return g, g

  xs = (jnp.moveaxis(costs, -1, 0), jnp.moveaxis(keep, -1, 0))
  _, g = jax.lax.scan(
    step, jnp.zeros(costs.shape[:-1], costs.dtype), xs, reverse=True
  )
  return jnp.moveaxis(g, 0, -1)
