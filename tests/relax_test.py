"""Tests for rgrad.relax: REBAR and RELAX against exact Bernoulli gradients.

The references are written here, in NumPy: the closed form
(f(1) - f(0)) p (1 - p) in d = 1 and a sum over the 2^3 states in d = 3
(sharing no code with the estimators). Unbiasedness is tested at FIXED
controls (several temperatures and scales, and random RELAX surrogates)
through rgrad.testing.assert_unbiased on rebar_jacobians / relax_jacobians,
which are exactly what the stateful estimate returns at its input control
(UpdateTest); tests/contract_test.py runs assert_unbiased on the registered
stateful "rebar" and "relax" while they train. Training is tested as a
variance reduction on the toy f(b) = (b - 0.49)^2 of Grathwohl et al. (2018,
Figure 1). Compilation, not sampling, is most of each test's time.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import testing

# ---------------------------------------------------------------------------
# Problems and exact references.
# ---------------------------------------------------------------------------


def _bernoulli(params):
  return rgrad.Bernoulli(params["logits"])


def _square_cost(x):
  # d = 1: f(b) = (b - 0.2)^2, f(1) - f(0) = 0.6.
  return jnp.sum((x - 0.2) ** 2)


def _toy_cost(x):
  # Grathwohl et al. (2018), Figure 1: t = 0.49.
  return jnp.sum((x - 0.49) ** 2)


def _coupled_cost(x):
  # d = 3, not additive: every coordinate's gradient depends on the others.
  return (x[0] - 2.0 * x[1] + 1.5 * x[2] + 0.5) ** 2 + 2.0 * x[0] * x[1]


def _affine(params):
  # A pytree of params that is not the logits: gradients are pulled back.
  return rgrad.Bernoulli(params["w"] * params["gain"] + params["shift"])


_PARAMS_1 = {"logits": jnp.array([0.4])}
_PARAMS_3 = {
  "w": jnp.array([0.4, -0.8, 1.3]),
  "gain": jnp.array(1.2),
  "shift": jnp.array(-0.1),
}


def _exact_1(logit):
  """(f(1) - f(0)) p (1 - p) for _square_cost."""
  p = 1.0 / (1.0 + np.exp(-logit))
  return {"logits": np.array([0.6 * p * (1.0 - p)])}


def _exact_3(params):
  """The gradient of E f(b) by summing over the 2^3 states, in NumPy.

  dE/d eta_i = p_i (1 - p_i) E[f(b | b_i = 1) - f(b | b_i = 0)], the other
  coordinates drawn from their marginals; then the chain rule through
  eta = w * gain + shift.
  """
  w, gain, shift = (np.asarray(params[k]) for k in ("w", "gain", "shift"))
  p = 1.0 / (1.0 + np.exp(-(w * gain + shift)))
  grad_eta = np.zeros(3)
  for b in itertools.product([0.0, 1.0], repeat=3):
    b = np.array(b)
    prob = np.prod(np.where(b > 0.5, p, 1.0 - p))
    cost = float(_coupled_cost(b))
    # d prob / d eta_i = prob * (b_i - p_i): the same sum, state by state.
    grad_eta += cost * prob * (b - p)
  return {
    "w": gain * grad_eta,
    "gain": np.sum(w * grad_eta),
    "shift": np.sum(grad_eta),
  }


def _random_network(estimator, seed, scale=0.4):
  """A random surrogate: every weight of RELAX's MLP drawn N(0, scale^2)."""
  # Shapes only (eval_shape): no flax initialization is run.
  shapes = jax.eval_shape(lambda: estimator.init(None).control.network)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: scale * rng.standard_normal(s.shape), shapes)


# ---------------------------------------------------------------------------
# Unbiased at every fixed control.
# ---------------------------------------------------------------------------

# Holm at 1e-3, power 0.95 over every coordinate: each report states the
# relative bias it detects, asserted <= 5% (so a change of sizes or
# problems that loses power fails).
_DETECTABLE = 0.05


def _relax_control(temperature, scale, network):
  return rgrad.RelaxControl(jnp.log(temperature), jnp.array(scale), network)


