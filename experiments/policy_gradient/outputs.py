"""The results in `workdir`: results.json and results.csv (schema below).

* ``results.json``::

    {"schema_version": 1,
     "config": {...},                         # the config used
     "env": "CartPole-v1",
     "estimator": "reinforce_reward_to_go_value_baseline",
     "evaluation": str,                       # how mean_return is measured
     "history": [                             # one row per evaluation
       {"step": int,                          # updates taken
        "wall_time_s": float,                 # update time so far (excludes
                                              # compilation and evaluation)
        "mean_return": float,                 # mean undiscounted return of
                                              # num_eval_envs fresh complete
                                              # episodes (stochastic policy)
        "mean_return_se": float,              # its standard error
        "grad_variance_baseline": float,      # trace of the covariance of
                                              # one episode's policy-gradient
                                              # estimate, b = V_phi
        "grad_variance_baseline_se": float,   # its jackknife SE
        "grad_variance_no_baseline": float,   # the same, b = 0, same episodes
        "grad_variance_no_baseline_se": float,
        "value_mse": float}, ...],            # mean (V_phi(s_t) - G_t)^2
     "final": {<last row>},
     "solved": {"threshold": float,           # config.solved_return
                "step": int | null,           # first row at or above it
                "wall_time_s": float | null}}

* ``results.csv``: the history rows, columns as ``HISTORY_FIELDS``.

The figures are :mod:`experiments.policy_gradient.plots`'; the checkpoints
:mod:`experiments.common.checkpoints`' (``<workdir>/reinforce/checkpoints``).
Files are written on process 0 only (:mod:`experiments.common.outputs`).
"""

import os
from typing import Any

import ml_collections

from experiments.common import outputs

SCHEMA_VERSION = 1
ESTIMATOR = "reinforce_reward_to_go_value_baseline"
HISTORY_FIELDS = (
  "step",
  "wall_time_s",
  "mean_return",
  "mean_return_se",
  "grad_variance_baseline",
  "grad_variance_baseline_se",
  "grad_variance_no_baseline",
  "grad_variance_no_baseline_se",
  "value_mse",
)
EVALUATION = (
  "mean undiscounted return of num_eval_envs fresh episodes of the "
  "stochastic policy, each run from reset to termination or the 500-step "
  "cap (every episode complete), keys fold_in(eval_key, step)"
)


def results(
  config: ml_collections.ConfigDict, history: list[dict[str, float]]
) -> dict[str, Any]:
  """The content of results.json."""
  solved = next(
    (r for r in history if r["mean_return"] >= config.solved_return), None
  )
  return {
    "schema_version": SCHEMA_VERSION,
    "config": config.to_dict(),
    "env": config.env,
    "estimator": ESTIMATOR,
    "evaluation": EVALUATION,
    "history": history,
    "final": history[-1],
    "solved": {
      "threshold": float(config.solved_return),
      "step": None if solved is None else solved["step"],
      "wall_time_s": None if solved is None else solved["wall_time_s"],
    },
  }


def write(results: dict[str, Any], workdir: str) -> None:
  """Writes results.json and results.csv to `workdir` (on process 0)."""
  # Not strict: a diverged run's NaNs are written (as NaN) rather than lost.
  outputs.write_json(
    os.path.join(workdir, "results.json"), results, strict=False
  )
  outputs.write_csv(
    os.path.join(workdir, "results.csv"), results["history"], HISTORY_FIELDS
  )
