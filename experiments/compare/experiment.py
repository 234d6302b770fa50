"""`run(config, workdir)`: load the problem, compare, write the outputs."""

import importlib
import os
from typing import Any

import jax
import ml_collections
from absl import logging

import rgrad
from experiments.common import config as config_lib
from experiments.common import outputs


def load_problem(spec: Any) -> tuple[Any, Any, Any]:
  """``"package.module:make_problem"`` -> ``make_problem()``'s triple.

  Raises:
    experiments.common.config.ConfigError: a spec that is not
      ``module:function``, a module that cannot be imported, a missing or
      non-callable function, or a result that is not a 3-tuple.
  """
  if not isinstance(spec, str) or spec.count(":") != 1:
    raise config_lib.ConfigError(
      f"config.problem must be 'package.module:make_problem', got {spec!r}."
    )
  module_name, attr = spec.split(":")
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # Any import failure is the user's problem file.
    raise config_lib.ConfigError(
      f"config.problem: cannot import {module_name!r}: {type(e).__name__}: {e}"
    ) from e
  make_problem = getattr(module, attr, None)
  if not callable(make_problem):
    raise config_lib.ConfigError(
      f"config.problem: {module_name!r} has no callable {attr!r}."
    )
  problem = make_problem()
  if not isinstance(problem, tuple) or len(problem) != 3:
    raise config_lib.ConfigError(
      f"config.problem: {spec}() must return (function, params, "
      f"dist_builder), got {type(problem).__name__}."
    )
  return problem


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs :func:`rgrad.compare` on ``config.problem``; writes the outputs.

  Args:
    config: see `experiments/configs/compare.py`.
    workdir: created if needed; gets ``compare.json`` (the schema of
      :meth:`rgrad.compare.Comparison.to_dict`), ``compare.csv`` and
      ``compare.png``.

  Returns:
    The contents of ``compare.json``.

  Raises:
    experiments.common.config.ConfigError: a bad config, before any work.
  """
  if config.x64:
    jax.config.update("jax_enable_x64", True)
  function, params, dist_builder = load_problem(config.problem)
  num_samples = config_lib.integer(config.num_samples, "num_samples")
  chunk_size = config_lib.integer(config.chunk_size, "chunk_size")
  seed = config_lib.integer(config.seed, "seed", minimum=0)
  estimators = config.estimators
  if estimators != "all":
    estimators = config_lib.names(
      estimators, "estimators", tuple(rgrad.ESTIMATORS)
    )
  outputs.make_workdir(workdir)
  logging.info("compare: %s, %d samples per estimator", config.problem,
               num_samples)  # fmt: skip
  result = rgrad.compare(
    function,
    params,
    dist_builder,
    jax.random.key(seed),
    estimators=estimators,
    num_samples=num_samples,
    chunk_size=chunk_size,
  )
  for e in result.estimators:
    logging.info("compare: %-28s trace var %.4g, %.3g us/sample", e.name,
                 e.trace_variance, 1e6 * e.seconds_per_sample)  # fmt: skip
  print(result.table())
  if outputs.is_writer():
    with open(os.path.join(workdir, "compare.json"), "w") as f:
      f.write(result.to_json())
    result.to_csv(os.path.join(workdir, "compare.csv"))
    result.plot(os.path.join(workdir, "compare.png"))
  return result.to_dict()
