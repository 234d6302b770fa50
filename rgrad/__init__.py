"""rgrad: reference gradients in JAX.

Hand-derived derivatives checked against `jax.grad`, and Monte Carlo gradient
estimators checked against exact values.
"""

# --- chain rule (primitives, composition, backprop, gradient checks) ---
from rgrad.primitives import NormalLogProbGrads
from rgrad.primitives import normal_log_prob
from rgrad.primitives import normal_log_prob_grads

# isort: split
# --- Monte Carlo gradient estimation (distributions, estimators, ...) ---
from rgrad.distributions import Bernoulli
from rgrad.distributions import Categorical
from rgrad.distributions import Distribution
from rgrad.distributions import Gamma
from rgrad.distributions import LogScaleNormal
from rgrad.distributions import MultivariateNormalTriL
from rgrad.distributions import Normal
from rgrad.estimators import measure_valued_jacobians
from rgrad.estimators import pathwise_jacobians
from rgrad.estimators import score_function_jacobians

# isort: split
# --- variance reduction (baselines, control variates, antithetic) ---
from rgrad.control_variates import ControlVariate
from rgrad.control_variates import MovingAverageBaselineState
from rgrad.control_variates import antithetic_pathwise_jacobians
from rgrad.control_variates import antithetic_score_function_jacobians
from rgrad.control_variates import control_variate_jacobians
from rgrad.control_variates import delta_method_control_variate
from rgrad.control_variates import delta_method_jacobians
from rgrad.control_variates import estimate_control_variate_coefficients
from rgrad.control_variates import leave_one_out_jacobians
from rgrad.control_variates import moving_average_baseline_init
from rgrad.control_variates import moving_average_baseline_update
from rgrad.control_variates import moving_average_baseline_value

# isort: split
# --- variational objectives (STL, DReG) ---
from rgrad.variational import dreg_jacobians
from rgrad.variational import stl_jacobians

# isort: split
# --- diagnostics (exact references, gradient moments) ---
from rgrad.diagnostics import GradientMoments
from rgrad.diagnostics import bias_in_stderrs
from rgrad.diagnostics import gradient_moments
from rgrad.diagnostics import signal_to_noise
from rgrad.exact import exact_gradient
from rgrad.exact import measure_valued_variance
from rgrad.exact import pathwise_variance
from rgrad.exact import score_function_variance

__all__ = (
  # chain rule
  "NormalLogProbGrads",
  "normal_log_prob",
  "normal_log_prob_grads",
  # Monte Carlo gradient estimation
  "Bernoulli",
  "Categorical",
  "Distribution",
  "Gamma",
  "LogScaleNormal",
  "MultivariateNormalTriL",
  "Normal",
  "measure_valued_jacobians",
  "pathwise_jacobians",
  "score_function_jacobians",
  # variance reduction
  "ControlVariate",
  "MovingAverageBaselineState",
  "antithetic_pathwise_jacobians",
  "antithetic_score_function_jacobians",
  "control_variate_jacobians",
  "delta_method_control_variate",
  "delta_method_jacobians",
  "estimate_control_variate_coefficients",
  "leave_one_out_jacobians",
  "moving_average_baseline_init",
  "moving_average_baseline_update",
  "moving_average_baseline_value",
  # variational objectives
  "dreg_jacobians",
  "stl_jacobians",
  # diagnostics
  "GradientMoments",
  "bias_in_stderrs",
  "gradient_moments",
  "signal_to_noise",
  "exact_gradient",
  "measure_valued_variance",
  "pathwise_variance",
  "score_function_variance",
)

__version__ = "0.1.0"