class UnbiasedTest(parameterized.TestCase):
  """At a fixed control, the mean is the exact gradient."""

  def _assert_unbiased(self, estimator, d, key, rows):
    cost, params, builder = (
      (_square_cost, _PARAMS_1, _bernoulli)
      if d == 1
      else (_coupled_cost, _PARAMS_3, _affine)
    )
    exact = _exact_1(0.4) if d == 1 else _exact_3(params)
    report = testing.assert_unbiased(
      estimator,
      cost,
      params,
      builder,
      jax.random.key(key),
      exact=exact,
      num_samples=rows,
      # One chunk: the moments engine's compilation grows with the chunks.
      chunk_size=rows,
    )
    self.assertLessEqual(report.max_detectable, _DETECTABLE, report)

  # The detectable relative bias each report states (asserted <= 5%): hot
  # 1.7%, cold 4.5% (its reparameterized terms are spiky), d = 3 3.8%.
  @parameterized.named_parameters(
    ("hot_small_scale", 2.0, 0.3, 1, 2**16),
    ("cold_negative_scale", 0.1, -1.0, 1, 2**17),
    ("d3_through_a_pytree", 0.7, 0.8, 3, 2**16),
  )
  def test_rebar_at_fixed_controls(self, temperature, scale, d, rows):
    estimator = functools.partial(
      rgrad.rebar_jacobians, temperature=temperature, scale=scale
    )
    self._assert_unbiased(estimator, d, 1, rows)

  @parameterized.named_parameters(
    # The shared per-coordinate network with the REBAR term (the default),
    # and the paper's network of all of z, alone; detectable 3.4%, 3.3%.
    ("d1_shared_network", 1, None, True, 2**18),
    ("d3_full_network_alone", 3, 3, False, 2**18),
  )
  def test_relax_with_a_random_surrogate(
    self, d, num_latents, rebar_term, rows
  ):
    hidden = (6,)
    net = rgrad.relax(hidden_sizes=hidden, num_latents=num_latents)
    control = _relax_control(0.5, 0.7, _random_network(net, 4 + d))
    estimator = functools.partial(
      rgrad.relax_jacobians,
      control=control,
      hidden_sizes=hidden,
      num_latents=num_latents,
      rebar_term=rebar_term,
    )
    self._assert_unbiased(estimator, d, 2, rows)


# ---------------------------------------------------------------------------
# The update: one Optax step on the variance gradient, after the estimates.
# ---------------------------------------------------------------------------


class UpdateTest(absltest.TestCase):
  def test_estimates_at_the_input_control_then_adam_on_the_variance(self):
    learning_rate, n, steps = 0.05, 8, 3
    estimator = rgrad.rebar(
      temperature=0.7, scale=0.9, learning_rate=learning_rate
    )
    adam = optax.adam(learning_rate)
    traces = []

    def rows(control, key):
      return rgrad.rebar_jacobians(
        _coupled_cost,
        _PARAMS_3,
        _affine,
        key,
        n,
        temperature=jnp.exp(control.log_temperature),
        scale=control.scale,
      )

    def second_moment(control, key):
      leaves = jax.tree.leaves(rows(control, key))
      return jnp.mean(sum(jnp.sum(j.reshape(n, -1) ** 2, 1) for j in leaves))

    @jax.jit
    def step(state, key):
      traces.append(None)  # once per trace
      jac, new_state = estimator.estimate(
        _coupled_cost, _PARAMS_3, _affine, key, n, state
      )
      # The reference, written independently of the update code: the
      # fixed-control rows at the INPUT control, and Adam's step (from the
      # input optimizer state) on d/dphi mean_k ||g_k||^2 of those draws.
      grads = jax.grad(second_moment)(state.control, key)
      updates, opt_state = adam.update(grads, state.opt_state, state.control)
      want = (
        rows(state.control, key),
        optax.apply_updates(state.control, updates),
        opt_state,
      )
      return (jac, new_state), want

    keys = jax.random.split(jax.random.key(7), steps)
    state = estimator.init(_PARAMS_3)
    first = state
    outputs = []
    for key in keys:
      (jac, new_state), (want_jac, want_control, want_opt) = step(state, key)
      chex.assert_trees_all_close(jac, want_jac, rtol=1e-12)
      chex.assert_trees_all_close(new_state.control, want_control, rtol=1e-10)
      chex.assert_trees_all_close(new_state.opt_state, want_opt, rtol=1e-10)
      self.assertEqual(int(new_state.step), int(state.step) + 1)
      outputs.append(jac)
      state = new_state
    self.assertLen(traces, 1)  # new keys and states: no retrace
    self.assertEqual(int(first.step), 0)  # estimate is pure

    # The same steps inside lax.scan thread the same states.
    def body(state, key):
      jac, state = estimator.estimate(
        _coupled_cost, _PARAMS_3, _affine, key, n, state
      )
      return state, jac

    final, scanned = jax.lax.scan(body, estimator.init(_PARAMS_3), keys)
    chex.assert_trees_all_close(final, state, rtol=1e-10)
    chex.assert_trees_all_close(
      scanned, jax.tree.map(lambda *j: jnp.stack(j), *outputs), rtol=1e-10
    )


