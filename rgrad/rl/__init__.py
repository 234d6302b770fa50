r"""rgrad.rl: policy gradients by the score function and through time.

In reinforcement learning the gradient of an expected return reaches back
through every past step. The score function (REINFORCE) needs no model of
the dynamics; the pathwise gradient (backpropagation through time) needs
differentiable dynamics; their variances behave in opposite ways as the
horizon grows and as the dynamics become unstable (Parmas et al., PIPPS,
ICML 2018; Metz et al., 2021). The linear-quadratic regulator
(:class:`LQR`) is the reference problem whose policy gradient is exact
(:func:`rgrad.exact.lqr_cost`).

Environments are pure functions (:class:`Environment`: ``reset``, ``step``,
``observe``, ``terminal_cost``) with a Gaussian policy
:math:`u_t = \mu_\theta(o_t) + \sigma\epsilon_t` (``mean_fn(params, obs)``
and ``params["log_sigma"]``); :func:`lqr_environment` and
:func:`gymnax_environment` build them. The estimators::

  grads = score_function_policy_gradients(env, params, key, T, N,
                                          baseline="leave_one_out")
  grads = pathwise_policy_gradients(env, params, key, T, N)
  grads = total_propagation_policy_gradients(env, params, key, T, N)

return per-rollout estimates, a pytree like ``params`` with a leading
``num_rollouts`` axis, as every rgrad estimator does; ``env`` may be an
:class:`LQR` (with :func:`linear_mean` the default ``mean_fn``).

They are not in :mod:`rgrad.registry`, whose shared signature
``(function, params, dist_builder, key, num_samples)`` draws one
:math:`x \sim p(x;\theta)` and evaluates a cost of it. A trajectory is not
such a draw: its distribution is built step by step from the policy and the
dynamics, and what separates these estimators is that per-step structure
(reward-to-go, per-step baselines, the per-step mixture of total
propagation), which a cost of a whole draw cannot express. Only REINFORCE
without reward-to-go and plain BPTT would fit, as a trajectory
"distribution"; so trajectory estimators take
``(environment, params, key, horizon, num_rollouts)`` instead, with
``horizon`` and ``num_rollouts`` static.
"""

from rgrad.rl._bptt import lqr_bptt_gradients
from rgrad.rl._environments import Environment
from rgrad.rl._environments import RolloutNoise
from rgrad.rl._environments import Trajectory
from rgrad.rl._environments import gymnax_environment
from rgrad.rl._environments import linear_mean
from rgrad.rl._environments import lqr_environment
from rgrad.rl._environments import rollout
from rgrad.rl._environments import sample_rollout_noise
from rgrad.rl._lqr import LQRNoise
from rgrad.rl._lqr import LQRTrajectory
from rgrad.rl._lqr import lqr_rollout
from rgrad.rl._lqr import psd_sqrt
from rgrad.rl._lqr import sample_lqr_noise
from rgrad.rl._policy_gradients import BASELINES
from rgrad.rl._policy_gradients import StatefulPolicyGradient
from rgrad.rl._policy_gradients import moving_average_policy_gradient
from rgrad.rl._policy_gradients import pathwise_policy_gradients
from rgrad.rl._policy_gradients import score_function_policy_gradients
from rgrad.rl._policy_gradients import value_baseline_loss
from rgrad.rl._problems import LQR
from rgrad.rl._problems import check_lqr
from rgrad.rl._problems import check_policy
from rgrad.rl._problems import closed_loop_spectral_radius
from rgrad.rl._problems import example_lqr
from rgrad.rl._returns import reward_to_go
from rgrad.rl._total_propagation import WEIGHTS
from rgrad.rl._total_propagation import total_propagation_policy_gradients

__all__ = (
  "BASELINES",
  "Environment",
  "LQR",
  "LQRNoise",
  "LQRTrajectory",
  "RolloutNoise",
  "StatefulPolicyGradient",
  "Trajectory",
  "WEIGHTS",
  "check_lqr",
  "check_policy",
  "closed_loop_spectral_radius",
  "example_lqr",
  "gymnax_environment",
  "linear_mean",
  "lqr_bptt_gradients",
  "lqr_environment",
  "lqr_rollout",
  "moving_average_policy_gradient",
  "pathwise_policy_gradients",
  "psd_sqrt",
  "reward_to_go",
  "rollout",
  "sample_lqr_noise",
  "sample_rollout_noise",
  "score_function_policy_gradients",
  "total_propagation_policy_gradients",
  "value_baseline_loss",
)
