r"""rgrad's estimators over distrax, TFP-on-JAX and NumPyro distributions.

Three kinds of checks, for Normal, Bernoulli, Categorical and Gamma from
each library (:mod:`rgrad.interop`):

* **Conversion is exact.** A foreign family that rgrad has is converted to
  rgrad's distribution with the same parameters, so every applicable
  registered estimator must return, with the same key, the same rows as on
  rgrad's own distribution, to roundoff (float64): the means agree with
  z = 0 exactly, which no k-SE test can beat. The Bernoulli and Categorical
  problems are also posed in the library's ``probs`` parameterization,
  where rgrad's own builder is ``Bernoulli(logit(p))``: the rows then agree
  only if the gradient flows ``params -> probs -> logits`` through the
  foreign constructor. An estimator that does not apply must raise naming
  the capability it misses.
* **Exact references.** The converted distributions, through each library,
  agree with exact gradients written in NumPy (enumeration and closed
  forms sharing no code with rgrad): ``rgrad.testing.assert_unbiased``
  sizes every run so that a 5% bias is detected (score-function family;
  1% for the pathwise one, tests/power.py) at power 0.95, family-wise
  false-alarm rate 1e-3, and each report's detectable bias is asserted.
* **The generic adapter** (``adapt(..., convert=False)``: the library's
  sampler, its ``log_prob``, scores by ``jax.grad``): the same exact
  references at the same power, and the estimators it cannot serve (weak
  derivatives, uniform noise...) raise naming the capability.

The kit's contract suite (``rgrad.testing.check_estimator``: output, jit
and vmap, bad inputs, robustness) runs over every registered estimator with
its reference problem's distribution rebuilt in each library.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import interop
from rgrad import testing
from tests.interop_problems import EXPECTATION
from tests.interop_problems import LIBRARIES
from tests.interop_problems import PROBLEMS
from tests.interop_problems import applicable
from tests.interop_problems import call
from tests.interop_problems import chex_close
from tests.interop_problems import distrax
from tests.interop_problems import foreign
from tests.interop_problems import names_capability
from tests.interop_problems import numpyro_dist
from tests.interop_problems import tfd


class ConversionTest(parameterized.TestCase):
  """Converted families: the same rows as rgrad's own, for every estimator."""

  @parameterized.named_parameters(*((name, name) for name in PROBLEMS))
  def test_same_rows_as_rgrads_own(self, problem):
    problem = PROBLEMS[problem]()
    names = applicable(problem)
    self.assertNotEmpty(names)
    key = jax.random.key(7)
    for name in names:
      own = call(name, problem.function, problem.params, problem.own, key, 32)
      for library in LIBRARIES:
        theirs = call(
          name,
          problem.function,
          problem.params,
          problem.builder(library),
          key,
          32,
        )
        jax.tree.map(
          lambda a, b, name=name, library=library: np.testing.assert_allclose(
            b, a, rtol=1e-9, atol=1e-12, err_msg=f"{name} on {library}"
          ),
          own,
          theirs,
        )

  @parameterized.named_parameters(*((name, name) for name in PROBLEMS))
  def test_inapplicable_estimators_name_the_capability(self, problem):
    problem = PROBLEMS[problem]()
    dist = problem.own(problem.params)
    key = jax.random.key(0)
    inapplicable = sorted(set(EXPECTATION) - set(applicable(problem)))
    for name, library in itertools.product(inapplicable, LIBRARIES):
      spec = rgrad.get_estimator(name)
      missing = rgrad._internal.missing_capabilities(dist, spec.distributions)
      with self.assertRaises((TypeError, ValueError)) as ctx:
        call(
          name,
          problem.function,
          problem.params,
          problem.builder(library),
          key,
          16,
        )
      self.assertTrue(names_capability(str(ctx.exception), missing), name)

  @parameterized.named_parameters(
    *(
      (name, name)
      for name in rgrad.registry.BUILTIN_NAMES
      if rgrad.get_estimator(name).objective != "expectation"
    )
  )
  def test_variational_estimators_same_rows(self, name):
    # The kit's conjugate-Gaussian problem (rgrad's LogScaleNormal) against
    # each library's Normal(loc, exp(log_scale)): the same law, the gradient
    # through exp in the foreign constructor.
    spec = rgrad.get_estimator(name)
    problem = testing.reference_problem(spec)
    key = jax.random.key(8)
    n = testing.batch_size(spec)
    own = spec.fn(
      problem.function, problem.params, problem.dist_builder, key, n
    )
    for library in LIBRARIES:
      theirs = spec.fn(
        problem.function,
        problem.params,
        lambda p, library=library: foreign(library, problem.dist_builder(p)),
        key,
        n,
      )
      chex_close(theirs, own)


