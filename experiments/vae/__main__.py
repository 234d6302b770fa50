"""``python -m experiments.vae``: the absl entry point (flags, one-line errors).

Flags: ``--config`` (``experiments/configs/vae.py``, overridable as
``--config.<field>=...``) and ``--workdir``; see
:func:`experiments.common.launch.run_app`.
"""

from experiments.common import launch
from experiments.vae import experiment

if __name__ == "__main__":
  launch.run_app("vae", launch.without_orbax_info(experiment.run))
