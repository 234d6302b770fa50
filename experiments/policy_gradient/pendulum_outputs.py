r"""The Pendulum part's results.json, results.csv, table, checks and figure.

``results.json`` (``SCHEMA_VERSION`` 1)::

  schema_version: 1
  env: "Pendulum-v1"
  config: the config's fields
  estimators, horizons, policies ({name: [w_cos, w_sin, w_dot, b]}), sigma
  records: one per (estimator, policy, horizon, param), RECORD_FIELDS:
    param ("w[0]", "w[1]", "w[2]", "b", "log_sigma"), mean, stderr (of the
    mean), variance (per rollout; effective per rollout for batch
    estimators), variance_stderr (from the fourth moment), num_samples
    (rollouts), reference_estimator (the cell's lowest-variance estimator
    among the exactly unbiased ones), reference_mean, z ((mean -
    reference_mean) / sqrt(stderr^2 + reference stderr^2); null for the
    reference itself)
  summary: one per (estimator, policy, horizon): variance_mean (the trace
    of the variance over the mean's parameters w, b), variance_mean_stderr
    (the sum of their standard errors, an upper bound), variance_log_sigma,
    reference_sq (|reference mean over w, b|^2), relative_variance
    (variance_mean / reference_sq), max_abs_z
  checks: {name: {expected, holds, values}}

``timings.json``: seconds per (estimator, T) over every policy (compile
included; a resumed cell keeps the seconds of the run that measured it),
the wall time and the platform. Files are written on process 0 only.
"""

import os
from typing import Any

import jax
import numpy as np

from experiments.common import horizon_variance
from experiments.common import outputs as common_outputs
from experiments.common import plotting

SCHEMA_VERSION = 1
RECORD_FIELDS = (
  "estimator",
  "policy",
  "horizon",
  "param",
  "mean",
  "stderr",
  "variance",
  "variance_stderr",
  "num_samples",
  "reference_estimator",
  "reference_mean",
  "z",
)
SUMMARY_FIELDS = (
  "estimator",
  "policy",
  "horizon",
  "variance_mean",
  "variance_mean_stderr",
  "variance_log_sigma",
  "reference_sq",
  "relative_variance",
  "max_abs_z",
)
BIASED = horizon_variance.BIASED
_MEAN_PARAMS = ("w[0]", "w[1]", "w[2]", "b")


def records(name, policy, horizon, moments) -> list[dict[str, Any]]:
  """One record per coordinate (w[0..2], b, log_sigma), before the z."""
  fields = ("mean", "stderr", "variance", "variance_stderr")
  values = {
    f: jax.tree.map(lambda x: np.asarray(x, np.float64), getattr(moments, f))
    for f in fields
  }
  coords = [(f"w[{c}]", ("w", c)) for c in range(3)]
  coords += [("b", ("b", None)), ("log_sigma", ("log_sigma", None))]
  out = []
  for param, (leaf, index) in coords:
    row = {"estimator": name, "policy": policy, "horizon": int(horizon)}
    row["param"] = param
    for f in fields:
      v = values[f][leaf]
      row[f] = float(v if index is None else v[index])
    row["num_samples"] = int(moments.num_samples)
    out.append(row)
  return out


def _variance_mean(rows) -> float:
  return sum(r["variance"] for r in rows if r["param"] in _MEAN_PARAMS)


def _with_references(rows) -> list[dict[str, Any]]:
  """Adds reference_estimator, reference_mean and z to every record."""
  cells: dict[tuple, dict[str, list]] = {}
  for r in rows:
    cell = cells.setdefault((r["policy"], r["horizon"]), {})
    cell.setdefault(r["estimator"], []).append(r)
  out = []
  for by_name in cells.values():
    candidates = [n for n in by_name if n not in BIASED] or list(by_name)
    ref = min(candidates, key=lambda n: _variance_mean(by_name[n]))
    ref_rows = {r["param"]: r for r in by_name[ref]}
    for name, rs in by_name.items():
      for r in rs:
        other = ref_rows[r["param"]]
        se = float(np.hypot(r["stderr"], other["stderr"]))
        z = None if name == ref else (r["mean"] - other["mean"]) / se
        out.append(
          {
            **r,
            "reference_estimator": ref,
            "reference_mean": other["mean"],
            "z": z,
          }
        )
  return out


