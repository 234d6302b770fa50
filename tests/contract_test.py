"""The contract every registered estimator meets, run over the registry.

As optax's ``contrib/_common_test.py`` runs one suite over every optimizer,
this file runs rgrad's public contract (:mod:`rgrad.testing`: output
structure, jit/vmap with one trace per shape, bad inputs, unbiasedness on the
reference problem of the estimator's objective) over every entry of
``rgrad.ESTIMATORS``, and over a toy estimator that a "user" registers with
``rgrad.register_estimator``: what the registry says of an estimator is what
the suite checks it against.

Power: ``rgrad.testing.check_unbiased`` sizes each run so that a 5% bias in
any coordinate is caught with probability >= 0.95 (each report states its
detectable bias, asserted <= 5% below), at a family-wise false-alarm rate of
1e-3. The mutation tests check that claim: every estimator with its output
scaled by 0.95 or 1.05 fails.
"""

import functools

import chex
import jax
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import base
from rgrad import testing

_DETECTABLE = 0.05


def _toy_score_function(function, params, dist_builder, key, num_samples):
  """A user's score-function estimator, written with jax.grad of log_prob."""
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"toy: num_samples must be >= 1, got {num_samples}.")
  dist = dist_builder(params)
  if not callable(getattr(dist, "log_prob", None)):
    raise TypeError(f"toy: {type(dist).__name__} lacks log_prob.")
  xs = jax.lax.stop_gradient(dist.sample(key, (num_samples,)))
  costs = jax.vmap(function)(xs)

  def log_prob(p, x):
    return dist_builder(p).log_prob(x)

  scores = jax.vmap(jax.grad(log_prob), in_axes=(None, 0))(params, xs)
  return jax.tree.map(
    lambda s: s * costs.reshape((-1,) + (1,) * (s.ndim - 1)), scores
  )


_TOY = rgrad.EstimatorSpec(
  fn=_toy_score_function,
  distributions=("score", "log_prob"),
  rows="iid",
  group_size=1,
  unbiased=True,
  cost_evaluations=1,
  summary="a user's score function, by jax.grad of log_prob",
)


class _Contract:
  """The suite; subclasses set `name` (a registered estimator)."""

  name: str

  def test_spec_is_valid(self):
    rgrad.registry.check_spec(rgrad.get_estimator(self.name), self.name)

  def test_output_is_per_sample_pytree_like_params(self):
    testing.check_output(self.name)

  def test_jit_and_vmap_one_trace_per_shape(self):
    testing.check_jit_and_vmap(self.name)

  def test_bad_inputs_raise_naming_them(self):
    testing.check_bad_inputs(self.name)

  @pytest.mark.slow
  def test_unbiased_on_the_reference_problem(self):
    if not rgrad.get_estimator(self.name).unbiased:
      # Biased by design (the relaxations); their own exact means are
      # checked against rgrad.exact by the exactness tests.
      self.skipTest(f"{self.name} is registered as biased")
    report = testing.check_unbiased(self.name)
    # Sized for it; a size change that loses power fails here.
    self.assertLessEqual(report.max_detectable, 1.05 * _DETECTABLE, report)


def _suite(name: str) -> type:
  return type(
    f"Contract_{name}_Test",
    (_Contract, parameterized.TestCase),
    {"name": name, "__module__": __name__},
  )


for _name in rgrad.registry.BUILTIN_NAMES:
  globals()[f"Contract_{_name}_Test"] = _suite(_name)


class RegisteredToyContractTest(_Contract, parameterized.TestCase):
  """A user-registered estimator runs through the same suite."""

  name = "toy_score_function"

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rgrad.register_estimator(cls.name, _TOY)

  @classmethod
  def tearDownClass(cls):
    rgrad.unregister_estimator(cls.name)
    super().tearDownClass()

  def test_registered_and_listed(self):
    self.assertIs(rgrad.ESTIMATORS[self.name], _TOY)
    self.assertIn(self.name, rgrad.registry.estimators_for())

  def test_check_estimator_runs_every_check(self):
    testing.check_estimator(self.name, checks=("output", "bad_inputs"))
    with self.assertRaisesRegex(ValueError, "unknown checks"):
      testing.check_estimator(self.name, checks=("speed",))


def _scaled(spec: rgrad.EstimatorSpec, factor: float) -> rgrad.EstimatorSpec:
  """`spec` with every estimate multiplied by `factor`: a biased mutant."""
  scale = lambda jac: jax.tree.map(lambda j: factor * j, jac)  # noqa: E731
  if spec.stateful:

    def estimate(*args):
      jac, state = spec.fn.estimate(*args)
      return scale(jac), state

    return spec._replace(fn=base.StatefulEstimator(spec.fn.init, estimate))
  return spec._replace(fn=lambda *args: scale(spec.fn(*args)))


