"""Config checks shared by the experiments.

Every check raises :class:`ConfigError` (a ``ValueError``) naming the field
as ``config.<field>``, before any computation. :func:`experiments.common.
launch.run_app` turns it into absl's one-line usage error and a non-zero
exit, instead of a traceback.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class ConfigError(ValueError):
  """A config value that the experiment cannot run with."""


def batches_fit(
  config: Any, fields: Sequence[str], num_train: int, unit: str
) -> None:
  """Each batch size in `fields` is at most `num_train` training `unit`.

  Raises:
    ConfigError: naming the first batch larger than the training set.
  """
  for field in fields:
    if config[field] > num_train:
      raise ConfigError(
        f"config.{field} ({config[field]}) exceeds the {num_train} training "
        f"{unit}."
      )


def integer(value: Any, field: str, minimum: int = 1) -> int:
  """An int (NumPy ints too, never a bool) >= `minimum`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ConfigError(
      f"config.{field} must be an int, got {type(value).__name__} {value!r}."
    )
  if value < minimum:
    raise ConfigError(f"config.{field} must be >= {minimum}, got {value}.")
  return int(value)


def real(
  value: Any,
  field: str,
  *,
  positive: bool = False,
  low: float | None = None,
  high: float | None = None,
) -> float:
  """A finite real number, optionally > 0 or in ``[low, high)``."""
  if isinstance(value, bool) or not isinstance(
    value, (int, float, np.integer, np.floating)
  ):
    raise ConfigError(
      f"config.{field} must be a number, got {type(value).__name__}."
    )
  value = float(value)
  if not math.isfinite(value):
    raise ConfigError(f"config.{field} must be finite, got {value}.")
  if positive and value <= 0:
    raise ConfigError(f"config.{field} must be > 0, got {value}.")
  if low is not None and value < low:
    raise ConfigError(f"config.{field} must be >= {low}, got {value}.")
  if high is not None and value >= high:
    raise ConfigError(f"config.{field} must be < {high}, got {value}.")
  return value


def names(value: Any, field: str, valid: Sequence[str]) -> tuple[str, ...]:
  """A comma-separated string (or a sequence) of distinct names from `valid`."""
  if isinstance(value, str):
    out = tuple(n.strip() for n in value.split(",") if n.strip())
  elif isinstance(value, (list, tuple)):
    out = tuple(str(n).strip() for n in value)
  else:
    raise ConfigError(
      f"config.{field} must be a comma-separated string, got "
      f"{type(value).__name__}."
    )
  if not out:
    raise ConfigError(
      f"config.{field} is empty; choose from: {', '.join(valid)}."
    )
  unknown = [n for n in out if n not in valid]
  if unknown:
    raise ConfigError(
      f"Unknown name(s) {', '.join(repr(n) for n in unknown)} in "
      f"config.{field}; valid names are: {', '.join(valid)}."
    )
  if len(set(out)) != len(out):
    raise ConfigError(f"config.{field} lists a name twice: {value!r}.")
  return out


def chunking(
  num_samples: Any, chunk_size: Any, prefix: str = "", minimum: int = 1
) -> tuple[int, int]:
  """``num_samples`` (>= `minimum`), a multiple of ``chunk_size`` (>= 1)."""
  num_samples = integer(num_samples, f"{prefix}num_samples", minimum)
  chunk_size = integer(chunk_size, f"{prefix}chunk_size")
  if num_samples % chunk_size:
    raise ConfigError(
      f"config.{prefix}num_samples ({num_samples}) must be a multiple of "
      f"config.{prefix}chunk_size ({chunk_size})."
    )
  return num_samples, chunk_size


def grid(spec: Any, field: str, geometric: bool = False) -> np.ndarray:
  """``(start, stop, num)`` -> a float64 grid, linear or geometric."""
  if not isinstance(spec, (list, tuple)) or len(spec) != 3:
    raise ConfigError(
      f"config.{field} must be a (start, stop, num) triple, got {spec!r}."
    )
  start, stop, num = spec
  num = integer(num, f"{field}[2] (num)")
  if not all(np.isfinite([start, stop])):
    raise ConfigError(f"config.{field} has a non-finite end point: {spec!r}.")
  if geometric:
    if start <= 0 or stop <= 0:
      raise ConfigError(
        f"config.{field} is geometric and needs start, stop > 0: {spec!r}."
      )
    return np.geomspace(start, stop, num)
  return np.linspace(start, stop, num)
