r"""rgrad.rl: policy gradients by the score function and through time.

In reinforcement learning the gradient of an expected return reaches back
through every past step. The score function (REINFORCE) needs no model of
the dynamics; the pathwise gradient (backpropagation through time) needs
differentiable dynamics; their variances behave in opposite ways as the
horizon grows and as the dynamics become unstable (Parmas et al., PIPPS,
ICML 2018; Metz et al., 2021). The linear-quadratic regulator
(:class:`LQR`) is the reference problem whose policy gradient is exact
(:func:`rgrad.exact.lqr_cost`).
"""

from rgrad.rl._bptt import lqr_bptt_gradients
from rgrad.rl._lqr import LQRNoise
from rgrad.rl._lqr import LQRTrajectory
from rgrad.rl._lqr import lqr_rollout
from rgrad.rl._lqr import psd_sqrt
from rgrad.rl._lqr import sample_lqr_noise
from rgrad.rl._problems import LQR
from rgrad.rl._problems import check_lqr
from rgrad.rl._problems import check_policy
from rgrad.rl._problems import closed_loop_spectral_radius
from rgrad.rl._problems import example_lqr
from rgrad.rl._returns import reward_to_go

__all__ = (
  "LQR",
  "LQRNoise",
  "LQRTrajectory",
  "check_lqr",
  "check_policy",
  "closed_loop_spectral_radius",
  "example_lqr",
  "lqr_bptt_gradients",
  "lqr_rollout",
  "psd_sqrt",
  "reward_to_go",
  "sample_lqr_noise",
)
