"""`run(config, workdir)`: every estimator's moments at every (radius, T).

Randomness: ``jax.random.key(config.seed)`` folded with the radius's and
the horizon's indices gives one key per (radius, T), shared by every
estimator (common random numbers; each consumes it once).

Resuming: each finished (estimator, T, radius) cell is kept in
``<workdir>/cells/`` (:func:`experiments.common.checkpoints.cached_cell`);
a run killed part-way and restarted with the same flags measures only the
missing cells and writes the results of the uninterrupted run.
"""

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import horizon_variance
from experiments.common import outputs as common_outputs
from experiments.configs import lqr as lqr_config
from experiments.lqr import estimators
from experiments.lqr import outputs
from rgrad import exact
from rgrad import rl


def validate_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Checked fields; raises ``ConfigError`` naming the bad one."""
  names = config_lib.names(
    config.estimators, "estimators", lqr_config.ESTIMATORS
  )
  radii = tuple(
    config_lib.real(r, "spectral_radii", positive=True)
    for r in config.spectral_radii
  )
  horizons = tuple(config_lib.integer(t, "horizons") for t in config.horizons)
  if not radii or not horizons:
    raise config_lib.ConfigError(
      "config.spectral_radii and config.horizons must not be empty."
    )
  num_samples, chunk_size, batch = horizon_variance.batching(config)
  config_lib.real(config.sigma, "sigma", positive=True)
  return {
    "estimators": names,
    "spectral_radii": radii,
    "horizons": horizons,
    "num_samples": num_samples,
    "chunk_size": chunk_size,
    "batch_size": batch,
  }


def _problem(config, rho):
  return rl.example_lqr(
    rho,
    angle=float(config.angle),
    gain=tuple(float(g) for g in config.gain),
    sigma=float(config.sigma),
    dtype=jnp.float64,
  )


def _records(name, horizon, rho, problem, params, key, exact_fn, parsed):
  """The records of one (estimator, T, radius)."""
  m = estimators.moments(name, horizon, problem, params, key, parsed)
  return outputs.records(name, horizon, rho, m, exact_fn())


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_cells: int | None = None,
) -> dict[str, Any] | None:
  """Runs the experiment and writes its outputs to `workdir`.

  Args:
    config: see `experiments/configs/lqr.py`.
    workdir: output directory, created if needed; cells measured there by
      a run with the same config are read back.
    stop_after_cells: test hook: abandon the run after this many newly
      measured cells, as if it were killed (no outputs are written).

  Returns:
    The contents of ``results.json`` (:data:`outputs.SCHEMA`); None when
    stopped by the test hook.

  Raises:
    experiments.common.config.ConfigError: a bad config, before any work.
  """
  parsed = validate_config(config)
  # Float64: at radius 1.2 and T = 200 the variances reach ~1e100.
  jax.config.update("jax_enable_x64", True)
  checkpoints.record_config(config, workdir)
  start = time.perf_counter()
  key = jax.random.key(config.seed)
  problems = {rho: _problem(config, rho) for rho in parsed["spectral_radii"]}
  # Horizon outermost, radius innermost: each (estimator, T) compiles once
  # and its program is reused for every radius (the problem is traced).
  # Computed only for cells that are measured, once per (radius, T).
  exacts = {
    (rho, t): functools.cache(
      functools.partial(exact.lqr_policy_gradient, *problems[rho], t)
    )
    for rho in parsed["spectral_radii"]
    for t in parsed["horizons"]
  }
  cells = (
    (
      f"{name}/T={horizon}",
      f"{name}_T={horizon}_r={rho}",
      functools.partial(
        horizon_variance.timed_cell,
        name,
        horizon,
        f"radius {rho}",
        functools.partial(
          _records,
          name,
          horizon,
          rho,
          *problems[rho],
          jax.random.fold_in(jax.random.fold_in(key, i), j),
          exacts[(rho, horizon)],
          parsed,
        ),
      ),
    )
    for j, horizon in enumerate(parsed["horizons"])
    for name in parsed["estimators"]
    for i, rho in enumerate(parsed["spectral_radii"])
  )
  measured = horizon_variance.measure_cells(workdir, cells, stop_after_cells)
  if measured is None:
    logging.info("stopped by the test hook")
    return None
  records, timings = measured
  problem_blocks = {
    str(rho): outputs.problem_block(*problems[rho])
    for rho in parsed["spectral_radii"]
  }
  results = {
    "schema_version": outputs.SCHEMA_VERSION,
    "config": {
      **common_outputs.as_json(config.to_dict()),
      "problems": problem_blocks,
    },
    "estimators": list(parsed["estimators"]),
    "horizons": list(parsed["horizons"]),
    "spectral_radii": list(parsed["spectral_radii"]),
    "records": records,
  }
  results["summary"] = outputs.summary(results)
  results["checks"] = outputs.checks(results)
  horizon_variance.finish(config, workdir, results, timings, start, outputs)
  return results
