"""The contract every registered estimator meets, run over the registry.

As optax's ``contrib/_common_test.py`` runs one suite over every optimizer,
this file runs one suite over every entry of ``rgrad.ESTIMATORS`` whose
objective is ``"expectation"`` (the variational estimators have their own
reference problems in tests/variational_test.py), and over a toy estimator
that a "user" registers with ``rgrad.register_estimator``: what the registry
says of an estimator (its capabilities, its row structure, its minimum
sample count, its statefulness) is what the suite checks it against.

The reference problem is :math:`f(x) = \\sum_i \\cos(k x_i)` under
:math:`N(\\mu, \\mathrm{diag}\\,\\sigma^2)`, with the closed form (derived here,
sharing no code with rgrad)

  E f = sum_i exp(-k^2 s_i^2 / 2) cos(k m_i),
  d/dm_i = -k exp(-k^2 s_i^2 / 2) sin(k m_i),
  d/ds_i = -k^2 s_i exp(-k^2 s_i^2 / 2) cos(k m_i).

Standard errors come from independent replicates: each of ``_REPLICATES``
calls of the estimator (or steps of a stateful one) with its own key gives
one mean over ``_BATCH`` rows, and those call means are independent (for a
stateful estimator, martingale differences: unbiased given the past and so
uncorrelated), whatever the rows' structure inside a call (pairs, groups).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import _internal
from rgrad import base

# k m_i near +-pi/4, so that neither sin(k m_i) nor cos(k m_i), and so no
# coordinate of the exact gradient, is small next to the estimators' spread.
_K = 1.0
_LOC = np.array([0.7, -0.8, 0.9])
_SCALE = np.array([0.8, 0.6, 1.0])
_BATCH = 16  # rows per call: even (pairs), >= 2 (leave-one-out)
# Independent calls, 1.6 million rows per estimator: enough for a 5 SE test
# to detect a 5% bias in every coordinate of every built-in estimator (the
# hardest, the antithetic score function's scale gradient, detects 4.6%).
_REPLICATES = 100_000
_DETECTABLE = 0.05


def _params():
  return {"loc": jnp.asarray(_LOC), "scale": jnp.asarray(_SCALE)}


def _normal(params):
  return rgrad.Normal(params["loc"], params["scale"])


def _cost(x):
  return jnp.sum(jnp.cos(_K * x))


def _exact_gradient():
  damp = np.exp(-0.5 * (_K * _SCALE) ** 2)
  return {
    "loc": -_K * damp * np.sin(_K * _LOC),
    "scale": -(_K**2) * _SCALE * damp * np.cos(_K * _LOC),
  }


def _call_means(spec, key, replicates=_REPLICATES, batch=_BATCH):
  """[replicates] independent call means, a pytree like params."""
  params = _params()
  keys = jax.random.split(key, replicates)
  if spec.stateful:

    def step(state, k):
      jac, state = spec.fn.estimate(_cost, params, _normal, k, batch, state)
      return state, jax.tree.map(lambda j: j.mean(0), jac)

    _, means = jax.jit(lambda ks: jax.lax.scan(step, spec.fn.init(params), ks))(
      keys
    )
    return means

  def one(k):
    return jax.tree.map(
      lambda j: j.mean(0), spec.fn(_cost, params, _normal, k, batch)
    )

  return jax.jit(jax.vmap(one))(keys)


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

  @property
  def spec(self) -> rgrad.EstimatorSpec:
    return rgrad.get_estimator(self.name)

  def _estimate(self, key, num_samples=_BATCH, params=None):
    params = _params() if params is None else params
    spec = self.spec
    if spec.stateful:
      state = spec.fn.init(params)
      jac, _ = spec.fn.estimate(_cost, params, _normal, key, num_samples, state)
      return jac
    return spec.fn(_cost, params, _normal, key, num_samples)

  def test_spec_is_valid(self):
    rgrad.registry.check_spec(self.spec, self.name)
    self.assertEqual(self.spec.objective, "expectation")
    # Normal has every capability an expectation estimator asks for here.
    missing = _internal.missing_capabilities(
      _normal(_params()), self.spec.distributions
    )
    self.assertEqual(missing, [])

  def test_output_is_per_sample_pytree_like_params(self):
    jac = self._estimate(jax.random.key(0))
    chex.assert_trees_all_equal_structs(jac, _params())
    chex.assert_shape((jac["loc"], jac["scale"]), (_BATCH, 3))
    self.assertTrue(all(np.isfinite(v).all() for v in jax.tree.leaves(jac)))

  @pytest.mark.slow
  def test_unbiased_on_the_reference_problem(self):
    # The smallest detectable bias is 5 SE of the mean of the call means,
    # relative to |exact|; the test asserts it is under 5% for every
    # coordinate, so a 5%-wrong estimator cannot pass.
    means = _call_means(self.spec, jax.random.key(1))
    exact = _exact_gradient()
    for leaf in ("loc", "scale"):
      m = np.asarray(means[leaf])  # [replicates, 3]
      se = m.std(0, ddof=1) / np.sqrt(m.shape[0])
      z = (m.mean(0) - exact[leaf]) / se
      detectable = 5 * se / np.abs(exact[leaf])
      self.assertLess(
        detectable.max(), _DETECTABLE, f"{self.name} {leaf}: too little power"
      )
      np.testing.assert_array_less(
        np.abs(z), 5.0, err_msg=f"{self.name} {leaf}: z = {z}"
      )

  def test_jit_and_vmap_one_trace_per_shape(self):
    params = _params()

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, key):
      return self._estimate(key, params=params)

    keys = jax.random.split(jax.random.key(2), 3)
    eager = self._estimate(keys[0], params=params)
    jitted = run(params, keys[0])
    run(params, keys[1])  # new key, same shapes: no new trace
    chex.assert_trees_all_close(jitted, eager, rtol=1e-10, atol=1e-12)
    batched = jax.vmap(lambda k: self._estimate(k, params=params))(keys)
    chex.assert_trees_all_close(
      jax.tree.map(lambda b: b[0], batched), eager, rtol=1e-10, atol=1e-12
    )

  def test_rejects_too_few_samples(self):
    too_few = self.spec.min_num_samples - 1
    with self.assertRaisesRegex(ValueError, "num_samples must be >="):
      self._estimate(jax.random.key(3), num_samples=too_few)
    if self.spec.rows == "pairs":
      with self.assertRaisesRegex(ValueError, "must be even"):
        self._estimate(jax.random.key(3), num_samples=_BATCH + 1)

  def test_rejects_a_distribution_without_its_capabilities(self):
    class Opaque:  # draws, but none of the capabilities estimators need
      reparameterized = False

      def sample(self, key, sample_shape=()):
        return jax.random.normal(key, tuple(sample_shape) + (3,))

    needs = [c for c in self.spec.distributions if c != "sample"]
    with self.assertRaises((TypeError, ValueError)) as raised:
      spec = self.spec
      fn = spec.fn.estimate if spec.stateful else spec.fn
      args = (_cost, _params(), lambda p: Opaque(), jax.random.key(4), _BATCH)
      fn(*args, *((spec.fn.init(_params()),) if spec.stateful else ()))
    message = str(raised.exception)
    # The error names the object and a capability it lacks (or, for
    # pathwise, the missing pathwise sampler).
    self.assertIn("Opaque", message)
    self.assertTrue(
      any(c in message for c in needs) or "pathwise sampler" in message,
      message,
    )


_EXPECTATION = rgrad.registry.estimators_for(
  objective="expectation", stateful=None
)


def _suite(name: str) -> type:
  return type(
    f"Contract_{name}_Test",
    (_Contract, parameterized.TestCase),
    {"name": name, "__module__": __name__},
  )


for _name in _EXPECTATION:
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


class ContractCanFailTest(absltest.TestCase):
  """The unbiasedness check rejects an estimator that is 5% off."""

  def test_a_biased_estimator_fails(self):
    def biased(function, params, dist_builder, key, num_samples):
      jac = rgrad.score_function_jacobians(
        function, params, dist_builder, key, num_samples
      )
      return jax.tree.map(lambda j: 1.05 * j, jac)

    rgrad.register_estimator("biased_toy", _TOY._replace(fn=biased))
    try:
      suite = _suite("biased_toy")("test_unbiased_on_the_reference_problem")
      with self.assertRaises(AssertionError):
        suite.test_unbiased_on_the_reference_problem()
    finally:
      rgrad.unregister_estimator("biased_toy")


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

  def test_every_builtin_documents_itself(self):
    for name, spec in rgrad.ESTIMATORS.items():
      with self.subTest(name):
        rgrad.registry.check_spec(spec, name)
        self.assertGreaterEqual(spec.num_cost_evaluations(5), 1)
    self.assertEqual(
      rgrad.get_estimator("measure_valued").num_cost_evaluations(5), 20
    )

  def test_stateful_moving_average_matches_the_functions(self):
    # The stateful estimator is the moving-average functions, threaded.
    spec = rgrad.get_estimator("score_function_moving_average")
    self.assertIsInstance(spec.fn, base.StatefulEstimator)
    params = _params()
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
