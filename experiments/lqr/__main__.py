"""``python -m experiments.lqr``: see the package docstring."""

from experiments.common import launch
from experiments.lqr.experiment import run

if __name__ == "__main__":
  launch.run_app("lqr", run)
