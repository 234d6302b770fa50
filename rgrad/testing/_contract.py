r"""The contract every estimator meets, as functions a user's tests can call.

As optax's ``contrib/_common_test.py`` runs one suite over every optimizer,
rgrad runs this one over every entry of :data:`rgrad.ESTIMATORS` (in
``tests/contract_test.py``), and a researcher runs it on an estimator they
register: what the :class:`rgrad.EstimatorSpec` says (capabilities, row
structure, minimum sample count, statefulness, objective) is what each
check holds the estimator to.

* :func:`check_output` - a pytree like ``params``, leaves
  ``[num_samples, *leaf.shape]``, finite on a benign problem;
* :func:`check_jit_and_vmap` - the same numbers eagerly, under ``jax.jit``
  (traced once per shape: a new key reuses the compilation) and under
  ``jax.vmap`` over keys;
* :func:`check_bad_inputs` - too few samples, an odd count for pairs and a
  distribution without the needed capabilities raise errors naming them;
* :func:`check_unbiased` - :func:`rgrad.testing.assert_unbiased` on the
  reference problem of the spec's objective, with the kit's default sizes:
  a 5% bias in any coordinate is caught with probability >= 0.95, and a
  correct estimator fails with probability <= 1e-3;
* :func:`rgrad.testing.assert_robust` - a NaN or infinite cost poisons
  the rows it touches under jit and raises outside it, and NumPy functions,
  partials, callable objects and bound methods work as costs;
* :func:`check_estimator` - all of them.

Each raises ``AssertionError`` naming the estimator and what failed.
"""

import itertools
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import _internal
from rgrad import distributions
from rgrad import registry
from rgrad.testing import _asserts
from rgrad.testing import _problems
from rgrad.testing import _robustness


def _spec(estimator: Any) -> registry.EstimatorSpec:
  if isinstance(estimator, str):
    return registry.get_estimator(estimator)
  return registry.check_spec(estimator, "estimator")


def needs_discrete(spec: registry.EstimatorSpec) -> bool:
  """Whether `spec` needs a capability that the Gaussians lack.

  Such an estimator (ARM, DisARM, the relaxations, REBAR, RELAX) runs on
  the Bernoulli problem (:func:`bernoulli_problem`) instead.
  """
  normal = distributions.Normal(0.0, 1.0)
  return bool(_internal.missing_capabilities(normal, spec.distributions))


def _bernoulli_cost(b: jax.Array) -> jax.Array:
  # Not additive (the products couple the coordinates), defined on the
  # whole cube (the relaxations evaluate it between the draws).
  return jnp.sum(jnp.square(b - 0.45)) + b[0] * b[1] + 0.5 * b[1] * b[2]


def _bernoulli(params):
  return distributions.Bernoulli(params["logits"])


def bernoulli_problem() -> _problems.ReferenceProblem:
  r"""Three Bernoulli coordinates and a cost that couples them.

  :math:`f(b) = \sum_i (b_i - 0.45)^2 + b_0 b_1 + b_1 b_2 / 2` under
  :math:`\mathrm{Bernoulli}(\sigma(\eta))`, :math:`\eta = (0.4, -0.6,
  1.0)`, params ``{"logits": eta}``. The exact value and gradient
  :math:`\sum_b p(b) f(b) (b - \sigma(\eta))` come from enumerating the
  8 states in NumPy (no code shared with the estimators): (0.109, 0.243,
  0.054), no coordinate small next to the others. ``variances`` is empty
  (:mod:`rgrad.exact` has the discrete estimators' variances).
  """
  logits = np.array([0.4, -0.6, 1.0])
  p = 1.0 / (1.0 + np.exp(-logits))
  states = np.array(list(itertools.product([0.0, 1.0], repeat=3)))  # [8, 3]
  probs = np.prod(np.where(states > 0, p, 1.0 - p), axis=1)  # [8]
  costs = (
    np.sum((states - 0.45) ** 2, axis=1)
    + states[:, 0] * states[:, 1]
    + 0.5 * states[:, 1] * states[:, 2]
  )
  gradient = (probs * costs) @ (states - p)  # [3]
  dtype = jnp.result_type(float)
  return _problems.ReferenceProblem(
    name="bernoulli(d=3)",
    function=_bernoulli_cost,
    params={"logits": jnp.asarray(logits, dtype)},
    dist_builder=_bernoulli,
    value=jnp.asarray(probs @ costs, dtype),
    gradient={"logits": jnp.asarray(gradient, dtype)},
    variances={},
  )


