r"""Exact references for gradient estimators: quadrature and enumeration.

Gaussian references (:mod:`rgrad.exact._variances` and friends) and, since
issue 12, discrete ones (:mod:`rgrad.exact._discrete`,
:mod:`rgrad.exact._relaxed`, :mod:`rgrad.exact._iwae`).

Discrete. For factorized :math:`b \sim \mathrm{Bernoulli}(\sigma(\eta))`
(:math:`d \le 12`) and any cost, :func:`bernoulli_expectation` gives
:math:`E f(b)` and its gradient by enumerating the :math:`2^d` states
(:func:`one_hot_categorical_expectation` likewise for one-hot draws, and
:func:`one_hot_categorical_estimator_moments` the moments of the score
function, leave-one-out, Gumbel-softmax and straight-through Gumbel on
them, :mod:`rgrad.exact._categorical`);
:func:`bernoulli_estimator_moments` gives the exact per-*unit* mean and
per-coordinate variance of the score function, leave-one-out (unit: the
K-draw batch mean), ARM and DisARM (unit: one antithetic pair), the binary
concrete and straight-through relaxations (their own, biased, means) and
VIMCO (:func:`vimco_moments`; :func:`iwae_bound_expectation` is the bound
and its gradient); :func:`rebar_moments` and :func:`relax_moments` those of
REBAR and RELAX, and :func:`relaxed_bernoulli_expectation` the relaxed
objective. :func:`rgrad.gradient_moments` reports for pair and group
estimators ``group_size`` times the unit variance (its effective per-row
variance): convert before comparing. Every law is written out from the
papers' definitions (sums over states or over the cells of ARM's antithetic
pair, and one-dimensional quadrature over the logistic noise), sharing no
code with :mod:`rgrad.estimators`, :mod:`rgrad.discrete` or
:mod:`rgrad.distributions`.

Reinforcement learning. For the linear-quadratic regulator
:class:`rgrad.rl.LQR` under the Gaussian policy :math:`u_t = K x_t +
\sigma\epsilon_t` the state stays Gaussian, so :func:`lqr_cost` gives the
expected (optionally discounted) finite-horizon cost by propagating the
state's mean and covariance through a ``lax.scan``, and
:func:`lqr_policy_gradient` its exact gradient in :math:`(K, \log\sigma)`,
hand-derived as the adjoint of the moment equations (a reverse scan, tested
against ``jax.grad`` of :func:`lqr_cost` to 1e-10): the references of the
policy-gradient estimators of :mod:`rgrad.rl`.
:func:`lqr_infinite_horizon_cost` and :func:`lqr_infinite_horizon_gradient`
are the discounted infinite-horizon closed forms of Fazel et al. (ICML 2018,
Lemma 1) through discrete Lyapunov equations, extended with the process and
exploration noise; the finite-horizon ones converge to them as :math:`T`
grows (:mod:`rgrad.exact._lqr`). They use only the problem container and its
checks from :mod:`rgrad.rl`, none of its rollouts or estimators.

Logistic regression. :func:`logistic_expected_log_likelihood` gives
:math:`E_q[\sum_i \log \sigma(t_i\, w^\top x_i)]` under a diagonal
Gaussian :math:`q(w) = N(\mu, \operatorname{diag}(e^{2s}))` and its
gradient in :math:`(\mu, s)`, by Gauss--Hermite quadrature over each data
point's one-dimensional Gaussian projection :math:`w^\top x_i \sim
N(\mu^\top x_i, \sum_j e^{2 s_j} x_{ij}^2)`, the gradient written out by
hand (Price's theorem for the scales), :mod:`rgrad.exact._logistic`: the
reference of the Bayesian logistic regression experiment
(``experiments/logistic_regression``, Mohamed et al. 2020, Section 8).

Gaussian. For :math:`X \sim N(\mu, \sigma^2)`, written
:math:`X = \mu + \sigma\epsilon` with :math:`\epsilon \sim N(0, 1)`, and a
smooth scalar cost :math:`f: \mathbb{R} \to \mathbb{R}`, this package
computes, to quadrature accuracy,

* the gradient :math:`\nabla_{\mu,\sigma} E[f(X)]` (:func:`exact_gradient`)
  and the mean and variance of :math:`f(X)` (:func:`cost_mean_and_variance`);
* the mean and variance of the *single-sample* pathwise, score-function and
  measure-valued estimators of that gradient (:func:`pathwise_variance`,
  :func:`score_function_variance`, :func:`measure_valued_variance` and their
  ``*_moments`` versions, which return the mean too);
* the variance of the score function with the delta-method control variate
  for a given coefficient (:func:`delta_method_variance`, with the expansion
  :func:`delta_expansion`);
* the first coordinate's variances for an additive cost
  :math:`F(x) = \sum_{i \le d} f(x_i)` over :math:`d` independent
  coordinates (:func:`additive_score_function_variance`,
  :func:`additive_delta_method_variance`);
* closed-form moments of the costs of Mohamed et al.'s Figures 2-3
  (:func:`quadratic_moments`, :func:`gaussian_bump_moments`,
  :func:`cosine_moments`), which check the quadrature independently.

These are the references the Monte Carlo estimators in
:mod:`rgrad.estimators` and :mod:`rgrad.control_variates` are tested
against, so this package deliberately shares no code with them (a reference
that calls the code under test checks nothing): every expectation is a fixed
quadrature rule (:func:`normal_rule`, :func:`laguerre_rule`; see
:mod:`rgrad.exact._quadrature`), and each estimator's law is written out as
an integral against the standard normal, Rayleigh, double-sided Maxwell or
uniform density, following Mohamed et al. (2020), Sections 4 to 7.

Accuracy limits. Quadrature is spectrally accurate only for integrands that
are smooth (analytic, ideally), that do not oscillate faster than the nodes
resolve and that have no features much narrower than :math:`\sigma`. With
the default ``num_points=100`` (float64, errors below 1e-10):
:math:`\cos(kx)` for :math:`k\sigma` up to about 10 (at :math:`k\sigma = 13`
the error is ~2e-11; at 20 the result is wrong), Gaussian bumps
:math:`\exp(-kx^2)` for :math:`k\sigma^2` up to about 3 (4: 2e-10; 8: 3e-6,
which 200 points bring back to 4e-11), and polynomials of moderate degree.
Variances integrate :math:`f^2` (or :math:`f'^2`) times a polynomial, which
halves these ranges roughly: the pathwise variance of :math:`\cos(10x)` at
:math:`\sigma = 1` (integrand :math:`\sin^2(10x)`, frequency 20) is 70.39
with 100 points for a true 50, 50.0004 with 150 and exact to 1e-14 with 200
and more. Every rule stays finite for any ``num_points`` (the Hermite and
Laguerre rules are computed by Golub--Welsch with their weights in log space;
tested to 1,000 nodes, where NumPy's ``hermgauss`` gives NaN from 375), so
more points are always an option; and a result that is nevertheless NaN or
inf (a cost that overflows at the outer nodes) raises a ValueError that
names it, outside ``jax.jit``. Costs with
kinks (``abs``, ``relu``), jumps, or faster oscillation are *not* handled
accurately: increase ``num_points`` (the error then decays only
algebraically for kinks) or use another reference. Costs that grow faster
than :math:`e^{x^2/2}` have no finite moments and no meaningful result.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 21(132), 2020. https://arxiv.org/abs/1906.10652
  (Section 4: score function; Section 5: pathwise; Section 6 and Table 1:
  measure-valued gradients of the Gaussian and their coupling; Section 7.4:
  the delta method).
"""

