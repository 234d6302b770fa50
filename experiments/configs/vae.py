r"""Default configuration of the VAE gradient-estimator experiment.

Launch (all five encoder-gradient estimators from one initialization):

  python -m experiments.vae --workdir=/tmp/rgrad/vae

or one estimator, with overrides:

  python -m experiments.vae --config.estimator=score_function \
    --config.num_steps=1000 --config.num_samples=8 --config.seed=1

A run killed mid-way and restarted with the same flags resumes from its last
checkpoint and ends with bitwise the same parameters.

References:
  Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014,
  https://arxiv.org/abs/1312.6114.
  Mohamed et al., Monte Carlo Gradient Estimation in Machine Learning, JMLR
  2020, https://arxiv.org/abs/1906.10652 (Section 9.3, the VAE comparison).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config (metrics.json records each run's time)."""
  config = ml_collections.ConfigDict()
  # One of experiments.vae.ESTIMATORS (names in rgrad's estimator registry;
  # score_function is its score_function_moving_average), or "all" to train
  # each of them from the same initialization and write the comparison figures.
  config.estimator = "all"
  config.seed = 0

  # Data: sklearn's bundled 8x8 digits, binarized at a fixed threshold, split
  # into train/test by `data_seed` (independent of `seed`, so that runs with
  # different seeds are evaluated on the same test set).
  config.test_fraction = 0.2
  config.binarize_threshold = 0.5
  config.data_seed = 0

  # Model.
  config.latent_dim = 8
  config.hidden_dim = 128

  # Training.
  config.num_steps = 3000
  config.batch_size = 64
  # Latent samples per data point per step (K); leave_one_out needs K >= 2,
  # and dreg trains the K-sample importance-weighted bound.
  config.num_samples = 4
  config.learning_rate = 1e-3
  # Decay of the moving-average baseline of the score-function estimator.
  config.baseline_decay = 0.9

  # Logging, evaluation and the gradient-variance measurement.
  config.log_every = 100
  config.num_eval_samples = 16  # Latent samples per point for ELBO/IWAE.
  # Independent encoder-gradient estimates (R) at the current parameters, on a
  # fixed batch of `variance_batch_size` training points.
  config.num_variance_replicates = 16
  config.variance_batch_size = 64

  # Checkpoints (orbax) every `checkpoint_every` steps and at the end.
  config.checkpoint_every = 500
  config.num_display = 10  # Digits per row in the reconstruction figure.
  return config
