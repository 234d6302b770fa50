r"""Bayesian logistic regression by variational inference, every estimator.

Mohamed et al. (2020), Section 8, reproduced and extended: mean-field
Gaussian variational inference for Bayesian logistic regression on the UCI
breast-cancer data (scikit-learn's copy: 569 points, 30 standardised
features and a bias), prior :math:`N(0, I)`, posterior
:math:`q = N(\mu, \operatorname{diag}(e^{2s}))`, the KL term analytic and
the expected log-likelihood's gradient estimated by each estimator from
rgrad's registry; SGD (batch 32, 50 posterior draws, learning rate 1e-3 with
cosine decay, 5000 steps), with the variance of every estimator's gradient
measured every 10 steps from extra independent estimates (rgrad's moments
engine) and the posterior evaluated with 1000 draws::

  python -m experiments.logistic_regression \
    --workdir=/tmp/rgrad/logistic_regression

Beyond the paper: the leave-one-out baseline and a control-variate
coefficient tracked online, the variance per unit of compute (variance
times measured seconds per step), test log-likelihood and accuracy against
the step and the wall-clock, an exact ELBO by quadrature
(:func:`rgrad.exact.logistic_expected_log_likelihood`), and a large preset
that shards the variance measurements over every device and host.

The package reads top to bottom like the experiment:

* :mod:`~experiments.logistic_regression.data`: the data, split by a seed;
* :mod:`~experiments.logistic_regression.model`: likelihood, posterior, KL;
* :mod:`~experiments.logistic_regression.gradients`: the ELBO gradient by
  each estimator (the maths is in its docstring);
* :mod:`~experiments.logistic_regression.train`: the state, the jitted SGD
  steps (a block of ``variance_every`` steps per call) and the loop with
  orbax checkpoints (a killed run resumes bit for bit);
* :mod:`~experiments.logistic_regression.evaluation`: the variance
  measurement and the posterior's evaluation;
* :mod:`~experiments.logistic_regression.validation`: the config checks;
* :mod:`~experiments.logistic_regression.outputs` (results.json and CSVs,
  with the schema) and :mod:`~experiments.logistic_regression.plots`;
* :mod:`~experiments.logistic_regression.experiment`: :func:`run`;
  ``__main__`` is the command line;
* :mod:`~experiments.logistic_regression.diagnose_cv`: a separate command
  that measures why the delta-method control variate gains what it does
  (its variance ratio, the Taylor residual and the logit spread along a
  run).

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Sections 4-8).
"""

from experiments.logistic_regression.data import load_breast_cancer
from experiments.logistic_regression.experiment import run
from experiments.logistic_regression.gradients import ESTIMATORS
from experiments.logistic_regression.gradients import PAPER_ESTIMATORS
from experiments.logistic_regression.gradients import negative_elbo_gradient
from experiments.logistic_regression.outputs import EVALUATION_FIELDS
from experiments.logistic_regression.outputs import FINAL_FIELDS
from experiments.logistic_regression.outputs import SCHEMA_VERSION
from experiments.logistic_regression.outputs import TOP_LEVEL_KEYS
from experiments.logistic_regression.outputs import VARIANCE_FIELDS
from experiments.logistic_regression.validation import validate_config

__all__ = (
  "ESTIMATORS",
  "EVALUATION_FIELDS",
  "FINAL_FIELDS",
  "PAPER_ESTIMATORS",
  "SCHEMA_VERSION",
  "TOP_LEVEL_KEYS",
  "VARIANCE_FIELDS",
  "load_breast_cancer",
  "negative_elbo_gradient",
  "run",
  "validate_config",
)
