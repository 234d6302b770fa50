r"""An ELBO gradient for NumPyro model/guide pairs, with baselines and a CV.

NumPyro's ``TraceGraph_ELBO`` estimates the gradient of

.. math:: \mathcal{L}(\phi) = E_{q_\phi(z)}[\log p(x, z) - \log q_\phi(z)]

by the pathwise route at reparameterized guide sites and by the score
function at the others: for a non-reparameterized site :math:`z_j` the
surrogate term :math:`\log q_\phi(z_j)\, \bar c_j` with
:math:`\bar c_j` the *downstream cost* (the model and guide log-densities
that depend on :math:`z_j`, found by provenance tracking, summed to the
site's plates: Schulman et al. 2015's stochastic computation graphs). It has
no baseline (NumPyro PR #1044's review: "no baseline support"), and the
score term's variance grows with :math:`\bar c_j^2`.

:func:`elbo_loss_and_grad` is the same estimator, built from the same NumPyro
pieces (``get_importance_trace`` for per-site log-densities under
``seed``/``substitute``/``replay``, ``get_nonreparam_deps`` for the
dependencies, ``MultiFrameTensor`` for the plate sums), with a baseline
:math:`b_j` subtracted from every downstream cost:

.. math:: \hat g = \frac1K \sum_{k=1}^K \nabla_\phi\Big[
          \ell_k(\phi) + \sum_j \log q_\phi(z_j^{(k)})\,
          \big(\bar c_j^{(k)} - b_j^{(k)}\big)\Big],

where :math:`\ell_k` is the particle's ELBO with gradients through the
reparameterized sites only. Baselines (per site, and per element of the
site's plates):

* ``"none"``: :math:`b = 0`, exactly ``TraceGraph_ELBO``;
* ``"leave_one_out"``: :math:`b_j^{(k)} = \frac{1}{K-1}\sum_{i \ne k}
  \bar c_j^{(i)}`, the mean of the other particles' costs (Kool, van Hoof,
  Welling 2019; Mnih & Rezende 2016): independent of particle :math:`k`,
  so unbiased, and as :math:`K` grows close to the mean cost;
* ``"moving_average"``: :math:`b_j` the debiased exponential moving average
  of earlier calls' costs (:func:`rgrad.moving_average_baseline_update`,
  per element), carried in an :class:`ElboBaselineState` and updated after
  use, so unbiased given the past;
* ``"control_variate"``: the score as control variate with the
  variance-minimizing coefficient per parameter coordinate, estimated
  leave-one-out over the particles (below).

All keep the estimator unbiased because :math:`E_q[\nabla_\phi \log
q_\phi(z_j) \mid \text{upstream}] = 0` and the baseline does not depend on
:math:`z_j^{(k)}`.

**The control variate.** Write, per particle :math:`k`, site :math:`j`
and coordinate :math:`d` of the params, :math:`h_{jd} = \partial_d \log
q_\phi(z_j)` (the score of the site's density, summed over its plates) and
:math:`g_{jd} = \partial_d \sum_e \log q_\phi(z_{je})\, \bar c_{je}` (the
site's score-function term, no baseline, :math:`e` over plate elements).
Since :math:`E[h_{jd}] = 0`, :math:`g_{jd} - a_{jd} h_{jd}` has the mean of
:math:`g_{jd}` for any :math:`a_{jd}` independent of the particle, and its
variance :math:`E[g^2] - 2a E[gh] + a^2 E[h^2] - (E g)^2` is least at

.. math:: a_{jd}^* = \frac{E[g_{jd} h_{jd}]}{E[h_{jd}^2]}
          = \frac{\mathrm{Cov}(g_{jd}, h_{jd})}{\mathrm{Var}(h_{jd})},

Ranganath, Gerrish & Blei (2014, Section 3.2)'s per-coordinate control
variate :math:`\nabla_\phi \log q` with its optimal scaling. Where one
coordinate drives one plate element (a mean-field guide), :math:`g = h\,
\bar c` and :math:`g - a h = h(\bar c - a)`: :math:`a^* = E[h^2 \bar c] /
E[h^2]` is the variance-minimizing constant baseline (Greensmith, Bartlett
& Baxter 2004, with the squared score norm for one baseline over all
coordinates; per coordinate as here in Peters & Schaal 2008). It is not the
mean cost that the other baselines aim at (Weaver & Tao 2001 find the
average reward optimal in a limit of their policy-gradient setting), unless
:math:`h^2` and :math:`\bar c` are uncorrelated: for :math:`z \sim
\mathrm{Bernoulli}(q)` with the logit as parameter,
:math:`h^2 \in \{(1-q)^2, q^2\}` and :math:`a^* = (1-q) E[\bar c \mid z=1]
+ q E[\bar c \mid z=0]` against :math:`E \bar c = q E[\bar c \mid z=1] +
(1-q) E[\bar c \mid z=0]`. The score is the control variate because a
non-reparameterized site offers nothing else with a known mean: the
delta-method control variates of :mod:`rgrad.control_variates` need a cost
differentiable in :math:`z`.

The coefficient is estimated from the *other* particles,

.. math:: \hat a_{jd}^{(k)} = \frac{\sum_{i \ne k} g_{jd}^{(i)}
          h_{jd}^{(i)}}{\sum_{i \ne k} (h_{jd}^{(i)})^2}

(0 where the other scores all vanish), a function of particles
:math:`i \ne k` alone, so :math:`E[\hat a^{(k)} h^{(k)}] = E[\hat a^{(k)}]
E[h^{(k)}] = 0` and the estimate
:math:`\nabla \frac1K\sum_k \ell_k + \frac1K \sum_k \sum_j (g_j^{(k)} -
\hat a_j^{(k)} \odot h_j^{(k)})` is exactly unbiased for every
:math:`K \ge 2`. Fitting :math:`\hat a` on all :math:`K` particles,
particle :math:`k` included (BBVI's choice), correlates it with
:math:`h^{(k)}` through the term :math:`g^{(k)} h^{(k)}` and biases the
gradient by :math:`O(1/K)`: on the test model at :math:`K = 8` it shrank
the logits' gradient by 13-15% (20-27 SE at the test's sizes).
(:func:`rgrad.estimate_control_variate_coefficients` fits the same
per-coordinate ratio from independent draws instead, which would cost a
second set of particles, and takes a ``dist_builder`` where here there is a
NumPyro trace.) With :math:`K = 2` and one element per
coordinate, :math:`\hat a^{(1)} = \bar c^{(2)}`: the control variate *is*
leave-one-out. Cost: per particle and non-reparameterized site, the
Jacobians of :math:`h_j` and :math:`g_j` (two reverse passes; memory
:math:`2K` copies of the params per site).

Limits. The estimate of :math:`a^*` from :math:`K - 1` particles adds
variance of order :math:`1/(K-1)`, which at few particles can cancel what
:math:`a^*` gains over the mean cost (measured below). Sites that share a
coordinate each get their own coefficient (fitting them jointly would
solve a small linear system per coordinate), and the plate elements of one
site that share a coordinate (a global parameter) share its coefficient,
where leave-one-out baselines each element by its own cost and can do
better.

Example (a Bernoulli and a Normal latent; the guide's Bernoulli site is not
reparameterizable)::

  import jax
  import jax.numpy as jnp
  import numpyro
  import numpyro.distributions as dist
  from rgrad.interop import numpyro_elbo

  def model(x):
    z = numpyro.sample("z", dist.Bernoulli(probs=0.4))
    w = numpyro.sample("w", dist.Normal(2.0 * z - 1.0, 1.0))
    numpyro.sample("x", dist.Normal(w, 0.5), obs=x)

  def guide(x):
    logit = numpyro.param("logit", 0.0)
    z = numpyro.sample("z", dist.Bernoulli(logits=logit))
    loc = numpyro.param("loc", 0.0) + numpyro.param("shift", 0.0) * z
    numpyro.sample("w", dist.Normal(loc, jnp.exp(numpyro.param("log_scale",
                                                               0.0))))

  params = {"logit": 0.3, "loc": 0.1, "shift": 0.5, "log_scale": -0.2}
  loss, grads, state = numpyro_elbo.elbo_loss_and_grad(
    model, guide, params, jax.random.key(0), 16, 0.8,
    baseline="leave_one_out")
  # grads estimates the gradient of -ELBO, as jax.grad of
  # TraceGraph_ELBO(num_particles=16).loss does (same particles from the
  # same key; baseline="none" gives exactly its gradient). For training,
  # "moving_average" carries `state` from call to call (init() starts it);
  # baseline="control_variate" pays off with more particles (below).

Measured (tests/numpyro_elbo_test.py: three plate elements, 12288 calls
of 8 particles): the variance of the Bernoulli logits' gradient is
1.42-2.21 times lower than ``TraceGraph_ELBO``'s with the leave-one-out
baseline, 1.66-2.82 times with the moving average and 1.37-2.54 times with
the control variate (SE 0.03-0.05), the means within 1 SE of the exact
gradient and of ``TraceGraph_ELBO``'s. At 8 particles the control variate
and leave-one-out are level (variance ratio 0.97-1.15, SE 0.01), the
coefficient's estimation noise taking what :math:`a^*` gains over the mean
cost (1.12-1.23 in population); at 32 particles (16384 calls) the control
variate's variance is 1.09-1.20 times lower than leave-one-out's (SE
0.006-0.008), its mean within 1.1 SE of the exact gradient.

References:
  Schulman, Heess, Weber, Abbeel. Gradient Estimation Using Stochastic
  Computation Graphs. NeurIPS 2015, https://arxiv.org/abs/1506.05254.
  Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free!
  ICLR 2019 workshop, https://openreview.net/forum?id=r1lgTGL5DE.
  Mnih, Rezende. Variational Inference for Monte Carlo Objectives. ICML 2016,
  https://arxiv.org/abs/1602.06725.
  Ranganath, Gerrish, Blei. Black Box Variational Inference. AISTATS 2014,
  https://arxiv.org/abs/1401.0118 (Section 3.2).
  Weaver, Tao. The Optimal Reward Baseline for Gradient-Based Reinforcement
  Learning. UAI 2001, https://arxiv.org/abs/1301.2315.
  Greensmith, Bartlett, Baxter. Variance Reduction Techniques for Gradient
  Estimates in Reinforcement Learning. JMLR 5, 2004,
  https://jmlr.org/papers/v5/greensmith04a.html.
  Peters, Schaal. Reinforcement Learning of Motor Skills with Policy
  Gradients. Neural Networks 21(4), 2008 (the per-coordinate optimal
  baseline).
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import control_variates

BASELINES = ("none", "leave_one_out", "moving_average", "control_variate")


class ElboBaselineState(NamedTuple):
  """Per non-reparameterized guide site, the moving average of its cost.

  Attributes:
    sites: site name -> :class:`rgrad.MovingAverageBaselineState` whose
      ``value`` and ``count`` have the shape of the site's downstream cost
      (its plates).
  """

  sites: dict[str, control_variates.MovingAverageBaselineState]


def _numpyro():
  """NumPyro's handlers and ELBO pieces, imported on first use."""
  from numpyro import handlers
  from numpyro.infer import elbo
  from numpyro.infer import util

  return handlers, elbo, util


