"""``python -m experiments.logistic_regression``: the absl entry point.

Flags: ``--config`` (``experiments/configs/logistic_regression.py``,
overridable as ``--config.<field>=...``, presets as ``...py:large``) and
``--workdir``; see :func:`experiments.common.launch.run_app`.
"""

from experiments.common import launch
from experiments.logistic_regression import experiment

if __name__ == "__main__":
  launch.run_app(
    "logistic_regression", launch.without_orbax_info(experiment.run)
  )
