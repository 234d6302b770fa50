r"""The orderings the toy is expected to show, checked on a run's results.

Each check is ``{"expected": <sentence>, "holds": bool | None, "values":
{...}}`` (``holds`` is None when the estimators it needs were not run). They
are reported, not asserted: the experiment records what it measured.

* ``reinforce_stalls``: at the largest target (0.499 by default) the score
  function (REINFORCE) does not reach the optimum p -> 0 in the step budget:
  its gradient :math:`p(1-p)(1-2t)` is tiny next to its noise (f(b) is about
  1/4 for both outcomes), so Adam's steps are a random walk.
* ``control_variates_converge``: there, every other *unbiased* estimator run
  (leave-one-out, ARM, DisARM, REBAR, RELAX) does, in every seed.
* ``disarm_le_arm``: DisARM's variance is at most ARM's at the same theta
  (Dong, Mnih & Tucker 2020, Section 3), exactly on the theta grid and at
  step 0 (theta_0 for both runs), exact and measured.
* ``relaxations_biased``: the biased estimators' exact means at theta_0
  differ from the true gradient.
* ``equal_evaluations``: the exact step variances at theta_0 of the
  estimators that spend two cost evaluations per step (ARM and DisARM with
  one pair, leave-one-out with K = 2), side by side.
"""

from typing import Any

import numpy as np

import rgrad


def _final(results: dict[str, Any], name: str, target: float) -> dict | None:
  for r in results["final"]:
    if r["estimator"] == name and r["target"] == target:
      return r
  return None


def checks(results: dict[str, Any]) -> dict[str, Any]:
  """The checks of the module docstring, on `results` (results.json)."""
  names = results["estimators"]
  top = max(results["targets"])
  out = {}

  sf = _final(results, "score_function", top)
  out["reinforce_stalls"] = {
    "expected": f"score_function does not reach p < converged_p at t = {top}",
    "holds": None if sf is None else sf["converged_fraction"] == 0.0,
    "values": {}
    if sf is None
    else {
      "converged_fraction": sf["converged_fraction"],
      "p_final_median": sf["p_final_median"],
    },
  }

  cv = [
    n
    for n in names
    if n != "score_function" and rgrad.get_estimator(n).unbiased
  ]
  fractions = {n: _final(results, n, top)["converged_fraction"] for n in cv}
  out["control_variates_converge"] = {
    "expected": f"every other unbiased estimator reaches p < converged_p at "
    f"t = {top} in every seed",
    "holds": all(f == 1.0 for f in fractions.values()) if cv else None,
    "values": fractions,
  }

  grid = results["theta_grid"]["unit_variance"]
  values, holds = {}, None
  if "arm" in names and "disarm" in names:
    arm, disarm = (
      np.asarray(grid.get("arm", [])),
      np.asarray(grid.get("disarm", [])),
    )
    holds = True
    if arm.size:
      # Equality (theta where both are exact) within rounding.
      values["grid_max_ratio"] = float(np.max(disarm / np.maximum(arm, 1e-300)))
      holds &= bool(np.all(disarm <= arm * (1 + 1e-9) + 1e-300))
    for t in results["targets"]:
      a, d = _final(results, "arm", t), _final(results, "disarm", t)
      key = f"t={t}"
      values[key] = {
        "arm_variance_first": a["variance_first"],
        "disarm_variance_first": d["variance_first"],
        "arm_exact_first": a["exact_variance_first"],
        "disarm_exact_first": d["exact_variance_first"],
      }
      holds &= d["variance_first"] <= a["variance_first"]
      if a["exact_variance_first"] is not None:
        holds &= d["exact_variance_first"] <= a["exact_variance_first"] * (
          1 + 1e-9
        )
  out["disarm_le_arm"] = {
    "expected": "DisARM's variance <= ARM's at the same theta",
    "holds": holds,
    "values": values,
  }

  biased = [n for n in names if not rgrad.get_estimator(n).unbiased]
  values = {}
  for n in biased:
    for t in results["targets"]:
      r = _final(results, n, t)
      values[f"{n}, t={t}"] = {
        "exact_mean_first": r["exact_mean_first"],
        "exact_gradient_first": r["exact_gradient_first"],
        "p_final_median": r["p_final_median"],
      }
  known = [v for v in values.values() if v["exact_mean_first"] is not None]
  out["relaxations_biased"] = {
    "expected": "the biased estimators' exact means differ from the true "
    "gradient at theta_0",
    "holds": all(
      abs(v["exact_mean_first"] - v["exact_gradient_first"])
      > 1e-9 * abs(v["exact_gradient_first"])
      for v in known
    )
    if known
    else None,
    "values": values,
  }

  values = {}
  for n in ("arm", "disarm", "leave_one_out"):
    if n not in names:
      continue
    for t in results["targets"]:
      r = _final(results, n, t)
      values[f"{n}, t={t}"] = {
        "variance_first": r["variance_first"],
        "exact_variance_first": r["exact_variance_first"],
      }
  out["equal_evaluations"] = {
    "expected": "two cost evaluations per step each: variances at theta_0",
    "holds": None,
    "values": values,
  }
  return out
