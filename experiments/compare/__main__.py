"""``python -m experiments.compare``: see the package docstring."""

from experiments.common import launch
from experiments.compare.experiment import run

if __name__ == "__main__":
  launch.run_app("compare", run)
