r"""Config for `experiments/estimator_variance/` (its package docstring).

Variance of the single-sample gradient estimators of
:math:`\nabla_{\mu,\sigma} E_{N(x; \mu, \sigma^2)}[f(x; k)]` for the costs
:math:`(x - k)^2`, :math:`\exp(-k x^2)` and :math:`\cos(k x)`, against
:math:`k` at :math:`\mu = \sigma = 1`, reproducing Figures 2 and 3 of

  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3).

and going beyond: a sweep in the dimension of the Gaussian, a sweep in
:math:`\sigma`, and the measured cost per sample of each estimator.

Launch (every flag has a default, so the first line alone runs as is)::

  python -m experiments.estimator_variance \
    --config=experiments/configs/estimator_variance.py \
    --workdir=/tmp/rgrad/estimator_variance \
    --config.num_samples=100000 --config.seed=0 \
    --config.costs=square,exp_sq,cos \
    --config.estimators=pathwise,score_function,score_function_cv,measure_valued

Grids are ``(start, stop, num)`` triples: linear spacing for ``k``, geometric
for ``sigma``; override them as e.g. ``--config.k_grid.cos="(0.5, 10.0, 40)"``.
Multi-host (GPU cluster, TPU pod slice): add ``--config.distributed=True``.
"""

import ml_collections

# Names accepted in `costs` and `estimators` (comma separated).
COSTS = ("square", "exp_sq", "cos")
ESTIMATORS = (
  "pathwise",
  "score_function",
  "score_function_cv",
  "measure_valued",
)


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config (the paper's setting)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Draws per grid point for every estimator; a multiple of `chunk_size`.
  config.num_samples = 100_000
  # Draws held in memory at once per grid point (memory is O(chunk_size * grid
  # points * dim)); also the unit that is sharded over devices.
  config.chunk_size = 10_000
  # Comma-separated subsets of COSTS and ESTIMATORS above.
  config.costs = ",".join(COSTS)
  config.estimators = ",".join(ESTIMATORS)
  # The Gaussian N(loc, scale^2) of Figures 2-3.
  config.loc = 1.0
  config.scale = 1.0
  # Measure-valued estimator: couple the positive and negative parts.
  config.coupling = True
  # Draws of the independent pilot batch that estimates the delta-method
  # control variate's coefficient c* = Cov(g, g_h) / Var(g_h) per grid point
  # and parameter coordinate (score_function_cv); c is then fixed for all
  # `num_samples` draws (both sweeps).
  config.cv_num_pilot_samples = 10_000
  # Quadrature nodes of the exact references (rgrad.exact): the variances at
  # cos(10 x) integrate sin(10 x)^2, which oscillates like cos(20 x): 100
  # nodes give 70.4 for a true 50, 150 are off by 4e-4, 200 and more are
  # exact to 1e-14 (tests/estimator_variance_test.py checks the whole
  # default grid against closed forms).
  config.exact_num_points = 250

  # k grids, (start, stop, num) with linear spacing, as in Figures 2-3.
  config.k_grid = ml_collections.ConfigDict()
  config.k_grid.square = (-3.0, 3.0, 25)
  config.k_grid.exp_sq = (0.1, 3.0, 25)
  config.k_grid.cos = (0.5, 10.0, 25)

  # Beyond the paper 1: the cost summed over `dim` coordinates of a diagonal
  # Gaussian with every loc = `loc` and scale = `scale`, at a fixed k per cost.
  config.dim_sweep = ml_collections.ConfigDict()
  config.dim_sweep.enabled = True
  config.dim_sweep.dims = (1, 2, 4, 8, 16)
  config.dim_sweep.num_samples = 20_000
  config.dim_sweep.chunk_size = 1_000
  config.dim_sweep.k = ml_collections.ConfigDict()
  config.dim_sweep.k.square = 2.0
  config.dim_sweep.k.exp_sq = 1.0
  config.dim_sweep.k.cos = 2.0

  # Beyond the paper 2: the scale sigma, (start, stop, num) geometric spacing,
  # at loc = `loc` and a fixed k per cost. Runs in the k grid's program, with
  # its num_samples and chunk_size.
  config.sigma_sweep = ml_collections.ConfigDict()
  config.sigma_sweep.enabled = True
  config.sigma_sweep.scales = (0.1, 3.0, 16)
  config.sigma_sweep.k = ml_collections.ConfigDict()
  config.sigma_sweep.k.square = 2.0
  config.sigma_sweep.k.exp_sq = 1.0
  config.sigma_sweep.k.cos = 2.0

  # Start JAX's multi-process runtime first (multi-host: GPU cluster, TPU pod
  # slice, or several processes on one machine); samples are then sharded
  # over every device of every process. Under SLURM, Open MPI, Kubernetes or
  # on Cloud TPU the three fields below stay None and are detected; elsewhere
  # set them here or through JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  # JAX_PROCESS_ID (experiments.common.distributed).
  config.distributed = False
  config.coordinator_address = ml_collections.config_dict.placeholder(str)
  config.num_processes = ml_collections.config_dict.placeholder(int)
  config.process_id = ml_collections.config_dict.placeholder(int)
  # Write PNG figures (matplotlib).
  config.plot = True
  return config
