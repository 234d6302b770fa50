"""rgrad's discrete estimators against rgrad.exact, with rgrad.testing (slow).

Every estimator of issue 12 is run through :func:`rgrad.testing.
assert_unbiased` and :func:`rgrad.testing.assert_variance` against the exact
references of :mod:`rgrad.exact` (enumeration and quadrature, sharing no
code with the estimators):

* the unbiased ones (score function, leave-one-out, ARM, DisARM, VIMCO,
  REBAR and RELAX at a fixed control) against the exact gradient
  (:func:`rgrad.exact.bernoulli_expectation`; minus the IWAE bound's
  gradient for VIMCO), the biased relaxations (concrete, straight-through)
  against their own exact means;
* every variance against the exact one, converted from the reference's
  per-*unit* variance to the kit's effective per-row variance: x2 for the
  ARM/DisARM pairs and for the leave-one-out and VIMCO batches (K = 2).

Problems. d = 1: the REBAR/RELAX toy f(b) = (b - t)^2 at t = 0.45 (logits
-1, 0.4, 1.5), t = 0.49 (0.4, 1.5) and t = 0.499 (-1, 0.4; the RELAX
paper's toy), every estimator but VIMCO, whose cost is a log-joint
(logits -2, -1, 3). d = 10, every estimator, at the logits
linspace(-1.5, 1.5, 10) (VIMCO: half of them): a non-additive cost (score
function, leave-one-out, ARM, DisARM, straight-through), an additive one
(concrete, REBAR, RELAX: their exact references need a cost, and RELAX's
surrogate network, that act per coordinate; RELAX's default network is one
MLP shared by the coordinates and summed) and a coupled log-joint (VIMCO).

How it runs. Each estimator is wrapped (:func:`_instances`) as a stateless
:class:`rgrad.base.StatefulEstimator` that evaluates it, with
``jax.vmap``, at every (logit, t) instance of one call, each instance with
its own key; rgrad.testing then takes its statistics from the call means
(independent across calls), and the mean test and the variance test share
one compiled scan (``_CALLS`` calls of ``rows // _CALLS`` rows). A call
mean's variance times its rows is the effective per-row variance, the
quantity the references are converted to. The instances at one t are one
leaf of the parameter pytree, so rgrad.testing's reference scale
max(|g_j|, max_leaf |g| / 10) is taken per t.

Power (family-wise false-alarm rate 1e-3, Holm over all coordinates of a
call, power 0.95). ``Case.mean_claims`` states per leaf the relative bias
(of max(|g_j|, max_leaf |g| / 10)) that the mean test detects; it was
computed from the exact variance at the case's rows (predicted value in
brackets below) and each report's ``detectable`` is asserted to be within
it:

* toy, t = 0.45 / 0.49 / 0.499: score function 5% (3.3) / 18% (16.8) /
  160% (150); REBAR 5% (4.3) / 23% (21.8) / 190% (185); RELAX 5% (4.5) /
  25% (23.9) / 220% (216); leave-one-out, ARM, DisARM 5% (<= 3.3) at every
  t (their variance falls with the gradient, as (1 - 2t)^2); concrete,
  straight-through (own means) 5% (<= 3.9) at every t; VIMCO 5% (0.8);
* d = 10: 10% (score function 9.4, leave-one-out 9.2, ARM 7.3, DisARM
  9.1, REBAR 9.3, RELAX 5.4, VIMCO 7.8); concrete 5% (3.3),
  straight-through 5% (4.7).

The toy's gradient is p(1 - p)(1 - 2t): 5 and 50 times smaller at t = 0.49
and 0.499 than at 0.45, while the score-function-type noise is not, so the
variance is ~1e3 g^2 at t = 0.49 and ~1e5 g^2 at 0.499 for the score
function, REBAR and RELAX (5% at t = 0.499 would need ~1e9 rows): those
leaves claim what the 2^20 rows give, and at t = 0.499 only a bias larger
than the gradient itself is caught. ``variance_claim`` is the relative
variance error every variance test detects: 5% (from the call means'
sample fourth moment, 2^16 calls).

Length. The file runs past rgrad's ~500 lines because ``CASES``, every
estimator on every problem with the error its test claims to detect, is the
test's specification and reads best as one table beside the wrappers that
run it.
"""

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rgrad
from rgrad import base
from rgrad import exact
from rgrad import registry
from rgrad import testing

