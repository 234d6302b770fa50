r"""Gradient estimators for variational objectives whose integrand depends on q.

The generic estimators in :mod:`rgrad.estimators` differentiate
:math:`E_{q_\phi(z)}[f(z)]` for a cost :math:`f` that does not depend on
:math:`\phi`. Variational bounds are not of that form: the integrand contains
:math:`\log q_\phi(z)` itself,

.. math::
  \mathrm{ELBO}(\phi) = E_{q_\phi(z)}[\log p(x, z) - \log q_\phi(z)], \qquad
  \mathcal{L}_K(\phi) = E_{z_{1:K} \sim q_\phi}[\log \tfrac1K \sum_k w_k],
  \quad w_k = \frac{p(x, z_k)}{q_\phi(z_k)}.

With a reparameterization :math:`z = g(\epsilon; \phi)` the total derivative of
:math:`\log q_\phi(g(\epsilon;\phi))` splits into a *path* term
:math:`\partial_z \log q \cdot \partial_\phi g` and a *score* term
:math:`\partial_\phi \log q_\phi(z)|_{z \text{ fixed}}`. The score term has
expectation zero (:math:`E_q[\nabla_\phi \log q_\phi] = 0`) but not variance
zero; the two estimators below drop or rewrite it:

* :func:`stl_jacobians` -- "sticking the landing" (Roeder et al., 2017) for the
  ELBO: keep only the path term, i.e. differentiate
  :math:`\log p(x, z) - \log q_{\bar\phi}(z)` with :math:`\bar\phi` a
  stop-gradient copy. Unbiased, and its variance is *exactly zero* when
  :math:`q_\phi` equals the posterior (then :math:`\log p(x,z) - \log q(z) =
  \log p(x)` for every :math:`z`).
* :func:`dreg_jacobians` -- doubly-reparameterized gradients (Tucker et al.,
  2018) for the importance-weighted bound :math:`\mathcal{L}_K` (Burda et al.,
  2016). Applying the reparameterization trick a second time to the score term
  of the IWAE gradient gives

  .. math::
    \nabla_\phi \mathcal{L}_K = E_{\epsilon_{1:K}}\Big[\sum_k \tilde w_k^2\,
      \frac{\partial \log w_k}{\partial z_k}
      \frac{\partial z_k}{\partial \phi}\Big], \qquad
      \tilde w_k = \frac{w_k}{\sum_j w_j},

  where :math:`\partial \log w_k / \partial z_k` is taken with :math:`\phi`
  held fixed inside :math:`q`. For :math:`K = 1` it reduces to STL.
* :func:`vimco_jacobians` -- VIMCO (Mnih and Rezende, 2016), the
  score-function estimator of the same bound's gradient, for latents with
  no reparameterization (binary ones above all): each sample's score is
  weighted by its share of the bound minus a leave-one-out baseline.

All three follow the shared estimator convention of :mod:`rgrad.estimators`:
they return a pytree like `params` whose leaves carry a leading `num_samples`
axis, and the *mean over that axis* is the gradient estimate of the *cost*
(the negative bound, to be minimized). The per-sample costs are
:math:`c_k = \log q_\phi(z_k) - \log p(x, z_k) = -\log w_k`, so the ELBO
estimate is :math:`-\mathrm{mean}(c)` and the IWAE estimate is
:math:`\mathrm{logsumexp}(-c) - \log K`.

References:
  Roeder, Wu and Duvenaud, Sticking the Landing: Simple, Lower-Variance
  Gradient Estimators for Variational Inference, NeurIPS 2017,
  https://arxiv.org/abs/1703.09194.
  Tucker, Lawson, Gu and Maddison, Doubly Reparameterized Gradient Estimators
  for Monte Carlo Objectives, ICLR 2019, https://arxiv.org/abs/1810.04152.
  Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016,
  https://arxiv.org/abs/1509.00519.
  Mnih and Rezende, Variational Inference for Monte Carlo Objectives, ICML
  2016, https://arxiv.org/abs/1602.06725.
"""

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp

