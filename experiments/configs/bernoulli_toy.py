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

What the paper ran, and what this config runs. Figure 1 of Grathwohl et al.
comes from ``rebar_toy.py`` of https://github.com/duvenaud/relax (the figure
file is ``toy_losses_10000_0_499.pdf``): t = 0.499, one run, **10000 steps**,
one latent and one draw per step, the logit from 0, Adam at lr 0.01 on it
and, in a second Adam at the same lr 0.01, on the control after every step:
REBAR learns its scale (from 1) and log temperature (from log 0.5); RELAX
(their ``relaxed="super"``) uses :math:`c_\phi(z) = a\,
\mathrm{MLP}(2\sigma(z/\lambda) - 1)` alone (one tanh layer of 10 units,
an output scale :math:`a` from 0, the temperature learned), with no REBAR
term. Both tie the conditional noise to the draw's (``force_same=True``: the
value of :math:`\tilde z` equals :math:`z`, only its derivative differs).
Read off that figure's curves (loss converted to p): REINFORCE wanders
(p 0.72 at step 2000, 0.30 at 10000), REBAR does not get near the optimum
(0.63 at 3000, 0.47 at 10000), RELAX does, slowly (0.30 at 3000, 0.06 at
10000).

This config runs the same problem and budget: 10000 Adam steps at lr 0.01
from theta = 0, one draw (or the estimator's smallest unit) per step, with
REBAR and RELAX as in rgrad's registry: both learn their control with Adam at
lr 0.01 after every step, REBAR from the paper's scale 1 and temperature
0.5; RELAX's surrogate is the REBAR term plus an MLP of the relaxed logits
(:func:`rgrad.relax` defaults), and the conditional noise is drawn
independently of the draw's (v ~ U(0, 1)). The outcome is the figure's, over
5 seeds (README): at t = 0.499 REINFORCE and REBAR stay far from the optimum,
RELAX reaches it near the end of the budget (after 3000 steps, the earlier
default, it is at p ~ 0.3, as in the figure). RELAX is slow although its
variance falls by ~3.7 decades within 1000 steps because theta's Adam
(beta2 = 0.999, as in the paper's TensorFlow default) keeps dividing by the
squared gradients of the first few hundred steps, before the surrogate had
learned the baseline; with beta2 = 0.99 it would be at p ~ 0.07 after 3000
steps (not the paper's setting, so not used here). REBAR's failure is a
property of the toy, not of the training: by the exact references at
theta = 0 and t = 0.499 no temperature in [0.01, 1e6] with a scale within 30
of its start puts REBAR's variance more than 0.025% below REINFORCE's (none
in [0.01, 10] with any scale more than 3e-8; tying the noise as the paper's
code does changes neither: exactly, tied REBAR at its start has 1.50 times
REINFORCE's variance, 1.43 untied); a large reduction needs the
scale near 1 / (4 (1/2 - t)^2) = 2.5e5 and a temperature of 1e3 or more (its
control then acts as the constant baseline 1/4), out of reach of Adam at lr
0.01, which moves the scale by at most about 0.01 a step. At its start
(temperature 0.5, scale 1) its variance is 1.43 times REINFORCE's.

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
  # 10000 steps: the horizon of the RELAX paper's Figure 1 (module docs).
  config.num_steps = 10000
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
  config.log_every = 200
  config.num_variance_draws = 1000
  # A run "reaches the optimum" when its final p is below this.
  config.converged_p = 0.05
  # Exact unit variances on a theta grid (start, stop, num), the same theta
  # for every estimator, for the DisARM <= ARM check; num = 0 skips it.
  config.theta_grid = (-4.0, 4.0, 17)
  # Write PNG figures (matplotlib).
  config.plot = True
  return config
