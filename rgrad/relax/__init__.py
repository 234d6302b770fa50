r"""REBAR and RELAX: score function estimators with learned relaxed controls.

For Bernoulli draws :math:`b = H(z)`, :math:`z = \eta + \log u - \log(1-u)`,
:math:`u \sim U(0, 1)` (:class:`rgrad.Bernoulli`), and a second uniform
:math:`v` that makes :math:`\tilde z \sim p(z \mid b)`
(``conditional_relaxed_logits``), every differentiable surrogate
:math:`c(z)` of the cost gives an unbiased estimator of
:math:`\nabla_\eta E_{p(b;\eta)}[f(b)]`,

.. math:: \hat g = \big[f(b) - c(\tilde z)\big]\,\nabla_\eta \log p(b)
          + \nabla_\eta c(z) - \nabla_\eta c(\tilde z),

with :math:`z` and :math:`\tilde z` differentiated through :math:`\eta` at
fixed noise :math:`(u, v)` and :math:`c(\tilde z)` held constant in the
first term. It is unbiased because the reparameterized :math:`z` and the
two-step :math:`b \sim p(b)`, :math:`\tilde z \sim p(z \mid b)` have the same
law, so :math:`\nabla_\eta E[c(z)] = E[\nabla_\eta c(z)]
= E[c(\tilde z) \nabla_\eta \log p(b)] + E[\nabla_\eta c(\tilde z)]`: the
three terms with :math:`c` have mean zero for *every* :math:`c`.

* **REBAR** (Tucker et al. 2017): :math:`c(z) = \eta_c\,
  f(\sigma(z / \lambda))`, the cost at the binary concrete relaxation with
  temperature :math:`\lambda` and scale :math:`\eta_c` (the paper's
  :math:`\eta`; here ``scale``, since :math:`\eta` are the logits).
* **RELAX** (Grathwohl et al. 2018, Section 3.2, discrete variables):
  :math:`c_\phi(z) = \eta_c\, f(\sigma(z/\lambda)) + r_\rho(z)`, REBAR's term
  plus a Flax (``linen``) MLP :math:`r_\rho` of the relaxed logits (or the
  network alone, ``rebar_term=False``).

**Learning the control.** Since :math:`E\hat g` is the gradient for every
:math:`\phi = (\log\lambda, \eta_c, \rho)`,

.. math:: \frac{\partial}{\partial\phi}\mathrm{Var}(\hat g)
          = \frac{\partial}{\partial\phi} E\big[\lVert\hat g\rVert^2\big]
          - \frac{\partial}{\partial\phi}\lVert E\hat g\rVert^2
          = E\Big[\frac{\partial \lVert\hat g\rVert^2}{\partial\phi}\Big]

(Grathwohl et al. 2018, Section 3.1; Tucker et al. 2017 adapt their scale
and temperature by the same identity), and each call estimates it by
:math:`\partial_\phi \frac1n \sum_k \lVert\hat g_k\rVert^2` over its own
draws, the norm taken over the returned estimates (on ``params``, after the
pull-back). :func:`rebar` and
:func:`relax` are :class:`rgrad.base.StatefulEstimator` s: ``estimate``
returns the estimates computed with the control of its input state (which
depends only on earlier calls' draws, so they stay unbiased), then one Optax
step of that variance gradient, from the same draws, gives the new state.

**The cost** must be a JAX-traceable function, differentiable at relaxed
draws in :math:`(0, 1)^d` (twice, for the control's update: the update
differentiates :math:`\nabla_\eta f(\sigma(z/\lambda))` in
:math:`\lambda`), and its value at the binary points must be the cost of the
draw. A cost that only works on 0/1 (a table lookup ``table[b.astype(int)]``)
or is flat between them (``jnp.round``) breaks the identity above and biases
the estimate; one that cannot be traced, or returns an integer, raises.

References:
  Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR: Low-variance,
  unbiased gradient estimates for discrete latent variable models. NeurIPS
  2017, https://arxiv.org/abs/1703.07370.
  Grathwohl, Choi, Wu, Roeder, Duvenaud. Backpropagation through the Void:
  Optimizing control variates for black-box gradient estimation. ICLR 2018,
  https://arxiv.org/abs/1711.00123.
"""

from rgrad.relax._core import CAPABILITIES
from rgrad.relax._core import RebarControl
from rgrad.relax._core import RelaxControl
from rgrad.relax._core import rebar_jacobians
from rgrad.relax._core import relax_jacobians
from rgrad.relax._stateful import RelaxState
from rgrad.relax._stateful import rebar
from rgrad.relax._stateful import relax

__all__ = (
  "CAPABILITIES",
  "RebarControl",
  "RelaxControl",
  "RelaxState",
  "rebar",
  "rebar_jacobians",
  "relax",
  "relax_jacobians",
)
