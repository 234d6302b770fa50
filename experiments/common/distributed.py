"""Multi-process start-up: ``jax.distributed.initialize`` with explicit values.

``jax.distributed.initialize()`` with no arguments auto-detects Cloud TPU,
SLURM, Open MPI and Kubernetes. Elsewhere (several processes on one machine,
a hand-launched cluster) the coordinator's address, the number of processes
and this process's id must be passed in: the installed jax reads only
``JAX_COORDINATOR_ADDRESS`` from the environment, not the count or the id.
:func:`initialize` takes them from the arguments or, when not given, from
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, and
switches on CPU collectives (gloo) when the platform is the CPU, without which
a multi-process CPU program cannot run cross-process computations.
"""

import os

import jax

from experiments.common import config as config_lib

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise config_lib.ConfigError(
      f"{name} must be an integer, got {value!r}."
    ) from None


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Initializes JAX's multi-process runtime once (later calls do nothing).

  Args:
    coordinator_address: ``host:port`` of process 0; default
      ``$JAX_COORDINATOR_ADDRESS``, else auto-detected by JAX.
    num_processes: default ``$JAX_NUM_PROCESSES``.
    process_id: default ``$JAX_PROCESS_ID``.

  Raises:
    ConfigError: an address given without the count and the id (or the
      reverse), or values that are not integers in range.
  """
  if jax.distributed.is_initialized():
    return
  address = coordinator_address or os.environ.get(_ENV[0]) or None
  count = num_processes if num_processes is not None else _env_int(_ENV[1])
  index = process_id if process_id is not None else _env_int(_ENV[2])
  explicit = (address, count, index)
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise config_lib.ConfigError(
      "a multi-process launch outside SLURM/MPI/TPU/Kubernetes needs all "
      "three of the coordinator address, the number of processes and the "
      f"process id ({', '.join(_ENV)}); got address={address!r}, "
      f"num_processes={count!r}, process_id={index!r}."
    )
  if count is not None and not (count >= 1 and 0 <= index < count):
    raise config_lib.ConfigError(
      f"process_id must be in [0, num_processes); got process_id={index}, "
      f"num_processes={count}."
    )
  platforms = os.environ.get("JAX_PLATFORMS", "") or jax.config.jax_platforms
  if not platforms or "cpu" in str(platforms).split(","):
    # Cross-process collectives on the CPU backend need an implementation;
    # gloo ships with jaxlib. Harmless when an accelerator is used instead.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if address is None:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(
      coordinator_address=address, num_processes=count, process_id=index
    )