def summary(rows) -> list[dict[str, Any]]:
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault((r["estimator"], r["policy"], r["horizon"]), []).append(r)
  out = []
  for (name, policy, horizon), rs in groups.items():
    mean_rows = [r for r in rs if r["param"] in _MEAN_PARAMS]
    var = _variance_mean(rs)
    sq = sum(r["reference_mean"] ** 2 for r in mean_rows)
    zs = [abs(r["z"]) for r in rs if r["z"] is not None]
    out.append(
      {
        "estimator": name,
        "policy": policy,
        "horizon": horizon,
        "variance_mean": var,
        "variance_mean_stderr": sum(r["variance_stderr"] for r in mean_rows),
        "variance_log_sigma": next(
          r["variance"] for r in rs if r["param"] == "log_sigma"
        ),
        "reference_sq": sq,
        "relative_variance": var / sq if sq > 0 else None,
        "max_abs_z": max(zs) if zs else 0.0,
      }
    )
  return out


def _lookup(results):
  return {
    (s["estimator"], s["policy"], s["horizon"]): s for s in results["summary"]
  }


def checks(results) -> dict[str, Any]:
  r"""The expected trade-off, on the variance over the mean's parameters.

  Chosen after a 4096-rollout pilot of three policies (disclosed in the
  closing note of issue 13), before the default run:

  * ``score_function_grows_with_T``: for every policy, the variance of the
    score function (and of leave-one-out) at the largest T exceeds that at
    the smallest.
  * ``bptt_wins_short_horizons``: BPTT's variance below leave-one-out's at
    every policy for every T <= 10.
  * ``bptt_explodes``: for at least one policy, BPTT's variance at the
    largest T exceeds leave-one-out's by more than 100x (the regime of
    exploding gradients exists on this environment).
  * ``total_propagation_near_better`` (cross-fitted weights) and
    ``total_propagation_batch_near_better`` (the batch's own weights): at
    every (policy, T), its variance is at most twice the smaller of
    leave-one-out's and BPTT's (the two it combines).
  * ``means_agree``: every |z| against the lowest-variance estimator below
    5 for the exactly unbiased estimators; the batch-weighted total
    propagation's largest |z| is recorded beside it (the reference is never
    the biased one).
  """
  look = _lookup(results)
  horizons, policies = results["horizons"], list(results["policies"])
  names = results["estimators"]
  out = {}

  def var(name, policy, t):
    return look[(name, policy, t)]["variance_mean"]

  first, last = horizons[0], horizons[-1]
  sf = [n for n in ("score_function", "leave_one_out") if n in names]
  ratios = {
    f"{n}/{p}": var(n, p, last) / var(n, p, first) for n in sf for p in policies
  }
  out["score_function_grows_with_T"] = {
    "expected": "score-function variance at the largest T above the "
    "smallest's, every policy",
    "holds": all(x > 1 for x in ratios.values())
    if ratios and last > first
    else None,
    "values": {"last_over_first": ratios},
  }
  pair = {"bptt", "leave_one_out"} <= set(names)
  short = [t for t in horizons if t <= 10]
  ratio_short = {
    f"{p}/T={t}": var("bptt", p, t) / var("leave_one_out", p, t)
    for p in policies
    for t in short
    if pair
  }
  out["bptt_wins_short_horizons"] = {
    "expected": "BPTT variance below leave-one-out's for T <= 10",
    "holds": all(x < 1 for x in ratio_short.values()) if ratio_short else None,
    "values": {"bptt_over_leave_one_out": ratio_short},
  }
  ratio_last = {
    p: var("bptt", p, last) / var("leave_one_out", p, last)
    for p in policies
    if pair
  }
  out["bptt_explodes"] = {
    "expected": "BPTT variance > 100 x leave-one-out's at the largest T for "
    "at least one policy",
    "holds": max(ratio_last.values()) > 100 if ratio_last else None,
    "values": {"bptt_over_leave_one_out_at_largest_T": ratio_last},
  }
  out.update(
    horizon_variance.near_better_checks(var, names, policies, horizons)
  )
  out["means_agree"] = horizon_variance.unbiased_check(
    results["summary"],
    names,
    "every |z| against the lowest-variance estimator < 5 (the exactly "
    "unbiased estimators)",
  )
  return out