# ---------------------------------------------------------------------------
# Exact references, at the suite's power.
# ---------------------------------------------------------------------------

# The smallest relative bias each run detects at power 0.95 (tests/power.py:
# 5% for the score-function family, 1% for the pathwise one).
_TARGET = {"score_function": 0.05, "pathwise": 0.01}


def _run(estimator, problem, builder, key):
  """rgrad.testing's sized unbiasedness test (pilot run unless exact)."""
  return testing.unbiasedness_report(
    estimator,
    problem.function,
    problem.params,
    builder,
    key,
    exact=problem.gradient,
    detectable_bias=_TARGET[estimator],
    exact_variance=problem.variances.get(estimator),
    pilot_num_samples=8192,
  )


@functools.cache
def converted_report(problem_name, estimator):
  """The converted route's report; problem i goes through library i mod 3.

  ConversionTest shows that the converted route's rows are rgrad's own, to
  roundoff, through every library: one library per problem suffices for the
  exact reference, and the three take turns.
  """
  problem = PROBLEMS[problem_name]()
  library = LIBRARIES[list(PROBLEMS).index(problem_name) % len(LIBRARIES)]
  return _run(estimator, problem, problem.builder(library), jax.random.key(3))


def exact_cases(problems):
  return [
    (f"{p}_{e}", p, e)
    for p in problems
    for e in _TARGET
    if e in applicable(PROBLEMS[p]())
  ]


# Marks on absl-parameterized methods do not reach pytest (the generated
# methods are new functions); a mark on the class does.
@pytest.mark.slow
class ExactReferenceTest(parameterized.TestCase):
  """Converted distributions against NumPy's exact gradients."""

  @parameterized.named_parameters(*exact_cases(PROBLEMS))
  def test_unbiased(self, problem, estimator):
    report = converted_report(problem, estimator)
    self.assertTrue(report.passed, report.table())
    # Sized for the target; a size change that loses power fails here.
    self.assertLessEqual(report.max_detectable, 1.05 * _TARGET[estimator])


# ---------------------------------------------------------------------------
# The generic adapter: the library's sampler and log_prob, autodiff scores.
# ---------------------------------------------------------------------------

_GENERIC = ("normal", "bernoulli_logits", "categorical_logits", "gamma")


def generic_builder(library, problem):
  # distrax declares no reparameterization: say it for its Normal and Gamma,
  # whose samplers (jax.random.normal, jax.random.gamma) are differentiable.
  reparameterized = (
    True
    if library == "distrax" and problem.name in ("normal", "gamma")
    else None
  )
  return problem.builder(
    library, convert=False, reparameterized=reparameterized
  )


def same_draws(library, problem, key):
  """Whether the library's sampler makes rgrad's draws from `key`."""
  own = problem.own(problem.params).sample(key, (64,))
  theirs = generic_builder(library, problem)(problem.params).sample(key, (64,))
  return bool(np.allclose(np.asarray(theirs, own.dtype), own, atol=1e-12))


def generic_estimators(problem, builder):
  """The exact-reference estimators the generic adapter serves."""
  reparameterized = builder(problem.params).reparameterized
  return [
    e
    for e in _TARGET
    if e in applicable(problem) and (e != "pathwise" or reparameterized)
  ]


