r"""A VAE on binarized digits trained with several encoder-gradient estimators.

Model (Kingma and Welling, 2014): a standard normal prior
:math:`p(z) = N(0, I_L)`, a Bernoulli decoder
:math:`p_\theta(x \mid z) = \mathrm{Bernoulli}(\mathrm{logits} = D_\theta(z))`
over the 64 pixels, and a diagonal-Gaussian encoder
:math:`q_\phi(z \mid x) = N(\mu_\phi(x), \mathrm{diag}\,e^{2 s_\phi(x)})`, both
MLPs (``flax.linen`` modules used as pure ``init``/``apply`` functions over
explicit parameter pytrees), trained with Optax Adam.

Gradients. The decoder gradient is pathwise in every case. The encoder
gradient is where the estimators differ; all come from :mod:`rgrad`. Each one
returns per-sample jacobians of a cost with respect to the encoder *outputs*
:math:`(\mu, s)` of one data point (vmapped over the batch); their mean over
samples is a cotangent that ``jax.vjp`` of the encoder pulls back to
:math:`\phi` -- one backward pass through the network per step, whatever the
estimator.

With :math:`\mathrm{ELBO} = E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p)`:

* ``pathwise``, ``score_function``, ``leave_one_out``: the KL between two
  Gaussians is closed-form, so its gradient is exact,
  :math:`\partial_\mu \mathrm{KL} = \mu`,
  :math:`\partial_s \mathrm{KL} = e^{2s} - 1`, and the estimator only sees the
  reconstruction cost :math:`f(z) = -\log p_\theta(x \mid z)`, which does not
  depend on :math:`\phi`: exactly the setting of
  :func:`rgrad.estimators.pathwise_jacobians` /
  :func:`rgrad.estimators.score_function_jacobians` (with the moving-average
  baseline of :mod:`rgrad.control_variates`) /
  :func:`rgrad.control_variates.leave_one_out_jacobians`. All three estimate
  the same gradient, so their comparison isolates the estimator.

  Why not put :math:`\log q_\phi(z)` into the score-function cost? The
  integrand :math:`c_\phi(z) = \log q_\phi(z) - \log p(x, z)` depends on
  :math:`\phi` itself, and :math:`\nabla_\phi E_{q_\phi}[c_\phi] =
  E_q[c_\phi(z) \nabla_\phi \log q_\phi(z)] + E_q[\nabla_\phi \log q_\phi(z)]`.
  The second term vanishes in expectation (the score has mean zero), so the
  score-function estimator with :math:`c` *evaluated at the current, fixed*
  :math:`\phi` is unbiased too -- but it only adds noise where an exact
  answer exists; differentiating :math:`c_\phi` through the sample as well
  would double-count. The estimators that *do* keep the Monte Carlo entropy
  term handle it explicitly:
* ``stl``: sticking the landing (Roeder et al., 2017),
  :func:`rgrad.variational.stl_jacobians` on the whole ELBO integrand
  :math:`\log p(x, z) - \log q_{\bar\phi}(z)`, with the score term dropped.
* ``dreg``: doubly-reparameterized gradients (Tucker et al., 2019),
  :func:`rgrad.variational.dreg_jacobians`, for the :math:`K`-sample
  importance-weighted bound (Burda et al., 2016), which ``dreg`` trains
  (decoder included) instead of the ELBO.

The decoder uses its own reparameterized draws
:math:`z \sim q_\phi(\cdot \mid x)` (independent of the encoder estimator's,
which the :mod:`rgrad` estimators draw internally), under ``stop_gradient``;
its gradient is ``jax.grad`` of the objective in :math:`\theta`.

Randomness. ``key = jax.random.key(config.seed)`` is split once into init,
train, eval and measurement keys. Step :math:`t` uses ``fold_in(train_key, t)``
for its minibatch and draws, evaluation uses one fixed key, and the variance
measurement at step :math:`t` uses ``fold_in(measure_key, t)``: there is no
hidden state, so a run resumed from a checkpoint retraces the uninterrupted
run bit for bit. With ``estimator="all"`` every estimator starts from the same
initial parameters and sees the same minibatches.

Diagnostics (every ``log_every`` steps, jitted): train ELBO (whole train set)
and test ELBO and IWAE bound (``num_eval_samples`` draws per point, fixed
key); and, from :math:`R` = ``num_variance_replicates`` independent estimates
:math:`g_1..g_R` of the encoder gradient at the current parameters (vmapped
over keys, fixed batch of ``variance_batch_size`` training points, the same
:math:`K`), the total variance
:math:`\sum_j \widehat{\mathrm{Var}}(g_{\cdot j})` summed over all encoder
parameters :math:`j`, and the signal-to-noise ratio
:math:`\|\bar g\|_2 / \sqrt{\sum_j \widehat{\mathrm{Var}}(g_{\cdot j})}`.

Outputs in ``workdir``:

* ``metrics.json``::

    {"schema_version": 1,
     "config": {...},                       # the config used
     "estimators": ["pathwise", ...],       # the ones trained, in order
     "data": {"num_train": int, "num_test": int, "dim": 64},
     "history": {                           # per estimator, one row per log
       "<estimator>": [
         {"step": int,                      # optimizer steps taken
          "wall_time_s": float,             # training time so far (excludes
                                            # compilation and evaluation)
          "train_elbo": float,              # nats per image, whole train set
          "test_elbo": float,               # nats per image, test set
          "test_iwae": float,               # IWAE bound, num_eval_samples
          "grad_variance": float,           # trace of the encoder-gradient
                                            # covariance (sum over params)
          "grad_snr": float,                # ||mean|| / sqrt(grad_variance)
          "baseline": float}, ...]},        # moving-average baseline value
     "final": {"<estimator>": {<last row>}}}

* ``metrics.csv``: the history rows, one per (estimator, step), with columns
  ``estimator, step, wall_time_s, train_elbo, test_elbo, test_iwae,
  grad_variance, grad_snr, baseline``.
* ``elbo.png`` (test/train ELBO vs step and test ELBO vs wall-clock),
  ``grad_variance.png`` (variance and SNR vs step, log scale),
  ``reconstructions.png`` (test digits and each estimator's reconstructions),
  ``samples.png`` (decoder means of prior draws, one row per estimator).
* ``<estimator>/checkpoints/``: orbax checkpoints (params, optimizer state,
  baseline state, step, key) every ``checkpoint_every`` steps and at the end.

References:
  Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014,
  https://arxiv.org/abs/1312.6114.
  Mohamed et al., Monte Carlo Gradient Estimation in Machine Learning, JMLR
  2020, https://arxiv.org/abs/1906.10652 (Sections 4, 5, 7.4, 9.3).
  Roeder, Wu and Duvenaud, NeurIPS 2017, https://arxiv.org/abs/1703.09194.
  Tucker, Lawson, Gu and Maddison, ICLR 2019, https://arxiv.org/abs/1810.04152.
  Burda, Grosse and Salakhutdinov, ICLR 2016, https://arxiv.org/abs/1509.00519.
"""

