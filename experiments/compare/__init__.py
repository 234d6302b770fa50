r"""Compare every applicable estimator on a user's problem.

``make_problem()`` in an importable module returns ``(function, params,
dist_builder)``; the command runs :func:`rgrad.compare` on it and writes the
table to stdout and ``compare.json``, ``compare.csv`` and ``compare.png`` to
the workdir::

  python -m experiments.compare \
    --config.problem=experiments.configs.compare_problems:logistic_elbo \
    --workdir=/tmp/rgrad/compare

``config.reference`` says what the bias is measured against: ``"exact"``
(the problem module's ``<make_problem>_gradient(params)``, the default),
``"lowest_variance_100x"``, ``"none"``, or ``"module:gradient"``. Progress
is logged per estimator.

See :mod:`rgrad.compare` for what is measured (Mohamed et al. 2020,
Section 3, https://arxiv.org/abs/1906.10652).
"""

from experiments.compare.experiment import load_callable
from experiments.compare.experiment import load_problem
from experiments.compare.experiment import load_reference
from experiments.compare.experiment import run

__all__ = ("load_callable", "load_problem", "load_reference", "run")
