r"""The encoder and decoder gradients; the encoder's estimator comes by name.

The decoder gradient is pathwise in every case. The encoder gradient is where
the estimators differ; each is looked up by name in rgrad's registry
(:func:`rgrad.get_estimator`) and returns per-sample jacobians of a cost with
respect to the encoder *outputs* :math:`(\mu, s)` of one data point (vmapped
over the batch); their mean over samples is a cotangent that ``jax.vjp`` of
the encoder pulls back to :math:`\phi` -- one backward pass through the
network per step, whatever the estimator.

With :math:`\mathrm{ELBO} = E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p)`,
what the VAE hands the estimator follows from the entry's ``objective``
(:class:`rgrad.EstimatorSpec`):

* ``"expectation"`` (``pathwise``, ``score_function``, ``leave_one_out``):
  the estimator sees the reconstruction cost
  :math:`f(z) = -\log p_\theta(x \mid z)`, which does not depend on
  :math:`\phi`: exactly the setting of :math:`\nabla_\phi E_{q_\phi}[f]`. The
  KL between two Gaussians is closed-form, so its gradient is added exactly,
  :math:`\partial_\mu \mathrm{KL} = \mu`,
  :math:`\partial_s \mathrm{KL} = e^{2s} - 1`. All three estimate the same
  gradient, so their comparison isolates the estimator.

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
* ``"negative_elbo"`` (``stl``, sticking the landing, Roeder et al., 2017):
  the estimator sees the log-joint :math:`\log p(x, z)` and returns the
  gradient of :math:`-\mathrm{ELBO}` with the score term dropped.
* ``"negative_iwae_bound"`` (``dreg``, doubly-reparameterized gradients,
  Tucker et al., 2019): the log-joint again, for the :math:`K`-sample
  importance-weighted bound (Burda et al., 2016), which ``dreg`` trains
  (decoder included) instead of the ELBO.

The VAE's ``score_function`` is the registry's
``score_function_moving_average``: the score function whose baseline is the
debiased moving average of earlier steps' costs. That entry is a
:class:`rgrad.base.StatefulEstimator`, which folds *its own call's* costs
into its state; the VAE calls the estimator once per image but keeps one
baseline per *batch*, updated once per step from all :math:`B \times K`
costs. The mean of the :math:`B` per-image states equals that update in exact
arithmetic (the update is affine in the mean cost, and every image has
:math:`K` costs), but not in floating point, where the sums run in another
order and the experiment's numbers change in their last bits. So for a
stateful entry the VAE runs the score function with the value of its own
per-batch state (:func:`encoder_gradient`'s `baseline`), the arithmetic the
experiment has always had, and it accepts no state but a moving-average
baseline (:func:`get_spec`).

The decoder uses its own reparameterized draws
:math:`z \sim q_\phi(\cdot \mid x)` (independent of the encoder estimator's,
which the :mod:`rgrad` estimators draw internally), under ``stop_gradient``;
its gradient is ``jax.grad`` of the objective in :math:`\theta`.

References:
  Mohamed et al., Monte Carlo Gradient Estimation in Machine Learning, JMLR
  2020, https://arxiv.org/abs/1906.10652 (Sections 4, 5, 7.4, 9.3).
  Roeder, Wu and Duvenaud, NeurIPS 2017, https://arxiv.org/abs/1703.09194.
  Tucker, Lawson, Gu and Maddison, ICLR 2019, https://arxiv.org/abs/1810.04152.
  Burda, Grosse and Salakhutdinov, ICLR 2016, https://arxiv.org/abs/1509.00519.
"""

import functools

import chex
import jax
import jax.numpy as jnp

import rgrad
from experiments.common import vae as common_vae
from experiments.vae import model as model_lib
from rgrad import control_variates

Params = model_lib.Params

# The encoder-gradient estimators the VAE compares, in the order of its
# figures, by their names in the config.
ESTIMATORS = ("pathwise", "score_function", "leave_one_out", "stl", "dreg")

# A VAE name that differs from the registry's: the VAE's score function always
# carries the moving-average baseline.
_REGISTRY_NAMES = {"score_function": "score_function_moving_average"}


def registry_name(name: str) -> str:
  """The registry's name for the VAE's estimator `name`."""
  return _REGISTRY_NAMES.get(name, name)