def _particle(model, guide, params, key, args, kwargs, deps):
  """One particle: its pathwise ELBO, downstream costs and guide log q's.

  Returns:
    ``(elbo, costs, log_q)``: the particle's ELBO with gradients through the
    reparameterized sites only (non-reparameterized guide log-densities
    stopped, as in ``TraceGraph_ELBO``); per non-reparameterized guide
    site, its downstream cost (gradients stopped) and its log-density
    (differentiable in the params), both summed to the site's plates.
  """
  handlers, elbo_module, util = _numpyro()
  model_deps, guide_deps = deps
  model_key, guide_key = jax.random.split(key)
  model_trace, guide_trace = util.get_importance_trace(
    handlers.seed(model, model_key),
    handlers.seed(guide, guide_key),
    args,
    kwargs,
    params,
  )
  elbo = jnp.zeros(())
  downstream = {}

  def add(upstream_sites, site, value):
    for upstream in upstream_sites:
      downstream.setdefault(upstream, elbo_module.MultiFrameTensor()).add(
        (site["cond_indep_stack"], value)
      )

  for name, site in model_trace.items():
    if site["type"] == "sample":
      elbo = elbo + jnp.sum(site["log_prob"])
      add(model_deps[name], site, site["log_prob"])
  for name, site in guide_trace.items():
    if site["type"] == "sample":
      log_q = jnp.sum(site["log_prob"])
      if not site["fn"].has_rsample:
        log_q = jax.lax.stop_gradient(log_q)
      elbo = elbo - log_q
      add(guide_deps[name], site, -site["log_prob"])
  costs, log_qs = {}, {}
  for name, cost in downstream.items():
    frames = guide_trace[name]["cond_indep_stack"]
    costs[name] = jax.lax.stop_gradient(cost.sum_to(frames))
    log_q = guide_trace[name]["log_prob"]
    # The score multiplies the cost elementwise over the site's plates.
    costs[name] = jnp.broadcast_to(costs[name], jnp.shape(log_q))
    log_qs[name] = log_q
  return elbo, costs, log_qs


