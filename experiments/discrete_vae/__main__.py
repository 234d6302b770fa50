"""``python -m experiments.discrete_vae``: the absl entry point.

Flags: ``--config`` (``experiments/configs/discrete_vae.py``, overridable as
``--config.<field>=...``) and ``--workdir``; see
:func:`experiments.common.launch.run_app`.
"""

from experiments.common import launch
from experiments.discrete_vae import experiment

if __name__ == "__main__":
  launch.run_app("discrete_vae", launch.without_orbax_info(experiment.run))
