"""``python -m experiments.vae``: the absl entry point (flags, one-line errors).

Flags: ``--config`` (``experiments/configs/vae.py``, overridable as
``--config.<field>=...``) and ``--workdir``; see
:func:`experiments.common.launch.run_app`.
"""

import ml_collections
from absl import logging

from experiments.common import launch
from experiments.vae import experiment


def _run_quietly(config: ml_collections.ConfigDict, workdir: str):
  """`run`, with orbax's per-checkpoint INFO lines filtered from the log."""
  logging.get_absl_logger().addFilter(
    lambda record: (
      "orbax" not in record.pathname
      or record.levelno >= logging.converter.STANDARD_WARNING
    )
  )
  return experiment.run(config, workdir)


if __name__ == "__main__":
  launch.run_app("vae", _run_quietly)
