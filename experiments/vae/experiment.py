"""`run(config, workdir)`: train each configured estimator, write the results.

Randomness: ``key = jax.random.key(config.seed)`` is split once into init,
train, eval and measurement keys; every estimator starts from the same
initial parameters and sees the same minibatches (``fold_in(train_key,
step)``), so their curves differ by the encoder-gradient estimator only.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from experiments.common import checkpoints
from experiments.common import data
from experiments.common import vae as common_vae
from experiments.vae import model as model_lib
from experiments.vae import outputs
from experiments.vae import plots
from experiments.vae import train
from experiments.vae import validation


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured estimator(s) and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/vae.py`.
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon each run after this step, as if it
      were killed (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"metrics": <metrics.json content, None if interrupted>,
    "params": {estimator: final params}, "initial_params": params}`.

  Raises:
    ConfigError: a bad config, or a workdir that holds another run, before
      any training.
  """
  names = validation.validate_config(config)
  train_np, test_np = data.load_digits_binarized(
    config.test_fraction, config.data_seed, config.binarize_threshold
  )
  common_vae.check_data_sizes(config, len(train_np))
  # Only a config that passed every check is recorded in the workdir.
  checkpoints.record_config(config, workdir)
  train_data, test_data = jnp.asarray(train_np), jnp.asarray(test_np)

  key = jax.random.key(config.seed)
  init_key, train_key, eval_key, measure_key = jax.random.split(key, 4)
  del key
  keys = {"train": train_key, "eval": eval_key, "measure": measure_key}
  model = model_lib.make_model(
    config.latent_dim, config.hidden_dim, train_data.shape[-1]
  )
  init_params = model.init(init_key)  # Shared by every estimator.

  images = (train_data, test_data)
  states, histories, interrupted = common_vae.train_estimators(
    train, config, names, init_params, keys, images, workdir, stop_after_step
  )
  final_params = {n: s.params for n, s in states.items()}
  result = {"params": final_params, "initial_params": init_params}
  if interrupted:
    return {"metrics": None, **result}

  metrics = outputs.metrics(
    config, names, (train_data.shape, test_data.shape), histories
  )
  outputs.write(metrics, workdir)
  plots.plot_all(metrics, final_params, model, test_np, config, workdir)
  return {"metrics": metrics, **result}
