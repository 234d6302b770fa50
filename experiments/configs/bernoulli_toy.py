r"""Config for `experiments/bernoulli_toy/` (its package docstring).

The REBAR/RELAX toy problem: :math:`b \sim \mathrm{Bernoulli}(\sigma(\theta))`,
:math:`f(b) = (b - t)^2`, minimise :math:`E[f(b)]` over :math:`\theta` with
Adam from :math:`\theta_0 = 0` and each discrete gradient estimator, as in

  Grathwohl, Choi, Wu, Roeder, Duvenaud. Backpropagation through the Void:
  Optimizing Control Variates for Black-Box Gradient Estimation. ICLR 2018,
  https://arxiv.org/abs/1711.00123 (Figure 1, Section 6.1).
  Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR: Low-variance,
  unbiased gradient estimates for discrete latent variable models. NeurIPS
  2017, https://arxiv.org/abs/1703.07370 (Section 6.1, t in {0.45, 0.49,
  0.499}).

Launch (every field has a default, so the first line alone runs as is)::

  python -m experiments.bernoulli_toy --workdir=/tmp/rgrad/bernoulli_toy

  python -m experiments.bernoulli_toy \
    --config.estimators=score_function,disarm --config.num_steps=5000 \
    --config.num_seeds=10 --config.seed=1

and, with every estimator at two cost evaluations per step (the iid
estimators average two draws; leave-one-out keeps K = 2 and ARM/DisARM one
pair)::

  python -m experiments.bernoulli_toy \
    --config=experiments/configs/bernoulli_toy.py:matched
"""

import ml_collections

# The estimators of the default run, by their names in rgrad's registry.
ESTIMATORS = (
  "score_function",
  "leave_one_out",
  "arm",
  "disarm",
  "concrete",
  "straight_through",
  "rebar",
  "relax",
)
PRESETS = ("default", "matched")


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config of `preset`: "default" (or None) or "matched".

  "default": one unit per step, the smallest each estimator takes: one draw
  (iid estimators), one antithetic pair of two evaluations (ARM, DisARM),
  K = 2 draws (leave-one-out, whose minimum is 2, so that it matches the
  pair's two evaluations). "matched": the iid estimators average two draws,
  so that every estimator evaluating f once per draw spends two evaluations
  per step.
  """
  preset = preset or "default"
  if preset not in PRESETS:
    raise ValueError(
      f"Unknown preset {preset!r} of the bernoulli_toy config; choose one of "
      f"{', '.join(PRESETS)}."
    )
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Comma-separated names in rgrad's estimator registry (rgrad.ESTIMATORS);
  # any entry with the objective "expectation" that a Bernoulli supports.
  config.estimators = ",".join(ESTIMATORS)
  # Targets t of f(b) = (b - t)^2; t < 1/2 makes b = 0 (p -> 0) optimal.
  config.targets = (0.45, 0.49, 0.499)
  # Independent runs per (estimator, t), vmapped; they share their keys
  # across estimators and targets (common random numbers).
  config.num_seeds = 5

  # Optimisation: Adam on the logit theta, from theta_0.
  config.num_steps = 3000
  config.learning_rate = 0.01
  config.theta_init = 0.0

  # Draws per step, by the registry entry's row structure: iid estimators
  # take `num_samples` draws, "pairs" estimators `num_pairs` antithetic pairs
  # (2 rows each), "groups" estimators (leave-one-out) `num_group_samples`.
  config.num_samples = 2 if preset == "matched" else 1
  config.num_pairs = 1
  config.num_group_samples = 2

  # Every `log_every` steps (and at step 0): theta, p, the exact loss, and
  # the gradient's mean and variance from `num_variance_draws` fresh,
  # independent step estimates at the current theta (and estimator state),
  # next to their exact values (rgrad.exact).
  config.log_every = 50
  config.num_variance_draws = 1000
  # A run "reaches the optimum" when its final p is below this.
  config.converged_p = 0.05
  # Exact unit variances on a theta grid (start, stop, num), the same theta
  # for every estimator, for the DisARM <= ARM check; num = 0 skips it.
  config.theta_grid = (-4.0, 4.0, 17)
  # Write PNG figures (matplotlib).
  config.plot = True
  return config