def results(config, parsed, rows) -> dict[str, Any]:
  """results.json's content from the measured records."""
  rows = _with_references(rows)
  out = {
    "schema_version": SCHEMA_VERSION,
    "env": "Pendulum-v1",
    "config": common_outputs.as_json(config.to_dict()),
    "estimators": list(parsed["estimators"]),
    "horizons": list(parsed["horizons"]),
    "policies": {p: list(w) for p, w in parsed["policies"].items()},
    "sigma": parsed["sigma"],
    "records": rows,
  }
  out["summary"] = summary(rows)
  out["checks"] = checks(out)
  return out


def table(results, horizons=(1, 10, 50, 200)) -> str:
  look = _lookup(results)
  shown = [t for t in results["horizons"] if t in horizons] or [
    results["horizons"][-1]
  ]
  lines = [
    "trace of the variance over (w, b) per rollout, by policy and T; "
    "|grad|^2 of the reference estimator in the last row"
  ]
  cols = [(p, t) for p in results["policies"] for t in shown]
  lines.append(
    f"{'estimator':<20}" + "".join(f"{f'{p} T={t}':>18}" for p, t in cols)
  )
  for name in results["estimators"]:
    lines.append(
      f"{name:<20}"
      + "".join(
        f"{look[(name, p, t)]['variance_mean']:>18.3e}" for p, t in cols
      )
    )
  first = results["estimators"][0]
  lines.append(
    f"{'|grad|^2':<20}"
    + "".join(f"{look[(first, p, t)]['reference_sq']:>18.3e}" for p, t in cols)
  )
  return "\n".join(lines)


def plot(workdir, results) -> str | None:
  """pendulum_variance.png: log10 variance against T, a panel per policy.

  Error bars: the variance's standard error (from the fourth moment); the
  dashed line is |grad|^2 of the lowest-variance estimator.
  """
  plt = plotting.pyplot()
  look = _lookup(results)
  policies, horizons = list(results["policies"]), results["horizons"]
  fig, axes = plt.subplots(
    1, len(policies), figsize=(4 * len(policies), 3.6), squeeze=False
  )
  for ax, policy in zip(axes[0], policies, strict=True):
    cells = {
      n: [look[(n, policy, t)] for t in horizons] for n in results["estimators"]
    }
    horizon_variance.plot_panel(
      ax,
      horizons,
      {
        n: (
          [c["variance_mean"] for c in cs],
          [c["variance_mean_stderr"] for c in cs],
        )
        for n, cs in cells.items()
      },
      [c["reference_sq"] for c in next(iter(cells.values()))],
      "|grad|^2 (reference estimator)",
    )
    w = ", ".join(f"{x:g}" for x in results["policies"][policy])
    ax.set_title(f"{policy}: (w, b) = ({w})", fontsize=9)
  axes[0][0].set_ylabel("log10 tr Var over (w, b) (per rollout)")
  axes[0][0].legend(fontsize=7)
  fig.suptitle(f"Pendulum-v1, sigma = {results['sigma']:g}", fontsize=10)
  fig.tight_layout()
  return plotting.save(fig, os.path.join(workdir, "pendulum_variance.png"))


def write(workdir, results, timings) -> None:
  horizon_variance.write(workdir, results, timings, RECORD_FIELDS)


def validate(results) -> None:
  """Raises ValueError if `results` does not follow the schema above."""
  if results.get("schema_version") != SCHEMA_VERSION:
    raise ValueError("results: schema_version must be 1.")
  for f in ("env", "config", "estimators", "horizons", "policies", "records"):
    if f not in results:
      raise ValueError(f"results: missing {f!r}.")
  n = len(results["estimators"]) * len(results["horizons"])
  n *= len(results["policies"]) * 5
  if len(results["records"]) != n:
    raise ValueError("results: one record per (estimator, T, policy, param).")
  for r in results["records"]:
    missing = [f for f in RECORD_FIELDS if f not in r]
    if missing:
      raise ValueError(f"results: record missing {missing}.")
  for s in results["summary"]:
    missing = [f for f in SUMMARY_FIELDS if f not in s]
    if missing:
      raise ValueError(f"results: summary missing {missing}.")
