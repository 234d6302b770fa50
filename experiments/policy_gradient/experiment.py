"""`run(config, workdir)`: pick the environment's module, train, write results.

``config.env`` names a gymnax environment; :data:`ENVS` maps it to the
module that runs it. Each module provides ``max_episode_steps()``,
``validation``-style checks and ``train(config, workdir, stop_after_step)``
returning ``(state, history)``; a sibling (``pendulum.py``) registers here.
"""

from typing import Any

import ml_collections
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import training
from experiments.policy_gradient import cartpole
from experiments.policy_gradient import outputs
from experiments.policy_gradient import plots
from experiments.policy_gradient import validation

# gymnax name -> (module, its config check).
ENVS = {
  cartpole.ENV_NAME: (cartpole, validation.validate_config),
}


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured policy and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/policy_gradient.py`.
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon the run after this step, as if it
      were killed (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"results": <results.json content, None if interrupted>, "state":
    final TrainState (None if interrupted)}`.

  Raises:
    ConfigError: a bad config, or a workdir that holds another run, before
      any training.
  """
  if config.env not in ENVS:
    raise config_lib.ConfigError(
      f"Unknown environment {config.env!r} in config.env; choose one of "
      f"{', '.join(ENVS)}."
    )
  module, validate = ENVS[config.env]
  validate(config, module.max_episode_steps())
  # Only a config that passed every check is recorded in the workdir.
  checkpoints.record_config(config, workdir)
  try:
    state, history = module.train(config, workdir, stop_after_step)
  except training.Interrupted:
    logging.info("interrupted by the test hook")
    return {"results": None, "state": None}
  results = outputs.results(config, history)
  outputs.write(results, workdir)
  plots.plot_all(results, workdir)
  solved = results["solved"]
  logging.info(
    "final mean return %.1f; solved (>= %.0f) at step %s, %s s",
    results["final"]["mean_return"],
    solved["threshold"],
    solved["step"],
    solved["wall_time_s"],
  )
  return {"results": results, "state": state}
