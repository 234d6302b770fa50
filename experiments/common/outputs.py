"""Writing an experiment's results: JSON and CSV, on process 0 only.

With several processes (``--config.distributed=True``) every process computes
the same global results; only process 0 writes them, so that hosts sharing a
file system do not race on one file. Every writer here checks
:func:`is_writer` itself.
"""

import csv
import json
import os
from collections.abc import Sequence
from typing import Any

import jax


def is_writer() -> bool:
  """Whether this process writes outputs (process 0)."""
  return jax.process_index() == 0


def make_workdir(workdir: str) -> None:
  if is_writer():
    os.makedirs(workdir, exist_ok=True)


def write_json(path: str, obj: Any, *, strict: bool = True) -> None:
  """Writes `obj` as indented JSON; `strict` rejects NaN and infinity."""
  if not is_writer():
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=1, allow_nan=not strict)


def write_csv(
  path: str,
  records: Sequence[dict[str, Any]],
  columns: Sequence[str] | None = None,
) -> None:
  """Writes dict records as CSV; `columns` (default: the first record's keys)
  selects and orders the fields. Nothing is written for no records."""
  if not is_writer() or not records:
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(
      f, fieldnames=list(columns or records[0]), extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(records)


def as_json(obj: Any) -> Any:
  """`obj` through JSON (tuples become lists), as a file would read back."""
  return json.loads(json.dumps(obj))