def reference_problem(
  spec: registry.EstimatorSpec,
) -> _problems.ReferenceProblem:
  r"""The contract's reference problem for ``spec.objective``.

  Built on each call, in the current default dtype (float64 under x64).
  For expectations, :math:`\sum_i \cos(x_i)` with :math:`k \mu_i` near
  :math:`\pm\pi/4`, so that no coordinate of the exact gradient is small
  next to the estimators' spread, or for an estimator that needs a discrete
  capability (:func:`needs_discrete`) :func:`bernoulli_problem`; for the
  IWAE bound, a :math:`q` far enough from the posterior that the IWAE and
  ELBO gradients differ.
  """
  if spec.objective == "expectation" and needs_discrete(spec):
    return bernoulli_problem()
  if spec.objective == "negative_elbo":
    return _problems.conjugate_gaussian_problem(
      "negative_elbo", [0.3, -1.2], [1.0, 0.5], [0.2, -1.0]
    )
  if spec.objective == "negative_iwae_bound":
    return _problems.conjugate_gaussian_problem(
      "negative_iwae_bound", [1.5], [0.2], [-0.1], num_importance=2
    )
  return _problems.gaussian_problem(
    "cosine", 1.0, [0.7, -0.8, 0.9], [0.8, 0.6, 1.0]
  )


def batch_size(spec: registry.EstimatorSpec) -> int:
  """Rows per estimator call in the contract's runs."""
  if spec.objective == "negative_iwae_bound":
    return 2  # the quadrature reference's K
  if spec.rows == "groups" or spec.stateful:
    return max(16, spec.min_num_samples)
  return 1024


def _call(spec, problem, key, num_samples, params=None, dist_builder=None):
  params = problem.params if params is None else params
  builder = problem.dist_builder if dist_builder is None else dist_builder
  if spec.stateful:
    jac, _ = spec.fn.estimate(
      problem.function, params, builder, key, num_samples, spec.fn.init(params)
    )
    return jac
  return spec.fn(problem.function, params, builder, key, num_samples)


def check_output(estimator: Any, *, num_samples: int = 16) -> None:
  """Output is a finite pytree like params, leaves [num_samples, ...]."""
  spec = _spec(estimator)
  problem = reference_problem(spec)
  n = max(num_samples, spec.min_num_samples)
  n += n % 2 if spec.rows == "pairs" else 0
  jac = _call(spec, problem, jax.random.key(0), n)
  chex.assert_trees_all_equal_structs(jac, problem.params)
  leaves = zip(
    jax.tree.leaves(jac), jax.tree.leaves(problem.params), strict=True
  )
  for j, p in leaves:
    chex.assert_shape(j, (n,) + p.shape)
    if not np.all(np.isfinite(j)):
      raise AssertionError(f"{spec.summary}: non-finite output")


def check_jit_and_vmap(estimator: Any, *, num_samples: int = 16) -> None:
  """Eager, jit (one trace per shape) and vmap over keys agree."""
  spec = _spec(estimator)
  problem = reference_problem(spec)
  n = max(num_samples, spec.min_num_samples)
  n += n % 2 if spec.rows == "pairs" else 0
  traces = []

  @jax.jit
  def run(params, key):
    traces.append(None)  # runs once per trace, not per call
    return _call(spec, problem, key, n, params=params)

  keys = jax.random.split(jax.random.key(2), 3)
  eager = _call(spec, problem, keys[0], n)
  jitted = run(problem.params, keys[0])
  run(problem.params, keys[1])  # new key, same shapes: no new trace
  if len(traces) != 1:
    raise AssertionError(
      f"{spec.summary}: traced {len(traces)} times for one shape under jit."
    )
  # Compilation reorders floating-point operations: agreement to roundoff.
  tol = 1e-10 if jax.config.jax_enable_x64 else 1e-4
  chex.assert_trees_all_close(jitted, eager, rtol=tol, atol=tol * 1e-2)
  batched = jax.vmap(lambda k: _call(spec, problem, k, n))(keys)
  chex.assert_trees_all_close(
    jax.tree.map(lambda b: b[0], batched), eager, rtol=tol, atol=tol * 1e-2
  )