from rgrad.exact._additive import additive_delta_method_variance
from rgrad.exact._additive import additive_score_function_variance
from rgrad.exact._categorical import DEFAULT_CATEGORICAL_PANELS
from rgrad.exact._categorical import one_hot_categorical_estimator_moments
from rgrad.exact._closed_forms import cosine_moments
from rgrad.exact._closed_forms import gaussian_bump_moments
from rgrad.exact._closed_forms import quadratic_moments
from rgrad.exact._control_variates import DeltaExpansion
from rgrad.exact._control_variates import delta_expansion
from rgrad.exact._control_variates import delta_method_variance
from rgrad.exact._discrete import bernoulli_estimator_moments
from rgrad.exact._discrete import bernoulli_expectation
from rgrad.exact._discrete import one_hot_categorical_expectation
from rgrad.exact._iwae import iwae_bound_expectation
from rgrad.exact._iwae import vimco_moments
from rgrad.exact._logistic import DEFAULT_LOGISTIC_NUM_POINTS
from rgrad.exact._logistic import logistic_expected_log_likelihood
from rgrad.exact._lqr import lqr_cost
from rgrad.exact._lqr import lqr_infinite_horizon_cost
from rgrad.exact._lqr import lqr_infinite_horizon_gradient
from rgrad.exact._lqr import lqr_policy_gradient
from rgrad.exact._quadrature import DEFAULT_NUM_POINTS
from rgrad.exact._quadrature import LocScale
from rgrad.exact._quadrature import Rule
from rgrad.exact._quadrature import ScalarCost
from rgrad.exact._quadrature import laguerre_rule
from rgrad.exact._quadrature import normal_rule
from rgrad.exact._relaxed import DEFAULT_NUM_PANELS
from rgrad.exact._relaxed import concrete_moments
from rgrad.exact._relaxed import rebar_moments
from rgrad.exact._relaxed import relax_moments
from rgrad.exact._relaxed import relaxed_bernoulli_expectation
from rgrad.exact._relaxed import straight_through_moments
from rgrad.exact._variances import EstimatorMoments
from rgrad.exact._variances import cost_mean_and_variance
from rgrad.exact._variances import exact_gradient
from rgrad.exact._variances import measure_valued_moments
from rgrad.exact._variances import measure_valued_variance
from rgrad.exact._variances import pathwise_moments
from rgrad.exact._variances import pathwise_variance
from rgrad.exact._variances import score_function_moments
from rgrad.exact._variances import score_function_variance

__all__ = (
  "DEFAULT_NUM_PANELS",
  "bernoulli_estimator_moments",
  "bernoulli_expectation",
  "one_hot_categorical_expectation",
  "one_hot_categorical_estimator_moments",
  "DEFAULT_CATEGORICAL_PANELS",
  "iwae_bound_expectation",
  "vimco_moments",
  "lqr_cost",
  "lqr_infinite_horizon_cost",
  "lqr_infinite_horizon_gradient",
  "lqr_policy_gradient",
  "DEFAULT_LOGISTIC_NUM_POINTS",
  "logistic_expected_log_likelihood",
  "concrete_moments",
  "rebar_moments",
  "relax_moments",
  "relaxed_bernoulli_expectation",
  "straight_through_moments",
  "DEFAULT_NUM_POINTS",
  "DeltaExpansion",
  "EstimatorMoments",
  "LocScale",
  "Rule",
  "ScalarCost",
  "additive_delta_method_variance",
  "additive_score_function_variance",
  "cosine_moments",
  "cost_mean_and_variance",
  "delta_expansion",
  "delta_method_variance",
  "exact_gradient",
  "gaussian_bump_moments",
  "laguerre_rule",
  "measure_valued_moments",
  "measure_valued_variance",
  "normal_rule",
  "pathwise_moments",
  "pathwise_variance",
  "quadratic_moments",
  "score_function_moments",
  "score_function_variance",
)
