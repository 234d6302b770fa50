"""Multi-process runs, for real: two processes on this machine, two CPU devices
each, give the numbers of one process with four devices (to 1e-12 relative).

Each test starts a process group the way the README tells users outside
SLURM/MPI/TPU to: a coordinator on process 0 (here 127.0.0.1 and a free
port), the process count and each process's id, handed to
:func:`experiments.common.distributed.initialize` through
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` or
through ``--config.coordinator_address``, ``--config.num_processes`` and
``--config.process_id``; CPU collectives go through gloo. The single-process
reference runs at the same time, with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

These tests are never skipped: a machine that cannot run a process group
(no TCP on 127.0.0.1, a jaxlib without gloo) fails them with the processes'
output, since a skip in CI would hide exactly the breakage they exist for.

Run as ``python tests/multihost_test.py --engine-worker OUT.json``, this file
is also the engine test's worker (see :func:`_engine_worker`).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from experiments.common import distributed
from rgrad import diagnostics
from rgrad import distributions
from rgrad import estimators

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUM_PROCESSES = 2
_DEVICES_PER_PROCESS = 2
# A whole group, from start to exit; a hang (a peer that never connects)
# fails the test after this many seconds instead of blocking CI.
_TIMEOUT_S = 300
_RTOL = 1e-12
# Tries with a fresh port when another program takes the port between the
# moment it is chosen and the moment the coordinator binds it.
_PORT_TRIES = 3
_PORT_TAKEN = "Failed to start RPC server"
# The experiment at a tiny size, one compiled program: 5 chunks (on 4
# devices, 3 of 8 padding), one cost, the k and sigma grids, the control
# variate's pilot stage included; no dim sweep (a second program), no plots.
_EXPERIMENT_FLAGS = (
  "--config.costs=square",
  "--config.estimators=score_function_cv",
  "--config.num_samples=2000",
  "--config.chunk_size=400",
  "--config.cv_num_pilot_samples=200",
  "--config.k_grid.square=(-1.0, 1.0, 2)",
  "--config.sigma_sweep.scales=(0.5, 2.0, 2)",
  "--config.dim_sweep.enabled=False",
  "--config.plot=False",
)
_LAUNCH_FIELDS = (
  "distributed",
  "coordinator_address",
  "num_processes",
  "process_id",
)
_LAUNCH_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


# ---------------------------------------------------------------------------
# The engine test's worker: moments of a small estimator problem.
# ---------------------------------------------------------------------------


def _cost(x):
  return jnp.sum(jnp.cos(2.0 * x), axis=-1)


def _normal(params):
  return distributions.Normal(params["loc"], params["scale"])


def _draws(keys, size, params):
  """One Gaussian draw per sample from each key of a dict of keys."""
  return {
    name: params["loc"] + jax.random.normal(key, (size, 2))
    for name, key in keys.items()
  }


def _flat(tree) -> dict[str, list[float]]:
  return {
    jax.tree_util.keystr(path): np.asarray(x, np.float64).ravel().tolist()
    for path, x in jax.tree_util.tree_leaves_with_path(tree)
  }


def _engine_worker(out_path: str) -> None:
  """Runs the moments engine two ways and writes the numbers as JSON.

  Started with the launch variables set, it joins the process group first;
  without them it is the single-process reference.
  """
  jax.config.update("jax_enable_x64", True)
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    distributed.initialize()  # From the three JAX_* variables.
  params = {"loc": jnp.array([0.5, -1.0]), "scale": jnp.array([1.0, 0.3])}

  # An estimator's moments under an outer jit (the key and params are then
  # tracers of the global program). 11 full chunks on 4 devices: 3 each, one
  # of them padding; then a partial chunk of 100, computed outside the
  # shard_map.
  @jax.jit
  def score(key, params):
    m = diagnostics.gradient_moments(
      estimators.score_function_jacobians,
      _cost,
      params,
      _normal,
      key,
      11 * 256 + 100,
      chunk_size=256,
      higher_moments=True,
    )
    return m._replace(num_samples=None)

  # Called directly, with a pytree of keys of every kind (typed, of two
  # implementations, and raw): they and the params enter as host values.
  keys = {
    "threefry": jax.random.key(1),
    "rbg": jax.random.key(2, impl="rbg"),
    "raw": jax.random.PRNGKey(3),
  }
  fields = ("mean", "variance", "stderr", "variance_stderr", "num_nonfinite")
  values = {}
  for name, m in (
    ("score", score(jax.random.key(0), params)),
    ("draws", diagnostics.moments(_draws, keys, 1000, params, chunk_size=128)),
  ):
    values.update(_flat({name: {f: getattr(m, f) for f in fields}}))
  with open(out_path, "w") as f:
    json.dump(
      {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "values": values,
      },
      f,
    )


# ---------------------------------------------------------------------------
# Starting processes.
# ---------------------------------------------------------------------------


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(num_devices: int, **extra: str) -> dict[str, str]:
  env = {
    k: v
    for k, v in os.environ.items()
    # A proxy would capture gRPC's connections to the coordinator; inherited
    # launch variables would turn the reference into a group member.
    if "proxy" not in k.lower() and k not in _LAUNCH_ENV
  }
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
    PYTHONPATH=_REPO + os.pathsep + env.get("PYTHONPATH", ""),
  )
  env.update(extra)
  return env


class _Exit(NamedTuple):
  code: int  # exit status; negative: killed by that signal
  output: str  # stdout and stderr
  killed: str | None  # why this test killed it, if it did


def _run_all(commands, log_dir: str, tag: str) -> list[_Exit]:
  """Runs ``(argv, env)`` commands at once and waits for them.

  Kills the others as soon as one fails (a group member left alone would
  wait for its peer until JAX's own timeouts), and all at the deadline.
  """
  procs, logs = [], []
  why = None
  try:
    for i, (argv, env) in enumerate(commands):
      log = open(os.path.join(log_dir, f"{tag}_{i}.log"), "w+")  # noqa: SIM115
      logs.append(log)
      procs.append(
        subprocess.Popen(
          argv, cwd=_REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
      )
    deadline = time.monotonic() + _TIMEOUT_S
    while any(p.poll() is None for p in procs):
      if any(p.poll() for p in procs):
        why = "another process failed"
        break
      if time.monotonic() > deadline:
        why = f"still running after {_TIMEOUT_S} s"
        break
      time.sleep(0.1)
  finally:
    killed = []
    for p in procs:
      killed.append(p.poll() is None)
      if killed[-1]:
        p.kill()
      p.wait()
  out = []
  for p, log, k in zip(procs, logs, killed, strict=True):
    log.seek(0)
    out.append(_Exit(p.returncode, log.read(), why if k else None))
    log.close()
  return out


def _run_group(make_commands, log_dir: str, tag: str) -> list[_Exit]:
  """Runs ``make_commands(address)``: a group with its coordinator at
  `address` and the reference; again with a fresh port if the coordinator's
  port was taken in between."""
  for _ in range(_PORT_TRIES):
    exits = _run_all(make_commands(f"127.0.0.1:{_free_port()}"), log_dir, tag)
    if not any(_PORT_TAKEN in e.output for e in exits):
      break
  return exits


def _tempdir(test) -> str:
  # Not absltest's create_tempdir, which needs absl flags pytest never parses.
  tmp = tempfile.TemporaryDirectory()
  test.addCleanup(tmp.cleanup)
  return tmp.name


def _check_ran(test, exits: list[_Exit], names: list[str]) -> None:
  """Fails with the output of the first process that failed by itself."""
  failed = [(n, e) for n, e in zip(names, exits, strict=True) if e.code != 0]
  if not failed:
    return
  # A process that failed on its own first, else one this test killed.
  name, e = sorted(failed, key=lambda f: f[1].killed is not None)[0]
  status = f"was killed ({e.killed})" if e.killed else f"exited {e.code}"
  others = ", ".join(f"{n} (exit {x.code})" for n, x in failed if n != name)
  test.fail(
    f"{name} {status}{'; also ' + others if others else ''}. (A machine "
    "that cannot run a process group, which needs TCP on 127.0.0.1 and "
    "jaxlib's gloo CPU collectives, fails here too: this test is never "
    f"skipped.) The output of {name} ends:\n" + e.output[-4000:]
  )


def _assert_json_close(test, actual, expected, what: str) -> None:
  """Equal JSON, floats to `_RTOL` relative."""
  if isinstance(expected, float) and isinstance(actual, float):
    np.testing.assert_allclose(
      actual, expected, rtol=_RTOL, atol=0, err_msg=what
    )
  elif isinstance(expected, dict) and isinstance(actual, dict):
    test.assertEqual(sorted(actual), sorted(expected), what)
    for k in expected:
      _assert_json_close(test, actual[k], expected[k], f"{what}.{k}")
  elif isinstance(expected, list) and isinstance(actual, list):
    test.assertLen(actual, len(expected), what)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
      _assert_json_close(test, a, e, f"{what}[{i}]")
  else:
    test.assertEqual(actual, expected, what)


# ---------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------


class EngineTest(absltest.TestCase):
  def test_two_processes_match_one_process(self):
    tmp = _tempdir(self)

    def out(name):
      return os.path.join(tmp, f"{name}.json")

    def worker(name):
      return [sys.executable, __file__, "--engine-worker", out(name)]

    def commands(address):
      group = [
        (
          worker(f"process_{i}"),
          _env(
            _DEVICES_PER_PROCESS,
            JAX_COORDINATOR_ADDRESS=address,
            JAX_NUM_PROCESSES=str(_NUM_PROCESSES),
            JAX_PROCESS_ID=str(i),
          ),
        )
        for i in range(_NUM_PROCESSES)
      ]
      num_devices = _NUM_PROCESSES * _DEVICES_PER_PROCESS
      return group + [(worker("reference"), _env(num_devices))]

    exits = _run_group(commands, tmp, "engine")
    _check_ran(
      self, exits, ["engine process 0", "engine process 1", "engine reference"]
    )
    with open(out("reference")) as f:
      reference = json.load(f)
    self.assertEqual(reference["process_count"], 1)
    self.assertEqual(reference["device_count"], 4)
    for i in range(_NUM_PROCESSES):
      with open(out(f"process_{i}")) as f:
        got = json.load(f)
      self.assertEqual(got["process_index"], i)
      self.assertEqual(got["process_count"], _NUM_PROCESSES)
      self.assertEqual(got["device_count"], 4)
      # Every process holds the whole replicated result.
      _assert_json_close(
        self, got["values"], reference["values"], f"process {i}"
      )


class EstimatorVarianceTest(absltest.TestCase):
  def test_two_processes_write_the_one_process_results(self):
    tmp = _tempdir(self)

    def workdir(name):
      return os.path.join(tmp, name)

    def command(name, *flags):
      return [
        sys.executable,
        "-m",
        "experiments.estimator_variance",
        f"--workdir={workdir(name)}",
        *_EXPERIMENT_FLAGS,
        *flags,
      ]

    def commands(address):
      # Both launch styles in one group: process 0 takes the coordinator, the
      # count and its id as config flags, process 1 from the environment.
      flags_launch = (
        command(
          "process_0",
          "--config.distributed=True",
          f"--config.coordinator_address={address}",
          f"--config.num_processes={_NUM_PROCESSES}",
          "--config.process_id=0",
        ),
        _env(_DEVICES_PER_PROCESS),
      )
      env_launch = (
        command("process_1", "--config.distributed=True"),
        _env(
          _DEVICES_PER_PROCESS,
          JAX_COORDINATOR_ADDRESS=address,
          JAX_NUM_PROCESSES=str(_NUM_PROCESSES),
          JAX_PROCESS_ID="1",
        ),
      )
      num_devices = _NUM_PROCESSES * _DEVICES_PER_PROCESS
      reference = (command("reference"), _env(num_devices))
      return [flags_launch, env_launch, reference]

    exits = _run_group(commands, tmp, "estimator_variance")
    _check_ran(
      self,
      exits,
      ["experiment process 0", "experiment process 1", "experiment reference"],
    )
    # Only process 0 writes.
    self.assertFalse(os.path.exists(workdir("process_1")))
    loaded = {}
    for name in ("process_0", "reference"):
      for what in ("results", "timings"):
        with open(os.path.join(workdir(name), f"{what}.json")) as f:
          loaded[name, what] = json.load(f)
    self.assertEqual(loaded["process_0", "timings"]["process_count"], 2)
    self.assertEqual(loaded["reference", "timings"]["process_count"], 1)
    for name in ("process_0", "reference"):
      self.assertEqual(loaded[name, "timings"]["device_count"], 4)
    got, want = loaded["process_0", "results"], loaded["reference", "results"]
    self.assertNotEmpty(want["records"])
    self.assertNotEmpty(want["sigma_sweep"])
    for k in _LAUNCH_FIELDS:
      del got["config"][k], want["config"][k]
    _assert_json_close(self, got, want, "results.json")


if __name__ == "__main__":
  if sys.argv[1:2] == ["--engine-worker"]:
    _engine_worker(sys.argv[2])
  else:
    absltest.main()
