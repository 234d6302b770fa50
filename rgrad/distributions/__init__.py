r"""Distributions with hand-derived scores, as pure pytrees.

The Monte Carlo gradient estimators ask a distribution :math:`p(x; \theta)`
for *capabilities* (:data:`rgrad.base.CAPABILITIES`), each a method or two, so
that adding a distribution is one class with the methods it can support:

* ``sample(key, sample_shape)``: draws; with ``reparameterized = True`` the
  draws are differentiable functions of the parameters (the *pathwise* or
  reparameterization trick, explicit or implicit);
* ``log_prob(x)``: :math:`\log p(x; \theta)`, summed over the event axis;
* ``score``: :math:`\nabla_\theta \log p(x; \theta)` derived by hand and
  returned as a pytree of the same class, one leaf per parameter, with
  ``sample_with_noise``/``score_from_noise`` (the draws together with the noise
  :math:`\epsilon` they are computed from, and the weighted scores as
  functions of :math:`\epsilon`: for the Gaussians the standardized draw is
  :math:`\epsilon` itself, so the score needs no :math:`(x - \mu)/\sigma`, no
  cancellation and no triangular solve) and ``batch_score`` (at given draws);
* ``weak_derivatives(key, num_samples, coupling)``: per field, the two parts of
  :math:`\partial_{\theta_i} p = c_i (p_i^+ - p_i^-)` as draws
  (:class:`WeakDerivative`; the diagonal Gaussians);
* ``mean_and_covariance()``: in closed form (the delta-method control variate;
  the Gaussians);
* ``reflect(x)``: a measure-preserving reflection :math:`x \mapsto 2\mu - x`
  (antithetic sampling; the Gaussians);
* ``sample_from_uniform(u)``: binary draws :math:`1[u > \sigma(-\eta)]` of
  uniform noise, so that :math:`1 - u` gives the antithetic draw (ARM and
  DisARM; ``Bernoulli``);
* ``relaxed_sample(noise, temperature)``: the concrete (Gumbel-softmax)
  relaxation of the draw made from ``noise`` (``Bernoulli``,
  ``OneHotCategorical``), and for ``Bernoulli`` the relaxed logits
  ``relaxed_logits(u)`` and their conditional draw given the discrete one,
  ``conditional_relaxed_logits(b, v)`` (REBAR, RELAX).

Each distribution is a registered pytree whose leaves are its parameters, so it
passes through ``jax.jit``, ``jax.vmap`` and ``jax.vjp`` like any other array
container, and a distribution-shaped pytree doubles as a cotangent: the score
function estimator pulls ``score(x)`` back to arbitrary ``params`` with the VJP
of ``dist_builder``.

Shapes follow the usual convention: ``sample`` returns
``[*sample_shape, *batch_shape, *event_shape]`` and ``log_prob`` returns
``[*sample_shape, *batch_shape]``. The factorized distributions (``Normal``,
``LogScaleNormal``, ``Bernoulli``, ``Gamma``) treat the last axis of their
parameters as the event axis (a scalar parameter has an empty event).

Parameters are validated at construction: shapes always (they are static under
``jit``), values (positive scales, ...) whenever they are concrete, i.e. outside
``jit``/``vmap``. Pytree operations (``jax.tree.map``, unflattening inside
transformations, cotangents) bypass validation on purpose: a score or a
cotangent is distribution-shaped but its "scale" leaf may be negative.

The code lives in private modules by topic, behind this public face:
``_base`` (:class:`Distribution`, :class:`WeakDerivative` and the shared
parameter checks), ``_gaussians``, ``_discrete`` (``Bernoulli``,
``Categorical``, ``OneHotCategorical``) and ``_gamma``.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Sections 4-5, Table 1).
  Figurnov, Mohamed, Mnih. Implicit Reparameterization Gradients. NeurIPS 2018,
  https://arxiv.org/abs/1805.08498 (the Gamma pathwise gradient).
"""

from rgrad.distributions._base import Distribution
from rgrad.distributions._base import SampleShape
from rgrad.distributions._base import WeakDerivative
from rgrad.distributions._discrete import Bernoulli
from rgrad.distributions._discrete import Categorical
from rgrad.distributions._discrete import OneHotCategorical
from rgrad.distributions._gamma import Gamma
from rgrad.distributions._gaussians import LogScaleNormal
from rgrad.distributions._gaussians import MultivariateNormalTriL
from rgrad.distributions._gaussians import Normal

__all__ = (
  "Bernoulli",
  "Categorical",
  "Distribution",
  "Gamma",
  "LogScaleNormal",
  "MultivariateNormalTriL",
  "Normal",
  "OneHotCategorical",
  "SampleShape",
  "WeakDerivative",
)