_CALLS = 2**16  # calls per run: a 5% variance error detectable, m <= 10
_L10 = np.linspace(-1.5, 1.5, 10)
_W10 = np.linspace(0.5, 1.5, 10)
_A10 = np.linspace(1.0, 2.0, 10)
_TEMPERATURE, _SCALE = 0.5, 1.0  # REBAR's control
# The scale of RELAX's REBAR term (temperature 0.5): toy, d = 10.
_RELAX_SCALE, _RELAX_SCALE_10 = 0.5, 1.5


# Costs are module-level functions of (draw, t): the wrapped estimators
# close them over each instance's t; t is unused where a cost has none.
def _toy(b, t):
  return jnp.sum((b - t) ** 2)


def _general(b, t):  # non-additive on {0,1}^10, differentiable (ST)
  del t
  return jnp.sin(b @ _W10) + b[0] * b[1] * b[2]


def _additive_f(x):  # per coordinate; the d = 10 cost is its sum
  return (x - 0.2) ** 2


def _additive(b, t):
  del t
  return jnp.sum(_additive_f(b))


def _log_joint_1(z, t):
  del t
  return 1.3 * z[0] - 0.4


def _log_joint_10(z, t):
  del t
  return z @ _A10 - 0.3 * jnp.sum(z) ** 2 / 10


def _relax_network(scale):
  """A fixed RELAX control: REBAR's term at `scale` plus a random 4-unit MLP.

  Hidden layer 0.5 N(0, 1), output layer 0.1 N(0, 1). Toy (scale 0.5): the
  network's terms raise the variance from REBAR's (scale 0.5) 27-42 g^2 to
  49-73 g^2, so they are exercised, and 5% stays affordable (output scale
  0.5 and REBAR scale 1 gave 240-380 g^2: 2^22 rows for 5%). d = 10 (scale
  1.5, which cancels more of the other coordinates' cost in coordinate i's
  score term): the network doubles the variance of REBAR's term alone, and
  10% takes 2^18 rows (scale 0.5: 2^20).
  """
  template = rgrad.relax(hidden_sizes=(4,)).init(jnp.zeros(1)).control
  rng = np.random.default_rng(0)
  network = jax.tree.map(
    lambda x: jnp.asarray(0.5 * rng.normal(size=x.shape)), template.network
  )
  network["Dense_1"] = jax.tree.map(lambda x: 0.2 * x, network["Dense_1"])
  return rgrad.RelaxControl(
    jnp.log(jnp.asarray(_TEMPERATURE)), jnp.asarray(scale), network
  )


_CONTROL = _relax_network(_RELAX_SCALE)
_CONTROL_10 = _relax_network(_RELAX_SCALE_10)  # the same network


def _mlp(z):
  """The control's network at one relaxed logit, written out (tanh MLP)."""
  net = _CONTROL.network
  h = jnp.tanh(z * net["Dense_0"]["kernel"][0] + net["Dense_0"]["bias"])
  return h @ net["Dense_1"]["kernel"][:, 0] + net["Dense_1"]["bias"][0]


