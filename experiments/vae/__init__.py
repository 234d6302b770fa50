r"""A VAE on binarized digits trained with several encoder-gradient estimators.

A Bernoulli decoder and a diagonal-Gaussian encoder (Kingma and Welling,
2014) on scikit-learn's 8x8 digits, trained with Adam from one
initialization with each of the encoder-gradient estimators
``pathwise``, ``score_function`` (with a moving-average baseline),
``leave_one_out``, ``stl`` and ``dreg``, all taken by name from rgrad's
estimator registry; the decoder gradient is pathwise throughout. The
experiment records the train and test ELBO, the test IWAE bound and the
variance and signal-to-noise ratio of the encoder gradient along training
(Mohamed et al., 2020, Section 9.3)::

  python -m experiments.vae --workdir=/tmp/rgrad/vae

The package reads top to bottom like the experiment:

* :mod:`experiments.common.data`: the binarized digits, split by a seed;
* :mod:`~experiments.vae.model`: the Flax encoder and decoder as pure
  functions, the prior, likelihood, posterior and closed-form KL;
* :mod:`~experiments.vae.gradients`: what each estimator is handed (the
  reconstruction cost plus the exact KL gradient, or the log-joint, by the
  registry entry's objective) and the pull-back through the encoder; the
  maths is in its docstring;
* :mod:`~experiments.vae.train`: the training state and the jitted Adam
  step, run by the loop of :mod:`experiments.common.training` with
  :mod:`experiments.common.checkpoints` (orbax; a killed run resumes
  bitwise);
* :mod:`~experiments.vae.evaluation`: the bounds and the gradient variance;
* :mod:`~experiments.vae.validation`: the config checks, before any work;
* :mod:`~experiments.vae.outputs` (metrics.json and metrics.csv, with the
  schema) and :mod:`~experiments.vae.plots` (the figures);
* :mod:`~experiments.vae.experiment`: :func:`run`, which ties them together;
  ``__main__`` is the command line.

References:
  Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014,
  https://arxiv.org/abs/1312.6114.
  Mohamed et al., Monte Carlo Gradient Estimation in Machine Learning, JMLR
  2020, https://arxiv.org/abs/1906.10652 (Sections 4, 5, 7.4, 9.3).
"""

from experiments.common.data import load_digits_binarized
from experiments.vae.experiment import run
from experiments.vae.gradients import ESTIMATORS
from experiments.vae.gradients import encoder_gradient
from experiments.vae.model import make_model
from experiments.vae.outputs import METRIC_FIELDS
from experiments.vae.outputs import SCHEMA_VERSION
from experiments.vae.validation import validate_config

__all__ = (
  "ESTIMATORS",
  "METRIC_FIELDS",
  "SCHEMA_VERSION",
  "encoder_gradient",
  "load_digits_binarized",
  "make_model",
  "run",
  "validate_config",
)
