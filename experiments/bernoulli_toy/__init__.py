r"""The REBAR/RELAX Bernoulli toy: optimise theta with each discrete estimator.

:math:`b \sim \mathrm{Bernoulli}(\sigma(\theta))`, :math:`f(b) = (b - t)^2`
for :math:`t \in \{0.45, 0.49, 0.499\}`; minimise
:math:`E[f(b)] = (1-p)t^2 + p(1-t)^2`, :math:`p = \sigma(\theta)`, whose
optimum for :math:`t < 1/2` is :math:`b = 0` (:math:`p \to 0`). The true
gradient :math:`p(1-p)(1-2t)` is tiny next to the cost, so the score
function (REINFORCE) is dominated by noise while the control-variate
estimators are not: Figure 1 of Grathwohl et al. (2018) and Section 6.1 of
Tucker et al. (2017). Adam (optax), lr 0.01, :math:`\theta_0 = 0`, one latent,
the smallest number of draws per step each estimator takes (one; one pair
for ARM/DisARM; K = 2 for leave-one-out), every estimator taken by name from
rgrad's registry (:func:`rgrad.get_estimator`)::

  python -m experiments.bernoulli_toy --workdir=/tmp/rgrad/bernoulli_toy

Every ``log_every`` steps the runs record theta, p, the exact loss, and the
mean and variance of the step's gradient estimate measured from fresh draws
at the current theta, beside the exact mean and variance there
(:mod:`rgrad.exact`; none for RELAX's learned network).

Layout: :mod:`.validation` (config checks), :mod:`.train` (the scanned,
vmapped, jitted program), :mod:`.references` (exact curves),
:mod:`.outputs` (results.json/csv and its schema), :mod:`.checks` (the
expected orderings), :mod:`.plots`, :mod:`.experiment` (``run``).

With Adam, estimators whose estimate is (1 - 2t) times a function of the
draws alone (ARM, DisARM, leave-one-out: for one Bernoulli
:math:`f(1) - f(0) = 1 - 2t`) take the same steps for every t, up to Adam's
epsilon: their p curves coincide across the panels.

References:
  Grathwohl, Choi, Wu, Roeder, Duvenaud. Backpropagation through the Void.
  ICLR 2018, https://arxiv.org/abs/1711.00123 (Figure 1).
  Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein. REBAR. NeurIPS 2017,
  https://arxiv.org/abs/1703.07370 (Section 6.1).
  Yin and Zhou. ARM. ICLR 2019, https://arxiv.org/abs/1807.11143.
  Dong, Mnih and Tucker. DisARM. NeurIPS 2020,
  https://arxiv.org/abs/2006.10680.
"""

from experiments.bernoulli_toy import outputs
from experiments.bernoulli_toy.experiment import run
from experiments.bernoulli_toy.outputs import SCHEMA_VERSION
from experiments.bernoulli_toy.outputs import validate
from experiments.bernoulli_toy.validation import validate_config

__all__ = ("SCHEMA_VERSION", "outputs", "run", "validate", "validate_config")
