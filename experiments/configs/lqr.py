r"""Config for `experiments/lqr/` (its package docstring).

The policy gradient of a linear-quadratic regulator by the score function
(REINFORCE, with and without a leave-one-out baseline), by
backpropagation through time (BPTT, the pathwise gradient) and by total
propagation (PIPPS), against the exact gradient of the moment equations
(:func:`rgrad.exact.lqr_policy_gradient`): each estimator's per-coordinate
mean and variance as the horizon T grows and as the closed loop's spectral
radius crosses 1, the trade-off of

  Parmas, Rasmussen, Peters, Doya. PIPPS: Flexible Model-Based Policy Search
  Robust to the Curse of Chaos. ICML 2018,
  https://proceedings.mlr.press/v80/parmas18a.html (Sec. 3-4, Fig. 2).

on the problem whose exact gradient is known (the finite-horizon moment
equations here; their discounted infinite-horizon limit is Lemma 1 of

  Fazel, Ge, Kakade, Mesbahi. Global Convergence of Policy Gradient Methods
  for the Linear Quadratic Regulator. ICML 2018,
  https://arxiv.org/abs/1801.05039).

Launch (every field has a default, so the first line alone runs as is)::

  python -m experiments.lqr --workdir=/tmp/rgrad/lqr

  python -m experiments.lqr --config.spectral_radii=0.9,1.1 \
    --config.horizons=1,10,100 --config.num_samples=65536 --config.seed=1
"""

import ml_collections

ESTIMATORS = (
  "score_function",
  "leave_one_out",
  "bptt",
  "total_propagation",
  "total_propagation_batch",
)


def get_config() -> ml_collections.ConfigDict:
  """The default config (a couple of minutes on a 2-core CPU)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Comma-separated, from ESTIMATORS: REINFORCE with reward-to-go and no
  # baseline; with the leave-one-out baseline; hand BPTT
  # (rgrad.rl.lqr_bptt_gradients); total propagation with cross-fitted
  # inverse-variance weights (exactly unbiased) and with the weights of its
  # own batch (PIPPS's original, O(1/batch_size) bias), both with the
  # leave-one-out baseline in their score part.
  config.estimators = ",".join(ESTIMATORS)
  # Spectral radii of the closed loop A + BK (rgrad.rl.example_lqr: a scaled
  # rotation by `angle`), and the horizons T.
  config.spectral_radii = (0.8, 0.95, 1.05, 1.2)
  config.horizons = (1, 2, 5, 10, 20, 50, 100, 200)
  # The policy u = K x + sigma eps: K = gain, sigma; the rotation angle.
  config.gain = (-0.5, -0.3)
  config.sigma = 0.3
  config.angle = 0.3
  # Rows (rollouts) per (estimator, T, radius), streamed through the moments
  # engine in chunks of `chunk_size` rows. Leave-one-out and total
  # propagation share their batch across its rows: they run in independent
  # batches of `batch_size` rollouts (one group each), and their variance is
  # the effective per-row variance, batch_size times the variance of a batch
  # mean (rgrad.diagnostics.gradient_moments). 64: total propagation
  # estimates its weights from each half of the batch, and with halves of 8
  # (batch_size 16) that noise alone made it up to 6x worse than BPTT at
  # radius 0.95, T = 200 (32 per half: within 1.1x).
  config.num_samples = 8192
  config.chunk_size = 1024
  config.batch_size = 64
  # Write lqr_variance.png (matplotlib).
  config.plot = True
  return config
