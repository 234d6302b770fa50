r"""The encoder and generative gradients; the encoder's estimator by name.

**Encoder.** Each estimator is looked up by name in rgrad's registry
(:func:`rgrad.get_estimator`) and returns per-sample jacobians of one data
point's cost with respect to that point's encoder *logits*
:math:`\eta = E_\phi(x)` (vmapped over the batch); their mean over samples
is a cotangent that one ``jax.vjp`` of the encoder pulls back to
:math:`\phi`, as in the Gaussian VAE (:mod:`experiments.vae.gradients`).
What the estimator is handed follows from the entry's ``objective``
(:class:`rgrad.EstimatorSpec`):

* ``"expectation"`` (``score_function``, ``leave_one_out``, ``arm``,
  ``disarm``, ``rebar``, ``relax``): the negative ELBO integrand

  .. math:: f(b) = -(\log p_\theta(x \mid b) + \log p(b) - \log
            q_{\bar\phi}(b \mid x)),

  with q's logits held fixed inside :math:`f` (``stop_gradient``,
  :math:`\bar\phi = \phi` in value). The estimators then estimate
  :math:`\nabla_\phi E_{q_\phi}[f]`, which is the gradient of the negative
  ELBO: differentiating :math:`E_{q_\phi}[c_\phi]` with
  :math:`c_\phi = \log q_\phi - \log p` gives :math:`E_q[c_\phi
  \nabla_\phi \log q_\phi] + E_q[\nabla_\phi \log q_\phi]`, and the second
  term is 0 (a score has mean zero), so freezing :math:`\phi` inside the
  cost drops a term of mean zero and nothing else. (Discrete latents admit
  no pathwise gradient, so, unlike the Gaussian VAE, every estimator here
  sees the whole integrand, entropy included; the KL of two factorized
  Bernoullis is closed-form, but the DisARM paper's estimators are compared
  on this learning signal, and so are these.)
* ``"negative_iwae_bound"`` (``vimco``, Mnih and Rezende, 2016): the
  log-joint :math:`\log p(x, b)`; the estimator returns the gradient of
  the :math:`K`-sample importance-weighted bound
  :math:`-\mathcal{L}_K` (Burda et al., 2016), which ``vimco`` trains
  (decoder and prior included) instead of the ELBO.

At ``num_samples = 2`` every estimator makes two cost evaluations per data
point per step: one antithetic pair for ``arm``/``disarm``, two draws for
``leave_one_out``, ``vimco`` and ``score_function``.

The VAE's ``score_function`` is the registry's
``score_function_moving_average``, run with the value of one moving-average
baseline per *batch* (updated once per step from all :math:`B \times K`
costs), exactly as the Gaussian VAE does and for the reasons given there.

**Generative model.** The decoder and prior gradient is the exact gradient
of the objective at sampled latents: ``jax.grad`` in :math:`\theta` of
:math:`-\frac1K \sum_k \log p_\theta(x, b_k)` (the ELBO's; :math:`\log q`
does not depend on :math:`\theta`), or of :math:`-\mathcal{L}_K` for
``vimco``, at :math:`K` = ``num_samples`` draws :math:`b_k \sim q_\phi(\cdot
\mid x)` of its own, independent of the encoder estimator's.

References:
  Dong, Mnih and Tucker, NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  Yin and Zhou, ICLR 2019, https://arxiv.org/abs/1807.11143.
  Mnih and Rezende, ICML 2016, https://arxiv.org/abs/1602.06725.
  Burda, Grosse and Salakhutdinov, ICLR 2016, https://arxiv.org/abs/1509.00519.
  Mohamed et al., JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 4).
"""

import functools

import chex
import jax
import jax.numpy as jnp

import rgrad
from experiments.discrete_vae import model as model_lib
from rgrad import control_variates
from rgrad import estimators

Params = model_lib.Params

# The encoder-gradient estimators the VAE compares, in the order of its
# figures, by their names in the config.
ESTIMATORS = ("score_function", "leave_one_out")

# A VAE name that differs from the registry's: the VAE's score function always
# carries the moving-average baseline.
_REGISTRY_NAMES = {"score_function": "score_function_moving_average"}
_OBJECTIVES = ("expectation", "negative_iwae_bound")


def registry_name(name: str) -> str:
  """The registry's name for the VAE's estimator `name`."""
  return _REGISTRY_NAMES.get(name, name)


