r"""Why the delta-method control variate gains about one decade here.

``python -m experiments.logistic_regression.diagnose_cv --workdir=...``
(the experiment's config and flags) trains the pathwise estimator as the
experiment does and, at a few steps along the way, measures the variance of
the score-function gradient without and with the delta-method control
variate (:mod:`~experiments.logistic_regression.gradients`: the registry's
``delta_method`` entry, coefficient from 25 extra draws) with
:func:`~experiments.logistic_regression.evaluation.gradient_variance`
(:class:`Sizes`: 400 replicates, the moments engine), twice: on the step's
minibatch (what the experiment records) and on the whole training set
(scale 1, what DeepMind's ``mc_gradients`` records). Next to the ratio it
puts what the control variate's gain depends on, from 16384 draws of q:
the fraction of the cost's variance that its second-order Taylor expansion
:math:`h` at :math:`\mu` leaves, :math:`\mathrm{Var}_q(f - h) /
\mathrm{Var}_q(f)`, and of its second moment, :math:`E_q[(f - h)^2] /
E_q[f^2]` (the score function's per-draw estimate :math:`f\,\nabla \log q`
has no baseline, so it pays for :math:`E_q[f^2]`, mean included; with the
control variate, which removes the mean too, it pays for about
:math:`E_q[(f - h)^2]`); and the median over the points of the logit's
spread :math:`\tau_i = \lVert \sigma \odot x_i \rVert`, the scale over
which the quadratic must follow each softplus term. At the last step it
repeats the minibatch measurement on 16 other minibatches, since the
residual depends on which points a batch holds.

Writes ``cv_diagnostic.json`` (``{"steps": [row, ...], "minibatches":
[row, ...]}``, the fields of :data:`FIELDS`) to the workdir and logs a
table.
"""

import os
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import rgrad
from experiments.common import launch
from experiments.common import outputs
from experiments.logistic_regression import data as data_lib
from experiments.logistic_regression import evaluation
from experiments.logistic_regression import model
from experiments.logistic_regression import train
from experiments.logistic_regression import validation


class Sizes(NamedTuple):
  """The measurement sizes (the defaults: the README's numbers)."""

  num_replicates: int = 400
  num_residual_draws: int = 2**14
  num_minibatches: int = 16


DEFAULT_SIZES = Sizes()

FIELDS = (
  "step",
  "data",  # "minibatch" or "train set"
  "mean_scale",  # mean of exp(log_scale)
  "median_logit_spread",
  "residual_fraction",  # Var(f - h) / Var(f)
  "residual_second_moment_fraction",  # E[(f - h)^2] / E[f^2]
  "ratio_loc",  # Var(score function) / Var(score function + CV)
  "ratio_log_scale",
)


class _ResidualChunk(NamedTuple):
  """Moments engine chunk: ``f(w)`` and ``f(w) - h(w)`` for ``w ~ q``."""

  def __call__(self, key: chex.PRNGKey, size: int, args: Any) -> Any:
    params, x, y, scale = args
    cost = model.negative_log_likelihood_cost(x, y, scale)
    cv = rgrad.delta_method_control_variate(cost, params, model.posterior)
    w = model.posterior(params).sample(key, (size,))
    f = jax.vmap(cost)(w)
    return {"f": f, "residual": f - jax.vmap(cv.value)(w)}


