r"""rgrad.testing: check any gradient estimator against exact answers.

A researcher who writes a new estimator asks two questions: is it unbiased,
and how does its variance compare? This package answers both with tests
that can fail, at a stated false-alarm rate and a stated power:

* :func:`assert_unbiased` and :func:`assert_variance`: Holm-corrected
  z-tests of every coordinate against the exact gradient or variance, with
  standard errors right for the estimator's row structure and a sample size
  chosen from the bias to detect (:mod:`rgrad.testing._asserts`);
* :func:`gaussian_problem`: reference problems with closed-form gradients
  and estimator variances in any dimension (:mod:`rgrad.testing._problems`);
* the contract suite that rgrad's own tests run on every registered
  estimator, for a user's estimator too (:mod:`rgrad.testing._contract`),
  including non-finite propagation and any-callable costs
  (:func:`assert_robust`, :mod:`rgrad.testing._robustness`).
"""

from rgrad.testing._asserts import Coordinate
from rgrad.testing._asserts import Report
from rgrad.testing._asserts import assert_unbiased
from rgrad.testing._asserts import assert_variance
from rgrad.testing._asserts import unbiasedness_report
from rgrad.testing._asserts import variance_report
from rgrad.testing._contract import CHECKS
from rgrad.testing._contract import batch_size
from rgrad.testing._contract import bernoulli_problem
from rgrad.testing._contract import check_bad_inputs
from rgrad.testing._contract import check_estimator
from rgrad.testing._contract import check_jit_and_vmap
from rgrad.testing._contract import check_output
from rgrad.testing._contract import check_unbiased
from rgrad.testing._contract import needs_discrete
from rgrad.testing._contract import reference_problem
from rgrad.testing._problems import COSTS
from rgrad.testing._problems import ReferenceProblem
from rgrad.testing._problems import conjugate_gaussian_problem
from rgrad.testing._problems import gaussian_problem
from rgrad.testing._robustness import assert_accepts_any_callable
from rgrad.testing._robustness import assert_propagates_non_finite
from rgrad.testing._robustness import assert_robust
from rgrad.testing._robustness import default_problem

__all__ = (
  "CHECKS",
  "COSTS",
  "Coordinate",
  "ReferenceProblem",
  "Report",
  "assert_accepts_any_callable",
  "assert_propagates_non_finite",
  "assert_robust",
  "assert_unbiased",
  "assert_variance",
  "batch_size",
  "bernoulli_problem",
  "check_bad_inputs",
  "check_estimator",
  "check_jit_and_vmap",
  "check_output",
  "check_unbiased",
  "conjugate_gaussian_problem",
  "default_problem",
  "gaussian_problem",
  "needs_discrete",
  "reference_problem",
  "unbiasedness_report",
  "variance_report",
)
