r"""Policy gradients on gymnax environments (JAX-native, jit/vmap end to end).

CartPole-v1 (:mod:`~experiments.policy_gradient.cartpole`): REINFORCE with
reward-to-go (``rgrad.rl.reward_to_go``) and a learned state-value
baseline, thousands of environments vmapped and the whole update (rollout
scan, gradient, Adam steps) compiled once; the learning curve and the
variance of one episode's gradient estimate with and without the baseline
at the same policy::

  python -m experiments.policy_gradient --workdir=/tmp/rgrad/policy_gradient

The package reads top to bottom like the experiment:

* :mod:`~experiments.policy_gradient.networks`: the Flax MLPs;
* :mod:`~experiments.policy_gradient.rollout`: one complete episode per
  environment from reset, as a ``lax.scan`` with a first-episode mask
  (environment-agnostic);
* :mod:`~experiments.policy_gradient.cartpole`: the estimator, the jitted
  update, the evaluation, the training loop of
  :mod:`experiments.common.training` (orbax checkpoints that resume
  bitwise);
* :mod:`~experiments.policy_gradient.validation`: the config checks;
* :mod:`~experiments.policy_gradient.outputs` (results.json with its schema,
  results.csv) and :mod:`~experiments.policy_gradient.plots`;
* :mod:`~experiments.policy_gradient.experiment`: :func:`run`, which picks
  the environment's part by ``config.env`` (:data:`ENVS`); ``__main__`` is
  the command line.

Pendulum-v1 (:mod:`~experiments.policy_gradient.pendulum`, results and
figure in :mod:`~experiments.policy_gradient.pendulum_outputs`): the
variance of BPTT through gymnax's own ``step`` against the score function
and total propagation as the horizon grows, at fixed policies, resumable
cell by cell::

  python -m experiments.policy_gradient \
    --config=experiments/configs/policy_gradient.py:pendulum \
    --workdir=/tmp/rgrad/pendulum

References:
  Williams, Machine Learning 1992; Sutton and Barto, 2018, Section 13.4.
"""

from experiments.policy_gradient.experiment import ENVS
from experiments.policy_gradient.experiment import run
from experiments.policy_gradient.outputs import HISTORY_FIELDS
from experiments.policy_gradient.outputs import SCHEMA_VERSION
from experiments.policy_gradient.validation import validate_config

__all__ = (
  "ENVS",
  "HISTORY_FIELDS",
  "SCHEMA_VERSION",
  "run",
  "validate_config",
)