# ---------------------------------------------------------------------------
# Training reduces the variance (the toy, theta = 0, t = 0.49).
# ---------------------------------------------------------------------------

_ZERO = {"logits": jnp.array([0.0])}  # theta = 0, as in the paper's Figure 1
_TRAIN_STEPS = 300
_TRAIN_BATCH = 16
_MEASURE_ROWS = 2**15


def _variance_and_se(rows):
  """Sample variance and its standard error, from the fourth moment."""
  rows = np.asarray(rows, np.float64)
  n = rows.size
  centred = rows - rows.mean()
  var = np.mean(centred**2) * n / (n - 1)
  m4 = np.mean(centred**4)
  return var, np.sqrt((m4 - var**2 * (n - 3) / (n - 1)) / n)


class TrainingTest(parameterized.TestCase):
  @parameterized.named_parameters(
    # REBAR's control hardly correlates with this cost: training can only
    # take the scale from 1 towards 0, the variance from that of
    # temperature 0.5, scale 1 (measured 0.0225 +- 0.0001) to REINFORCE's
    # (exactly 0.015638; measured 0.015638 after 300 steps, scale 0.003).
    ("rebar", "rebar", 1.0),
    # RELAX's network learns the baseline f ~ 0.25 that REINFORCE lacks: the
    # variance falls by orders of magnitude (measured 2.9e-6 after 300
    # steps); asserted below 10% of the start.
    ("relax", "relax", 0.1),
  )
  def test_training_reduces_the_variance(self, kind, factor):
    estimator = rgrad.rebar() if kind == "rebar" else rgrad.relax()

    @jax.jit
    def train(key):
      def step(state, k):
        _, state = estimator.estimate(
          _toy_cost, _ZERO, _bernoulli, k, _TRAIN_BATCH, state
        )
        return state, None

      keys = jax.random.split(key, _TRAIN_STEPS)
      return jax.lax.scan(step, estimator.init(_ZERO), keys)[0]

    @jax.jit
    def measure(control, key):
      # The fixed-control rows (what estimate returns at this control),
      # without the update's second derivatives: one compilation for both.
      args = (_toy_cost, _ZERO, _bernoulli, key, _MEASURE_ROWS)
      if kind == "rebar":
        jac = rgrad.rebar_jacobians(
          *args,
          temperature=jnp.exp(control.log_temperature),
          scale=control.scale,
        )
      else:
        jac = rgrad.relax_jacobians(*args, control=control)
      return jac["logits"][:, 0]

    before = measure(estimator.init(_ZERO).control, jax.random.key(20))
    trained = train(jax.random.key(21))
    after = measure(trained.control, jax.random.key(22))
    var_0, se_0 = _variance_and_se(before)
    var_1, se_1 = _variance_and_se(after)
    # Independent draws: the difference has SE sqrt(se_0^2 + se_1^2); a
    # 5-SE margin (about 0.0011 for REBAR, whose drop is 0.0067) keeps a
    # noise-level "reduction" from passing.
    margin = 5.0 * np.hypot(se_0, se_1)
    self.assertLess(
      var_1 + margin, factor * var_0, (var_0, se_0, var_1, se_1, margin)
    )
    self.assertEqual(int(trained.step), _TRAIN_STEPS)
    # Training keeps it unbiased: the exact gradient is 0.02 / 4 = 0.005.
    self.assertLess(
      abs(np.mean(after) - 0.005), 5.0 * np.sqrt(var_1 / after.size)
    )


