r"""Config for experiments/chain_rule.py: hand-derived gradients vs jax.grad.

Checks every primitive, random compositions, an MLP and a vanilla RNN (BPTT)
against `jax.grad`/`jax.jacrev` and central finite differences, tracks how
:math:`\|\partial \ell_T / \partial h_0\|` shrinks or grows with T, and times
the hand-written backward passes against `jax.jit(jax.grad(...))`.

Launch (from the repository root):

  python -m experiments.chain_rule \
    --config=experiments/configs/chain_rule.py \
    --config.rnn.num_steps=1000 --workdir=/tmp/rgrad/chain_rule

References:
  Rumelhart, Hinton & Williams, Nature 1986 (backpropagation).
  Pascanu, Mikolov & Bengio, On the difficulty of training recurrent neural
  networks, ICML 2013, https://arxiv.org/abs/1211.5063 (vanishing and
  exploding gradients through time).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default configuration; `python -m experiments.chain_rule` uses it."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Pass criteria (see rgrad.gradcheck.Tolerances): autodiff to 1e-10 in
  # float64; finite differences have error ~eps^(2/3) and their own tolerance.
  config.tolerances = ml_collections.ConfigDict(
    dict(atol=1e-10, rtol=1e-10, fd_atol=1e-6, fd_rtol=1e-6)
  )

  # Primitives: random points per primitive (plus its registry edge points).
  config.num_points = 16
  # Registry names to check; empty means all of them.
  config.primitive_names = ()
  # Also check affine, MSE, cross-entropy and the Gaussian log-density.
  config.multi_argument = True

  # Random chains drawn from the registry, depths 1..max_depth.
  config.compositions = ml_collections.ConfigDict(
    dict(num_chains=8, max_depth=6, dim=3, interval=(-2.0, 2.0))
  )

  config.mlp = ml_collections.ConfigDict(
    dict(
      layer_sizes=(4, 16, 16, 2), batch_size=32, activations=("tanh", "relu")
    )
  )

  config.rnn = ml_collections.ConfigDict(
    dict(
      input_size=3,
      hidden_size=8,
      output_size=2,
      num_steps=1000,
      recurrent_scale=1.0,
      # ||d loss_T / d h_0|| over this grid of T and recurrent scales.
      grad_norm_steps=(1, 3, 10, 30, 100, 300, 1000),
      grad_norm_scales=(0.5, 1.0, 2.0),
    )
  )

  # Median wall time over `num_repeats` calls, after `num_warmup` calls.
  config.timing = ml_collections.ConfigDict(dict(num_warmup=3, num_repeats=30))
  return config
