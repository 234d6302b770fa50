"""`run(config, workdir)`: load the problem, compare, write the outputs."""

import importlib
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import logging

import rgrad
from experiments.common import config as config_lib
from experiments.common import outputs
from rgrad import comparison

# config.reference values that are not "module:function".
NO_REFERENCE = "none"
# The problem's sibling: "pkg.mod:make" -> "pkg.mod:make_gradient".
EXACT_REFERENCE = "exact"


def load_callable(
  spec: Any, field: str, form: str = "package.module:function"
) -> Callable[..., Any]:
  """``"package.module:function"`` -> that function (config.`field`).

  Raises:
    experiments.common.config.ConfigError: a spec that is not
      ``module:function``, a module that cannot be imported, or a missing or
      non-callable attribute.
  """
  if not isinstance(spec, str) or spec.count(":") != 1:
    raise config_lib.ConfigError(
      f"config.{field} must be {form!r}, got {spec!r}."
    )
  module_name, attr = spec.split(":")
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # Any import failure is the user's problem file.
    raise config_lib.ConfigError(
      f"config.{field}: cannot import {module_name!r}: {type(e).__name__}: {e}"
    ) from e
  fn = getattr(module, attr, None)
  if not callable(fn):
    raise config_lib.ConfigError(
      f"config.{field}: {module_name!r} has no callable {attr!r}."
    )
  return fn


def load_problem(spec: Any) -> tuple[Any, Any, Any]:
  """``"package.module:make_problem"`` -> ``make_problem()``'s triple.

  Raises:
    experiments.common.config.ConfigError: as :func:`load_callable`, or a
      result that is not a 3-tuple.
  """
  make_problem = load_callable(spec, "problem", "package.module:make_problem")
  problem = make_problem()
  if not isinstance(problem, tuple) or len(problem) != 3:
    raise config_lib.ConfigError(
      f"config.problem: {spec}() must return (function, params, "
      f"dist_builder), got {type(problem).__name__}."
    )
  return problem


def load_reference(spec: Any, problem: str, params: Any) -> Any:
  """config.reference -> the `reference` argument of :func:`rgrad.compare`.

  ``"none"``: None. ``"lowest_variance_100x"``
  (:data:`rgrad.comparison.REFERENCE_100X`): as is. ``"exact"``: the exact
  gradient from the problem's sibling function, ``<make_problem>_gradient``
  in the same module, called with ``params``. ``"module:gradient"``: that
  function, called with ``params``.

  Raises:
    experiments.common.config.ConfigError: as :func:`load_callable`.
  """
  if spec == NO_REFERENCE:
    return None
  if spec == comparison.REFERENCE_100X:
    return spec
  if spec == EXACT_REFERENCE:
    module_name, attr = str(problem).split(":")
    module = importlib.import_module(module_name)  # load_problem imported it
    if not callable(getattr(module, attr + "_gradient", None)):
      raise config_lib.ConfigError(
        f"config.reference='exact' needs {attr}_gradient(params) in "
        f"{module_name!r}, the exact gradient; without one, set "
        "config.reference to 'none' or 'lowest_variance_100x'."
      )
    spec = f"{module_name}:{attr}_gradient"
  gradient = load_callable(spec, "reference", "package.module:gradient")
  return gradient(params)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs :func:`rgrad.compare` on ``config.problem``; writes the outputs.

  Args:
    config: see `experiments/configs/compare.py`.
    workdir: created if needed; gets ``compare.json`` (the schema of
      :meth:`rgrad.comparison.Comparison.to_dict`), ``compare.csv`` and
      ``compare.png``.

  Returns:
    The contents of ``compare.json``.

  Raises:
    experiments.common.config.ConfigError: a bad config, before any work.
  """
  if config.x64:
    jax.config.update("jax_enable_x64", True)
  num_samples = config_lib.integer(config.num_samples, "num_samples")
  chunk_size = config_lib.integer(config.chunk_size, "chunk_size")
  seed = config_lib.integer(config.seed, "seed", minimum=0)
  repeats = config_lib.integer(config.num_timing_repeats, "num_timing_repeats")
  estimators = config.estimators
  if estimators != "all":
    estimators = config_lib.names(
      estimators, "estimators", tuple(rgrad.ESTIMATORS)
    )
  function, params, dist_builder = load_problem(config.problem)
  reference = load_reference(config.reference, config.problem, params)
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
    reference=reference,
    num_timing_repeats=repeats,
    progress=logging.info,
  )
  print(result.table())
  if outputs.is_writer():
    with open(os.path.join(workdir, "compare.json"), "w") as f:
      f.write(result.to_json())
    result.to_csv(os.path.join(workdir, "compare.csv"))
    result.plot(os.path.join(workdir, "compare.png"))
  return result.to_dict()
