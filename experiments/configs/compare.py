r"""Config for `experiments/compare/`: every estimator on a user's problem.

``config.problem`` names ``make_problem`` in an importable module, which
returns ``(function, params, dist_builder)``. Launch (every flag has a
default)::

  python -m experiments.compare \
    --config.problem=experiments.configs.compare_problems:gaussian_quadratic \
    --config.num_samples=100000 --config.chunk_size=1000 \
    --workdir=/tmp/rgrad/compare

Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default: the Gaussian quadratic in d = 100, 10^5 samples."""
  config = ml_collections.ConfigDict()
  config.problem = "experiments.configs.compare_problems:gaussian_quadratic"
  # "all", or registry names, comma separated.
  config.estimators = "all"
  config.num_samples = 100_000
  # Rows per estimator call; the leave-one-out batch.
  config.chunk_size = 1_000
  config.seed = 0
  # What each estimator's bias is measured against: "none";
  # "lowest_variance_100x" (rgrad.comparison.REFERENCE_100X: the
  # lowest-variance unbiased estimator at 100x the samples); or
  # "package.module:gradient", called with params, the exact gradient.
  config.reference = "lowest_variance_100x"
  # Timed blocks after the warm-up block (rgrad.compare's num_timing_repeats).
  config.num_timing_repeats = 5
  config.x64 = True
  return config