def get_spec(name: str) -> rgrad.EstimatorSpec:
  """The registry entry of the VAE's estimator `name`.

  Raises:
    ValueError: an unknown name, or a stateful entry whose state is not a
      moving-average baseline (the only state the VAE knows how to keep per
      batch; see the module docstring).
  """
  spec = rgrad.get_estimator(registry_name(name))
  if spec.stateful and not isinstance(
    spec.fn.init(None), control_variates.MovingAverageBaselineState
  ):
    raise ValueError(
      f"The VAE keeps a stateful estimator's state per batch, which it can do "
      f"for a moving-average baseline only; {name!r} carries another state."
    )
  return spec


def _image_cotangent(
  spec: rgrad.EstimatorSpec,
  model: model_lib.Model,
  decoder_params: Params,
  num_samples: int,
  baseline: jax.Array,
  q_params: dict[str, jax.Array],
  x: jax.Array,
  key: chex.PRNGKey,
) -> tuple[dict[str, jax.Array], jax.Array]:
  """Gradient estimate of one image's cost w.r.t. (loc, log_scale).

  Returns the mean-over-samples jacobian (a cotangent like `q_params`) and the
  per-sample costs `[num_samples]` (for the baseline): the reconstruction
  costs for the objective "expectation" (whose KL term is exact), `log q - log
  p(x, z)` for the variational objectives.
  """
  analytic_kl = spec.objective == "expectation"
  if analytic_kl:
    function = lambda z: -model_lib.log_likelihood(model, decoder_params, x, z)
  else:  # The variational estimators take the log-joint.
    function = functools.partial(model_lib.log_joint, model, decoder_params, x)
  if spec.stateful:
    # The baseline is the VAE's per-batch state (see the module docstring).
    jac, costs = common_vae.moving_average_score_function(
      function, q_params, model_lib.posterior, key, num_samples, baseline
    )
  else:
    jac, costs = spec.fn(
      function,
      q_params,
      model_lib.posterior,
      key,
      num_samples,
      return_costs=True,
    )
  if not analytic_kl:
    return jax.tree.map(lambda j: j.mean(0), jac), costs
  # Exact gradient of the closed-form KL term: (loc, exp(2 log_scale) - 1).
  kl = lambda q: model_lib.gaussian_kl(q["loc"], q["log_scale"])
  kl_grad = jax.grad(kl)(q_params)
  cotangent = jax.tree.map(lambda j, k: j.mean(0) + k, jac, kl_grad)
  return cotangent, costs


def encoder_gradient(
  estimator: str,
  model: model_lib.Model,
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
    baseline: scalar baseline (used by the stateful `score_function` only).
    x: images `[batch, dim]`.
    key: consumed.

  Returns:
    `(gradient like params["encoder"], costs [batch, num_samples])`.
  """
  spec = get_spec(estimator)
  batch_size = x.shape[0]
  (loc, log_scale), encoder_vjp = jax.vjp(
    lambda p: model.encode(p, x), params["encoder"]
  )  # [batch, latent_dim] each
  per_image = functools.partial(
    _image_cotangent, spec, model, params["decoder"], num_samples, baseline
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


def decoder_loss(
  estimator: str,
  model: model_lib.Model,
  num_samples: int,
  decoder_params: Params,
  encoder_params: Params,
  x: jax.Array,
  key: chex.PRNGKey,
) -> jax.Array:
  """Batch-mean negative bound as a function of the decoder parameters.

  The bound is the estimator's objective: the IWAE bound for
  "negative_iwae_bound" (dreg), the ELBO otherwise. Its `jax.grad` is the
  pathwise decoder gradient: the draws are reparameterized samples of q with
  the encoder held fixed (stop_gradient).
  """
  loc, log_scale = jax.lax.stop_gradient(model.encode(encoder_params, x))
  log_p, log_q = model_lib.log_densities(
    model, decoder_params, loc, log_scale, x, key, num_samples
  )  # [K, batch] each
  if get_spec(estimator).objective == "negative_iwae_bound":
    # Weights p(x, z)/q(z); log q does not depend on the decoder.
    bound = jax.nn.logsumexp(log_p - log_q, axis=0) - jnp.log(num_samples)
    return -jnp.mean(bound)
  # log q does not depend on the decoder either: the ELBO's decoder gradient
  # is that of E_q[log p(x, z)].
  return -jnp.mean(log_p)
