r"""Config for `experiments/benchmark_estimators/`.

Wall time of the Monte Carlo gradient estimators of rgrad relative to a floor
(drawing the samples and evaluating the cost, no gradient) and to the naive
score function (``vmap`` of ``jax.grad`` of ``log_prob``), and the peak
memory of :func:`rgrad.diagnostics.gradient_moments`, for the Gaussian
estimators of

  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3.3,
  computational cost as a criterion).

Launch (every flag has a default, so the first line alone runs as is)::

  python -m experiments.benchmark_estimators \
    --config=experiments/configs/benchmark_estimators.py \
    --workdir=/tmp/rgrad/benchmark_estimators \
    --config.dim=100 --config.num_samples=1000000 --config.num_repeats=5

Targets: every estimator within ``target_ratio`` (1.15x) of its floor; the
measure-valued estimators against their own floor (sampling plus ``4 d`` cost
evaluations per sample); the discrete estimators, on a Bernoulli of the same
``d``, within ``discrete_target_ratio`` (2.3x) of the score function per
independent estimate (ARM/DisARM: a pair of evaluations);
``gradient_moments`` over ``memory_num_samples`` x ``memory_dim`` under
``memory_target_bytes`` (4 GB) peak RSS.

Estimators are registry names (:data:`rgrad.ESTIMATORS`, comma separated);
the default is every stateless estimator of an expectation
:math:`\nabla_\theta E_p[f]` in the registry, which the benchmark can time
(see the experiment module for why the others cannot).
"""

import ml_collections

from rgrad import registry

COSTS = ("quadratic", "cos")


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config (d = 100, 10^6 samples, 10^7 x 1000 memory)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dim = 100
  # Samples per timed run of every program except the measure-valued ones;
  # a multiple of `chunk_size`.
  config.num_samples = 1_000_000
  # Samples per chunk of the moments engine, one estimator call each
  # (memory ~ chunk * d).
  config.chunk_size = 10_000
  # The measure-valued estimators evaluate the cost 4 d times per sample and
  # hold [chunk, d, d] inputs per side: fewer samples keep one timed run in
  # seconds (their ratios are per sample, so they compare), and a chunk of 100
  # keeps one side's inputs at 4 MB (d = 100), inside the CPU's cache. Their
  # own floor never materializes its shifted inputs, so at chunk 500 (20 MB
  # per side) the coupled estimator measured ~2.3x that floor against ~1.1x
  # at 100 (with the benchmark's former summing harness, before the engine).
  config.measure_valued_num_samples = 20_000
  config.measure_valued_chunk_size = 100
  config.estimators = ",".join(
    registry.estimators_for(objective="expectation", stateful=False)
  )
  config.cost = "quadratic"
  # Timed runs per program after one warm-up run; the median is reported.
  config.num_repeats = 5
  config.target_ratio = 1.15
  # The discrete estimators (ARM, DisARM, concrete, straight-through) run on
  # a Bernoulli of the same dimension and cost, held to this ratio of rgrad's
  # score function there, per independent estimate (ARM and DisARM: a pair,
  # two cost evaluations, against one).
  config.discrete_target_ratio = 2.3

  # Peak memory of gradient_moments, measured in a fresh subprocess.
  config.measure_memory = True
  config.memory_estimator = "pathwise"
  config.memory_num_samples = 10_000_000
  config.memory_dim = 1000
  config.memory_chunk_size = 1000
  config.memory_target_bytes = 4 * 1024**3
  config.memory_timeout_s = 3600
  return config