@pytest.mark.slow
class MutationTest(parameterized.TestCase):
  """Each estimator scaled by 0.95 or 1.05 fails the unbiasedness check.

  One mutant per estimator (alternating 0.95 and 1.05 in registry order)
  keeps CI time down; the calibration test in tests/testing_test.py
  measures the detection rate over 200 seeds.
  """

  @parameterized.parameters(
    *[
      (name, 0.95 if i % 2 else 1.05)
      for i, name in enumerate(rgrad.registry.BUILTIN_NAMES)
    ]
  )
  def test_a_biased_estimator_fails(self, name, factor):
    mutant = _scaled(rgrad.get_estimator(name), factor)
    with self.assertRaisesRegex(AssertionError, "REJECTED"):
      testing.check_unbiased(mutant, key=jax.random.key(11))


class RegistryTest(absltest.TestCase):
  def test_unknown_name_lists_the_known_ones(self):
    with self.assertRaisesRegex(
      ValueError, "Unknown estimator 'reinforce'; known estimators: .*pathwise"
    ):
      rgrad.get_estimator("reinforce")

  def test_read_only(self):
    with self.assertRaises(TypeError):
      rgrad.ESTIMATORS["x"] = _TOY  # type: ignore[index]

  def test_builtins_cannot_be_replaced_or_removed(self):
    with self.assertRaisesRegex(ValueError, "built-in"):
      rgrad.register_estimator("pathwise", _TOY, overwrite=True)
    with self.assertRaisesRegex(ValueError, "built in"):
      rgrad.unregister_estimator("pathwise")

  def test_duplicate_needs_overwrite(self):
    rgrad.register_estimator("dup_toy", _TOY)
    try:
      with self.assertRaisesRegex(ValueError, "already registered"):
        rgrad.register_estimator("dup_toy", _TOY)
      rgrad.register_estimator("dup_toy", _TOY, overwrite=True)
    finally:
      rgrad.unregister_estimator("dup_toy")
    self.assertNotIn("dup_toy", rgrad.ESTIMATORS)

  def test_bad_specs_name_the_field(self):
    cases = [
      (_TOY._replace(rows="chunks"), ValueError, r"\.rows must be one of"),
      (_TOY._replace(distributions=("wings",)), ValueError, "distributions"),
      (_TOY._replace(distributions="score"), ValueError, "distributions"),
      (_TOY._replace(rows="pairs"), ValueError, "group_size must be 2"),
      (
        _TOY._replace(rows="groups", group_size=1),
        ValueError,
        "group_size must be an int >= 2",
      ),
      (_TOY._replace(objective="elbo"), ValueError, "objective"),
      (_TOY._replace(min_num_samples=0), ValueError, "min_num_samples"),
      (_TOY._replace(fn=3), TypeError, r"\.fn must be callable"),
      (_TOY._replace(summary=""), ValueError, "summary"),
      ((1, 2), TypeError, "must be an rgrad.EstimatorSpec"),
    ]
    for spec, error, pattern in cases:
      with self.assertRaisesRegex(error, pattern):
        rgrad.register_estimator("bad_toy", spec)
    self.assertNotIn("bad_toy", rgrad.ESTIMATORS)
    with self.assertRaisesRegex(ValueError, "identifier"):
      rgrad.register_estimator("not a name", _TOY)

  def test_find_estimator_in_every_form(self):
    spec = rgrad.get_estimator("measure_valued_uncoupled")
    for form in (
      "measure_valued_uncoupled",
      spec,
      spec.fn,
      functools.partial(rgrad.measure_valued_jacobians, coupling=False),
    ):
      self.assertEqual(
        rgrad.registry.find_estimator(form), ("measure_valued_uncoupled", spec)
      )
    self.assertEqual(
      rgrad.registry.find_estimator(_toy_score_function), (None, None)
    )
    self.assertEqual(rgrad.registry.find_estimator(_TOY), (None, _TOY))
    with self.assertRaisesRegex(ValueError, "Unknown estimator"):
      rgrad.registry.find_estimator("reinforce")

  def test_every_builtin_documents_itself(self):
    for name, spec in rgrad.ESTIMATORS.items():
      with self.subTest(name):
        rgrad.registry.check_spec(spec, name)
        self.assertGreaterEqual(spec.num_cost_evaluations(5), 1)
    self.assertEqual(
      rgrad.get_estimator("measure_valued").num_cost_evaluations(5), 20
    )

  def test_stateful_moving_average_matches_the_functions(self):
    problem = testing.reference_problem(rgrad.get_estimator("pathwise"))
    params, _cost, _normal = (
      problem.params,
      problem.function,
      problem.dist_builder,
    )
    # The stateful estimator is the moving-average functions, threaded.
    spec = rgrad.get_estimator("score_function_moving_average")
    self.assertIsInstance(spec.fn, base.StatefulEstimator)
    state = spec.fn.init(params)
    ref = rgrad.moving_average_baseline_init()
    for step in range(3):
      key = jax.random.key(10 + step)
      jac, state = spec.fn.estimate(_cost, params, _normal, key, 8, state)
      want, costs = rgrad.score_function_jacobians(
        _cost,
        params,
        _normal,
        key,
        8,
        baseline=rgrad.moving_average_baseline_value(ref),
        return_costs=True,
      )
      ref = rgrad.moving_average_baseline_update(ref, costs, 0.9)
      chex.assert_trees_all_close(jac, want, rtol=1e-14)
      chex.assert_trees_all_close(state, ref, rtol=1e-14)


if __name__ == "__main__":
  absltest.main()
