r"""A binary-latent VAE trained with the discrete gradient estimators.

A sigmoid belief net with one layer of Bernoulli latents (the DisARM paper's
"linear" and "nonlinear" models, Dong, Mnih and Tucker, 2020, Section 5) on
binarized 8x8 scikit-learn digits (or MNIST from an ``.npz``), trained with
Adam from one initialization with each encoder-gradient estimator, all taken
by name from rgrad's registry and all at two cost evaluations per data point
per step. The experiment records the train and test ELBO against the step
and the wall-clock, the 100-sample test bound at the end, and the variance
(with its standard error) and signal-to-noise ratio of the encoder gradient
along training::

  python -m experiments.discrete_vae --workdir=/tmp/rgrad/discrete_vae

The package reads top to bottom like the experiment:

* :mod:`experiments.common.data`: the binarized digits, split by a seed, or
  an ``.npz`` (MNIST);
* :mod:`~experiments.discrete_vae.model`: the Flax encoder and decoder as
  pure functions, the Bernoulli prior, likelihood and posterior;
* :mod:`~experiments.discrete_vae.gradients`: what each estimator is handed
  (the negative-ELBO integrand with q held fixed, or the log-joint, by the
  registry entry's objective), the pull-back through the encoder and the
  exact generative gradient; the maths is in its docstring;
* :mod:`~experiments.discrete_vae.train`: the training state and the jitted
  Adam step, run by :mod:`experiments.common.training` with orbax
  checkpoints (a killed run resumes bitwise);
* :mod:`~experiments.discrete_vae.evaluation`: the bounds and the gradient
  variance;
* :mod:`~experiments.discrete_vae.validation`: the config checks, before any
  work;
* :mod:`~experiments.discrete_vae.outputs` (metrics.json, metrics.csv and
  final.csv, with the schema) and :mod:`~experiments.discrete_vae.plots`
  (the figures);
* :mod:`~experiments.discrete_vae.experiment`: :func:`run`, which ties them
  together; ``__main__`` is the command line.

References:
  Dong, Mnih and Tucker, DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables, NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  Yin and Zhou, ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks, ICLR 2019, https://arxiv.org/abs/1807.11143.
  Mnih and Rezende, Variational Inference for Monte Carlo Objectives, ICML
  2016, https://arxiv.org/abs/1602.06725.
"""

from experiments.discrete_vae.experiment import run
from experiments.discrete_vae.gradients import ESTIMATORS
from experiments.discrete_vae.gradients import encoder_gradient
from experiments.discrete_vae.model import make_model
from experiments.discrete_vae.outputs import FINAL_FIELDS
from experiments.discrete_vae.outputs import METRIC_FIELDS
from experiments.discrete_vae.outputs import SCHEMA_VERSION
from experiments.discrete_vae.validation import validate_config

__all__ = (
  "ESTIMATORS",
  "FINAL_FIELDS",
  "METRIC_FIELDS",
  "SCHEMA_VERSION",
  "encoder_gradient",
  "make_model",
  "run",
  "validate_config",
)
