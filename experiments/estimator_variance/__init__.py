r"""Variance of Monte Carlo gradient estimators across cost functions.

Reproduces Figures 2 and 3 of Mohamed et al. (2020), Section 3: for
:math:`X \sim N(\mu, \sigma^2)` at :math:`\mu = \sigma = 1` and the costs
:math:`(x - k)^2`, :math:`\exp(-k x^2)` and :math:`\cos(k x)`
(:mod:`.costs`), the variance of the single-sample estimators of
:math:`\partial_\mu E[f]` and :math:`\partial_\sigma E[f]` against
:math:`k`, for the pathwise, score-function, score-function with the
delta-method control variate (coefficient from a pilot batch) and
measure-valued estimators, selected from :data:`rgrad.ESTIMATORS`
(:mod:`.adapters`).

Every empirical mean and variance (``num_samples`` draws, streamed by
:mod:`rgrad.diagnostics`' engine, :mod:`.sweeps`) is compared with the exact
gradient and exact single-sample variance by quadrature (:mod:`rgrad.exact`,
which shares no code with the estimators; :mod:`.references`), with a
z-score whose standard error comes from the samples themselves
(:mod:`.records`).

The figures show what the paper shows: for :math:`(x - k)^2` the pathwise
variance of the :math:`\mu`-gradient is flat in :math:`k` (it is
:math:`4\sigma^2`; the :math:`\sigma`-gradient's is
:math:`4(\mu - k)^2 + 8\sigma^2`) while the score-function variance grows
like :math:`k^4`; for :math:`\cos(k x)` the pathwise variance grows with
:math:`k` (like :math:`k^2`) while the score-function variance stays bounded
(the cost does).

Beyond the paper:

* ``dim_sweep``: the cost summed over the ``d`` coordinates of a diagonal
  Gaussian. The pathwise and measure-valued estimators of
  :math:`\partial_{\mu_1}` only see :math:`x_1`, so their variance does not
  depend on ``d``; the score function multiplies the *whole* cost by the
  score of :math:`x_1`, so its variance grows linearly in ``d``, and the
  total variance (over all ``2 d`` parameters) quadratically.
* ``sigma_sweep``: the variance against the scale :math:`\sigma` at a fixed
  :math:`k` per cost, in the k grid's program.
* The measured time per sample of each estimator, for the work-normalized
  variance (variance x time), which compares estimators at equal compute.

Layout: :mod:`.experiment` (``run``), :mod:`.parsing` (config checks),
:mod:`.costs`, :mod:`.adapters`, :mod:`.sweeps`, :mod:`.references`,
:mod:`.records`, :mod:`.outputs`, :mod:`.plotting` and :mod:`.schema`.

Outputs in ``workdir`` (fields and types in :mod:`.schema`, which the tests
check against a real run): ``results.json`` (deterministic: the same config
gives the same bytes), ``timings.json``, ``results.csv``,
``sigma_sweep.csv``, ``dim_sweep.csv``, the figures of :mod:`.plotting` and
a table on stdout.

Usage: see `experiments/configs/estimator_variance.py`.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3, Figures
  2-3; Sections 4-7).
"""

from experiments.estimator_variance.experiment import run

__all__ = ("run",)