import csv
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from experiments.common import launch
from rgrad import control_variates
from rgrad import distributions
from rgrad import estimators
from rgrad import variational

ESTIMATORS = ("pathwise", "score_function", "leave_one_out", "stl", "dreg")
METRIC_FIELDS = (
  "step",
  "wall_time_s",
  "train_elbo",
  "test_elbo",
  "test_iwae",
  "grad_variance",
  "grad_snr",
  "baseline",
)
SCHEMA_VERSION = 1

Params = Any


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def load_digits_binarized(
  test_fraction: float = 0.2, seed: int = 0, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
  """sklearn's 8x8 digits, scaled to [0, 1], binarized and split.

  Any loader returning `(train, test)` float arrays `[n, dim]` of 0s and 1s
  can replace this one (e.g. binarized MNIST, `dim = 784`).

  Args:
    test_fraction: fraction of the 1797 images held out, in (0, 1).
    seed: seed of the (NumPy, host-side) permutation that splits the data.
    threshold: pixels with scaled intensity > threshold become 1.

  Returns:
    `(train, test)`, float32 arrays `[n_train, 64]` and `[n_test, 64]`.
  """
  from sklearn import datasets  # Only the data loader needs scikit-learn.

  images = datasets.load_digits().data / 16.0  # [1797, 64], in [0, 1]
  binary = (images > threshold).astype(np.float32)
  permutation = np.random.default_rng(seed).permutation(len(binary))
  num_test = int(round(test_fraction * len(binary)))
  test, train = np.split(binary[permutation], [num_test])
  return train, test


# ---------------------------------------------------------------------------
# Model.
# ---------------------------------------------------------------------------


class Encoder(nn.Module):
  """x `[..., dim]` -> (loc, log_scale), each `[..., latent_dim]`."""

  hidden_dim: int
  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = nn.tanh(nn.Dense(self.hidden_dim)(x))
    out = nn.Dense(2 * self.latent_dim)(h)
    loc, log_scale = jnp.split(out, 2, axis=-1)
    return loc, log_scale


class Decoder(nn.Module):
  """z `[..., latent_dim]` -> Bernoulli logits `[..., dim]`."""

  hidden_dim: int
  data_dim: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = nn.tanh(nn.Dense(self.hidden_dim)(z))
    return nn.Dense(self.data_dim)(h)


class Model(NamedTuple):
  """Pure functions of explicit parameter pytrees."""

  encode: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
  decode: Callable[[Params, jax.Array], jax.Array]
  init: Callable[[chex.PRNGKey], Params]


def make_model(latent_dim: int, hidden_dim: int, data_dim: int) -> Model:
  """The encoder/decoder MLPs as pure functions of parameter pytrees."""
  encoder = Encoder(hidden_dim, latent_dim)
  decoder = Decoder(hidden_dim, data_dim)

  def init(key: chex.PRNGKey) -> Params:
    k_enc, k_dec = jax.random.split(key)
    return {
      "encoder": encoder.init(k_enc, jnp.zeros((data_dim,)))["params"],
      "decoder": decoder.init(k_dec, jnp.zeros((latent_dim,)))["params"],
    }

  return Model(
    encode=lambda p, x: encoder.apply({"params": p}, x),
    decode=lambda p, z: decoder.apply({"params": p}, z),
    init=init,
  )


def _posterior(q_params: dict[str, jax.Array]) -> distributions.LogScaleNormal:
  return distributions.LogScaleNormal(q_params["loc"], q_params["log_scale"])


def _log_likelihood(model, decoder_params, x, z):
  """log p(x | z) for one image x `[dim]` and one latent z `[latent_dim]`."""
  return distributions.Bernoulli(model.decode(decoder_params, z)).log_prob(x)


def _log_joint(model, decoder_params, x, z):
  """log p(x, z) = log p(x | z) + log N(z; 0, I)."""
  prior = distributions.Normal(jnp.zeros_like(z), jnp.ones_like(z))
  return _log_likelihood(model, decoder_params, x, z) + prior.log_prob(z)


def _gaussian_kl(loc, log_scale):
  """KL(N(loc, e^{2 log_scale}) || N(0, I)), summed over the last axis."""
  return 0.5 * jnp.sum(
    jnp.square(loc) + jnp.exp(2.0 * log_scale) - 1.0 - 2.0 * log_scale, -1
  )


# ---------------------------------------------------------------------------
# Encoder gradient: per-datapoint estimator, pulled back through the encoder.
# ---------------------------------------------------------------------------


def _encoder_cotangent(
  estimator: str,
  model: Model,
  decoder_params: Params,
  num_samples: int,
  baseline: jax.Array,
  q_params: dict[str, jax.Array],
  x: jax.Array,
  key: chex.PRNGKey,
) -> tuple[dict[str, jax.Array], jax.Array]:
  """Gradient estimate of the per-image cost w.r.t. (loc, log_scale).

  Returns the mean-over-samples jacobian (a cotangent like `q_params`) and the
  per-sample costs `[num_samples]` (for the baseline): the reconstruction
  costs for the ELBO estimators with analytic KL, `log q - log p(x, z)` for
  stl/dreg.
  """
  if estimator in ("stl", "dreg"):
    estimate = {
      "stl": variational.stl_jacobians,
      "dreg": variational.dreg_jacobians,
    }[estimator]
    jac, costs = estimate(
      functools.partial(_log_joint, model, decoder_params, x),
      q_params,
      _posterior,
      key,
      num_samples,
      return_costs=True,
    )
    return jax.tree.map(lambda j: j.mean(0), jac), costs

  def reconstruction_cost(z):
    return -_log_likelihood(model, decoder_params, x, z)

  if estimator == "pathwise":
    jac, costs = estimators.pathwise_jacobians(
      reconstruction_cost,
      q_params,
      _posterior,
      key,
      num_samples,
      return_costs=True,
    )
  elif estimator == "score_function":
    jac, costs = estimators.score_function_jacobians(
      reconstruction_cost,
      q_params,
      _posterior,
      key,
      num_samples,
      baseline=baseline,
      return_costs=True,
    )
  elif estimator == "leave_one_out":
    jac, costs = control_variates.leave_one_out_jacobians(
      reconstruction_cost,
      q_params,
      _posterior,
      key,
      num_samples,
      return_costs=True,
    )
  else:
    raise ValueError(f"Unknown estimator {estimator!r}.")
  # Exact gradient of the closed-form KL term: (loc, exp(2 log_scale) - 1).
  kl_grad = jax.grad(lambda q: _gaussian_kl(q["loc"], q["log_scale"]))(q_params)
  cotangent = jax.tree.map(lambda j, k: j.mean(0) + k, jac, kl_grad)
  return cotangent, costs


def encoder_gradient(
  estimator: str,
  model: Model,
  num_samples: int,
  params: Params,
  baseline: jax.Array,
  x: jax.Array,
  key: chex.PRNGKey,
) -> tuple[Params, jax.Array]:
  """One estimate of the encoder gradient of the batch-mean cost.

  Args:
    estimator: one of `ESTIMATORS`.
    model: the model's pure functions.
    num_samples: latent draws per image (K).
    params: `{"encoder": ..., "decoder": ...}`.
    baseline: scalar baseline (used by `score_function` only).
    x: images `[batch, dim]`.
    key: consumed.

  Returns:
    `(gradient like params["encoder"], costs [batch, num_samples])`.
  """
  batch_size = x.shape[0]
  (loc, log_scale), encoder_vjp = jax.vjp(
    lambda p: model.encode(p, x), params["encoder"]
  )  # [batch, latent_dim] each
  per_image = functools.partial(
    _encoder_cotangent,
    estimator,
    model,
    params["decoder"],
    num_samples,
    baseline,
  )
  keys = jax.random.split(key, batch_size)
  del key
  cotangent, costs = jax.vmap(per_image)(
    {"loc": loc, "log_scale": log_scale}, x, keys
  )
  chex.assert_shape(costs, (batch_size, num_samples))
  # d(batch mean)/d(outputs of image b) = (per-image gradient) / batch_size.
  (grad,) = encoder_vjp(
    (cotangent["loc"] / batch_size, cotangent["log_scale"] / batch_size)
  )
  return grad, costs


def _decoder_loss(
  estimator: str,
  model: Model,
  num_samples: int,
  decoder_params: Params,
  encoder_params: Params,
  x: jax.Array,
  key: chex.PRNGKey,
) -> jax.Array:
  """Batch-mean negative bound as a function of the decoder parameters.

  Its `jax.grad` is the pathwise decoder gradient: the draws are
  reparameterized samples of q with the encoder held fixed (stop_gradient).
  """
  loc, log_scale = jax.lax.stop_gradient(model.encode(encoder_params, x))
  eps = jax.random.normal(key, (num_samples, *loc.shape), loc.dtype)
  z = loc + jnp.exp(log_scale) * eps  # [K, batch, latent_dim]
  log_p = jax.vmap(
    jax.vmap(functools.partial(_log_joint, model, decoder_params))
  )(jnp.broadcast_to(x, (num_samples, *x.shape)), z)  # [K, batch]
  if estimator == "dreg":
    # Weights p(x, z)/q(z); log q does not depend on the decoder.
    log_q = _posterior({"loc": loc, "log_scale": log_scale}).log_prob(z)
    bound = jax.nn.logsumexp(log_p - log_q, axis=0) - jnp.log(num_samples)
    return -jnp.mean(bound)
  return -jnp.mean(log_p)


# ---------------------------------------------------------------------------
# Training state, train step, evaluation.
# ---------------------------------------------------------------------------


class TrainState(NamedTuple):
  params: Params
  opt_state: optax.OptState
  baseline: control_variates.MovingAverageBaselineState
  step: jax.Array  # int32 scalar: optimizer steps taken.
  key: jax.Array  # uint32 key data of the train key (`jax.random.key_data`).


class Hyper(NamedTuple):
  """The static (hashable) part of the config that the compiled steps use.

  Passed as a static argument, so each distinct `Hyper` compiles once per
  process and repeated runs with the same config reuse the executable.
  """

  estimator: str
  latent_dim: int
  hidden_dim: int
  data_dim: int
  num_samples: int
  batch_size: int
  learning_rate: float
  baseline_decay: float
  num_eval_samples: int
  num_variance_replicates: int
  variance_batch_size: int

  @classmethod
  def from_config(cls, config, estimator: str, data_dim: int) -> "Hyper":
    return cls(
      estimator=estimator,
      latent_dim=config.latent_dim,
      hidden_dim=config.hidden_dim,
      data_dim=data_dim,
      num_samples=config.num_samples,
      batch_size=config.batch_size,
      learning_rate=config.learning_rate,
      baseline_decay=config.baseline_decay,
      num_eval_samples=config.num_eval_samples,
      num_variance_replicates=config.num_variance_replicates,
      variance_batch_size=config.variance_batch_size,
    )

  @property
  def model(self) -> Model:
    return make_model(self.latent_dim, self.hidden_dim, self.data_dim)

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)


