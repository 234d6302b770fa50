"""``python -m experiments.estimator_variance``: see the package docstring."""

from experiments.common import launch
from experiments.estimator_variance.experiment import run

if __name__ == "__main__":
  launch.run_app("estimator_variance", run)
