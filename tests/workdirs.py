"""Temporary workdirs and output comparisons for the experiment tests.

Not collected (the name does not end in ``_test``); imported as
``from tests import workdirs`` by every test that runs an experiment into a
workdir and compares two runs.
"""

import shutil
import tempfile

import jax
import numpy as np


def tempdir(testcase):
  """A fresh directory, removed when `testcase` ends."""
  # tempfile rather than create_tempdir: absl flags are unparsed under pytest.
  path = tempfile.mkdtemp()
  testcase.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def class_tempdir(cls):
  """A fresh directory, removed when the test class `cls` ends.

  For a run shared by a class's tests, made in its ``setUpClass``.
  """
  path = tempfile.mkdtemp()
  cls.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def leaves(tree):
  """The leaves of a pytree as NumPy arrays, to compare two runs."""
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def drop_time(rows):
  """History rows without their wall-clock field (the one that may differ)."""
  return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]