def init_state(
  hyper: Hyper, params: Params, train_key: chex.PRNGKey
) -> TrainState:
  return TrainState(
    params=params,
    opt_state=hyper.optimizer.init(params),
    baseline=control_variates.moving_average_baseline_init(),
    step=jnp.zeros((), jnp.int32),
    key=jax.random.key_data(train_key),
  )


@functools.partial(jax.jit, static_argnames="hyper")
def train_step(
  state: TrainState, train_data: jax.Array, hyper: Hyper
) -> TrainState:
  """One Adam step on a minibatch drawn with `fold_in(train_key, step)`.

  The data are an argument, not a closed-over constant: a constant would be
  embedded in the program and slow XLA's compilation down.
  """
  model = hyper.model
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  batch_key, encoder_key, decoder_key = jax.random.split(key, 3)
  del key
  index = jax.random.choice(
    batch_key, train_data.shape[0], (hyper.batch_size,), replace=False
  )
  x = train_data[index]  # [batch, dim]
  baseline = control_variates.moving_average_baseline_value(state.baseline)
  encoder_grad, costs = encoder_gradient(
    hyper.estimator,
    model,
    hyper.num_samples,
    state.params,
    baseline,
    x,
    encoder_key,
  )
  decoder_grad = jax.grad(
    functools.partial(_decoder_loss, hyper.estimator, model, hyper.num_samples)
  )(state.params["decoder"], state.params["encoder"], x, decoder_key)
  grads = {"encoder": encoder_grad, "decoder": decoder_grad}
  updates, opt_state = hyper.optimizer.update(
    grads, state.opt_state, state.params
  )
  return TrainState(
    params=optax.apply_updates(state.params, updates),
    opt_state=opt_state,
    baseline=control_variates.moving_average_baseline_update(
      state.baseline, costs, hyper.baseline_decay
    ),
    step=state.step + 1,
    key=state.key,
  )