from rgrad import _internal
from rgrad import base
from rgrad import estimators

LogJoint = Callable[[jax.Array], jax.Array]


def _log_weight_and_grad(
  log_joint: LogJoint,
  params: base.Params,
  dist_builder: Callable[[base.Params], Any],
  key: jax.Array,
  num_samples: int,
  name: str,
) -> tuple[jax.Array, base.Params]:
  r"""Per-sample :math:`\log w_k` and its path-only gradient w.r.t. `params`.

  :math:`\log w(\phi) = \log p(x, g(\epsilon;\phi)) -
  \log q_{\bar\phi}(g(\epsilon;\phi))` with :math:`\bar\phi` =
  `stop_gradient(params)`: the sample moves with :math:`\phi`, the density it is
  scored under does not. That removes exactly the score term
  :math:`\partial_\phi \log q_\phi(z)|_z`.

  The shared checks of both estimators run here: `num_samples`, `params`
  that fit `dist_builder`, its capabilities, a callable `log_joint` (any
  callable, see :func:`rgrad._internal.as_cost`) and, outside jit, finite
  costs :math:`-\log w_k`.
  """
  num_samples = _internal.check_int(num_samples, name)
  probe = _internal.build(dist_builder, params, name, ("log_prob",))
  if not getattr(probe, "reparameterized", False):
    raise TypeError(
      f"{name}: {type(probe).__name__} is not reparameterized: STL and DReG "
      "need samples that are differentiable functions of the parameters."
    )
  log_joint = _internal.as_cost(log_joint, "log_joint", name)
  keys = jax.random.split(key, num_samples)
  del key

  def log_weight(params: base.Params, key: jax.Array) -> jax.Array:
    z = _internal.builder(dist_builder)(params).sample(key)  # [*event_shape]
    log_q = _internal.builder(dist_builder)(
      jax.lax.stop_gradient(params)
    ).log_prob(z)
    log_p = log_joint(z)
    if jnp.shape(log_p) != () or jnp.shape(log_q) != ():
      raise ValueError(
        f"{name}: log_joint(z) and the distribution's log_prob(z) must be "
        f"scalars for one sample z of shape {z.shape}; got shapes "
        f"{jnp.shape(log_p)} and {jnp.shape(log_q)} (a batch_shape other "
        "than () is not supported)."
      )
    return log_p - log_q

  log_w, grads = jax.vmap(jax.value_and_grad(log_weight), in_axes=(None, 0))(
    params, keys
  )
  chex.assert_shape(log_w, (num_samples,))
  _internal.check_finite(-log_w, name)
  return log_w, grads


