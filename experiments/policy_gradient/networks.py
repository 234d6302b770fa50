r"""The policy and value networks: Flax MLPs used as pure functions.

As in :mod:`experiments.vae.model`, the ``flax.linen`` modules are used only
through ``init``/``apply`` over explicit parameter pytrees, so that the
estimators, ``jax.vmap(jax.grad(...))`` and the optimizers see plain
pytrees. :func:`mlp` is the torso of every head: categorical logits over a
discrete action set (CartPole), a state value, and later a Gaussian mean
for a continuous action (Pendulum).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
  """x `[..., in]` -> `[..., out_dim]`: tanh hidden layers, linear output.

  The output layer starts at ``output_scale`` times the default init, so a
  policy starts near uniform and a value near 0 (the scale of the output is
  learned, not guessed).
  """

  hidden_dims: Sequence[int]
  out_dim: int
  output_scale: float = 0.01

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.hidden_dims:
      x = nn.tanh(nn.Dense(width)(x))
    init = nn.initializers.variance_scaling(
      self.output_scale**2, "fan_in", "truncated_normal"
    )
    return nn.Dense(self.out_dim, kernel_init=init)(x)
