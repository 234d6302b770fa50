r"""Policy gradients of an LQR: score function, BPTT and total propagation.

For :func:`rgrad.rl.example_lqr` problems whose closed loop
:math:`A + BK = \rho\,\mathrm{Rot}` has spectral radius :math:`\rho`
(0.8, 0.95, 1.05, 1.2 by default) and horizons T from 1 to 200, every
estimator's per-coordinate mean and per-rollout variance of
:math:`\nabla_{K,\log\sigma} J_T` (with the variance's standard error from
the fourth moment), through the moments engine
(:func:`rgrad.diagnostics.moments`), beside the exact gradient of the
moment equations (:func:`rgrad.exact.lqr_policy_gradient`)::

  python -m experiments.lqr --workdir=/tmp/rgrad/lqr

The estimators (:mod:`.estimators`): REINFORCE with reward-to-go
(``score_function``), with the leave-one-out baseline (``leave_one_out``),
hand BPTT (``bptt``, :func:`rgrad.rl.lqr_bptt_gradients`) and total
propagation with the leave-one-out baseline and cross-fitted
inverse-variance weights (``total_propagation``, exactly unbiased) or its
batch's own weights (``total_propagation_batch``, Parmas et al. 2018). The
main figure, ``lqr_variance.png``, is the log of the variance's trace over
K against T, a panel per radius, with the squared exact gradient dashed;
:func:`.outputs.checks` records the expected trade-off as booleans.

Layout: :mod:`.estimators` (chunk functions of the engine),
:mod:`.experiment` (``run``, config checks), :mod:`.outputs` (schema,
records, checks, table, figure).

References:
  Parmas, Rasmussen, Peters, Doya. PIPPS. ICML 2018,
  https://proceedings.mlr.press/v80/parmas18a.html.
  Fazel, Ge, Kakade, Mesbahi. Global Convergence of Policy Gradient Methods
  for the Linear Quadratic Regulator. ICML 2018,
  https://arxiv.org/abs/1801.05039.
"""

from experiments.lqr import outputs
from experiments.lqr.experiment import run
from experiments.lqr.experiment import validate_config
from experiments.lqr.outputs import SCHEMA_VERSION
from experiments.lqr.outputs import validate

__all__ = ("SCHEMA_VERSION", "outputs", "run", "validate", "validate_config")
