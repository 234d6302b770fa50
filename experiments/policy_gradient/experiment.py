"""`run(config, workdir)`: run the environment's part, write its results.

``config.env`` names a gymnax environment; :data:`ENVS` maps it to the
function that runs its part: CartPole-v1 trains REINFORCE with a value
baseline (:mod:`~experiments.policy_gradient.cartpole`), Pendulum-v1
measures BPTT, the score function and total propagation against the horizon
(:mod:`~experiments.policy_gradient.pendulum`). Each writes results.json
(its own schema, with an ``env`` field), results.csv and its figures.
"""

from typing import Any

import ml_collections
from absl import logging

from experiments.common import checkpoints
from experiments.common import config as config_lib
from experiments.common import training
from experiments.policy_gradient import cartpole
from experiments.policy_gradient import outputs
from experiments.policy_gradient import pendulum
from experiments.policy_gradient import plots
from experiments.policy_gradient import validation


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured policy and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/policy_gradient.py` (a preset per
      environment).
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon the run after this many updates
      (CartPole) or newly measured cells (Pendulum), as if it were killed
      (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"results": <results.json content, None if interrupted>, "state":
    final TrainState (CartPole; None if interrupted or for Pendulum)}`.

  Raises:
    ConfigError: a bad config, or a workdir that holds another run, before
      any work.
  """
  if config.env not in ENVS:
    raise config_lib.ConfigError(
      f"Unknown environment {config.env!r} in config.env; choose one of "
      f"{', '.join(ENVS)}."
    )
  return ENVS[config.env](config, workdir, stop_after_step)


def _run_pendulum(config, workdir, stop_after_step):
  return {
    "results": pendulum.run(config, workdir, stop_after_step),
    "state": None,
  }


def _run_cartpole(config, workdir, stop_after_step):
  """Trains REINFORCE with a value baseline on CartPole-v1 (cartpole.py)."""
  validation.validate_config(config, cartpole.max_episode_steps())
  # Only a config that passed every check is recorded in the workdir.
  checkpoints.record_config(config, workdir)
  try:
    state, history = cartpole.train(config, workdir, stop_after_step)
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


# gymnax name -> the function that runs its part.
ENVS = {
  cartpole.ENV_NAME: _run_cartpole,
  pendulum.ENV_NAME: _run_pendulum,
}
