r"""Config for `experiments/logistic_regression/` (its package docstring).

Mean-field Gaussian variational inference for Bayesian logistic regression
on the UCI breast-cancer data, with the ELBO gradient from each estimator
and its variance tracked during training, reproducing the Bayesian
logistic regression case study of Section 8 of

  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.

The paper's settings (those of DeepMind's reference code, ``mc_gradients``):
batch 32, 50 posterior samples per gradient estimate, SGD at 1e-3 with cosine
decay, 5000 steps, the control variate's coefficient from 25 extra samples,
evaluation with 1000 posterior samples, the gradient variance every 10 steps.

Launch (every field has a default, so the first line alone runs as is)::

  python -m experiments.logistic_regression \
    --workdir=/tmp/rgrad/logistic_regression

  python -m experiments.logistic_regression \
    --config.estimators=pathwise,score_function --config.seed=1

and the large preset (more variance replicates and evaluation samples, in
float64; for a GPU, a TPU or several hosts, where the variance replicates
are sharded over every device by rgrad's moments engine; add
``--config.distributed=True`` on several hosts, README)::

  python -m experiments.logistic_regression \
    --config=experiments/configs/logistic_regression.py:large
"""

import ml_collections

# The estimators of the default run (experiments.logistic_regression.
# ESTIMATORS): the paper's five, then leave-one-out and the score function
# with the online control-variate coefficient (beyond the paper).
ESTIMATORS = (
  "pathwise",
  "score_function",
  "score_function_cv",
  "measure_valued",
  "measure_valued_cv",
  "leave_one_out",
  "score_function_cv_online",
)
PRESETS = ("default", "large")


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config of `preset`: "default" (or None) or "large"."""
  preset = preset or "default"
  if preset not in PRESETS:
    raise ValueError(
      f"Unknown preset {preset!r} of the logistic_regression config; choose "
      f"one of {', '.join(PRESETS)}."
    )
  large = preset == "large"
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Comma-separated names from ESTIMATORS above.
  config.estimators = ",".join(ESTIMATORS)

  # Data: sklearn's breast-cancer set (569 x 30), standardised with the
  # training statistics, a bias column appended (31 dims), split by
  # `data_seed` (independent of `seed`).
  config.test_fraction = 0.2
  config.data_seed = 0

  # Variational posterior q = N(mu, diag exp(2 s)) starts at mu = 0 and
  # s = init_log_scale (0: q is the prior N(0, I)).
  config.init_log_scale = 0.0

  # Training: SGD on the negative ELBO, learning rate cosine-decayed from
  # `learning_rate` to 0 over `num_steps`.
  config.num_steps = 5000
  config.batch_size = 32
  config.num_samples = 50  # posterior draws per gradient estimate
  config.learning_rate = 1e-3
  # Extra draws per step for the control-variate coefficient (the *_cv
  # estimators), and the decay of the online coefficient's moving averages.
  config.num_coefficient_samples = 25
  config.online_decay = 0.9

  # Every `variance_every` steps: the variance of the step's gradient
  # estimate (on the minibatch of the next step, at the current parameters)
  # from `num_variance_replicates` extra, independent estimates, through
  # rgrad's moments engine in chunks of `variance_chunk_size` estimates.
  # `variance_data`: "minibatch" (that minibatch, scaled by N / batch: the
  # noise SGD sees) or "train_set" (the whole training set, as DeepMind's
  # mc_gradients measures it; 14x the points, so the measure-valued
  # estimators' measurements take 7-12x longer).
  config.variance_every = 10
  config.variance_data = "minibatch"
  config.num_variance_replicates = 4096 if large else 20
  config.variance_chunk_size = 256 if large else 20

  # Every `eval_every` steps: train ELBO (Monte Carlo and exact), test
  # log-likelihood and accuracy of the posterior predictive, from
  # `num_eval_samples` posterior draws (the same draws at every step).
  config.eval_every = 50
  config.num_eval_samples = 100_000 if large else 1000
  # Nodes of the exact reference (rgrad.exact), for the exact ELBO.
  config.exact_num_points = 200

  # Log a progress line every `log_every` steps; orbax checkpoints every
  # `checkpoint_every` steps and at the end (a killed run resumes to the
  # same parameters, bit for bit).
  config.log_every = 500
  config.checkpoint_every = 500
  # Compute in float64 (otherwise JAX's default, float32).
  config.float64 = large

  # Multi-process start-up (experiments.common.distributed): under SLURM,
  # Open MPI, Kubernetes or on Cloud TPU the three fields below stay None;
  # elsewhere set them or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  # JAX_PROCESS_ID.
  config.distributed = False
  config.coordinator_address = ml_collections.config_dict.placeholder(str)
  config.num_processes = ml_collections.config_dict.placeholder(int)
  config.process_id = ml_collections.config_dict.placeholder(int)
  # Write PNG figures (matplotlib).
  config.plot = True
  return config
