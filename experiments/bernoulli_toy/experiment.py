"""`run(config, workdir)`: train every estimator, add the exact curves, write.

Randomness: ``jax.random.key(config.seed)`` is split into one key per seed,
shared by every estimator and target (common random numbers); each run
splits its key into training and measurement keys (:mod:`.train`).
"""

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import rgrad
from experiments.bernoulli_toy import checks as checks_lib
from experiments.bernoulli_toy import outputs
from experiments.bernoulli_toy import plots
from experiments.bernoulli_toy import references
from experiments.bernoulli_toy import train
from experiments.bernoulli_toy import validation
from experiments.common import outputs as common_outputs


def _hyper(config, parsed, name: str) -> train.Hyper:
  return train.Hyper(
    estimator=name,
    num_rows=parsed.num_rows[name],
    num_steps=config.num_steps,
    log_every=config.log_every,
    learning_rate=float(config.learning_rate),
    theta_init=float(config.theta_init),
    num_variance_draws=config.num_variance_draws,
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the experiment and writes its outputs to `workdir`.

  Args:
    config: see `experiments/configs/bernoulli_toy.py`.
    workdir: output directory, created if needed (by process 0).

  Returns:
    The contents of ``results.json`` (:data:`outputs.SCHEMA`).

  Raises:
    experiments.common.config.ConfigError: a bad config, before any work.
  """
  parsed = validation.validate_config(config)
  # Float64: the variances of the t = 0.499 runs span ~10 decades.
  jax.config.update("jax_enable_x64", True)
  common_outputs.make_workdir(workdir)
  start = time.perf_counter()
  seed_keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  targets = jnp.asarray(parsed.targets)

  runs, timings = [], {}
  for name in parsed.estimators:
    spec = rgrad.get_estimator(name)
    program = train.make_train(
      _hyper(config, parsed, name),
      record_state=references.state_record(name),
      exact_moments=references.exact_moments_fn(name, config.num_group_samples),
      units=parsed.units[name],
    )
    t0 = time.perf_counter()
    records = jax.tree.map(np.asarray, program(targets, seed_keys))
    timings[name] = {"train_s": time.perf_counter() - t0}
    logging.info("[%s] trained in %.1fs", name, timings[name]["train_s"])
    gradient = references.exact_gradient(
      records["theta"], parsed.targets[:, None, None]
    )
    num_rows = parsed.num_rows[name]
    for i, t in enumerate(parsed.targets):
      run_ = {
        "estimator": name,
        "target": float(t),
        "rows": spec.rows,
        "num_rows": num_rows,
        "units": parsed.units[name],
        "cost_evaluations_per_step": num_rows * spec.num_cost_evaluations(1),
        "unbiased": bool(spec.unbiased),
        "stateful": bool(spec.stateful),
        "exact_note": references.exact_note(name),
        **{f: records[f][i] for f in train.RECORD_FIELDS},
        "exact_gradient": gradient[i],
        "exact_mean": records["exact_mean"][i]
        if "exact_mean" in records
        else None,
        "exact_variance": records["exact_variance"][i]
        if "exact_variance" in records
        else None,
        "state": {f: v[i] for f, v in records["state"].items()},
      }
      runs.append(run_)

  final = [outputs.final_record(r, config.converged_p) for r in runs]
  t0 = time.perf_counter()
  grid = references.theta_grid_references(
    parsed.estimators,
    parsed.targets,
    parsed.theta_grid,
    config.num_group_samples,
  )
  timings["theta_grid_s"] = time.perf_counter() - t0
  results = {
    "schema_version": outputs.SCHEMA_VERSION,
    "config": common_outputs.as_json(config.to_dict()),
    "estimators": list(parsed.estimators),
    "targets": [float(t) for t in parsed.targets],
    "steps": list(range(0, config.num_steps + 1, config.log_every)),
    "runs": [outputs.as_json_run(r) for r in runs],
    "final": final,
    "theta_grid": {
      "theta": [float(x) for x in parsed.theta_grid],
      "unit_variance": grid,
    },
  }
  results["checks"] = checks_lib.checks(results)
  if config.plot and common_outputs.is_writer():
    for path in plots.plot(workdir, results):
      logging.info("wrote %s", path)
  timings["wall_time_s"] = time.perf_counter() - start
  timings["platform"] = jax.devices()[0].platform
  outputs.write(workdir, results, timings)
  if common_outputs.is_writer():
    print(outputs.table(final))
    for check, value in results["checks"].items():
      print(f"{check}: {value['holds']}  ({value['expected']})")
    print(f"wall time {timings['wall_time_s']:.1f}s; outputs in {workdir}")
  return results
