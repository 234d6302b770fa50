r"""Variance reduction for Monte Carlo gradient estimators.

All estimators in this package target the same quantity as those of
:mod:`rgrad.estimators`,

.. math:: \eta = \nabla_\theta\, \mathbb{E}_{p(x;\theta)}[f(x)],

share their signature ``(function, params, dist_builder, key, num_samples)``
and return per-sample jacobians: a pytree like ``params`` whose leaves carry a
leading ``num_samples`` axis and whose mean over that axis is the estimate.
They are unbiased; what they change is the variance.

The package follows Mohamed et al. (2020), Section 7:

* **Baselines** (Section 7.4). For the score function estimator any constant
  :math:`b` may be subtracted from the cost, because
  :math:`\mathbb{E}[\nabla_\theta \log p(x;\theta)] = 0`:

  .. math:: \hat\eta = \tfrac1K \textstyle\sum_i (f(x_i) - b)\,
            \nabla_\theta \log p(x_i;\theta).

  A *constant* baseline is the ``baseline=`` argument of
  :func:`rgrad.estimators.score_function_jacobians`. It stays unbiased as long
  as :math:`b` does not depend on the samples it is used with, which is what a
  moving average of *past* costs gives (:class:`MovingAverageBaselineState`)::

    b = moving_average_baseline_value(state)      # from earlier steps only
    jac, costs = score_function_jacobians(
        f, params, dist_builder, key, num_samples, baseline=b,
        return_costs=True)
    state = moving_average_baseline_update(state, costs)   # after use

  The leave-one-out baseline (:func:`leave_one_out_jacobians`) uses the other
  samples of the same batch instead (Kool et al., 2019).

* **Control variates** (Section 7.4). For any :math:`h` with a known
  :math:`\nabla_\theta \mathbb{E}_p[h]`,
  :math:`\hat\eta - c\,(\hat\eta_h - \nabla_\theta \mathbb{E}_p[h])` is
  unbiased for every :math:`c` fixed independently of the samples;
  :func:`control_variate_jacobians` with the delta-method control variate
  (:func:`delta_method_control_variate`, the delta method of Section 7.4).

* **Antithetic sampling** (a coupling of draws, Section 7;
  Owen, *Monte Carlo theory, methods and examples*, Ch. 8.2): draws come in
  pairs :math:`(\mu + \sigma\epsilon, \mu - \sigma\epsilon)`
  (:func:`antithetic_pathwise_jacobians`,
  :func:`antithetic_score_function_jacobians`).

Coming from the former ``optax.monte_carlo`` (removed in optax 0.2.7):
``control_delta_method`` is :func:`delta_method_control_variate`,
``moving_avg_baseline`` the ``moving_average_baseline_*`` functions (passed as
``baseline=`` rather than as a control variate), ``control_variates_jacobians``
is :func:`control_variate_jacobians`, and
``estimate_control_variate_coefficients`` keeps its name (per coordinate now,
and over arbitrary pytrees of parameters).

All functions are pure: keys are explicit and never reused, and states are
returned, not mutated. Sizes (``num_samples``, ``num_coefficient_samples``) and
names (``estimator``, ``control_variate``) are static arguments under
``jax.jit``.

The code lives in private modules by topic, behind this public face:
``_baselines`` (moving average, leave-one-out), ``_delta_method``
(:class:`ControlVariate` and the delta method), ``_control_variates``
(:func:`control_variate_jacobians` and the coefficients) and ``_antithetic``.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 7).
  Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free!
  ICLR 2019 workshop, https://openreview.net/forum?id=r1lgTGL5DE.
  Paisley, Blei, Jordan. Variational Bayesian Inference with Stochastic Search.
  ICML 2012, https://icml.cc/2012/papers/687.pdf (the delta-method control
  variate).
"""

from rgrad.control_variates._antithetic import antithetic_pathwise_jacobians
from rgrad.control_variates._antithetic import (
  antithetic_score_function_jacobians,
)
from rgrad.control_variates._baselines import MovingAverageBaselineState
from rgrad.control_variates._baselines import leave_one_out_jacobians
from rgrad.control_variates._baselines import moving_average_baseline
from rgrad.control_variates._baselines import moving_average_baseline_init
from rgrad.control_variates._baselines import moving_average_baseline_update
from rgrad.control_variates._baselines import moving_average_baseline_value
from rgrad.control_variates._control_variates import control_variate_jacobians
from rgrad.control_variates._control_variates import delta_method_jacobians
from rgrad.control_variates._control_variates import (
  estimate_control_variate_coefficients,
)
from rgrad.control_variates._delta_method import ControlVariate
from rgrad.control_variates._delta_method import ControlVariateBuilder
from rgrad.control_variates._delta_method import delta_method_control_variate

__all__ = (
  "ControlVariate",
  "ControlVariateBuilder",
  "MovingAverageBaselineState",
  "antithetic_pathwise_jacobians",
  "antithetic_score_function_jacobians",
  "control_variate_jacobians",
  "delta_method_control_variate",
  "delta_method_jacobians",
  "estimate_control_variate_coefficients",
  "leave_one_out_jacobians",
  "moving_average_baseline",
  "moving_average_baseline_init",
  "moving_average_baseline_update",
  "moving_average_baseline_value",
)