def get_spec(name: str) -> rgrad.EstimatorSpec:
  """The registry entry of the VAE's estimator `name`.

  Raises:
    ValueError: an unknown name, an objective the VAE cannot train, or a
      stateful entry whose state is not a moving-average baseline.
  """
  spec = rgrad.get_estimator(registry_name(name))
  if spec.objective not in _OBJECTIVES:
    raise ValueError(
      f"The discrete VAE trains the objectives {_OBJECTIVES}; {name!r} "
      f"estimates {spec.objective!r}."
    )
  if spec.stateful and not isinstance(
    spec.fn.init(None), control_variates.MovingAverageBaselineState
  ):
    raise ValueError(
      f"The VAE keeps a stateful estimator's state per batch, which it can do "
      f"for a moving-average baseline only; {name!r} carries another state."
    )
  return spec


def cost_evaluations(name: str, num_samples: int, latent_dim: int) -> int:
  """Cost evaluations per data point per step of the estimator `name`."""
  return num_samples * get_spec(name).num_cost_evaluations(latent_dim)


def _image_cotangent(
  spec: rgrad.EstimatorSpec,
  model: model_lib.Model,
  generative_params: Params,
  num_samples: int,
  baseline: jax.Array,
  logits: jax.Array,
  x: jax.Array,
  key: chex.PRNGKey,
) -> tuple[jax.Array, jax.Array]:
  """One image's gradient estimate w.r.t. its encoder logits `[L]`.

  Returns the mean-over-samples jacobian `[L]` and the costs `[num_samples]`
  of the moving-average score function (zeros for the other estimators,
  whose costs the VAE does not need).
  """
  log_joint = functools.partial(
    model_lib.log_joint, model, generative_params, x
  )
  if spec.objective == "negative_iwae_bound":
    function = log_joint
  else:
    frozen_q = model_lib.posterior({"logits": jax.lax.stop_gradient(logits)})
    function = lambda b: frozen_q.log_prob(b) - log_joint(b)
  q_params = {"logits": logits}
  if spec.stateful:
    # The baseline is the VAE's per-batch state (see the module docstring).
    jac, costs = estimators.score_function_jacobians(
      function,
      q_params,
      model_lib.posterior,
      key,
      num_samples,
      baseline=baseline,
      return_costs=True,
    )
  else:
    jac = spec.fn(function, q_params, model_lib.posterior, key, num_samples)
    costs = jnp.zeros((num_samples,), logits.dtype)
  return jac["logits"].mean(0), costs


def encoder_gradient(
  estimator: str,
  model: model_lib.Model,
  num_samples: int,
  params: Params,
  baseline: jax.Array,
  x: jax.Array,
  key: chex.PRNGKey,
) -> tuple[Params, jax.Array]:
  """One estimate of the encoder gradient of the batch-mean objective.

  Args:
    estimator: one of `ESTIMATORS`.
    model: the model's pure functions.
    num_samples: the estimator's samples per image (K; even for pairs).
    params: `{"encoder", "decoder", "prior"}`.
    baseline: scalar baseline (read by `score_function` only).
    x: images `[batch, D]`.
    key: consumed.

  Returns:
    `(gradient like params["encoder"], costs [batch, num_samples])`.
  """
  spec = get_spec(estimator)
  batch_size = x.shape[0]
  logits, encoder_vjp = jax.vjp(
    lambda p: model.encode(p, x), params["encoder"]
  )  # [batch, L]
  per_image = functools.partial(
    _image_cotangent,
    spec,
    model,
    jax.lax.stop_gradient(model_lib.generative(params)),
    num_samples,
    baseline,
  )
  keys = jax.random.split(key, batch_size)
  del key
  cotangent, costs = jax.vmap(per_image)(logits, x, keys)
  chex.assert_shape(costs, (batch_size, num_samples))
  # d(batch mean)/d(logits of image b) = (per-image gradient) / batch_size.
  (grad,) = encoder_vjp(cotangent / batch_size)
  return grad, costs


def generative_loss(
  estimator: str,
  model: model_lib.Model,
  num_samples: int,
  generative_params: Params,
  encoder_params: Params,
  x: jax.Array,
  key: chex.PRNGKey,
) -> jax.Array:
  """Batch-mean negative objective as a function of the decoder and prior.

  The objective is the estimator's: the K-sample IWAE bound for
  "negative_iwae_bound" (vimco), the ELBO otherwise. Its `jax.grad` is the
  exact gradient at the draws `b_k ~ q` (encoder held fixed).
  """
  params = {
    "encoder": jax.lax.stop_gradient(encoder_params),
    **generative_params,
  }
  keys = jax.random.split(key, x.shape[0])
  log_w = jax.vmap(
    lambda image, k: model_lib.log_weights(model, params, image, k, num_samples)
  )(x, keys)  # [batch, K]
  if get_spec(estimator).objective == "negative_iwae_bound":
    bound = jax.nn.logsumexp(log_w, axis=1) - jnp.log(num_samples)
    return -jnp.mean(bound)
  # log q does not depend on the generative parameters: the ELBO's gradient
  # there is that of the mean log p(x, b_k).
  return -jnp.mean(log_w)
