"""``run(config, workdir)``: parse, sample, compare with exact values, write.

Intentionally kept short: the work is in the modules it calls.
"""

import time
from typing import Any

import jax
import ml_collections
from absl import logging

from experiments.common import distributed
from experiments.common import outputs as common_outputs
from experiments.estimator_variance import outputs
from experiments.estimator_variance import parsing
from experiments.estimator_variance import plotting
from experiments.estimator_variance import records
from experiments.estimator_variance import references
from experiments.estimator_variance import schema
from experiments.estimator_variance import sweeps


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the experiment and writes its outputs to `workdir`.

  Args:
    config: see `experiments/configs/estimator_variance.py`.
    workdir: output directory, created if needed (by process 0).

  Returns:
    The contents of ``results.json`` (:data:`schema.SCHEMA`).

  Raises:
    experiments.common.config.ConfigError: a bad config, before any
      computation.
  """
  parsed = parsing.parse_config(config)
  # Float64 throughout: the streamed moments and the quadrature references.
  jax.config.update("jax_enable_x64", True)
  if config.distributed:
    distributed.initialize(
      config.coordinator_address, config.num_processes, config.process_id
    )
  start = time.perf_counter()
  logging.info(
    "estimator_variance: %d device(s) (%s), %d process(es)",
    jax.device_count(),
    jax.devices()[0].platform,
    jax.process_count(),
  )

  phases = {}
  phase_start = time.perf_counter()
  outcomes = sweeps.run_jobs(sweeps.jobs(config, parsed), config.seed)
  phases["estimators_s"] = time.perf_counter() - phase_start
  phase_start = time.perf_counter()
  exact = references.exact_references(
    config, parsed, references.coefficients(config, parsed, outcomes)
  )
  phases["exact_s"] = time.perf_counter() - phase_start

  main, sigma = records.main_records(config, parsed, outcomes, exact)
  dim = (
    records.dim_records(config, parsed, outcomes, exact) if parsed.dims else []
  )
  results = {
    "schema_version": schema.SCHEMA_VERSION,
    # Through JSON, so that the returned dict equals the file.
    "config": common_outputs.as_json(config.to_dict()),
    "records": main,
    "sigma_sweep": sigma,
    "dim_sweep": dim,
    "summary": records.summary(main + sigma + dim),
  }
  timings = {
    "platform": jax.devices()[0].platform,
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
    "wall_time_s": None,
    "phases": phases,
    "main": [t.timing for (s, _), t in outcomes.items() if s == "main"],
    "dim_sweep": [t.timing for (s, _), t in outcomes.items() if s != "main"],
  }
  outputs.write(workdir, results)
  if config.plot and common_outputs.is_writer():
    phase_start = time.perf_counter()
    for path in plotting.plot(workdir, parsed, results, timings["main"]):
      logging.info("wrote %s", path)
    phases["plot_s"] = time.perf_counter() - phase_start
  outputs.print_table(main, parsed.costs, parsed.estimators)
  timings["wall_time_s"] = time.perf_counter() - start
  if common_outputs.is_writer():
    print(
      "\nmax |z| of the means: {max_abs_mean_z}, of the variances: "
      "{max_abs_variance_z}".format(**results["summary"])
    )
    print(f"wall time {timings['wall_time_s']:.1f}s; outputs in {workdir}")
  outputs.write_timings(workdir, timings)
  return results