class GenericAdapterTest(parameterized.TestCase):
  @parameterized.product(library=LIBRARIES, problem=_GENERIC)
  def test_autodiff_scores_are_the_hand_scores(self, library, problem):
    # At rgrad's draws, jax.grad of the library's log_prob pulled back to
    # params equals rgrad's hand-derived score pulled back, to roundoff.
    p = PROBLEMS[problem]()
    builder = generic_builder(library, p)
    self.assertIsInstance(builder(p.params), interop.ForeignDistribution)
    xs = p.own(p.params).sample(jax.random.key(4), (64,))
    own = rgrad.score_jacobians(p.params, p.own, xs)
    theirs = rgrad.score_jacobians(p.params, builder, xs)
    chex_close(theirs, own)

  @parameterized.product(library=LIBRARIES, problem=_GENERIC)
  def test_rows_equal_where_the_draws_are_rgrads(self, library, problem):
    """Where the library's sampler makes rgrad's draws, rgrad's rows.

    That is Normal in all three libraries, Categorical and Gamma in distrax
    and NumPyro (jax.random.normal, categorical, gamma): every estimator the
    adapter serves then gives rgrad's own rows to roundoff (z = 0).
    """
    p = PROBLEMS[problem]()
    key = jax.random.key(6)
    if not same_draws(library, p, key):
      self.skipTest("other draws: test_unbiased_where_the_draws_differ")
    builder = generic_builder(library, p)
    for name in generic_estimators(p, builder):
      own = call(name, p.function, p.params, p.own, key, 32)
      chex_close(call(name, p.function, p.params, builder, key, 32), own)

  @parameterized.product(library=LIBRARIES, problem=_GENERIC)
  def test_inapplicable_estimators_name_the_capability(self, library, problem):
    p = PROBLEMS[problem]()
    dist = generic_builder(library, p)(p.params)
    key = jax.random.key(0)
    for name in EXPECTATION:
      spec = rgrad.get_estimator(name)
      missing = rgrad._internal.missing_capabilities(dist, spec.distributions)
      if not missing:
        continue
      with self.assertRaises((TypeError, ValueError)) as ctx:
        call(name, p.function, p.params, generic_builder(library, p), key, 16)
      self.assertTrue(names_capability(str(ctx.exception), missing), name)
      self.assertIn("generic adapter", str(ctx.exception))

  def test_distrax_declares_no_reparameterization(self):
    p = PROBLEMS["normal"]()
    with self.assertRaisesRegex(ValueError, "pathwise sampler"):
      call(
        "pathwise",
        p.function,
        p.params,
        p.builder("distrax", convert=False),
        jax.random.key(0),
        8,
      )

  def test_other_families_and_wrappers(self):
    # A Beta (no rgrad family) goes through the generic adapter; Independent
    # over one axis converts; a TFP Independent over 2 axes does not.
    params = {"a": jnp.array([2.0, 0.5])}
    for library, beta in (
      ("distrax", distrax.Beta),
      ("tfp", tfd.Beta),
      ("numpyro", numpyro_dist.Beta),
    ):
      dist = interop.adapt(beta(params["a"], 1.0))
      self.assertIsInstance(dist, interop.ForeignDistribution, library)
      self.assertIn(".Beta (generic adapter)", type(dist).__name__)
    independent = numpyro_dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    self.assertIsInstance(interop.adapt(independent), rgrad.Normal)
    nested = tfd.Independent(tfd.Normal(jnp.zeros((2, 3)), 1.0), 2)
    self.assertIsInstance(interop.adapt(nested), interop.ForeignDistribution)

  def test_rgrad_imports_no_foreign_library(self):
    import subprocess
    import sys

    program = (
      "import sys, rgrad, rgrad.interop, rgrad.interop.numpyro_elbo; "
      "print([m for m in sys.modules if m.split('.')[0] in "
      "('distrax', 'numpyro', 'tensorflow_probability')])"
    )
    out = subprocess.run(
      [sys.executable, "-c", program],
      capture_output=True,
      text=True,
      check=True,
    )
    self.assertEqual(out.stdout.strip(), "[]", out.stderr[-2000:])


