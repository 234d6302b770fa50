"""`run(config, workdir)`: train each configured estimator, write the results.

Randomness: ``key = jax.random.key(config.seed)`` is split once into init,
train, eval, measurement and final-bound keys; every estimator starts from
the same initial parameters and sees the same minibatches (``fold_in(
train_key, step)``), so their curves differ by the encoder-gradient
estimator only.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import data
from experiments.common import vae as common_vae
from experiments.discrete_vae import evaluation
from experiments.discrete_vae import gradients
from experiments.discrete_vae import outputs
from experiments.discrete_vae import plots
from experiments.discrete_vae import train
from experiments.discrete_vae import validation


def load_data(
  config: ml_collections.ConfigDict,
) -> tuple[np.ndarray, np.ndarray, str]:
  """`(train, test, source)`: sklearn's digits, or the `.npz` at data_path.

  Raises:
    ConfigError: an unreadable `config.data_path`.
  """
  if not config.data_path:
    train_np, test_np = data.load_digits_binarized(
      config.test_fraction, config.data_seed, config.binarize_threshold
    )
    return train_np, test_np, "sklearn_digits"
  try:
    train_np, test_np = data.load_npz_binarized(
      config.data_path, config.binarize_threshold
    )
  except ValueError as e:
    raise config_lib.ConfigError(f"config.data_path: {e}") from None
  return train_np, test_np, config.data_path


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured estimator(s) and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/discrete_vae.py`.
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon each run after this step, as if it
      were killed (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"metrics": <metrics.json content, None if interrupted>,
    "params": {estimator: final params}, "initial_params": params,
    "controls": {estimator: final control (rebar, relax; else 0.0)}}`.

  Raises:
    ConfigError: a bad config, or a workdir that holds another run, before
      any training.
  """
  names = validation.validate_config(config)
  train_np, test_np, source = load_data(config)
  common_vae.check_data_sizes(config, len(train_np))
  # Only a config that passed every check is recorded in the workdir.
  checkpoints.record_config(config, workdir)
  train_data, test_data = jnp.asarray(train_np), jnp.asarray(test_np)

  key = jax.random.key(config.seed)
  init_key, train_key, eval_key, measure_key, final_key = jax.random.split(
    key, 5
  )
  del key
  keys = {"train": train_key, "eval": eval_key, "measure": measure_key}
  data_dim = train_data.shape[-1]
  hypers = {n: train.Hyper.from_config(config, n, data_dim) for n in names}
  model = hypers[names[0]].model
  mean_image = train_np.mean(0) if config.decoder_bias_from_data else None
  init_params = model.init(init_key, mean_image)  # Shared by every estimator.

  images = (train_data, test_data)
  states, histories, interrupted = common_vae.train_estimators(
    train, config, names, init_params, keys, images, workdir, stop_after_step
  )
  final_params = {n: s.params for n, s in states.items()}
  result = {
    "params": final_params,
    "initial_params": init_params,
    "controls": {n: s.control for n, s in states.items()},
  }
  if interrupted:
    return {"metrics": None, **result}
  final_bounds = {}
  for name in names:
    final_bounds[name] = evaluation.test_bound(
      final_params[name],
      test_data,
      final_key,
      hypers[name],
      config.num_final_samples,
    )
    logging.info(
      "[%s] final test bound L_%d = %.3f",
      name,
      config.num_final_samples,
      final_bounds[name],
    )

  metrics = outputs.metrics(
    config,
    names,
    {
      "source": source,
      "num_train": int(train_np.shape[0]),
      "num_test": int(test_np.shape[0]),
      "dim": int(data_dim),
    },
    {
      n: gradients.cost_evaluations(n, hypers[n].num_samples, config.latent_dim)
      for n in names
    },
    histories,
    final_bounds,
  )
  outputs.write(metrics, workdir)
  plots.plot_all(metrics, final_params, model, test_np, config, workdir)
  return {"metrics": metrics, **result}