# ---------------------------------------------------------------------------
# Bad inputs.
# ---------------------------------------------------------------------------


class BadInputTest(parameterized.TestCase):
  def test_construction_arguments(self):
    cases = [
      (lambda: rgrad.rebar(temperature=0.0), ValueError, "temperature"),
      (lambda: rgrad.rebar(temperature=-1.0), ValueError, "temperature"),
      (lambda: rgrad.relax(temperature=np.nan), ValueError, "temperature"),
      (lambda: rgrad.rebar(scale=np.inf), ValueError, "scale"),
      (lambda: rgrad.rebar(learning_rate=0.0), ValueError, "learning_rate"),
      (lambda: rgrad.relax(learning_rate=-1e-3), ValueError, "learning_rate"),
      (lambda: rgrad.rebar(learning_rate="fast"), TypeError, "learning_rate"),
      (lambda: rgrad.rebar(optimizer="adam"), TypeError, "optimizer"),
      (lambda: rgrad.relax(hidden_sizes=(0,)), ValueError, "hidden_sizes"),
      (lambda: rgrad.relax(num_latents=0), ValueError, "num_latents"),
      (
        lambda: rgrad.rebar_jacobians(
          _square_cost,
          _PARAMS_1,
          _bernoulli,
          jax.random.key(0),
          4,
          temperature=0.0,
        ),
        ValueError,
        "temperature",
      ),
    ]
    for fn, error, pattern in cases:
      with self.subTest(pattern), self.assertRaisesRegex(error, pattern):
        fn()

  def test_estimate_arguments(self):
    estimator = rgrad.rebar()
    state = estimator.init(_PARAMS_1)
    key = jax.random.key(0)

    def call(function=_square_cost, builder=_bernoulli, n=4, est=estimator):
      return est.estimate(function, _PARAMS_1, builder, key, n, state)

    def normal(params):
      return rgrad.Normal(params["logits"], 1.0)

    with self.assertRaisesRegex(ValueError, "num_samples must be >= 1"):
      call(n=0)
    with self.assertRaisesRegex(TypeError, "num_samples must be a static"):
      call(n=4.0)
    with self.assertRaisesRegex(TypeError, "conditional_relaxation"):
      call(builder=normal)
    # (Non-finite costs, outside jit and under it, are
    # rgrad.testing.assert_robust's, which tests/robustness_test.py runs on
    # the registered "rebar" and "relax".)
    with self.assertRaisesRegex(TypeError, "JAX-traceable"):
      call(function=lambda x: float(np.asarray(x).sum()))
    with self.assertRaisesRegex(TypeError, "floating cost"):
      call(function=lambda x: jnp.sum(x > 0.5))
    wide = rgrad.relax(num_latents=3)
    with self.assertRaisesRegex(ValueError, "num_latents=3"):
      wide.estimate(
        _square_cost, _PARAMS_1, _bernoulli, key, 4, wide.init(_PARAMS_1)
      )


# ---------------------------------------------------------------------------
# The registry entries.
# ---------------------------------------------------------------------------


class RegistryTest(parameterized.TestCase):
  @parameterized.parameters("rebar", "relax")
  def test_entry(self, name):
    spec = rgrad.get_estimator(name)
    self.assertTrue(spec.stateful)
    self.assertTrue(spec.unbiased)
    self.assertEqual(spec.rows, "iid")
    self.assertEqual(spec.num_cost_evaluations(5), 3)
    self.assertIn("conditional_relaxation", spec.distributions)


if __name__ == "__main__":
  absltest.main()