def _instances(estimator, ts, group=None):
  """`estimator` at every instance of a call, as a stateless estimator.

  Params are ``{leaf: logits [L, d]}``, leaf ``k`` at ``t = ts[k]``; each
  instance gets its own key and the cost ``function(b, t)``. With `group`
  (K for leave-one-out and VIMCO) a call of n rows is n / K batches of K.
  """

  def init(params):
    del params
    return ()

  def estimate(function, params, dist_builder, key, num_samples, state):
    names = sorted(params)
    x = jnp.concatenate([params[k] for k in names])
    t = jnp.concatenate(
      [jnp.full(params[k].shape[:1], ts[k], x.dtype) for k in names]
    )

    def one(x, t, k):
      cost = functools.partial(function, t=t)
      if group is None:
        return estimator(cost, x, dist_builder, k, num_samples)
      keys = jax.random.split(k, num_samples // group)
      j = jax.vmap(lambda k: estimator(cost, x, dist_builder, k, group))(keys)
      return j.reshape((num_samples,) + x.shape)

    keys = jax.random.split(key, x.shape[0])
    jac = jnp.swapaxes(jax.vmap(one)(x, t, keys), 0, 1)  # [n, L, d]
    out, start = {}, 0
    for k in names:
      out[k] = jac[:, start : start + params[k].shape[0]]
      start += params[k].shape[0]
    return out, state

  return base.StatefulEstimator(init, estimate)


def _fn(name):
  return registry.find_estimator(name)[1].fn


_REBAR = functools.partial(
  rgrad.rebar_jacobians, temperature=_TEMPERATURE, scale=_SCALE
)
_RELAX = functools.partial(
  rgrad.relax_jacobians, control=_CONTROL, hidden_sizes=(4,)
)
_RELAX_10 = functools.partial(
  rgrad.relax_jacobians, control=_CONTROL_10, hidden_sizes=(4,)
)


def _scalar(cost, t):
  """A cost of one draw (d = 1) or of one coordinate (additive)."""
  return lambda b: cost(b, t)


def _per_coordinate(cost, t):
  del cost
  return lambda x: (x - t) ** 2


def _moments(name, **kw):
  def moments(cost, x, t):
    return exact.bernoulli_estimator_moments(name, _scalar(cost, t), x, **kw)

  return moments


def _moments_additive(name, **kw):
  def moments(cost, x, t):
    del cost, t
    return exact.bernoulli_estimator_moments(
      name, _additive_f, x, additive=True, **kw
    )

  return moments


def _rebar_moments(cost, x, t):
  f = _additive_f if cost is _additive else _per_coordinate(cost, t)
  return exact.rebar_moments(
    f, x, temperature=_TEMPERATURE, scale=_SCALE, additive=True
  )


def _relax_moments(scale):
  def moments(cost, x, t):
    f = _additive_f if cost is _additive else _per_coordinate(cost, t)

    def surrogate(z):
      return scale * f(jax.nn.sigmoid(z / _TEMPERATURE)) + _mlp(z)

    return exact.relax_moments(
      f, x, surrogate, additive=True, resolution=_TEMPERATURE
    )

  return moments


class Case(NamedTuple):
  """One estimator on one problem: runs of instances sharing a compile."""

  estimator: Any  # the wrapped estimator (_instances)
  cost: Any  # cost(b, t)
  runs: tuple[dict[str, np.ndarray], ...]  # each {leaf: logits [L, d]}
  ts: dict[str, float]  # t per leaf
  moments: Any  # (cost, logits [d], t) -> exact.EstimatorMoments per unit
  unbiased: bool  # compare the mean with the gradient (else its own mean)
  per_unit: int  # rows per unit: effective per-row variance = this x unit's
  rows: int  # rows per run, _CALLS calls of rows // _CALLS
  mean_claims: dict[str, float] | None  # detectable relative bias per leaf
  variance_claim: float = 0.05  # detectable relative variance error


_TS = {"t0.45": 0.45, "t0.49": 0.49, "t0.499": 0.499}
_TOY = (
  {
    "t0.45": np.array([[-1.0], [0.4], [1.5]]),
    "t0.49": np.array([[0.4], [1.5]]),
    "t0.499": np.array([[-1.0], [0.4]]),
  },
)
_D10 = ({"d10": _L10[None]},)
_T10 = {"d10": 0.0}


def _case(estimator, cost, runs, ts, moments, unbiased, per_unit, **kw):
  group = 2 if per_unit == 2 and kw.pop("group", False) else None
  return Case(
    _instances(estimator, ts, group),
    cost,
    runs,
    ts,
    moments,
    unbiased,
    per_unit,
    **kw,
  )


_C, _R = _moments("concrete", temperature=2 / 3), _REBAR
_ST = _moments("straight_through", temperature=1.0)
_ALL_TOY = {"t0.45": 0.05, "t0.49": 0.05, "t0.499": 0.05}

CASES = {
  # d = 1, the toy. Claims per leaf (t = 0.45, 0.49, 0.499).
  "score_function_toy": _case(
    _fn("score_function"),
    _toy,
    _TOY,
    _TS,
    _moments("score_function"),
    True,
    1,
    rows=2**20,
    mean_claims={"t0.45": 0.05, "t0.49": 0.18, "t0.499": 1.6},
  ),
  "leave_one_out_toy": _case(
    _fn("leave_one_out"),
    _toy,
    _TOY,
    _TS,
    _moments("leave_one_out", num_samples=2),
    True,
    2,
    group=True,
    rows=2**17,
    mean_claims=_ALL_TOY,
  ),
  "arm_toy": _case(
    _fn("arm"),
    _toy,
    _TOY,
    _TS,
    _moments("arm"),
    True,
    2,
    rows=2**17,
    mean_claims=_ALL_TOY,
  ),
  "disarm_toy": _case(
    _fn("disarm"),
    _toy,
    _TOY,
    _TS,
    _moments("disarm"),
    True,
    2,
    rows=2**17,
    mean_claims=_ALL_TOY,
  ),
  "concrete_toy": _case(
    _fn("concrete"),
    _toy,
    _TOY,
    _TS,
    _C,
    False,
    1,
    rows=2**20,
    mean_claims=_ALL_TOY,
  ),
  "straight_through_toy": _case(
    _fn("straight_through"),
    _toy,
    _TOY,
    _TS,
    _ST,
    False,
    1,
    rows=2**20,
    mean_claims=_ALL_TOY,
  ),
  "rebar_toy": _case(
    _REBAR,
    _toy,
    _TOY,
    _TS,
    _rebar_moments,
    True,
    1,
    rows=2**20,
    mean_claims={"t0.45": 0.05, "t0.49": 0.23, "t0.499": 1.9},
  ),
  "relax_toy": _case(
    _RELAX,
    _toy,
    _TOY,
    _TS,
    _relax_moments(_RELAX_SCALE),
    True,
    1,
    rows=2**20,
    mean_claims={"t0.45": 0.05, "t0.49": 0.25, "t0.499": 2.2},
  ),
  "vimco_d1": _case(
    _fn("vimco"),
    _log_joint_1,
    ({"d1": np.array([[-2.0], [-1.0], [3.0]])},),
    {"d1": 0.0},
    _moments("vimco", num_samples=2),
    True,
    2,
    group=True,
    rows=2**21,
    mean_claims={"d1": 0.05},
  ),
  # d = 10.
  "score_function_d10": _case(
    _fn("score_function"),
    _general,
    _D10,
    _T10,
    _moments("score_function"),
    True,
    1,
    rows=2**18,
    mean_claims={"d10": 0.10},
  ),
  "leave_one_out_d10": _case(
    _fn("leave_one_out"),
    _general,
    _D10,
    _T10,
    _moments("leave_one_out", num_samples=2),
    True,
    2,
    group=True,
    rows=2**19,
    mean_claims={"d10": 0.10},
  ),
  "arm_d10": _case(
    _fn("arm"),
    _general,
    _D10,
    _T10,
    _moments("arm"),
    True,
    2,
    rows=2**20,
    mean_claims={"d10": 0.10},
  ),
  "disarm_d10": _case(
    _fn("disarm"),
    _general,
    _D10,
    _T10,
    _moments("disarm"),
    True,
    2,
    rows=2**19,
    mean_claims={"d10": 0.10},
  ),
  "straight_through_d10": _case(
    _fn("straight_through"),
    _general,
    _D10,
    _T10,
    _moments("straight_through", temperature=1.0),
    False,
    1,
    rows=2**17,
    mean_claims={"d10": 0.05},
  ),
  "concrete_d10": _case(
    _fn("concrete"),
    _additive,
    _D10,
    _T10,
    _moments_additive("concrete", temperature=2 / 3),
    False,
    1,
    rows=2**17,
    mean_claims={"d10": 0.05},
  ),
  "rebar_d10": _case(
    _REBAR,
    _additive,
    _D10,
    _T10,
    _rebar_moments,
    True,
    1,
    rows=2**17,
    mean_claims={"d10": 0.10},
  ),
  "relax_d10": _case(
    _RELAX_10,
    _additive,
    _D10,
    _T10,
    _relax_moments(_RELAX_SCALE_10),
    True,
    1,
    rows=2**18,
    mean_claims={"d10": 0.10},
  ),
  "vimco_d10": _case(
    _fn("vimco"),
    _log_joint_10,
    ({"d10": 0.5 * _L10[None]},),
    _T10,
    _moments("vimco", num_samples=2),
    True,
    2,
    group=True,
    rows=2**18,
    mean_claims={"d10": 0.10},
  ),
}


def _references(case, run):
  """Per leaf: (exact mean to test against, effective per-row variance)."""
  means, variances = {}, {}
  for leaf, logits in run.items():
    t = case.ts[leaf]
    rows = [case.moments(case.cost, x, t) for x in logits]
    if case.unbiased:
      grads = [_gradient(case, x, t) for x in logits]
      for m, g in zip(rows, grads, strict=True):  # the reference's identity
        np.testing.assert_allclose(m.mean, g, rtol=1e-9, atol=1e-14)
    else:
      grads = [m.mean for m in rows]
    means[leaf] = np.stack([np.asarray(g) for g in grads])
    variances[leaf] = case.per_unit * np.stack(
      [np.asarray(m.variance) for m in rows]
    )
  return means, variances


def _gradient(case, x, t):
  cost = _scalar(case.cost, t)
  if case.cost in (_log_joint_1, _log_joint_10):
    return -exact.iwae_bound_expectation(cost, x, 2)[1]
  return exact.bernoulli_expectation(cost, x)[1]


def _leaf(coordinate):
  """The leaf of a report coordinate's name, "['t0.45'][0, 0]" -> t0.45."""
  return coordinate.split("'")[1]


@pytest.mark.slow
class DiscreteExactnessTest(parameterized.TestCase):
  @parameterized.named_parameters(*((name, name) for name in CASES))
  def test_mean_and_variance(self, name):
    case = CASES[name]
    key = jax.random.key(sum(map(ord, name)))
    rows = case.rows
    for i, run in enumerate(case.runs):
      means, variances = _references(case, run)
      params = {k: jnp.asarray(v) for k, v in run.items()}
      common = dict(num_samples=rows, chunk_size=rows // _CALLS)
      report = testing.assert_unbiased(
        case.estimator,
        case.cost,
        params,
        rgrad.Bernoulli,
        jax.random.fold_in(key, i),
        exact=means,
        **common,
      )
      for c in report.coordinates:
        claim = case.mean_claims[_leaf(c.coordinate)]
        self.assertLessEqual(c.detectable, claim, c.coordinate)
      report = testing.assert_variance(
        case.estimator,
        case.cost,
        params,
        rgrad.Bernoulli,
        jax.random.fold_in(key, 100 + i),
        exact_variance=variances,
        **common,
      )
      self.assertLessEqual(report.max_detectable, case.variance_claim)


if __name__ == "__main__":
  absltest.main()