def init(model, guide, params, *args, **kwargs) -> ElboBaselineState:
  """The moving-average state before any call (every baseline 0).

  Runs the guide and the model once, abstractly (``jax.eval_shape``), to
  find the non-reparameterized sites and the shapes of their costs.
  """
  deps = _dependencies(model, guide, params, args, kwargs)
  shapes = jax.eval_shape(
    lambda p: _particle(model, guide, p, jax.random.key(0), args, kwargs, deps)[
      1
    ],
    params,
  )
  return ElboBaselineState(
    sites={
      name: control_variates.MovingAverageBaselineState(
        value=jnp.zeros(s.shape, s.dtype),
        count=jnp.zeros(s.shape, jnp.int32),
      )
      for name, s in shapes.items()
    }
  )


def _dependencies(model, guide, params, args, kwargs):
  _, elbo_module, _ = _numpyro()
  return elbo_module.get_nonreparam_deps(model, guide, args, kwargs, params)


def _leave_one_out(costs: jax.Array) -> jax.Array:
  """[K, ...] -> the mean of the other K - 1 rows, per row."""
  k = costs.shape[0]
  return (jnp.sum(costs, axis=0, keepdims=True) - costs) / (k - 1)


def _sum_of_others(x: jax.Array) -> jax.Array:
  """[K, ...] -> per row, the sum of the other K - 1 rows.

  As the exclusive prefix plus the exclusive suffix sum, not as the total
  minus the row: the difference cancels catastrophically when one row
  dominates, and the coefficient below divides by this sum.
  """
  zero = jnp.zeros_like(x[:1])
  before = jnp.concatenate([zero, jnp.cumsum(x, axis=0)[:-1]])
  after = jnp.concatenate([jnp.cumsum(x[::-1], axis=0)[:-1][::-1], zero])
  return before + after


