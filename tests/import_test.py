"""Importing rgrad and the experiments starts no JAX backend.

``jax.distributed.initialize`` must run before any JAX computation, and the
multi-host launchers call it after their imports; so nothing at import time
(the registry's configured estimators, module constants) may touch a
backend. A regression here breaks every multi-process run with "must be
called before any JAX calls"; this test names it directly, in a fresh
interpreter.
"""

import os
import subprocess
import sys

from absl.testing import absltest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROGRAM = """
from jax._src import xla_bridge
import rgrad, rgrad.exact, rgrad.testing
import experiments.common.distributed
import experiments.benchmark_estimators.experiment
import experiments.bernoulli_toy.experiment
import experiments.discrete_vae.experiment
import experiments.estimator_variance.experiment
import experiments.vae.experiment
print(xla_bridge.backends_are_initialized())
"""


class ImportTest(absltest.TestCase):
  def test_import_starts_no_backend(self):
    result = subprocess.run(
      [sys.executable, "-c", _PROGRAM],
      cwd=_REPO,
      env={**os.environ, "PYTHONPATH": _REPO},
      capture_output=True,
      text=True,
      check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertEqual(result.stdout.strip(), "False", result.stderr[-2000:])


if __name__ == "__main__":
  absltest.main()