def _row(config, state, x, y, key, on_train_set, sizes):
  """One row at `state`: on the minibatch of ``state.step`` or the set."""
  num_train = x.shape[0]
  variances = {}
  for name in ("score_function", "score_function_cv"):
    hyper = train.Hyper.from_config(config, name, num_train)
    variances[name] = evaluation.gradient_variance(
      state,
      x,
      y,
      key,
      hyper,
      sizes.num_replicates,
      sizes.num_replicates,
      on_train_set,
    )
  if on_train_set:
    xb, yb, scale = x, y, 1.0
  else:
    xb, yb = train.minibatch(state.key, state.step, x, y, config.batch_size)
    scale = num_train / config.batch_size
  params = state.params
  m = rgrad.diagnostics.moments(
    _ResidualChunk(),
    jax.random.fold_in(key, state.step),
    sizes.num_residual_draws,
    (params, xb, yb, scale),
  )
  second_moment = lambda k: m.variance[k] + m.mean[k] ** 2  # noqa: E731
  scale = np.exp(np.asarray(params["log_scale"], np.float64))
  spread = np.sqrt(np.asarray(xb, np.float64) ** 2 @ scale**2)
  sf, cv = variances["score_function"], variances["score_function_cv"]
  return {
    "step": int(state.step),
    "data": "train set" if on_train_set else "minibatch",
    "mean_scale": float(np.mean(scale)),
    "median_logit_spread": float(np.median(spread)),
    "residual_fraction": float(m.variance["residual"] / m.variance["f"]),
    "residual_second_moment_fraction": float(
      second_moment("residual") / second_moment("f")
    ),
    "ratio_loc": sf["variance_loc"] / cv["variance_loc"],
    "ratio_log_scale": sf["variance_log_scale"] / cv["variance_log_scale"],
  }


def diagnose(
  config: ml_collections.ConfigDict, sizes: Sizes = DEFAULT_SIZES
) -> dict[str, list[dict]]:
  """The rows of ``cv_diagnostic.json`` (module docstring)."""
  validation.validate_config(config)
  split = data_lib.load_breast_cancer(config.test_fraction, config.data_seed)
  dtype = jnp.float64 if config.float64 else jnp.float32
  x, y = jnp.asarray(split.x_train, dtype), jnp.asarray(split.y_train, dtype)
  train_key, measure_key, _ = jax.random.split(jax.random.key(config.seed), 3)
  hyper = train.Hyper.from_config(config, "pathwise", x.shape[0])
  state = train.init_state(
    hyper,
    model.init_params(x.shape[1], config.init_log_scale, dtype),
    train_key,
  )
  every = config.variance_every
  steps = sorted(
    {0, *(every * (config.num_steps // (every * k)) for k in (25, 5, 1))}
  )
  rows = []
  for target in steps:
    while int(state.step) < target:
      state = train.train_block(state, x, y, hyper)
    for on_train_set in (False, True):
      rows.append(_row(config, state, x, y, measure_key, on_train_set, sizes))
  # Other minibatches at the last parameters: those of the steps after it.
  minibatches = [
    _row(
      config,
      state._replace(step=state.step + i),
      x,
      y,
      measure_key,
      False,
      sizes,
    )
    for i in range(1, sizes.num_minibatches + 1)
  ]
  return {"steps": rows, "minibatches": minibatches}


def run(
  config: ml_collections.ConfigDict, workdir: str, sizes: Sizes = DEFAULT_SIZES
) -> dict[str, Any]:
  """Runs :func:`diagnose`, writes ``cv_diagnostic.json``, logs a table."""
  result = diagnose(config, sizes)
  outputs.write_json(os.path.join(workdir, "cv_diagnostic.json"), result)
  logging.info(
    "%6s %10s %6s %6s %9s %9s %9s %9s",
    "step",
    "data",
    "scale",
    "tau",
    "Var(f-h)/",
    "E(f-h)^2/",
    "SF/CV loc",
    "ls",
  )
  for row in result["steps"] + result["minibatches"]:
    logging.info(
      "%6d %10s %6.3f %6.2f %9.3f %9.4f %9.1f %9.1f",
      *(row[k] for k in FIELDS),
    )
  for part in ("loc", "log_scale"):
    ratios = np.array([r[f"ratio_{part}"] for r in result["minibatches"]])
    logging.info(
      "last step, %d minibatches, %s: geometric mean %.1f, range %.1f-%.1f",
      len(ratios),
      part,
      np.exp(np.mean(np.log(ratios))),
      ratios.min(),
      ratios.max(),
    )
  return result


if __name__ == "__main__":
  launch.run_app("logistic_regression", run)