def _leave_one_out_coefficient(terms: jax.Array, scores: jax.Array):
  r"""Per particle :math:`k`, :math:`\hat a^{(k)} = \sum_{i \ne k} g_i h_i
  / \sum_{i \ne k} h_i^2`, coordinatewise ([K, ...] -> [K, ...]).

  0 where the other particles' scores all vanish (a coordinate the site's
  density does not depend on: its coefficient multiplies a zero score).
  """
  numerator = _sum_of_others(terms * scores)
  denominator = _sum_of_others(scores * scores)
  informative = denominator > 0
  safe = jnp.where(informative, denominator, 1.0)
  return jnp.where(informative, numerator / safe, 0.0)


def _control_variate_correction(model, guide, params, keys, args, kwargs, deps):
  r"""The correction :math:`\frac1K \sum_k \sum_j \hat a_j^{(k)} \odot
  h_j^{(k)}`, a pytree like `params`.

  Per particle (vmapped), the reverse-mode Jacobians of two scalars per
  non-reparameterized site: its log-density (the score :math:`h_j`) and its
  score term (:math:`g_j`), both summed over the site's plates; memory
  :math:`2 K` copies of `params` per site.
  """

  def site_terms(params, key):
    _, costs, log_qs = _particle(model, guide, params, key, args, kwargs, deps)
    return {
      n: {"h": jnp.sum(log_qs[n]), "g": jnp.sum(log_qs[n] * costs[n])}
      for n in costs
    }

  jacobians = jax.vmap(jax.jacrev(site_terms), in_axes=(None, 0))(params, keys)
  correction = jax.tree.map(jnp.zeros_like, params)
  for site in jacobians.values():  # leaves [K, *param.shape]
    coefficients = jax.tree.map(
      _leave_one_out_coefficient, site["g"], site["h"]
    )
    correction = jax.tree.map(
      lambda total, a, h: total + jnp.mean(a * h, axis=0),
      correction,
      coefficients,
      site["h"],
    )
  return correction


