r"""Default configuration of the binary-latent VAE estimator comparison.

Launch (every encoder-gradient estimator from one initialization, the
linear model on sklearn's digits, a few CPU-minutes in all):

  python -m experiments.discrete_vae --workdir=/tmp/rgrad/discrete_vae

the nonlinear model, longer, for numbers to quote:

  python -m experiments.discrete_vae --config.model=nonlinear \
    --config.num_steps=50000 --config.log_every=1000 \
    --config.checkpoint_every=5000 --workdir=/tmp/rgrad/discrete_vae_nl

or binarized MNIST from a Keras-style ``mnist.npz`` (``x_train``,
``x_test``), as in the paper (200 latents):

  python -m experiments.discrete_vae --config.data_path=$HOME/mnist.npz \
    --config.latent_dim=200 --config.hidden_dim=200 \
    --config.num_steps=100000 --workdir=/tmp/rgrad/discrete_vae_mnist

A run killed mid-way and restarted with the same flags resumes from its last
checkpoint and ends with bitwise the same parameters.

References:
  Dong, Mnih and Tucker, DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables, NeurIPS 2020, https://arxiv.org/abs/2006.10680
  (Section 5).
  Yin and Zhou, ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks, ICLR 2019, https://arxiv.org/abs/1807.11143.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config (metrics.json records each run's time)."""
  config = ml_collections.ConfigDict()
  # One of experiments.discrete_vae.ESTIMATORS (names in rgrad's estimator
  # registry; score_function is its score_function_moving_average), a
  # comma-separated list of them, or "all".
  config.estimator = "all"
  config.seed = 0

  # Data: sklearn's bundled 8x8 digits (data_path empty), binarized at pixel
  # intensity > binarize_threshold (of 16 levels scaled to [0, 1]), split into
  # train/test by `data_seed` (independent of `seed`). A data_path to an .npz
  # with x_train and x_test (e.g. MNIST) uses that file and its split.
  config.data_path = ""
  config.test_fraction = 0.2
  config.binarize_threshold = 0.5
  config.data_seed = 0

  # Model: "linear" (affine logits on both sides) or "nonlinear" (two hidden
  # layers of hidden_dim units before the logits, on both sides).
  config.model = "linear"
  config.latent_dim = 32
  config.hidden_dim = 64
  config.activation = "leaky_relu"  # or "tanh" (the nonlinear model's)
  config.learn_prior = True  # else p(b_l = 1) = 1/2
  # Start the decoder's output bias at the logit of the mean training image.
  config.decoder_bias_from_data = True

  # Training (Adam on encoder, decoder and prior).
  config.num_steps = 3000
  config.batch_size = 50
  # Cost evaluations per data point per step for every estimator: one
  # antithetic pair for arm/disarm, K = 2 for leave_one_out and vimco; also
  # the draws of the decoder/prior gradient.
  config.num_samples = 2
  # Draws per data point for rebar and relax (3 cost evaluations each).
  config.relaxed_num_samples = 1
  # Adam's step size for rebar's/relax's control (the registry's default).
  config.control_learning_rate = 1e-2
  config.learning_rate = 1e-3
  # Decay of the moving-average baseline of the score-function estimator.
  config.baseline_decay = 0.9

  # Logging, evaluation and the gradient-variance measurement.
  config.log_every = 100
  config.num_eval_samples = 16  # Latent draws per image for ELBO and IWAE.
  config.num_final_samples = 100  # For the final test bound L_100.
  config.eval_batch_size = 512  # Images per evaluation chunk.
  # Independent encoder-gradient estimates (R) at the current parameters, on a
  # fixed batch of `variance_batch_size` training images.
  config.num_variance_replicates = 16
  config.variance_batch_size = 50

  # Checkpoints (orbax) every `checkpoint_every` steps and at the end.
  config.checkpoint_every = 1000
  config.num_display = 10  # Digits per row in the image figures.
  return config
