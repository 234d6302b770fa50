r"""Config for `experiments/compare/`: every estimator on a user's problem.

``config.problem`` names ``make_problem`` in an importable module, which
returns ``(function, params, dist_builder)``. Launch (every flag has a
default; the default problem is the coupled Bernoulli latent)::

  python -m experiments.compare --workdir=/tmp/rgrad/compare

  python -m experiments.compare \
    --config.problem=experiments.configs.compare_problems:logistic_elbo \
    --config.num_samples=100000 --config.chunk_size=1000 \
    --workdir=/tmp/rgrad/compare_logistic

The example problems (:mod:`experiments.configs.compare_problems`):
``bernoulli_latent`` (d = 10, coupled), ``logistic_elbo`` (the
breast-cancer ELBO, d = 31; the measure-valued estimators evaluate the cost
4 d times per sample and dominate its run time) and ``gaussian_quadratic``
(d = 100; the delta-method control variate is exact there, a variance of
roundoff). Each has an exact gradient, ``<problem>_gradient``, which
``config.reference = "exact"`` uses.

Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default: the Bernoulli latent, 2 x 10^5 samples in chunks of 1000."""
  config = ml_collections.ConfigDict()
  config.problem = "experiments.configs.compare_problems:bernoulli_latent"
  # "all", or registry names, comma separated.
  config.estimators = "all"
  # Rows per estimator; 200 leave-one-out batches, enough independent units
  # for their variance's standard error (rgrad.compare flags fewer than 100).
  config.num_samples = 200_000
  # Rows per estimator call; the leave-one-out batch.
  config.chunk_size = 1_000
  config.seed = 0
  # What each estimator's bias is measured against: "none";
  # "lowest_variance_100x" (rgrad.comparison.REFERENCE_100X: the
  # lowest-variance unbiased estimator at 100x the samples); "exact" (the
  # problem's sibling `<make_problem>_gradient(params)`, as the examples
  # have); or "package.module:gradient", called with params.
  config.reference = "exact"
  # Timed blocks after the warm-up block (rgrad.compare's num_timing_repeats).
  config.num_timing_repeats = 5
  config.x64 = True
  return config
