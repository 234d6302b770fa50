"""Reusable checks of the estimator contract, for rgrad's tests and yours.

Each check takes an :class:`rgrad.EstimatorSpec` (or the name of a registered
estimator), runs it on a default problem suited to its objective (or on
``params`` and ``dist_builder`` of your own), with and without ``jax.jit``,
and raises AssertionError with a message naming the estimator and the
property it breaks; the test suite runs them over every entry of
:data:`rgrad.ESTIMATORS`.
"""

from rgrad.testing._robustness import assert_accepts_any_callable
from rgrad.testing._robustness import assert_propagates_non_finite
from rgrad.testing._robustness import assert_robust
from rgrad.testing._robustness import default_problem

__all__ = (
  "assert_accepts_any_callable",
  "assert_propagates_non_finite",
  "assert_robust",
  "default_problem",
)
