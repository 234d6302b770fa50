"""rgrad: reference gradients in JAX.

Hand-derived derivatives checked against `jax.grad`, and Monte Carlo gradient
estimators checked against exact values.
"""

# --- chain rule (primitives, composition, backprop, gradient checks) ---
from rgrad.backprop import mlp_forward
from rgrad.backprop import mlp_init
from rgrad.backprop import mlp_loss
from rgrad.backprop import mlp_loss_and_grads
from rgrad.backprop import rnn_forward
from rgrad.backprop import rnn_init
from rgrad.backprop import rnn_loss
from rgrad.backprop import rnn_loss_and_grads
from rgrad.chain_rule import Chain
from rgrad.chain_rule import as_primitive
from rgrad.chain_rule import chain_grad
from rgrad.chain_rule import chain_jacobian
from rgrad.chain_rule import chain_jvp
from rgrad.chain_rule import chain_value
from rgrad.chain_rule import chain_vjp
from rgrad.chain_rule import compose
from rgrad.chain_rule import jacobian_product
from rgrad.chain_rule import sample_chain
from rgrad.gradcheck import GradCheckReport
from rgrad.gradcheck import LeafReport
from rgrad.gradcheck import Tolerances
from rgrad.gradcheck import check_gradients
from rgrad.gradcheck import finite_difference_gradient
from rgrad.primitives import PRIMITIVES
from rgrad.primitives import NormalLogProbGrads
from rgrad.primitives import Primitive
from rgrad.primitives import get_primitive
from rgrad.primitives import normal_log_prob
from rgrad.primitives import normal_log_prob_grads

# isort: split
# --- Monte Carlo gradient estimation (distributions, estimators, ...) ---
from rgrad.base import CAPABILITIES
from rgrad.base import Capability
from rgrad.base import StatefulEstimator
from rgrad.distributions import Bernoulli
from rgrad.distributions import Categorical
from rgrad.distributions import Distribution
from rgrad.distributions import Gamma
from rgrad.distributions import LogScaleNormal
from rgrad.distributions import MultivariateNormalTriL
from rgrad.distributions import Normal
from rgrad.distributions import OneHotCategorical
from rgrad.distributions import WeakDerivative
from rgrad.estimators import measure_valued_jacobians
from rgrad.estimators import noise_score_jacobians
from rgrad.estimators import pathwise_jacobians
from rgrad.estimators import score_function_jacobians
from rgrad.estimators import score_jacobians

# isort: split
# --- discrete estimators (ARM, DisARM, concrete, straight-through) ---
from rgrad.discrete import arm_jacobians
from rgrad.discrete import concrete_jacobians
from rgrad.discrete import disarm_jacobians
from rgrad.discrete import straight_through_jacobians

# isort: split
# --- the estimator registry ---
from rgrad.registry import ESTIMATORS
from rgrad.registry import EstimatorSpec
from rgrad.registry import get_estimator
from rgrad.registry import register_estimator
from rgrad.registry import unregister_estimator

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
from rgrad.control_variates import moving_average_baseline
from rgrad.control_variates import moving_average_baseline_init
from rgrad.control_variates import moving_average_baseline_update
from rgrad.control_variates import moving_average_baseline_value

# isort: split
# --- learned relaxed control variates (REBAR, RELAX) ---
# (The function rgrad.relax shadows the module rgrad.relax as an attribute
# of the package; import the module's other names from rgrad directly.)
from rgrad.relax import RebarControl
from rgrad.relax import RelaxControl
from rgrad.relax import RelaxState
from rgrad.relax import rebar
from rgrad.relax import rebar_jacobians
from rgrad.relax import relax
from rgrad.relax import relax_jacobians

# isort: split
# --- variational objectives (STL, DReG) ---
from rgrad.variational import dreg_jacobians
from rgrad.variational import stl_jacobians
from rgrad.variational import vimco_jacobians

# isort: split
# --- comparing estimators on a user's problem ---
from rgrad.compare import compare
from rgrad.comparison import Comparison

# isort: split
# --- diagnostics (exact references, gradient moments) ---
from rgrad.diagnostics import GradientMoments
from rgrad.diagnostics import bias_in_stderrs
from rgrad.diagnostics import gradient_moments
from rgrad.diagnostics import moments
from rgrad.diagnostics import signal_to_noise
from rgrad.exact import exact_gradient
from rgrad.exact import measure_valued_variance
from rgrad.exact import pathwise_variance
from rgrad.exact import score_function_variance

__all__ = (
  # chain rule
  "Chain",
  "GradCheckReport",
  "LeafReport",
  "NormalLogProbGrads",
  "PRIMITIVES",
  "Primitive",
  "Tolerances",
  "as_primitive",
  "chain_grad",
  "chain_jacobian",
  "chain_jvp",
  "chain_value",
  "chain_vjp",
  "check_gradients",
  "compose",
  "finite_difference_gradient",
  "get_primitive",
  "jacobian_product",
  "mlp_forward",
  "mlp_init",
  "mlp_loss",
  "mlp_loss_and_grads",
  "normal_log_prob",
  "normal_log_prob_grads",
  "rnn_forward",
  "rnn_init",
  "rnn_loss",
  "rnn_loss_and_grads",
  "sample_chain",
  # Monte Carlo gradient estimation
  "Bernoulli",
  "Categorical",
  "Distribution",
  "Gamma",
  "LogScaleNormal",
  "MultivariateNormalTriL",
  "Normal",
  "OneHotCategorical",
  "WeakDerivative",
  "CAPABILITIES",
  "Capability",
  "StatefulEstimator",
  "measure_valued_jacobians",
  "noise_score_jacobians",
  "pathwise_jacobians",
  "score_function_jacobians",
  "score_jacobians",
  # discrete estimators
  "arm_jacobians",
  "concrete_jacobians",
  "disarm_jacobians",
  "straight_through_jacobians",
  # the estimator registry
  "ESTIMATORS",
  "EstimatorSpec",
  "get_estimator",
  "register_estimator",
  "unregister_estimator",
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
  "moving_average_baseline",
  "moving_average_baseline_init",
  "moving_average_baseline_update",
  "moving_average_baseline_value",
  # learned relaxed control variates
  "RebarControl",
  "RelaxControl",
  "RelaxState",
  "rebar",
  "rebar_jacobians",
  "relax",
  "relax_jacobians",
  # variational objectives
  "dreg_jacobians",
  "stl_jacobians",
  "vimco_jacobians",
  # comparing estimators
  "Comparison",
  "compare",
  # diagnostics
  "GradientMoments",
  "bias_in_stderrs",
  "gradient_moments",
  "moments",
  "signal_to_noise",
  "exact_gradient",
  "measure_valued_variance",
  "pathwise_variance",
  "score_function_variance",
)

__version__ = "0.1.0"
