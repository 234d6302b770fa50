r"""The JSON records: one per (cost, grid point, estimator, parameter).

Every empirical mean and variance is compared with its exact reference by a
z-score whose standard error comes from the samples themselves (the
variance's from the fourth central moment). Fields and types:
:data:`experiments.estimator_variance.schema.RECORD`.
"""

import math
from typing import Any

from experiments.estimator_variance import sweeps
from experiments.estimator_variance.costs import PARAMS
from rgrad import diagnostics

# z-scores divide by the Monte Carlo standard error combined with the
# references' accuracy (rgrad.diagnostics.z_score), so that an
# estimator exact up to roundoff (the delta method on the quadratic cost) is
# not flagged for differing from the reference in the 15th digit.
# An exact variance below this is zero up to roundoff: no variance ratio.
ZERO_VARIANCE = 1e-20


def _z(value: float, exact_value: float, stderr: float) -> float:
  return float(diagnostics.z_score(value, exact_value, stderr))


def record(
  moments: diagnostics.GradientMoments,
  index: int,
  exact_mean,
  exact_variance,
  **fields,
) -> dict[str, Any]:
  """One record: grid point `index` of the first coordinate of `moments`.

  Args:
    moments: NumPy fields ``[G, dim]``, with ``variance_stderr``.
    index: the grid point.
    exact_mean: the exact gradient there.
    exact_variance: the exact single-sample variance there.
    **fields: the record's leading fields (cost, k, ...), in order.

  Returns:
    The record.

  Raises:
    ValueError: a non-finite exact gradient or variance.
  """
  mean = float(moments.mean[index, 0])
  variance = float(moments.variance[index, 0])
  stderr = float(moments.stderr[index, 0])
  var_se = float(moments.variance_stderr[index, 0])
  exact_mean = float(exact_mean)
  exact_variance = float(exact_variance)
  for what, value in (("gradient", exact_mean), ("variance", exact_variance)):
    if not math.isfinite(value):
      # Not a matter of too few points: the rules themselves are finite at
      # any size (rgrad.exact), and too few points give a finite, inaccurate
      # value (tests/estimator_variance_test.py checks that the default
      # exact_num_points has converged on the default grids).
      raise ValueError(
        f"non-finite exact {what} ({value}) at {fields}: the cost, or the "
        "integrand of this estimator's variance, is NaN or inf at some "
        "quadrature node (it overflows float64 in the tails the rule "
        "reaches, or is undefined there); more exact_num_points reach "
        "further into the tails and do not help. Run rgrad.exact on this "
        "cost and point outside jax.jit for the details."
      )
  return dict(
    **fields,
    mean=mean,
    variance=variance,
    exact_mean=exact_mean,
    exact_variance=exact_variance,
    num_samples=moments.num_samples,
    stderr=stderr,
    mean_z=_z(mean, exact_mean, stderr),
    variance_stderr=var_se,
    variance_z=_z(variance, exact_variance, var_se),
    variance_ratio=variance / exact_variance
    if exact_variance >= ZERO_VARIANCE
    else None,
  )


def _coefficient(outcome: sweeps.Outcome, cost: str, param: str, index: int):
  if outcome.coefficients is None:
    return None
  return float(outcome.coefficients[cost][param][index, 0])


def main_records(config, parsed, outcomes, references):
  """Records of the k grids and of the sigma sweep (with ``scale``)."""
  records, sigma_records = [], []
  for c in parsed.costs:
    num_k = len(parsed.k_grids[c])
    exact_mean, exact_var = references[c]["points"]
    for i, (k, scale) in enumerate(sweeps.points(config, parsed, c)):
      main = i < num_k
      fields = dict(cost=c, k=float(k))
      if not main:
        fields["scale"] = float(scale)
      for name in parsed.estimators:
        outcome = outcomes[("main", name)]
        for j, p in enumerate(PARAMS):
          (records if main else sigma_records).append(
            record(
              outcome.moments[c][p],
              i,
              exact_mean[j, i],
              exact_var[name][j, i],
              **fields,
              estimator=name,
              param=p,
              cv_coefficient=_coefficient(outcome, c, p, i),
            )
          )
  return records, sigma_records


def dim_records(config, parsed, outcomes, references):
  """Records of the dim sweep (first coordinate), with the totals."""
  masks = sweeps.dim_masks(parsed.dims)
  records = []
  for c in parsed.costs:
    exact_mean, exact_var, exact_total = references[c]["dim"]
    for i, d in enumerate(parsed.dims):
      for name in parsed.estimators:
        outcome = outcomes[("dim_sweep", name)]
        for j, p in enumerate(PARAMS):
          moments = outcome.moments[c][p]  # fields [len(dims), max_dim]
          entry = record(
            moments,
            i,
            exact_mean[j],
            exact_var[name][j, i],
            cost=c,
            k=float(config.dim_sweep.k[c]),
            dim=int(d),
            estimator=name,
            param=p,
            cv_coefficient=_coefficient(outcome, c, p, i),
          )
          entry["total_variance"] = float(moments.variance[i][masks[i]].sum())
          entry["exact_total_variance"] = float(exact_total[name][j, i])
          records.append(entry)
  return records


def summary(records: list[dict[str, Any]]) -> dict[str, float | None]:
  """The largest |z| of the means and of the variances over `records`."""

  def max_abs(field):
    values = [abs(r[field]) for r in records if r[field] is not None]
    return max(values) if values else None

  return {
    "max_abs_mean_z": max_abs("mean_z"),
    "max_abs_variance_z": max_abs("variance_z"),
  }
