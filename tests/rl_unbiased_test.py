r"""The policy-gradient estimators are unbiased for the exact LQR gradient.

Each estimator of :mod:`rgrad.rl` (the score function with no baseline and
with the leave-one-out baseline, the pathwise gradient by ``jax.grad``
through the rollout, the hand BPTT of :func:`rgrad.rl.lqr_bptt_gradients`,
and total propagation with cross-fitted weights) is run through
:func:`rgrad.testing.unbiasedness_report` against
:func:`rgrad.exact.lqr_policy_gradient` (the moment equations' adjoint,
which shares no code with the estimators) on :func:`rgrad.rl.example_lqr`
problems with a stable (spectral radius 0.9) and an unstable (1.05) closed
loop, at horizons 5 and 20, in float64. Every coordinate of
``(K, log_sigma)`` is tested at a family-wise false-alarm rate of 1e-3
(Holm), with standard errors honest for the rows: i.i.d. rows for the score
function without baseline, the pathwise gradient and BPTT; one group per
call (``rows="groups", group_size="batch"``) for leave-one-out and
cross-fitted total propagation, whose rows share their batch.

Power. The smallest relative bias each test detects with probability 0.95
(the report's ``detectable``, relative to
:math:`\max(|g_j|, \max_{\text{leaf}}|g|/10)`, the worst coordinate), as
measured with these sizes and asserted below (``_DETECTABLE``)::

  estimator              rows     rho=0.9 T=5  T=20   rho=1.05 T=5  T=20
  score function         2^18         8.9%   10.1%          12.6%  11.8%
  leave-one-out          2^18         5.3%    5.7%           7.4%   7.8%
  pathwise (jax.grad)    2^16         2.7%    4.2%           3.3%   2.8%
  hand BPTT              2^16         2.7%    4.2%           3.3%   2.8%
  total propagation      2^16         2.7%    4.0%           3.3%   2.9%

(largest |z| over the 20 tests: 2.7, at a Holm threshold of ~3.4). The whole
file takes ~70 s on a 2-core CPU, mostly compilation (one per test).
The score function would need ~1.6e6 rows (leave-one-out ~6.4e5) to reach
5% on every coordinate; that is past this file's time budget, so its
detectable bias is the ~10% above.
"""

import functools

import jax
import jax.numpy as jnp
from absl.testing import absltest
from absl.testing import parameterized

from rgrad import exact
from rgrad import rl
from rgrad import testing

jax.config.update("jax_enable_x64", True)

# The largest detectable relative bias allowed per estimator (see above):
# a test that loses power fails instead of passing silently.
_DETECTABLE = {
  "score_function": 0.15,
  "leave_one_out": 0.10,
  "pathwise": 0.05,
  "bptt": 0.05,
  "total_propagation": 0.05,
}
_ROWS = {
  "score_function": 2**18,
  "leave_one_out": 2**18,
  "pathwise": 2**16,
  "bptt": 2**16,
  "total_propagation": 2**16,
}
# Rows per call; for the batch-dependent estimators, the batch (one group).
_CHUNK = {
  "score_function": 8192,
  "leave_one_out": 256,
  "pathwise": 4096,
  "bptt": 4096,
  "total_propagation": 256,
}
_BATCH_ROWS = ("leave_one_out", "total_propagation")


def _no_cost(x):
  """Unused: the trajectory estimators roll out the LQR themselves."""
  del x
  return 0.0


def _no_distribution(params):
  """Unused by the adapter; ``gradient_moments`` calls it on ``params``."""
  return params


def _lqr_estimator(
  name, problem, horizon, function, params, dist_builder, key, num_samples
):
  """The shared estimator signature over an LQR rollout estimator.

  A trajectory estimator takes ``(environment, params, key, horizon,
  num_rollouts)`` (see :mod:`rgrad.rl`); the moments engine calls
  ``(function, params, dist_builder, key, num_samples)``. `function` and
  `dist_builder` are ignored (the problem and horizon are bound by
  ``functools.partial`` instead), so the module-level placeholders above
  are passed for them: the engine checks they are callable and hashes them
  to key its compilation.
  """
  del function, dist_builder
  if name == "score_function":
    return rl.score_function_policy_gradients(
      problem, params, key, horizon, num_samples
    )
  if name == "leave_one_out":
    return rl.score_function_policy_gradients(
      problem, params, key, horizon, num_samples, baseline="leave_one_out"
    )
  if name == "pathwise":
    return rl.pathwise_policy_gradients(
      problem, params, key, horizon, num_samples
    )
  if name == "bptt":
    noise = rl.sample_lqr_noise(problem, key, horizon, num_samples)
    return rl.lqr_bptt_gradients(problem, params, noise)
  if name == "total_propagation":
    return rl.total_propagation_policy_gradients(
      problem, params, key, horizon, num_samples, weights="cross_fit"
    )
  raise ValueError(f"unknown estimator {name!r}")


def _cases():
  for rho in (0.9, 1.05):
    for horizon in (5, 20):
      for name in _DETECTABLE:
        yield (f"{name}_rho{rho}_T{horizon}", name, rho, horizon)


class UnbiasedTest(parameterized.TestCase):
  @parameterized.named_parameters(*_cases())
  def test_mean_is_exact_gradient(self, name, rho, horizon):
    problem, params = rl.example_lqr(rho, dtype=jnp.float64)
    self.assertAlmostEqual(
      float(rl.closed_loop_spectral_radius(problem, params)), rho, places=10
    )
    exact_grad = exact.lqr_policy_gradient(problem, params, horizon)
    # One partial per test: the engine compiles once for it.
    estimator = functools.partial(_lqr_estimator, name, problem, horizon)
    structure = (
      {"rows": "groups", "group_size": "batch"}
      if name in _BATCH_ROWS
      else {"rows": "iid"}
    )
    key = jax.random.fold_in(jax.random.key(13), int(rho * 100) + horizon)
    report = testing.unbiasedness_report(
      estimator,
      _no_cost,
      params,
      _no_distribution,
      key,
      exact=exact_grad,
      num_samples=_ROWS[name],
      chunk_size=_CHUNK[name],
      power=0.95,
      false_alarm_rate=1e-3,
      **structure,
    )
    self.assertTrue(report.passed, msg=report.table())
    self.assertLessEqual(
      report.max_detectable, _DETECTABLE[name], msg=report.table()
    )


if __name__ == "__main__":
  absltest.main()
