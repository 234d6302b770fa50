"""`run(config, workdir)`: train each configured estimator, write the results.

Randomness: ``key = jax.random.key(config.seed)`` is split once into train,
measure and eval keys; every estimator starts from the same parameters
(q = N(0, e^{2 init_log_scale} I)) and sees the same minibatches
(``fold_in(train_key, step)``), so their curves differ by the estimator only.
"""

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import distributed
from experiments.common import outputs as common_outputs
from experiments.logistic_regression import data as data_lib
from experiments.logistic_regression import evaluation
from experiments.logistic_regression import model
from experiments.logistic_regression import outputs
from experiments.logistic_regression import plots
from experiments.logistic_regression import train
from experiments.logistic_regression import validation


def _check_num_steps(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The cosine schedule depends on num_steps: a resumed run keeps it."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f).get("num_steps")
  if previous != config.num_steps:
    raise config_lib.ConfigError(
      f"{workdir} holds a run with config.num_steps={previous}; the learning "
      "rate's cosine schedule depends on it, so it cannot change on resume "
      "(use another --workdir)."
    )


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured estimators and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/logistic_regression.py`.
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon each run after this step, as if it
      were killed (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"results": <results.json content, None if interrupted>,
    "params": {estimator: final params}, "initial_params": params}`.

  Raises:
    ConfigError: a bad config, or a workdir that holds another run, before
      any training.
  """
  start = time.perf_counter()
  names = validation.validate_config(config)
  split = data_lib.load_breast_cancer(config.test_fraction, config.data_seed)
  validation.check_data_sizes(config, len(split.y_train))
  _check_num_steps(config, workdir)
  if config.float64:
    jax.config.update("jax_enable_x64", True)
  if config.distributed:
    distributed.initialize(
      config.coordinator_address, config.num_processes, config.process_id
    )
  # Only a config that passed every check is recorded in the workdir.
  checkpoints.record_config(config, workdir)
  dtype = jnp.result_type(float)
  train_data = (jnp.asarray(split.x_train, dtype), jnp.asarray(split.y_train))
  train_data = (train_data[0], train_data[1].astype(dtype))
  test_data = (
    jnp.asarray(split.x_test, dtype),
    jnp.asarray(split.y_test, dtype),
  )
  logging.info(
    "logistic_regression: %d train / %d test points, %d dims; %d device(s) "
    "(%s), %d process(es), %s",
    len(split.y_train),
    len(split.y_test),
    split.x_train.shape[1],
    jax.device_count(),
    jax.devices()[0].platform,
    jax.process_count(),
    jnp.dtype(dtype).name,
  )

  key = jax.random.key(config.seed)
  train_key, measure_key, eval_key = jax.random.split(key, 3)
  del key
  init_params = model.init_params(
    split.x_train.shape[1], config.init_log_scale, dtype
  )

  def evaluate(state):
    metrics = evaluation.evaluate(
      state.params,
      eval_key,
      train_data,
      test_data,
      config.num_eval_samples,
      config.exact_num_points,
    )
    return {k: float(metrics[k]) for k in evaluation.EVALUATION_METRICS}

  variance, evaluation_rows, wall_times, final_params = {}, {}, {}, {}
  for name in names:
    hyper = train.Hyper.from_config(config, name, len(split.y_train))
    measure = lambda state, hyper=hyper: evaluation.gradient_variance(
      state,
      *train_data,
      measure_key,
      hyper,
      config.num_variance_replicates,
      config.variance_chunk_size,
      on_train_set=config.variance_data == "train_set",
    )
    try:
      state, rows, wall_time = train.train_estimator(
        config,
        name,
        train.init_state(hyper, init_params, train_key),
        train_data,
        measure,
        evaluate,
        workdir,
        stop_after_step,
      )
    except train.Interrupted:
      logging.info("[%s] interrupted by the test hook", name)
      return {
        "results": None,
        "params": final_params,
        "initial_params": init_params,
      }
    variance[name], evaluation_rows[name] = rows["variance"], rows["evaluation"]
    wall_times[name], final_params[name] = wall_time, state.params

  timing = {
    "platform": jax.devices()[0].platform,
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
    "wall_time_s": time.perf_counter() - start,
  }
  results = outputs.results(
    config,
    names,
    (split.x_train.shape, split.x_test.shape),
    variance,
    evaluation_rows,
    wall_times,
    timing,
  )
  outputs.write(results, workdir)
  if config.plot and common_outputs.is_writer():
    for path in plots.plot_all(results, workdir):
      logging.info("wrote %s", path)
  _log_table(results)
  return {
    "results": results,
    "params": final_params,
    "initial_params": init_params,
  }


def _log_table(results: dict[str, Any]) -> None:
  logging.info(
    "%-26s %9s %9s %9s %7s %17s %17s %9s",
    "estimator",
    "ELBO",
    "test LL",
    "accuracy",
    "ms/step",
    "var/pw loc (SE)",
    "var/pw ls (SE)",
    "steps@1nat",
  )
  for name, f in results["final"].items():
    ratios = [
      float("nan") if f[k] is None else f[k]
      for part in ("loc", "log_scale")
      for k in (f"variance_ratio_{part}", f"variance_ratio_{part}_se")
    ]
    logging.info(
      "%-26s %9.2f %9.4f %9.3f %7.3f %9.3g (%5.2g) %9.3g (%5.2g) %9s",
      name,
      f["elbo_exact"],
      f["test_log_likelihood"],
      f["test_accuracy"],
      1e3 * f["seconds_per_step"],
      *ratios,
      f["steps_to_target"],
    )
