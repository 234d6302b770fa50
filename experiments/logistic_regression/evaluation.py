r"""Measurements along training: the gradient variance, and the posterior.

* :func:`gradient_variance`, every ``variance_every`` steps: at the current
  parameters (and estimator state), :math:`R` = ``num_variance_replicates``
  independent estimates :math:`g_1..g_R` of the step's gradient -- the same
  estimator, the same 50 posterior draws, on the minibatch of the coming
  step (or, with ``variance_data="train_set"``, on the whole training set
  with scale 1, as DeepMind's ``mc_gradients`` measures it) -- and their
  per-coordinate variance from rgrad's moments engine
  (:func:`rgrad.diagnostics.moments`: chunked, float64 or compensated
  float32, sharded over every device and process), summed over the mean
  parameters (``variance_loc``) and over the log-scale parameters
  (``variance_log_scale``). This is the variance of what SGD receives,
  conditional on the minibatch, so it compares the estimators on their
  Monte Carlo noise alone; every estimator is measured the same way, its row
  structure (leave-one-out, an estimated coefficient) included. For
  ``score_function_cv_online`` the row also records the mean of its current
  coefficients.

  Each sum :math:`V = \operatorname{tr} S = \frac{1}{R-1}\sum_r \lVert g_r
  - \bar g\rVert^2` over a group's coordinates carries its standard error
  (``variance_loc_se``, ``variance_log_scale_se``): to leading order in
  :math:`1/R`, :math:`\mathrm{Var}(V) = \mathrm{Var}(\lVert g -
  \mu\rVert^2) / R`, the fourth-moment formula of the per-coordinate
  ``variance_stderr`` of the moments engine with the coordinates' cross
  moments included (summing per-coordinate errors would assume the
  coordinates independent, which they are not). It comes from a second
  pass of the engine over the same :math:`R` replicates (the same key, so
  the same draws) that streams :math:`d_r = \lVert g_r - \bar g\rVert^2`
  with :math:`\bar g` from the first pass: :math:`V = \frac{R}{R-1}
  \bar d` and :math:`\mathrm{SE}(V) = \frac{R}{R-1}\,\mathrm{SE}(\bar
  d)`.
* :func:`evaluate`, every ``eval_every`` steps, from ``num_eval_samples``
  posterior draws :math:`w_s \sim q` (the same noise at every step): the
  training-set ELBO by Monte Carlo and exactly (the expected log-likelihood
  by :func:`rgrad.exact.logistic_expected_log_likelihood`, the KL in closed
  form), and on the test set the log posterior predictive per point,
  :math:`\frac{1}{n}\sum_i \log \frac1S \sum_s p(y_i \mid x_i, w_s)`, and the
  accuracy of the predictive probability :math:`\frac1S \sum_s
  \sigma(w_s^\top x_i)` thresholded at 1/2.
"""

import functools
from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from experiments.logistic_regression import gradients
from experiments.logistic_regression import model
from experiments.logistic_regression import train
from rgrad import diagnostics
from rgrad import exact

VARIANCE_METRICS = (
  "variance_loc",
  "variance_loc_se",
  "variance_log_scale",
  "variance_log_scale_se",
  "cv_coefficient_loc",
  "cv_coefficient_log_scale",
)
EVALUATION_METRICS = (
  "elbo",
  "elbo_exact",
  "test_log_likelihood",
  "test_accuracy",
)


class VarianceChunk(NamedTuple):
  """The moments engine's ``chunk_fn``: `size` independent step gradients.

  Hashable by its field, so every measurement of one estimator reuses one
  compiled program.
  """

  hyper: train.Hyper

  def __call__(self, key: chex.PRNGKey, size: int, args: Any) -> Any:
    params, x, y, estimator_state = args
    hyper = self.hyper

    def one(k):
      grad, _ = gradients.negative_elbo_gradient(
        hyper.estimator,
        params,
        x,
        y,
        hyper.scale,
        k,
        hyper.num_samples,
        estimator_state,
        hyper.options,
      )
      return grad

    return jax.vmap(one)(jax.random.split(key, size))  # leaves [size, d]