@pytest.mark.slow
class GenericAdapterUnbiasedTest(parameterized.TestCase):
  @parameterized.product(library=LIBRARIES, problem=_GENERIC)
  def test_unbiased_where_the_draws_differ(self, library, problem):
    """Elsewhere, exact references and the converted route, in SE.

    Bernoulli (each library thresholds its own uniforms), TFP's Categorical
    and Gamma: the means against the exact gradient at the power of
    _TARGET, and against the converted route's within 5 SE of the
    difference (independent draws).
    """
    p = PROBLEMS[problem]()
    if same_draws(library, p, jax.random.key(6)):
      self.skipTest("rgrad's draws: test_rows_equal_where_the_draws_are_rgrads")
    builder = generic_builder(library, p)
    for name in generic_estimators(p, builder):
      report = _run(name, p, builder, jax.random.key(5))
      self.assertTrue(report.passed, report.table())
      self.assertLessEqual(report.max_detectable, 1.05 * _TARGET[name])
      own = converted_report(problem, name)
      for a, b in zip(report.coordinates, own.coordinates, strict=True):
        z = (a.value - b.value) / np.hypot(a.stderr, b.stderr)
        self.assertLess(abs(z), 5.0, f"{name} {a.coordinate}: z = {z:.2f}")


# ---------------------------------------------------------------------------
# The kit's contract suite, with each reference problem rebuilt in a library.
# ---------------------------------------------------------------------------


def through(library, spec):
  """`spec` with every dist_builder's result rebuilt in `library`."""

  def wrap(builder):
    return lambda p: foreign(library, builder(p))

  if spec.stateful:
    init, estimate = spec.fn
    return spec._replace(
      fn=rgrad.StatefulEstimator(
        init, lambda f, p, b, k, n, s: estimate(f, p, wrap(b), k, n, s)
      )
    )
  return spec._replace(fn=lambda f, p, b, k, n: spec.fn(f, p, wrap(b), k, n))


# One estimator per place where estimators call dist_builder (the score
# pull-back, the pathwise sample, the weak derivatives' pull-back, the delta
# method's moments, antithetic pairs, the discrete pull-back, relaxed
# samples, REBAR's pull-back, the variational estimators, a stateful one).
_CONTRACT = (
  "score_function",
  "pathwise",
  "measure_valued",
  "delta_method",
  "antithetic_pathwise",
  "arm",
  "concrete",
  "rebar",
  "stl",
  "score_function_moving_average",
)


class ContractTest(parameterized.TestCase):
  """rgrad.testing's contract over the adapters.

  ``output`` and ``bad_inputs`` for every registered estimator;
  ``jit_and_vmap`` and ``robust`` (non-finite costs, any callable)
  for one estimator per call site of dist_builder; estimator i through
  library i mod 3 (the converted route gives rgrad's own rows through every
  library, ConversionTest).
  """

  def test_output_and_bad_inputs(self):
    for i, name in enumerate(rgrad.registry.BUILTIN_NAMES):
      testing.check_estimator(
        through(LIBRARIES[i % 3], rgrad.get_estimator(name)),
        checks=("output", "bad_inputs"),
      )


@pytest.mark.slow
class ContractJitAndRobustTest(parameterized.TestCase):
  """``jit_and_vmap`` and ``robust`` over the adapters (see ContractTest)."""

  @parameterized.named_parameters(
    *((name, name, LIBRARIES[i % 3]) for i, name in enumerate(_CONTRACT))
  )
  def test_jit_vmap_and_robust(self, name, library):
    testing.check_estimator(
      through(library, rgrad.get_estimator(name)),
      checks=("jit_and_vmap", "robust"),
    )


if __name__ == "__main__":
  absltest.main()