def _bounds(model, params, x, key, num_samples):
  """Mean ELBO and IWAE bound over images x `[n, dim]` (nats per image)."""
  loc, log_scale = model.encode(params["encoder"], x)
  eps = jax.random.normal(key, (num_samples, *loc.shape), loc.dtype)
  z = loc + jnp.exp(log_scale) * eps  # [K, n, latent_dim]
  log_p = jax.vmap(
    jax.vmap(functools.partial(_log_joint, model, params["decoder"]))
  )(jnp.broadcast_to(x, (num_samples, *x.shape)), z)  # [K, n]
  log_q = _posterior({"loc": loc, "log_scale": log_scale}).log_prob(z)
  log_w = log_p - log_q
  elbo = jnp.mean(log_w)
  iwae = jnp.mean(jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples))
  return elbo, iwae


@functools.partial(jax.jit, static_argnames="hyper")
def evaluate(
  state: TrainState,
  train_data: jax.Array,
  test_data: jax.Array,
  eval_key: chex.PRNGKey,
  measure_key: chex.PRNGKey,
  hyper: Hyper,
) -> dict[str, jax.Array]:
  """Bounds with a fixed key, and encoder-gradient variance and SNR.

  The variance is measured from `num_variance_replicates` independent
  estimates (keys `fold_in(measure_key, step)`, split) at the current
  parameters and baseline, on the first `variance_batch_size` train images.
  """
  model = hyper.model
  train_elbo, _ = _bounds(
    model, state.params, train_data, eval_key, hyper.num_eval_samples
  )
  test_elbo, test_iwae = _bounds(
    model, state.params, test_data, eval_key, hyper.num_eval_samples
  )
  baseline = control_variates.moving_average_baseline_value(state.baseline)
  variance_batch = train_data[: hyper.variance_batch_size]

  def one_estimate(key):
    grad, _ = encoder_gradient(
      hyper.estimator,
      model,
      hyper.num_samples,
      state.params,
      baseline,
      variance_batch,
      key,
    )
    return grad

  replicate_keys = jax.random.split(
    jax.random.fold_in(measure_key, state.step), hyper.num_variance_replicates
  )
  grads = jax.vmap(one_estimate)(replicate_keys)  # leaves [R, *shape]
  variance = sum(
    jnp.sum(jnp.var(g, axis=0, ddof=1)) for g in jax.tree.leaves(grads)
  )
  mean_sq_norm = sum(
    jnp.sum(jnp.square(jnp.mean(g, axis=0))) for g in jax.tree.leaves(grads)
  )
  return {
    "train_elbo": train_elbo,
    "test_elbo": test_elbo,
    "test_iwae": test_iwae,
    "grad_variance": variance,
    "grad_snr": jnp.sqrt(mean_sq_norm / variance),
    "baseline": baseline,
  }