class SpreadChunk(NamedTuple):
  """Second pass: ``d_r = |g_r - mean|^2`` per group, ``[size]`` leaves.

  Called with the key of :class:`VarianceChunk`'s pass, it sees the same
  replicates; ``args`` are that pass's and its mean.
  """

  hyper: train.Hyper

  def __call__(self, key: chex.PRNGKey, size: int, args: Any) -> Any:
    inner, mean = args
    g = VarianceChunk(self.hyper)(key, size, inner)
    return jax.tree.map(
      lambda a, m: jnp.sum(jnp.square(a - m), axis=-1), g, mean
    )


_minibatch = jax.jit(train.minibatch, static_argnames="batch_size")


def gradient_variance(
  state: train.TrainState,
  x: jax.Array,
  y: jax.Array,
  measure_key: chex.PRNGKey,
  hyper: train.Hyper,
  num_replicates: int,
  chunk_size: int,
  on_train_set: bool = False,
) -> dict[str, float | None]:
  """The variance row at `state` (module docstring).

  With `on_train_set`, the cost is the whole training set's (scale 1)
  instead of the coming minibatch's: the variance of the full-data
  gradient estimate, the one DeepMind's ``mc_gradients`` records.

  Called outside ``jax.jit``: the moments engine takes host values, so that
  the same call runs across processes.
  """
  if on_train_set:
    xb, yb = x, y
    hyper = hyper._replace(batch_size=x.shape[0])  # scale N / N = 1
  else:
    xb, yb = _minibatch(state.key, state.step, x, y, hyper.batch_size)
  key = jax.random.fold_in(measure_key, state.step)
  args = (state.params, xb, yb, state.estimator_state)
  m = diagnostics.moments(
    VarianceChunk(hyper), key, num_replicates, args, chunk_size=chunk_size
  )
  # The same key: the same replicates, now their squared distances.
  spread = diagnostics.moments(
    SpreadChunk(hyper),
    key,
    num_replicates,
    (args, m.mean),
    chunk_size=chunk_size,
  )
  del key
  bessel = num_replicates / (num_replicates - 1)
  row = {
    "variance_loc": float(np.sum(m.variance["loc"])),
    "variance_loc_se": bessel * float(spread.stderr["loc"]),
    "variance_log_scale": float(np.sum(m.variance["log_scale"])),
    "variance_log_scale_se": bessel * float(spread.stderr["log_scale"]),
    "cv_coefficient_loc": None,
    "cv_coefficient_log_scale": None,
  }
  if hyper.estimator == "score_function_cv_online":
    c = gradients.online_coefficient(state.estimator_state)
    row["cv_coefficient_loc"] = float(np.mean(c["loc"]))
    row["cv_coefficient_log_scale"] = float(np.mean(c["log_scale"]))
  return row


@functools.partial(jax.jit, static_argnames=("num_samples", "num_points"))
def evaluate(
  params: model.Params,
  key: chex.PRNGKey,
  train_data: tuple[jax.Array, jax.Array],
  test_data: tuple[jax.Array, jax.Array],
  num_samples: int,
  num_points: int,
) -> dict[str, jax.Array]:
  """The evaluation row's metrics at `params` (module docstring)."""
  x, y = train_data
  x_test, y_test = test_data
  w = model.posterior(params).sample(key, (num_samples,))  # [S, d]
  kl = model.kl_divergence(params)
  elbo = jnp.mean(jnp.sum(model.log_likelihood(w, x, y), axis=-1)) - kl
  expected, _ = exact.logistic_expected_log_likelihood(
    params["loc"], params["log_scale"], x, y, num_points=num_points
  )
  log_p = model.log_likelihood(w, x_test, y_test)  # [S, n_test]
  log_predictive = jax.nn.logsumexp(log_p, axis=0) - jnp.log(num_samples)
  probability = jnp.mean(jax.nn.sigmoid(w @ x_test.T), axis=0)  # P(y = 1)
  return {
    "elbo": elbo,
    "elbo_exact": expected - kl,
    "test_log_likelihood": jnp.mean(log_predictive),
    "test_accuracy": jnp.mean((probability > 0.5) == (y_test > 0.5)),
  }
