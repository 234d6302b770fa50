"""``python -m experiments.policy_gradient``: the absl entry point.

Flags: ``--config`` (``experiments/configs/policy_gradient.py``, overridable
as ``--config.<field>=...``) and ``--workdir``; see
:func:`experiments.common.launch.run_app`.
"""

from experiments.common import launch
from experiments.policy_gradient import experiment

if __name__ == "__main__":
  launch.run_app("policy_gradient", launch.without_orbax_info(experiment.run))
