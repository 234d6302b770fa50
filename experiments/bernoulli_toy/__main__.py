"""``python -m experiments.bernoulli_toy``: see the package docstring."""

from experiments.bernoulli_toy.experiment import run
from experiments.common import launch

if __name__ == "__main__":
  launch.run_app("bernoulli_toy", run)
