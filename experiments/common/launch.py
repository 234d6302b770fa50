"""Command-line entry point shared by every experiment.

Each experiment is an absl app with two flags: ``--config``, an ml_collections
config file (``experiments/configs/<name>.py``, overridable field by field as
``--config.<field>=...``), and ``--workdir``, where results go. absl flags live
in one process-wide registry, so they are defined only when a module runs as
``__main__``: tests import several experiments into one process and call their
``run(config, workdir)`` directly.

A bad config value (:class:`experiments.common.config.ConfigError`) is a usage
error: one clear line on stderr and exit status 1 (absl's ``UsageError`` code),
not a traceback and not the module's whole docstring.
"""

import os
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.common import config as config_lib

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def define_flags(
  name: str,
) -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """Defines ``--config`` and ``--workdir`` for the experiment `name`.

  Args:
    name: the experiment's name; its default config is
      ``experiments/configs/<name>.py`` and its default workdir
      ``/tmp/rgrad/<name>``.

  Returns:
    The holders of the config flag (locked: unknown fields are an error) and
    of the workdir flag.
  """
  config = config_flags.DEFINE_config_file(
    "config",
    os.path.join(_CONFIGS, f"{name}.py"),
    f"Configuration of the {name} experiment (ml_collections).",
    lock_config=True,
  )
  workdir = flags.DEFINE_string(
    "workdir", f"/tmp/rgrad/{name}", "Where results go."
  )
  return config, workdir


def run_app(
  name: str, run: Callable[[ml_collections.ConfigDict, str], Any]
) -> None:
  """Runs ``run(config, workdir)`` as the absl app of the experiment `name`.

  Defines the flags (:func:`define_flags`), so call it only under
  ``if __name__ == "__main__":``. Positional arguments and config values
  that ``run`` rejects with a ``ConfigError`` are usage errors.
  """
  config, workdir = define_flags(name)

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
      run(config.value, workdir.value)
    except config_lib.ConfigError as e:
      print(f"{name}: error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(main)


def without_orbax_info(
  run: Callable[[ml_collections.ConfigDict, str], Any],
) -> Callable[[ml_collections.ConfigDict, str], Any]:
  """`run`, with orbax's per-checkpoint INFO lines filtered from the log."""

  def quiet_run(config: ml_collections.ConfigDict, workdir: str) -> Any:
    logging.get_absl_logger().addFilter(
      lambda record: (
        "orbax" not in record.pathname
        or record.levelno >= logging.converter.STANDARD_WARNING
      )
    )
    return run(config, workdir)

  return quiet_run
