"""Peak memory of :func:`rgrad.gradient_moments`, in a fresh process.

Over ``memory_num_samples`` x ``memory_dim``, measured in a fresh Python
subprocess as ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the whole
process, JAX runtime included), next to its RSS just before the call and
XLA's ``temp_size_in_bytes`` of the same compiled program. The subprocess's
script uses only the public names of :mod:`experiments.benchmark_estimators`
and of rgrad.
"""

import json
import os
import subprocess
import sys
from typing import Any

import ml_collections

import experiments

_SCRIPT = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
import rgrad
from rgrad import diagnostics
from experiments import benchmark_estimators as b

spec = json.loads(sys.argv[1])
chunk_fn = diagnostics.EstimatorChunk(
    rgrad.get_estimator(spec["estimator"]).fn,
    b.COST_FUNCTIONS[spec["cost"]],
    b.normal_builder,
)
params = {"loc": jnp.zeros(spec["dim"]), "scale": jnp.ones(spec["dim"])}
key = jax.random.key(spec["seed"])
start = time.perf_counter()
# The program behind rgrad.gradient_moments, compiled apart to read its size.
compiled = diagnostics.stream_moments.lower(
    key, params, chunk_fn=chunk_fn, num_samples=spec["num_samples"],
    chunk_size=spec["chunk_size"]).compile()
compile_s = time.perf_counter() - start
temp = compiled.memory_analysis().temp_size_in_bytes
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
# The compiled engine takes the traced arguments only.
moments = diagnostics.finalize_moments(compiled(key, params),
                                       spec["num_samples"])
jax.block_until_ready(moments)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rss_bytes": peak, "rss_before_bytes": rss_before,
                  "compiled_temp_bytes": int(temp), "compile_s": compile_s,
                  "wall_s": wall,
                  "num_nonfinite": int(moments.num_nonfinite)}))
"""

# The repository root, for the subprocess's imports (rgrad, experiments).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(experiments.__file__)))


def measure_memory(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Peak RSS of gradient_moments, in a fresh subprocess (ru_maxrss).

  Returns:
    The ``memory`` record of results.json: the measurement's spec (from
    `config`), what the subprocess measured, and the verdict against
    ``config.memory_target_bytes``.

  Raises:
    RuntimeError: the subprocess failed (the tail of its stderr).
    subprocess.TimeoutExpired: it ran past ``config.memory_timeout_s``.
  """
  num_samples = int(config.memory_num_samples)
  spec = {
    "estimator": config.memory_estimator,
    "cost": config.cost,
    "dim": int(config.memory_dim),
    "num_samples": num_samples,
    "chunk_size": min(int(config.memory_chunk_size), num_samples),
    "seed": int(config.seed),
  }
  env = dict(os.environ)
  env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
  out = subprocess.run(
    [sys.executable, "-c", _SCRIPT, json.dumps(spec)],
    capture_output=True,
    text=True,
    env=env,
    cwd=_ROOT,
    timeout=config.memory_timeout_s,
    check=False,
  )
  if out.returncode:
    raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-4000:]}")
  measured = json.loads(out.stdout.strip().splitlines()[-1])
  return {
    "method": (
      "resource.getrusage(RUSAGE_SELF).ru_maxrss of a fresh Python "
      "subprocess (peak RSS of the whole process, JAX runtime included); "
      "compiled_temp_bytes from XLA memory_analysis()"
    ),
    **spec,
    **measured,
    "within_target": measured["peak_rss_bytes"] < config.memory_target_bytes,
  }