# ---------------------------------------------------------------------------
# Validation, checkpoints, training loop.
# ---------------------------------------------------------------------------


def validate_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks the config before any work; returns the estimators to train.

  Raises:
    ValueError: naming the offending field.
  """
  if config.estimator == "all":
    names = ESTIMATORS
  elif config.estimator in ESTIMATORS:
    names = (config.estimator,)
  else:
    raise ValueError(
      f"Unknown estimator {config.estimator!r}; choose one of "
      f"{', '.join(ESTIMATORS)} or 'all'."
    )

  def positive_int(name):
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"config.{name} must be an int >= 1, got {value!r}.")

  for name in (
    "num_samples",
    "num_steps",
    "latent_dim",
    "hidden_dim",
    "batch_size",
    "log_every",
    "checkpoint_every",
    "num_eval_samples",
    "variance_batch_size",
    "num_display",
  ):
    positive_int(name)
  if "leave_one_out" in names and config.num_samples < 2:
    raise ValueError(
      "config.num_samples must be >= 2 for the leave_one_out estimator (the "
      f"baseline of each draw is the mean of the others), got "
      f"{config.num_samples}."
    )
  if config.num_variance_replicates < 2:
    raise ValueError(
      "config.num_variance_replicates must be >= 2 to estimate a variance, "
      f"got {config.num_variance_replicates}."
    )
  if not 0.0 < config.test_fraction < 1.0:
    raise ValueError(
      f"config.test_fraction must be in (0, 1), got {config.test_fraction}."
    )
  if not 0.0 <= config.baseline_decay < 1.0:
    raise ValueError(
      f"config.baseline_decay must be in [0, 1), got {config.baseline_decay}."
    )
  if not config.learning_rate > 0.0:
    raise ValueError(
      f"config.learning_rate must be > 0, got {config.learning_rate}."
    )
  return names


class _Interrupted(Exception):
  """Raised by the `stop_after_step` test hook to simulate a killed run."""


def _checkpoint_manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
    os.path.abspath(directory),
    options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
    item_names=("state", "progress"),
  )


def _train_one(
  config,
  estimator: str,
  init_params: Params,
  keys: dict[str, jax.Array],
  train_data: jax.Array,
  test_data: jax.Array,
  workdir: str,
  stop_after_step: int | None,
) -> tuple[TrainState, list[dict[str, float]]]:
  """Trains (or resumes) one estimator; returns the final state and history."""
  hyper = Hyper.from_config(config, estimator, train_data.shape[-1])
  state = init_state(hyper, init_params, keys["train"])
  # Compile outside the timed loop: a throw-away step (jit caches it per
  # `hyper`, so this is the only compilation of the step in the process).
  jax.block_until_ready(train_step(state, train_data, hyper))

  history: list[dict[str, float]] = []
  wall_time = 0.0
  with _checkpoint_manager(
    os.path.join(workdir, estimator, "checkpoints")
  ) as manager:
    latest = manager.latest_step()
    if latest is not None and latest > config.num_steps:
      raise ValueError(
        f"[{estimator}] the workdir holds a checkpoint at step {latest}, past "
        f"config.num_steps={config.num_steps}; use another --workdir."
      )
    if latest is not None:
      restored = manager.restore(
        latest,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state),
          progress=ocp.args.JsonRestore(),
        ),
      )
      # Restored arrays are committed to a device, the step's outputs are not;
      # a host round trip (exact) keeps the jit cache at one entry.
      state = jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a)), TrainState(*restored["state"])
      )
      history = restored["progress"]["history"]
      wall_time = restored["progress"]["wall_time_s"]
      logging.info("[%s] resumed from step %d", estimator, latest)

    def save(step):
      manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          progress=ocp.args.JsonSave(
            {"history": history, "wall_time_s": wall_time}
          ),
        ),
      )

    def log(step):
      metrics = evaluate(
        state, train_data, test_data, keys["eval"], keys["measure"], hyper
      )
      metrics = {k: float(v) for k, v in metrics.items()}
      row = {"step": step, "wall_time_s": wall_time, **metrics}
      history.append(row)
      logging.info(
        "[%s] step %5d  train ELBO %.3f  test ELBO %.3f  test IWAE %.3f  "
        "grad var %.3e  SNR %.3f  (%.1fs)",
        estimator,
        step,
        row["train_elbo"],
        row["test_elbo"],
        row["test_iwae"],
        row["grad_variance"],
        row["grad_snr"],
        wall_time,
      )

    step = int(state.step)
    if step == 0:
      log(0)
    while step < config.num_steps:
      start = time.perf_counter()
      state = train_step(state, train_data, hyper)
      step += 1
      is_last = step == config.num_steps
      should_log = step % config.log_every == 0 or is_last
      should_save = step % config.checkpoint_every == 0 or is_last
      if should_log or should_save:
        jax.block_until_ready(state)
      # Dispatch is asynchronous: between syncs this adds dispatch time only,
      # and the compute time lands at the next sync.
      wall_time += time.perf_counter() - start
      if should_log:
        log(step)
      if should_save:
        save(step)
      if stop_after_step is not None and step >= stop_after_step:
        raise _Interrupted(f"stopped after step {step} (test hook)")
    manager.wait_until_finished()
  return state, history


def _check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records the config in `workdir`; refuses to resume under another one.

  Checkpoints are only meaningful for the config that wrote them; `num_steps`
  may change (to extend a run), nothing else may.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  current = config.to_dict()
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = sorted(
      k
      for k in set(previous) | set(current)
      if k != "num_steps" and previous.get(k) != current.get(k)
    )
    if changed:
      raise ValueError(
        f"{workdir} holds a run with a different config (fields "
        f"{', '.join(changed)}); use another --workdir or the same flags."
      )
  with open(path, "w") as f:
    json.dump(current, f, indent=1)


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  stop_after_step: int | None = None,
) -> dict[str, Any]:
  """Trains the configured estimator(s) and writes the outputs to `workdir`.

  Args:
    config: see `experiments/configs/vae.py`.
    workdir: output directory (created); checkpoints there are resumed.
    stop_after_step: test hook: abandon each run after this step, as if it
      were killed (checkpoints already saved stay; no outputs are written).

  Returns:
    `{"metrics": <metrics.json content, None if interrupted>,
    "params": {estimator: final params}, "initial_params": params}`.

  Raises:
    ValueError: a bad config, before any training.
  """
  names = validate_config(config)
  train_np, test_np = load_digits_binarized(
    config.test_fraction, config.data_seed, config.binarize_threshold
  )
  for name in ("batch_size", "variance_batch_size"):
    if config[name] > len(train_np):
      raise ValueError(
        f"config.{name} ({config[name]}) exceeds the {len(train_np)} "
        "training images."
      )
  # Only a config that passed every check is recorded in the workdir.
  _check_resumable(config, workdir)
  train_data, test_data = jnp.asarray(train_np), jnp.asarray(test_np)

  key = jax.random.key(config.seed)
  init_key, train_key, eval_key, measure_key = jax.random.split(key, 4)
  del key
  keys = {"train": train_key, "eval": eval_key, "measure": measure_key}
  model = make_model(config.latent_dim, config.hidden_dim, train_data.shape[-1])
  init_params = model.init(init_key)  # Shared by every estimator.

  histories, final_params = {}, {}
  for name in names:
    try:
      state, history = _train_one(
        config,
        name,
        init_params,
        keys,
        train_data,
        test_data,
        workdir,
        stop_after_step,
      )
    except _Interrupted:
      logging.info("[%s] interrupted by the test hook", name)
      return {
        "metrics": None,
        "params": final_params,
        "initial_params": init_params,
      }
    histories[name], final_params[name] = history, state.params

  metrics = {
    "schema_version": SCHEMA_VERSION,
    "config": config.to_dict(),
    "estimators": list(names),
    "data": {
      "num_train": int(train_data.shape[0]),
      "num_test": int(test_data.shape[0]),
      "dim": int(train_data.shape[1]),
    },
    "history": histories,
    "final": {name: histories[name][-1] for name in names},
  }
  _write_outputs(metrics, workdir)
  _plot(metrics, final_params, model, test_np, config, workdir)
  return {
    "metrics": metrics,
    "params": final_params,
    "initial_params": init_params,
  }


# ---------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------


def _write_outputs(metrics: dict[str, Any], workdir: str) -> None:
  with open(os.path.join(workdir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
  with open(os.path.join(workdir, "metrics.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(("estimator", *METRIC_FIELDS))
    for name in metrics["estimators"]:
      for row in metrics["history"][name]:
        writer.writerow((name, *(row[k] for k in METRIC_FIELDS)))


def _plot(metrics, params, model, test_np, config, workdir):
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  names = metrics["estimators"]
  hist = metrics["history"]
  colors = {n: f"C{i}" for i, n in enumerate(ESTIMATORS)}

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  for n in names:
    steps = [r["step"] for r in hist[n]]
    axes[0].plot(
      steps,
      [r["test_elbo"] for r in hist[n]],
      color=colors[n],
      label=f"{n} (test)",
    )
    axes[0].plot(
      steps,
      [r["train_elbo"] for r in hist[n]],
      color=colors[n],
      ls="--",
      alpha=0.6,
    )
    axes[1].plot(
      [r["wall_time_s"] for r in hist[n]],
      [r["test_elbo"] for r in hist[n]],
      color=colors[n],
      label=n,
    )
  all_elbos = [r["test_elbo"] for n in names for r in hist[n][1:]]
  if all_elbos:
    low, high = np.percentile(all_elbos, 2), max(all_elbos)
    axes[0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
  axes[0].set(
    xlabel="step",
    ylabel="ELBO (nats / image)",
    title="test (solid) and train (dashed) ELBO vs step",
  )
  axes[1].set(xlabel="training wall-clock (s)", title="test ELBO vs time")
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(
    f"VAE on binarized 8x8 digits, K={config.num_samples} "
    f"samples, latent dim {config.latent_dim}"
  )
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "elbo.png"), dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for n in names:
    steps = [r["step"] for r in hist[n]]
    axes[0].semilogy(
      steps, [r["grad_variance"] for r in hist[n]], color=colors[n], label=n
    )
    axes[1].semilogy(
      steps, [r["grad_snr"] for r in hist[n]], color=colors[n], label=n
    )
  axes[0].set(
    xlabel="step",
    ylabel="trace of covariance",
    title="encoder-gradient variance (sum over encoder params)",
  )
  axes[1].set(
    xlabel="step",
    ylabel="||mean|| / sqrt(trace cov)",
    title="encoder-gradient signal-to-noise ratio",
  )
  axes[0].legend()
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  fig.suptitle(
    f"{config.num_variance_replicates} independent estimates on "
    f"{config.variance_batch_size} training images, "
    f"K={config.num_samples}"
  )
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "grad_variance.png"), dpi=110)
  plt.close(fig)

  num = min(config.num_display, len(test_np))
  side = int(round(np.sqrt(test_np.shape[1])))
  x = jnp.asarray(test_np[:num])
  rows = [("test data", test_np[:num])]
  for n in names:
    loc, _ = model.encode(params[n]["encoder"], x)
    rows.append(
      (n, np.asarray(jax.nn.sigmoid(model.decode(params[n]["decoder"], loc))))
    )
  _image_grid(
    rows,
    side,
    "reconstructions (decoder mean at the encoder mean)",
    os.path.join(workdir, "reconstructions.png"),
  )

  z = jax.random.normal(
    jax.random.key(config.seed + 1), (num, config.latent_dim)
  )
  rows = [
    (n, np.asarray(jax.nn.sigmoid(model.decode(params[n]["decoder"], z))))
    for n in names
  ]
  _image_grid(
    rows,
    side,
    "samples: decoder mean of z ~ N(0, I), same z per row",
    os.path.join(workdir, "samples.png"),
  )


def _image_grid(rows, side, title, path):
  from matplotlib import pyplot as plt

  num = rows[0][1].shape[0]
  fig, axes = plt.subplots(
    len(rows),
    num,
    figsize=(1.0 * num + 1.5, 1.0 * len(rows) + 0.6),
    squeeze=False,
  )
  for i, (label, images) in enumerate(rows):
    for j in range(num):
      ax = axes[i, j]
      ax.imshow(images[j].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def _run_quietly(config: ml_collections.ConfigDict, workdir: str):
  """`run`, with orbax's per-checkpoint INFO lines filtered from the log."""
  logging.get_absl_logger().addFilter(
    lambda record: (
      "orbax" not in record.pathname
      or record.levelno >= logging.converter.STANDARD_WARNING
    )
  )
  return run(config, workdir)


if __name__ == "__main__":
  launch.run_app("vae", _run_quietly)
