"""``python -m experiments.benchmark_estimators``: the absl entry point.

Flags: ``--config`` (``experiments/configs/benchmark_estimators.py``,
overridable as ``--config.<field>=...``) and ``--workdir``; see
:func:`experiments.common.launch.run_app`.
"""

from experiments.benchmark_estimators import experiment
from experiments.common import launch

if __name__ == "__main__":
  launch.run_app("benchmark_estimators", experiment.run)
