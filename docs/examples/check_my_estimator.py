"""Checks a new gradient estimator with rgrad.testing (docs/testing.rst).

Run from the repository root: ``python docs/examples/check_my_estimator.py``.
"""

import jax

import rgrad
from rgrad import testing

jax.config.update("jax_enable_x64", True)

# (x - 1)^2 summed over 3 coordinates of x ~ N(loc, scale^2): the exact
# gradient and the exact per-sample variances are closed forms.
problem = testing.gaussian_problem(
  "quadratic", 1.0, [0.5, -0.2, 0.3], [0.8, 1.1, 0.6]
)


def centred_score(function, params, dist_builder, key, num_samples):
  """The score function with the constant baseline E f (exact here)."""
  return rgrad.score_function_jacobians(
    function, params, dist_builder, key, num_samples, baseline=problem.value
  )


def biased_score(function, params, dist_builder, key, num_samples):
  """A 5% too large score function: the kind of bug the kit must catch."""
  jacobians = rgrad.score_function_jacobians(
    function, params, dist_builder, key, num_samples
  )
  return jax.tree.map(lambda j: 1.05 * j, jacobians)


def spec(fn, summary):
  return rgrad.EstimatorSpec(
    fn=fn,
    distributions=("score",),  # capabilities, not classes
    rows="iid",
    group_size=1,
    unbiased=True,
    cost_evaluations=1,
    summary=summary,
  )


rgrad.register_estimator("centred_score", spec(centred_score, "E f baseline"))
rgrad.register_estimator("biased_score", spec(biased_score, "5% too large"))

# 1. Unbiased? Holm-corrected z-tests on every coordinate; the number of rows
#    is chosen so that a 5% relative bias is caught with probability 0.95.
report = testing.assert_unbiased(
  "centred_score",
  problem.function,
  problem.params,
  problem.dist_builder,
  jax.random.key(0),
  exact=problem.gradient,
  detectable_bias=0.05,
)
print(report)

# 2. The same test rejects the 5% bias (AssertionError with the table).
try:
  testing.assert_unbiased(
    "biased_score",
    problem.function,
    problem.params,
    problem.dist_builder,
    jax.random.key(1),
    exact=problem.gradient,
    detectable_bias=0.05,
  )
except AssertionError as error:
  print("biased_score rejected:", str(error).splitlines()[0])
else:
  raise SystemExit("the 5% bias was not detected")

# 3. Variance: the built-in score function against its exact per-row variance.
print(
  testing.assert_variance(
    "score_function",
    problem.function,
    problem.params,
    problem.dist_builder,
    jax.random.key(2),
    exact_variance=problem.variances["score_function"],
    num_samples=100_000,
  )
)

# 4. The contract every built-in estimator meets: output structure, jit and
#    vmap with one trace per shape, clear errors for bad input, unbiasedness.
testing.check_estimator("centred_score")
print("centred_score meets the contract")
