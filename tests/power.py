r"""The power of the suite's Monte Carlo tests, stated and asserted.

A test that accepts :math:`|\bar g - g| < 5\,\mathrm{SE}` with
:math:`\mathrm{SE} = \sqrt{\mathrm{Var}/n}` passes every bias smaller than

.. math:: b_{\min} = 5 \sqrt{\mathrm{Var} / n},

so :math:`b_{\min}` is the smallest bias it *detects*; :math:`b_{\min} /
|g|` is the smallest relative bias (an estimator scaled by :math:`1 +
\delta` has bias :math:`\delta g`). The suite's rule: every statistical test
sizes :math:`n` from the single-sample variance (exact where a closed form or
:mod:`rgrad.exact` gives it) so that :math:`b_{\min} \le 5\%` of
:math:`|g|` for the score-function family and :math:`\le 1\%` for the
pathwise family, or says in a comment why not and what it detects instead; a
coordinate whose exact gradient is (near) zero gets an absolute statement.

:func:`assert_detects` turns that statement into a check, so that a later
change of sizes or parameters that loses the power a comment claims fails
loudly instead of silently testing less. A variance compared with its exact
value has the same structure, with the variance's own standard error
(from the fourth moment) in place of SE: :func:`assert_variance`.

This module is imported by the test files (``from tests import power``);
its name does not end in ``_test``, so pytest does not collect it.
"""

import numpy as np

from rgrad import exact

NUM_STDERRS = 5.0
# The suite's targets for the smallest detectable relative bias.
SCORE_FUNCTION_POWER = 0.05
PATHWISE_POWER = 0.01


def detectable_bias(variance, num_samples):
  """The smallest bias a 5-SE test on `num_samples` draws detects.

  Args:
    variance: single-sample variance(s) of the estimator (array-like).
    num_samples: the number of i.i.d. samples averaged.

  Returns:
    ``5 sqrt(variance / num_samples)``, elementwise.
  """
  return NUM_STDERRS * np.sqrt(np.asarray(variance, np.float64) / num_samples)


def assert_detects(variance, gradient, num_samples, rel, *, floor=0.0, what=""):
  """Asserts that the test detects a relative bias `rel` on every coordinate.

  Every coordinate must satisfy ``5 sqrt(variance / n) <= max(rel |g|,
  floor)``: a relative statement where the gradient is away from zero and
  the absolute one, `floor`, where it is not (state both in the test).

  Args:
    variance: single-sample variance per coordinate (exact, or as the
      comment says where it comes from).
    gradient: the exact gradient, broadcastable against `variance`.
    num_samples: i.i.d. samples averaged by the test.
    rel: the relative bias the test claims to detect.
    floor: the absolute bias it claims to detect where ``rel |g|`` is
      smaller.
    what: a label for the message.

  Returns:
    The detectable relative bias ``5 SE / |g|`` per coordinate (inf where
    g = 0), for reports.

  Raises:
    AssertionError: where a coordinate's detectable bias exceeds its bound.
  """
  detectable = detectable_bias(variance, num_samples)
  gradient = np.abs(np.asarray(gradient, np.float64))
  bound = np.maximum(rel * gradient, floor)
  if not np.all(detectable <= bound):
    raise AssertionError(
      f"{what}: {num_samples} samples detect only a bias of\n "
      f"{detectable}\n against the claimed max({rel} |g|, {floor}) =\n "
      f"{bound}\n (|g| = {gradient})."
    )
  with np.errstate(divide="ignore"):
    return detectable / gradient


def assert_unbiased(mean, stderr, gradient, *, what="", roundoff=1e-9):
  """|mean - g| < 5 SE per coordinate (SE from the samples themselves).

  Args:
    mean: the Monte Carlo mean.
    stderr: its standard error, estimated from the same samples.
    gradient: the exact value.
    what: a label for the message.
    roundoff: relative slack for estimates with no variance (stderr 0),
      which must then equal `gradient` to rounding.
  """
  mean, stderr = np.asarray(mean), np.asarray(stderr)
  gradient = np.asarray(gradient, np.float64)
  bound = NUM_STDERRS * stderr + roundoff * (1.0 + np.abs(gradient))
  if not np.all(np.abs(mean - gradient) < bound):
    raise AssertionError(
      f"{what}: biased beyond 5 standard errors:\n mean={mean}\n "
      f"exact={gradient}\n stderr={stderr}"
    )


def assert_variance(variance, variance_stderr, exact_variance, *, what=""):
  """|variance - exact| < 5 SE(variance), per coordinate.

  The standard error of a sample variance comes from the fourth central
  moment (:attr:`rgrad.diagnostics.GradientMoments.variance_stderr`). An
  exact variance of zero demands a measured one at roundoff.

  Returns:
    The relative variance error the test detects, ``5 SE / exact``.
  """
  variance = np.asarray(variance)
  variance_stderr = np.asarray(variance_stderr)
  exact_variance = np.asarray(exact_variance, np.float64)
  bound = NUM_STDERRS * variance_stderr + 1e-20
  if not np.all(np.abs(variance - exact_variance) < bound):
    raise AssertionError(
      f"{what}: variance {variance} vs exact {exact_variance} (5 SE = {bound})"
    )
  with np.errstate(divide="ignore", invalid="ignore"):
    return NUM_STDERRS * variance_stderr / exact_variance


def additive_score_function_variance(f, loc, scale, *, baseline=0.0):
  r"""Exact score-function variances for :math:`F(x) = \sum_i f_i(x_i)`.

  :math:`x_i \sim N(\mu_i, \sigma_i^2)` independent, coordinates not
  necessarily alike (:func:`rgrad.exact.additive_score_function_variance`
  takes identical ones). Coordinate :math:`j`'s estimate is :math:`(F - b)
  s_j(x_j)` with :math:`R_j = \sum_{i \ne j} f_i(x_i)` independent of
  :math:`x_j`, so with :math:`m_R, v_R` its mean and variance,

  .. math:: \mathrm{Var}[(F - b) s_j] = \mathrm{Var}[(f_j + m_R - b) s_j]
            + v_R\, E[s_j^2],

  :math:`E s_\mu^2 = 1/\sigma^2`, :math:`E s_\sigma^2 = 2/\sigma^2`; the
  first term is :func:`rgrad.exact.score_function_variance` with baseline
  :math:`b - m_R`.

  Args:
    f: a scalar cost ``x -> f(x)`` shared by every coordinate, or a
      sequence of ``d`` of them, one per coordinate.
    loc, scale: ``[d]`` arrays.
    baseline: a constant subtracted from F.

  Returns:
    ``(var_loc [d], var_scale [d])``.
  """
  loc, scale = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
  d = loc.shape[0]
  one = [f] * d if callable(f) else list(f)
  moments = [exact.cost_mean_and_variance(g, m, s) for g, m, s in
             zip(one, loc, scale, strict=True)]  # fmt: skip
  means = np.array([float(m) for m, _ in moments])
  variances = np.array([float(v) for _, v in moments])
  var_loc, var_scale = np.zeros(d), np.zeros(d)
  for j in range(d):
    m_rest = means.sum() - means[j]
    v_rest = variances.sum() - variances[j]
    own = exact.score_function_variance(
      one[j], loc[j], scale[j], baseline=baseline - m_rest
    )
    var_loc[j] = float(own.loc) + v_rest / scale[j] ** 2
    var_scale[j] = float(own.scale) + 2.0 * v_rest / scale[j] ** 2
  return var_loc, var_scale