def stl_jacobians(
  log_joint: LogJoint,
  params: base.Params,
  dist_builder: Callable[[base.Params], Any],
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""Sticking-the-landing estimator of the negative-ELBO gradient.

  For :math:`z_k = g(\epsilon_k; \phi)`, :math:`\epsilon_k` i.i.d.,

  .. math::
    \hat g_k = \nabla_\phi \big[\log q_{\bar\phi}(g(\epsilon_k;\phi))
      - \log p(x, g(\epsilon_k;\phi))\big], \qquad
    E[\hat g_k] = -\nabla_\phi \mathrm{ELBO}(\phi),

  with :math:`\bar\phi` a stop-gradient copy of :math:`\phi`. The dropped score
  term :math:`\nabla_\phi \log q_\phi(z)|_z` has expectation zero under
  :math:`q_\phi`, so the estimator stays unbiased; when :math:`q_\phi(z) =
  p(z \mid x)` the bracket equals :math:`-\log p(x)` for all :math:`z` and
  every :math:`\hat g_k` is exactly zero.

  Args:
    log_joint: one latent sample `z` of the event shape -> scalar
      :math:`\log p(x, z)` (the data are closed over).
    params: pytree of variational parameters :math:`\phi`.
    dist_builder: `params` -> a reparameterized distribution with
      `sample(key, sample_shape)` and `log_prob(z)` (event axis summed) and
      batch shape `()`, e.g. `lambda p: LogScaleNormal(p["loc"],
      p["log_scale"])`.
    key: PRNG key, consumed.
    num_samples: static Python int >= 1.
    return_costs: also return the per-sample costs
      :math:`c_k = \log q_\phi(z_k) - \log p(x, z_k)`.

  Returns:
    A pytree like `params`, each leaf `[num_samples, *leaf.shape]`; the mean
    over the leading axis estimates :math:`-\nabla_\phi\mathrm{ELBO}`. With
    `return_costs=True`, `(jacobians, costs)` with costs `[num_samples]`.

  Raises:
    TypeError: `num_samples` is not an int, `log_joint` is not callable, or
      the distribution is not reparameterized or has no `log_prob`.
    ValueError: `num_samples < 1`, `params` that do not fit `dist_builder`,
      a `log_joint` that is not scalar-valued, or (outside jit) non-finite
      costs; under jit their rows are NaN (DReG: every row, since the
      normalized weights read every cost).

  References:
    Roeder, Wu and Duvenaud, NeurIPS 2017, https://arxiv.org/abs/1703.09194.
  """
  log_w, grads = _log_weight_and_grad(
    log_joint, params, dist_builder, key, num_samples, "stl_jacobians"
  )
  del key
  # The cost is the negative log weight; so is its gradient. Rows of
  # non-finite costs are NaN (their gradient may be finite).
  jacobians = _internal.poison_non_finite(
    jax.tree.map(jnp.negative, grads), log_w
  )
  if return_costs:
    return jacobians, -log_w
  return jacobians


def dreg_jacobians(
  log_joint: LogJoint,
  params: base.Params,
  dist_builder: Callable[[base.Params], Any],
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""Doubly-reparameterized estimator of the negative IWAE-bound gradient.

  With :math:`K` = `num_samples` samples :math:`z_k = g(\epsilon_k;\phi)`,
  :math:`\log w_k = \log p(x, z_k) - \log q_{\bar\phi}(z_k)` and normalized
  weights :math:`\tilde w_k = w_k / \sum_j w_j`, the DReG estimate of
  :math:`-\nabla_\phi \mathcal{L}_K` is

  .. math::
    -\sum_{k=1}^K \tilde w_k^2\, \nabla_\phi \log w_k
    = \frac1K \sum_{k=1}^K \hat g_k, \qquad
    \hat g_k = -K\,\tilde w_k^2\, \nabla_\phi \log w_k,

  (path-only gradients: :math:`\bar\phi` is a stop-gradient copy). Derivation:
  the IWAE gradient's score part
  :math:`E[\sum_k \tilde w_k \partial_\phi \log w_k|_{z_k}]` is rewritten with
  the identity :math:`E_q[f(z)\,\partial_\phi \log q_\phi(z)] = E_\epsilon[
  \partial_z f(z)\, \partial_\phi g]` applied to :math:`f = \tilde w_k`, whose
  derivative :math:`\partial_{z_k}\tilde w_k = (\tilde w_k - \tilde w_k^2)
  \partial_{z_k}\log w_k` cancels the path part down to the
  :math:`\tilde w_k^2` form (Tucker et al. 2019, Eq. 5-7).

  The returned `hat g_k` are *not* independent (they share the normalizer);
  only their mean is the estimator. Use independent calls for variances.

  Args:
    log_joint: one latent sample `z` -> scalar :math:`\log p(x, z)`.
    params: pytree of variational parameters.
    dist_builder: `params` -> reparameterized distribution with batch shape
      `()` (see :func:`stl_jacobians`).
    key: PRNG key, consumed.
    num_samples: :math:`K`, a static Python int >= 1 (K = 1 gives STL).
    return_costs: also return :math:`c_k = -\log w_k`, `[num_samples]`; the
      bound estimate is `logsumexp(-c) - log(K)`.

  Returns:
    A pytree like `params`, each leaf `[num_samples, *leaf.shape]`, whose mean
    over the leading axis estimates :math:`-\nabla_\phi \mathcal{L}_K`; with
    `return_costs=True`, `(jacobians, costs)`.

  Raises:
    TypeError: `num_samples` is not an int, `log_joint` is not callable, or
      the distribution is not reparameterized or has no `log_prob`.
    ValueError: `num_samples < 1`, `params` that do not fit `dist_builder`,
      a `log_joint` that is not scalar-valued, or (outside jit) non-finite
      costs; under jit their rows are NaN (DReG: every row, since the
      normalized weights read every cost).

  References:
    Tucker, Lawson, Gu and Maddison, ICLR 2019,
    https://arxiv.org/abs/1810.04152.
  """
  log_w, grads = _log_weight_and_grad(
    log_joint, params, dist_builder, key, num_samples, "dreg_jacobians"
  )
  del key
  # Normalized weights in log space (softmax) so large |log w| stay finite; they
  # are coefficients, not differentiated through (the estimator's definition).
  w_tilde = jax.nn.softmax(jax.lax.stop_gradient(log_w))  # [num_samples]
  coeff = -num_samples * jnp.square(w_tilde)  # [num_samples]

  def scale(leaf: jax.Array) -> jax.Array:
    return coeff.reshape((num_samples,) + (1,) * (leaf.ndim - 1)) * leaf

  # Every row's weight reads every log weight: one non-finite cost makes
  # every row NaN (a -inf log weight would otherwise just get weight 0).
  jacobians = _internal.poison_non_finite(
    jax.tree.map(scale, grads), log_w, rows="batch"
  )
  if return_costs:
    return jacobians, -log_w
  return jacobians


def vimco_weights(log_w: jax.Array) -> jax.Array:
  r"""VIMCO's per-sample score weights, :math:`K` times each term.

  For log weights :math:`\log w_{1:K}`, :math:`L = \log \frac1K \sum_k w_k`,
  the leave-one-out bound with the left-out weight replaced by the
  geometric mean of the others,

  .. math:: L_{-k} = \log \tfrac1K \Big(\sum_{j \ne k} w_j
            + \exp\big(\tfrac{1}{K-1} \textstyle\sum_{j \ne k} \log w_j
            \big)\Big),

  and :math:`\tilde w = \mathrm{softmax}(\log w)`, the weights are
  :math:`-K[(L - L_{-k}) - \tilde w_k]`, all in log space (the
  :math:`K \times K` table of leave-one-out terms through ``logsumexp``).

  Args:
    log_w: ``[K]``, ``K >= 2``.

  Returns:
    ``[K]``, the weights of the scores :math:`s_k` in the rows of
    :func:`vimco_jacobians`.
  """
  k = log_w.shape[0]
  bound = jax.nn.logsumexp(log_w) - jnp.log(k)
  others_mean = (jnp.sum(log_w) - log_w) / (k - 1)  # [K]
  # Row k: log w_j for j != k, the geometric mean of the others at j = k.
  table = jnp.where(jnp.eye(k, dtype=bool), others_mean[:, None], log_w)
  leave_one_out = jax.nn.logsumexp(table, axis=1) - jnp.log(k)  # [K]
  return -k * ((bound - leave_one_out) - jax.nn.softmax(log_w))


def vimco_jacobians(
  log_joint: LogJoint,
  params: base.Params,
  dist_builder: Callable[[base.Params], Any],
  key: chex.PRNGKey,
  num_samples: int,
  *,
  return_costs: bool = False,
):
  r"""VIMCO: the score-function gradient of the negative IWAE bound.

  For :math:`K` = ``num_samples`` draws :math:`z_k \sim q_\phi` (discrete or
  not: only scores are used, no reparameterization), :math:`\log w_k = \log
  p(x, z_k) - \log q_\phi(z_k)` and the bound :math:`\mathcal{L}_K =
  E[L]`, :math:`L = \log\frac1K \sum_k w_k`,

  .. math::
    \nabla_\phi \mathcal{L}_K = E\Big[\sum_k \big(L - L_{-k}\big)\,
      \nabla_\phi \log q_\phi(z_k) + \sum_k \tilde w_k \nabla_\phi \log w_k
      \Big],

  with :math:`\nabla_\phi \log w_k = -\nabla_\phi \log q_\phi(z_k)` (the
  draws held fixed) and :math:`L_{-k}` the leave-one-out baseline of
  :func:`vimco_weights`, which does not depend on :math:`z_k` and so keeps
  the estimate unbiased (Mnih & Rezende 2016, Eqs. 7-10). The estimate of
  :math:`-\nabla_\phi \mathcal{L}_K` is
  :math:`-\sum_k [(L - L_{-k}) - \tilde w_k]\, s_k`; row :math:`k` holds
  :math:`K` times its term, so the mean of the rows is the estimate. The
  rows share :math:`L` and the weights (``rows="groups"``, the whole
  batch): use independent calls for variances. One evaluation of
  ``log_joint`` per row.

  Args:
    log_joint: one latent draw ``z`` -> scalar :math:`\log p(x, z)`.
    params: pytree of variational parameters.
    dist_builder: ``params`` -> a distribution with the ``score`` and
      ``log_prob`` capabilities and scalar ``log_prob`` per draw (batch
      shape ``()``), e.g. :class:`rgrad.Bernoulli` over a vector of latents.
    key: PRNG key, consumed.
    num_samples: :math:`K`, a static Python int >= 2 (the baseline needs
      another sample).
    return_costs: also return :math:`c_k = -\log w_k`, ``[num_samples]``.

  Returns:
    A pytree like ``params``, each leaf ``[num_samples, *leaf.shape]``,
    whose mean estimates :math:`-\nabla_\phi \mathcal{L}_K`; with
    ``return_costs``, ``(jacobians, costs)``.

  Raises:
    ValueError: ``num_samples < 2``, ``params`` that do not fit
      ``dist_builder``, a non-scalar ``log_joint`` or ``log_prob``, or
      (outside jit) non-finite costs; under jit every row is NaN then.
    TypeError: ``num_samples`` not an int, a ``log_joint`` that is not
      callable, or a distribution without the capabilities.

  References:
    Mnih, Rezende. Variational Inference for Monte Carlo Objectives. ICML
    2016, https://arxiv.org/abs/1602.06725.
  """
  name = "vimco_jacobians"
  num_samples = _internal.check_int(num_samples, name, minimum=2)
  dist = _internal.build(dist_builder, params, name, ("score", "log_prob"))
  log_joint = _internal.check_scalar_output(
    log_joint, jax.eval_shape(dist.sample, key), name, "log_joint"
  )
  xs, noise = jax.lax.stop_gradient(dist.sample_with_noise(key, (num_samples,)))
  del key
  log_p = jax.vmap(log_joint)(xs)
  log_q = jax.lax.stop_gradient(dist.log_prob(xs))
  if jnp.shape(log_q) != (num_samples,):
    raise ValueError(
      f"{name}: the distribution's log_prob must be a scalar per draw "
      f"(batch shape ()), got shape {jnp.shape(log_q)[1:]} per draw."
    )
  chex.assert_shape(log_p, (num_samples,))
  log_w = log_p - log_q.astype(log_p.dtype)
  _internal.check_finite(-log_w, name)
  weights = jax.lax.stop_gradient(vimco_weights(log_w))
  jacobians = estimators.noise_score_jacobians(
    params, dist_builder, noise, weights=weights
  )
  jacobians = _internal.poison_non_finite(jacobians, log_w, rows="batch")
  if return_costs:
    return jacobians, -log_w
  return jacobians