def elbo_loss_and_grad(
  model,
  guide,
  params: dict[str, Any],
  key: jax.Array,
  num_particles: int,
  *args: Any,
  baseline: str = "leave_one_out",
  state: ElboBaselineState | None = None,
  decay: float = 0.9,
  **kwargs: Any,
) -> tuple[jax.Array, dict[str, jax.Array], ElboBaselineState | None]:
  r"""-ELBO and its gradient estimate, baselines at non-reparameterized sites.

  Args:
    model, guide: NumPyro programs; ``*args, **kwargs`` are passed to both.
    params: the ``numpyro.param`` values (guide and model), by site name;
      the gradient is taken w.r.t. all of them (as ``TraceGraph_ELBO``'s
      ``loss`` is differentiated w.r.t. its ``param_map``).
    key: PRNG key, consumed (one per particle, split as model/guide seeds).
    num_particles: :math:`K`, a static int (>= 2 for ``"leave_one_out"``
      and ``"control_variate"``).
    baseline: one of :data:`BASELINES` (see the module docstring).
    state: for ``"moving_average"``, the state from :func:`init` or the
      previous call (None: start from :func:`init`).
    decay: the moving average's :math:`\beta \in [0, 1)`.

  Returns:
    ``(loss, grads, state)``: the particles' mean of :math:`-\ell_k`, the
    gradient estimate of :math:`-\mathcal{L}` (a dict like `params`), and
    the updated state (None unless ``"moving_average"``: the other
    baselines are statistics of this call's particles alone).

  Raises:
    ValueError: an unknown `baseline`, or `num_particles` too small.
  """
  name = "numpyro_elbo.elbo_loss_and_grad"
  if baseline not in BASELINES:
    raise ValueError(
      f"{name}: baseline must be one of {BASELINES}, got {baseline!r}."
    )
  minimum = 2 if baseline in ("leave_one_out", "control_variate") else 1
  num_particles = _internal.check_int(
    num_particles, name, what="num_particles", minimum=minimum
  )
  if baseline == "moving_average" and state is None:
    state = init(model, guide, params, *args, **kwargs)
  deps = _dependencies(model, guide, params, args, kwargs)
  keys = jax.random.split(key, num_particles)
  del key

  def loss(params):
    particle = lambda k: _particle(model, guide, params, k, args, kwargs, deps)
    elbos, costs, log_qs = jax.vmap(particle)(keys)  # leaves [K, ...]
    if baseline == "leave_one_out":
      baselines = {n: _leave_one_out(c) for n, c in costs.items()}
    elif baseline == "moving_average":
      baselines = {n: state.sites[n].value[None] for n in costs}
    else:  # "none", and "control_variate" before its correction
      baselines = {n: jnp.zeros_like(c) for n, c in costs.items()}
    surrogate = (
      sum(
        (jnp.sum(log_qs[n] * (costs[n] - baselines[n])) for n in costs),
        jnp.zeros(()),
      )
      / num_particles
    )
    elbo = jnp.mean(elbos) + surrogate - jax.lax.stop_gradient(surrogate)
    return -elbo, costs

  (value, costs), grads = jax.value_and_grad(loss, has_aux=True)(params)
  if baseline == "control_variate":
    # grads is TraceGraph_ELBO's (no baseline: loss subtracted zeros) for
    # -ELBO, i.e. minus the score terms g; minus (g - a h) adds a h.
    correction = _control_variate_correction(
      model, guide, params, keys, args, kwargs, deps
    )
    grads = jax.tree.map(jnp.add, grads, correction)
  if baseline == "moving_average":
    # Folded in after use: this call's baseline did not see its own costs.
    update = jax.vmap(
      lambda s, c: control_variates.moving_average_baseline_update(s, c, decay),
      in_axes=(0, 1),
    )
    state = ElboBaselineState(
      sites={n: _per_element(update, state.sites[n], costs[n]) for n in costs}
    )
  else:
    state = None
  return value, grads, state


def _per_element(update, site_state, costs):
  """`update` (vmapped over elements) on a state of any shape."""
  shape = site_state.value.shape
  flat = control_variates.MovingAverageBaselineState(
    value=site_state.value.reshape(-1), count=site_state.count.reshape(-1)
  )
  new = update(flat, costs.reshape(costs.shape[0], -1))
  return control_variates.MovingAverageBaselineState(
    value=new.value.reshape(shape), count=new.count.reshape(shape)
  )