class _Opaque:
  """Draws, but has none of the capabilities estimators need."""

  reparameterized = False

  def __init__(self, shape):
    self._shape = shape

  def sample(self, key, sample_shape=()):
    return jax.random.normal(key, tuple(sample_shape) + self._shape)


def _raises(fn, errors, pattern, what):
  try:
    fn()
  except errors as e:  # noqa: PERF203
    message = str(e)
    if not any(p in message for p in pattern):
      raise AssertionError(
        f"{what}: the error does not say {pattern!r}: {message}"
      ) from e
    return message
  raise AssertionError(f"{what}: no error raised")


def check_bad_inputs(estimator: Any) -> None:
  """Too few samples, odd pairs, missing capabilities raise clear errors."""
  spec = _spec(estimator)
  problem = reference_problem(spec)
  key = jax.random.key(3)
  too_few = spec.min_num_samples - 1
  _raises(
    lambda: _call(spec, problem, key, too_few),
    (ValueError,),
    ["num_samples must be >="],
    f"{spec.summary} with num_samples={too_few}",
  )
  if spec.rows == "pairs":
    _raises(
      lambda: _call(spec, problem, key, 17),
      (ValueError,),
      ["must be even"],
      f"{spec.summary} with an odd num_samples",
    )
  shape = jax.tree.leaves(problem.params)[0].shape
  needs = [c for c in spec.distributions if c != "sample"]
  message = _raises(
    lambda: _call(
      spec, problem, key, 16, dist_builder=lambda p: _Opaque(shape)
    ),
    (TypeError, ValueError),
    needs + ["pathwise sampler"],
    f"{spec.summary} with a distribution lacking {needs}",
  )
  if "Opaque" not in message:
    raise AssertionError(f"the error does not name the distribution: {message}")


def check_unbiased(
  estimator: Any, *, key: jax.Array | None = None, **kwargs: Any
) -> _asserts.Report:
  """:func:`rgrad.testing.assert_unbiased` on the reference problem.

  Keyword arguments go to :func:`rgrad.testing.assert_unbiased` (defaults:
  a 5% detectable bias at power 0.95, family-wise false-alarm rate 1e-3,
  the sample size from the exact variance where the problem has it, else a
  pilot run).
  """
  spec = _spec(estimator)
  problem = reference_problem(spec)
  key = jax.random.key(1) if key is None else key
  name, _ = registry.find_estimator(spec)
  kwargs.setdefault("chunk_size", batch_size(spec))
  exact_variance = None if name is None else problem.variances.get(name)
  if exact_variance is not None and spec.rows == "iid" and not spec.stateful:
    kwargs.setdefault("exact_variance", exact_variance)
  return _asserts.assert_unbiased(
    spec,
    problem.function,
    problem.params,
    problem.dist_builder,
    key,
    exact=problem.gradient,
    **kwargs,
  )


CHECKS = {
  "output": check_output,
  "robust": _robustness.assert_robust,
  "jit_and_vmap": check_jit_and_vmap,
  "bad_inputs": check_bad_inputs,
  "unbiased": check_unbiased,
}


def check_estimator(
  estimator: Any, checks: Sequence[str] = tuple(CHECKS)
) -> None:
  """Runs the named contract checks (default: all) on a spec or name.

  Raises:
    AssertionError: the first check that fails, named.
    ValueError: an unknown check name.
  """
  unknown = [c for c in checks if c not in CHECKS]
  if unknown:
    raise ValueError(f"unknown checks {unknown}; known: {sorted(CHECKS)}.")
  spec = _spec(estimator)
  for name in checks:
    try:
      CHECKS[name](spec)
    except AssertionError as e:
      raise AssertionError(f"contract check {name!r} failed: {e}") from e
