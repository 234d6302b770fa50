r"""Benchmark: cost of the Monte Carlo gradient estimators and of the moments.

Mohamed et al. (2020, Section 3.3) judge an estimator by its bias, variance
and *computational cost*. This experiment measures the cost for a diagonal
Gaussian :math:`N(\mu, \mathrm{diag}\,\sigma^2)` in ``d`` dimensions::

  python -m experiments.benchmark_estimators \
    --workdir=/tmp/rgrad/benchmark_estimators

Every timed program has one shape: rgrad's moments engine,
:func:`rgrad.diagnostics.stream_moments`, streaming the per-sample values of
a ``chunk_fn`` over ``num_samples`` draws in chunks of ``chunk_size``, the
engine's per-chunk moments included, as in :func:`rgrad.gradient_moments`.
Only the ``chunk_fn`` changes: each estimator of ``config.estimators``, a
registry name (:data:`rgrad.ESTIMATORS`; stateless, of an expectation
:math:`\nabla_\theta E_p[f]`), or a *floor*, what an estimator costs at
least: the draws and the cost (:class:`Floor`), the naive score function
that every score-function estimator should beat
(:class:`NaiveScoreFunction`), and the own floors of the estimators that
must do more per sample (the measure-valued estimators' ``4 d`` cost
evaluations, the delta method's :math:`O(d^2)` control variate, the
score-function estimators' second pass over the draws). Each estimator's
time is reported as ratios to the floors, per sample, measured in the same
interleaved rounds. The discrete estimators (ARM, DisARM, concrete,
straight-through) run on a Bernoulli of the same dimension and cost
instead, and are reported as ratios to rgrad's score function on that
Bernoulli, per sample, per cost evaluation and per independent estimate (a
pair for ARM and DisARM); next to them, the peak memory of
:func:`rgrad.gradient_moments` over ``memory_num_samples`` x
``memory_dim``, in a fresh process.

The package reads top to bottom like the benchmark:

* :mod:`~experiments.benchmark_estimators.problem`: the Gaussian and the
  Bernoulli, the costs, which estimators have floors of their own and which
  run on the Bernoulli;
* :mod:`~experiments.benchmark_estimators.validation`: the config checks
  against the registry (and why some estimators cannot be timed), before
  any work;
* :mod:`~experiments.benchmark_estimators.floors`: the floors, as chunk_fns;
* :mod:`~experiments.benchmark_estimators.programs`: every timed program;
* :mod:`~experiments.benchmark_estimators.timing`: compilation, then the
  interleaved rounds;
* :mod:`~experiments.benchmark_estimators.ratios`: the ratios to the floors
  and the verdicts;
* :mod:`~experiments.benchmark_estimators.memory`: the peak memory, in a
  subprocess;
* :mod:`~experiments.benchmark_estimators.outputs`: results.json (the schema
  is in its docstring), results.csv and table.md in ``workdir``;
* :mod:`~experiments.benchmark_estimators.experiment`: :func:`run`, which ties
  them together; ``__main__`` is the command line.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652.
"""

from experiments.benchmark_estimators.experiment import run
from experiments.benchmark_estimators.floors import DeltaMethodFloor
from experiments.benchmark_estimators.floors import Floor
from experiments.benchmark_estimators.floors import NaiveScoreFunction
from experiments.benchmark_estimators.floors import WeightedFloor
from experiments.benchmark_estimators.problem import COST_FUNCTIONS
from experiments.benchmark_estimators.problem import DISCRETE_PROGRAMS
from experiments.benchmark_estimators.problem import MEASURE_VALUED
from experiments.benchmark_estimators.problem import OWN_FLOORS
from experiments.benchmark_estimators.problem import bernoulli_builder
from experiments.benchmark_estimators.problem import cos_cost
from experiments.benchmark_estimators.problem import is_discrete
from experiments.benchmark_estimators.problem import normal_builder
from experiments.benchmark_estimators.problem import quadratic_cost
from experiments.benchmark_estimators.validation import benchmarkable_names
from experiments.benchmark_estimators.validation import parse_config
from experiments.benchmark_estimators.validation import unavailable_reason

__all__ = (
  "COST_FUNCTIONS",
  "DISCRETE_PROGRAMS",
  "MEASURE_VALUED",
  "OWN_FLOORS",
  "DeltaMethodFloor",
  "Floor",
  "NaiveScoreFunction",
  "WeightedFloor",
  "bernoulli_builder",
  "benchmarkable_names",
  "cos_cost",
  "is_discrete",
  "normal_builder",
  "parse_config",
  "quadratic_cost",
  "run",
  "unavailable_reason",
)
