"""rgrad: reference gradients in JAX.

Hand-derived derivatives checked against `jax.grad`, and Monte Carlo gradient
estimators checked against exact values.
"""

# --- chain rule (primitives, composition, backprop, gradient checks) ---
from rgrad.primitives import NormalLogProbGrads
from rgrad.primitives import normal_log_prob
from rgrad.primitives import normal_log_prob_grads

# --- Monte Carlo gradient estimation (distributions, estimators, ...) ---

__all__ = (
  # chain rule
  "NormalLogProbGrads",
  "normal_log_prob",
  "normal_log_prob_grads",
  # Monte Carlo gradient estimation
)

__version__ = "0.1.0"
