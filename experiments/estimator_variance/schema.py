"""The schema of ``results.json`` and ``timings.json``, checked by the tests.

A schema is a Python type (or a tuple of types: any of them), a dict of
field -> schema (exactly these fields), or a one-element list ``[schema]``
(every element). :func:`validate` checks a loaded JSON object against one;
``tests/estimator_variance_test.py`` validates the files of a real run, so
this description cannot drift from the code.
"""

from typing import Any

from experiments.configs import estimator_variance as config_lib
from experiments.estimator_variance.costs import PARAMS

SCHEMA_VERSION = 1
_NONE = type(None)

# One per (cost, grid point, estimator, param), in that order.
RECORD = {
  "cost": str,  # CHOICES["cost"]
  "k": float,  # the cost's parameter
  "estimator": str,  # CHOICES["estimator"], a config name
  "param": str,  # "mu" | "sigma"
  # score_function_cv: the pilot's c for this grid point and parameter
  # (first coordinate); else null.
  "cv_coefficient": (float, _NONE),
  "mean": float,  # empirical mean of the estimates
  "variance": float,  # empirical (unbiased) variance
  "exact_mean": float,  # exact gradient (quadrature)
  # Exact single-sample variance (score_function_cv: given its coefficient).
  "exact_variance": float,
  "num_samples": int,
  "stderr": float,  # standard error of `mean`
  "mean_z": float,  # (mean - exact_mean) / stderr
  "variance_stderr": float,  # from the 4th central moment
  "variance_z": float,  # (variance - exact_variance) / variance_stderr
  # variance / exact_variance; null if the latter is ~0 (records.ZERO_VARIANCE).
  "variance_ratio": (float, _NONE),
}
# The sigma sweep's records add the Gaussian's scale.
SIGMA_RECORD = {**RECORD, "scale": float}
# The dim sweep's records (first coordinate) add the dimension and the
# variance summed over the d coordinates of `param`, empirical and exact.
DIM_RECORD = {
  **RECORD,
  "dim": int,
  "total_variance": float,
  "exact_total_variance": float,
}
# Allowed values of the string fields of every record.
CHOICES = {
  "cost": config_lib.COSTS,
  "estimator": config_lib.ESTIMATORS,
  "param": PARAMS,
}

# results.json: deterministic, the same config gives the same bytes.
SCHEMA = {
  "schema_version": int,  # SCHEMA_VERSION
  "config": dict,  # the config used, as ConfigDict.to_dict()
  "records": [RECORD],  # the k grids
  "sigma_sweep": [SIGMA_RECORD],  # empty when disabled
  "dim_sweep": [DIM_RECORD],  # empty when disabled
  "summary": {
    "max_abs_mean_z": (float, _NONE),  # over all three lists
    "max_abs_variance_z": (float, _NONE),
  },
}

# One per (sweep, estimator). `run_s` is the engine's run, `pilot_s` the
# pilot batch's (0 without one); `seconds_per_sample` is
# (run_s + pilot_s) / num_evaluations with num_evaluations = num_samples x
# (grid points summed over the costs): one sample is one single-sample
# estimate of both gradients at one grid point (all costs share one program
# per estimator, so the time is their average). The pilot is a real cost of
# the control variate.
TIMING = {
  "estimator": str,
  "compile_s": float,  # the engine's and the pilot's compilation
  "run_s": float,
  "pilot_s": float,
  "num_evaluations": int,
  "seconds_per_sample": float,
}
# timings.json: measured, not deterministic.
TIMINGS_SCHEMA = {
  "platform": str,
  "device_count": int,
  "process_count": int,
  "wall_time_s": float,
  # Seconds per phase: "estimators_s", "exact_s" and, with plots, "plot_s".
  "phases": dict,
  "main": [TIMING],
  "dim_sweep": [TIMING],
}


def _problems(value: Any, schema: Any, path: str) -> list[str]:
  if isinstance(schema, dict):
    if not isinstance(value, dict):
      return [f"{path}: expected an object, got {type(value).__name__}"]
    out = []
    missing = sorted(set(schema) - set(value))
    extra = sorted(set(value) - set(schema))
    if missing or extra:
      out.append(f"{path}: missing fields {missing}, unexpected {extra}")
    for field in schema.keys() & value.keys():
      out += _problems(value[field], schema[field], f"{path}.{field}")
    return out
  if isinstance(schema, list):
    if not isinstance(value, list):
      return [f"{path}: expected a list, got {type(value).__name__}"]
    out = []
    for i, item in enumerate(value):
      out += _problems(item, schema[0], f"{path}[{i}]")
    return out
  types = schema if isinstance(schema, tuple) else (schema,)
  # JSON has no bool among these fields: True is not an int here.
  if isinstance(value, bool) or not isinstance(value, types):
    names = " | ".join(t.__name__ for t in types)
    return [f"{path}: expected {names}, got {type(value).__name__} {value!r}"]
  return []


def validate(obj: Any, schema: Any = None) -> None:
  """Checks `obj` (loaded JSON) against `schema` (default :data:`SCHEMA`).

  For :data:`SCHEMA` also checks the version and the records' string fields
  against :data:`CHOICES`.

  Raises:
    ValueError: listing every problem found (up to 20), by path.
  """
  results = schema is None
  schema = SCHEMA if results else schema
  problems = _problems(obj, schema, "$")
  if results and not problems:
    if obj["schema_version"] != SCHEMA_VERSION:
      problems.append(f"$.schema_version: expected {SCHEMA_VERSION}")
    for key in ("records", "sigma_sweep", "dim_sweep"):
      for i, r in enumerate(obj[key]):
        for field, allowed in CHOICES.items():
          if r[field] not in allowed:
            problems.append(
              f"$.{key}[{i}].{field}: {r[field]!r} not in {allowed}"
            )
  if problems:
    raise ValueError(
      "does not match the schema:\n  " + "\n  ".join(problems[:20])
    )
