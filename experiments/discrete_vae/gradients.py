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

At ``num_samples = 2`` every estimator but REBAR and RELAX makes two cost
evaluations per data point per step: one antithetic pair for
``arm``/``disarm``, two draws for ``leave_one_out``, ``vimco`` and
``score_function``. REBAR and RELAX evaluate the cost three times per draw
(at :math:`b`, :math:`\sigma(z/\lambda)` and :math:`\sigma(\tilde
z/\lambda)`) and run at ``relaxed_num_samples`` draws (default 1: three
evaluations, the nearest integer match).

The VAE's ``score_function`` is the registry's
``score_function_moving_average``, run with the value of one moving-average
baseline per *batch* (updated once per step from all :math:`B \times K`
costs), exactly as the Gaussian VAE does and for the reasons given there.

**REBAR and RELAX: the control, per batch.** The registry's ``rebar`` and
``relax`` are :class:`rgrad.base.StatefulEstimator` s whose ``estimate``
takes one Optax step on the control :math:`\phi_c` after each call, to
minimize the second moment of *that call's* estimates. Vmapped over the
images of a batch, that would make one updated control per image, and
averaging :math:`B` Adam states is not an Adam step. So the VAE keeps one
control per run (initialized as the registry entry's ``init`` does) and
does what the RELAX paper does for its VAE: the encoder gradient is
estimated at the current control with the registry's fixed-control
functions (:func:`rgrad.rebar_jacobians`, :func:`rgrad.relax_jacobians`),
and the control takes an Adam step on
:math:`\partial_{\phi_c} \lVert \hat g_\phi \rVert^2`, the squared norm
of the *batch's encoder-parameter* gradient -- an unbiased estimate of
:math:`\partial_{\phi_c} \mathrm{Var}(\hat g_\phi)`, since
:math:`E \hat g_\phi` does not depend on :math:`\phi_c` (Grathwohl et al.,
2018, Section 3.1). The estimate a step uses depends on earlier steps'
draws only, so it stays unbiased.

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
  Tucker et al., REBAR, NeurIPS 2017, https://arxiv.org/abs/1703.07370.
  Grathwohl et al., RELAX, ICLR 2018, https://arxiv.org/abs/1711.00123.
  Mohamed et al., JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 4).
"""

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

import rgrad
from experiments.common import vae as common_vae
from experiments.discrete_vae import model as model_lib
from rgrad import control_variates

Params = model_lib.Params

# The encoder-gradient estimators the VAE compares, in the order of its
# figures, by their names in the config.
ESTIMATORS = (
  "score_function",
  "leave_one_out",
  "arm",
  "disarm",
  "vimco",
  "rebar",
  "relax",
)
# The estimators with a learned control, which the VAE trains per batch.
RELAXED = ("rebar", "relax")
# The surrogate network of the registry's "relax" entry (rgrad.relax()'s
# defaults), which relax_jacobians must be told; checked in initial_control.
_RELAX_SURROGATE = {"hidden_sizes": (10,), "num_latents": None}

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
      stateful entry whose state is neither a moving-average baseline nor
      (for `RELAXED`) a learned control.
  """
  spec = rgrad.get_estimator(registry_name(name))
  if spec.objective not in _OBJECTIVES:
    raise ValueError(
      f"The discrete VAE trains the objectives {_OBJECTIVES}; {name!r} "
      f"estimates {spec.objective!r}."
    )
  if (
    spec.stateful
    and name not in RELAXED
    and not isinstance(
      spec.fn.init(None), control_variates.MovingAverageBaselineState
    )
  ):
    raise ValueError(
      f"The VAE keeps a stateful estimator's state per batch, which it can do "
      f"for a moving-average baseline only; {name!r} carries another state."
    )
  return spec


def initial_control(name: str) -> Any:
  """The control the estimator `name` starts from (a 0.0 placeholder).

  For `RELAXED`, the control of the registry entry's initial state.

  Raises:
    ValueError: the registry's "relax" surrogate is not the architecture
      `relax_jacobians` is told (see `_RELAX_SURROGATE`).
  """
  if name not in RELAXED:
    return jnp.zeros(())
  control = get_spec(name).fn.init(None).control
  if name == "relax":
    expected = rgrad.relax(**_RELAX_SURROGATE).init(None).control
    shapes = lambda c: jax.tree.map(jnp.shape, c.network)
    if shapes(control) != shapes(expected):
      raise ValueError(
        "The registry's relax surrogate is not the one the VAE assumes "
        f"({_RELAX_SURROGATE}); update _RELAX_SURROGATE."
      )
  return control


def num_samples_for(name: str, num_samples: int, relaxed_num_samples: int):
  """The estimator's samples per data point: REBAR/RELAX have their own."""
  return relaxed_num_samples if name in RELAXED else num_samples


def cost_evaluations(name: str, num_samples: int, latent_dim: int) -> int:
  """Cost evaluations per data point per step of the estimator `name`."""
  return num_samples * get_spec(name).num_cost_evaluations(latent_dim)


def _image_cotangent(
  spec: rgrad.EstimatorSpec,
  model: model_lib.Model,
  generative_params: Params,
  num_samples: int,
  baseline: jax.Array,
  control: Any,
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
  posterior = model_lib.posterior
  costs = jnp.zeros((num_samples,), logits.dtype)
  if isinstance(control, rgrad.RebarControl):
    jac = rgrad.rebar_jacobians(
      function,
      q_params,
      posterior,
      key,
      num_samples,
      temperature=jnp.exp(control.log_temperature),
      scale=control.scale,
    )
  elif isinstance(control, rgrad.RelaxControl):
    jac = rgrad.relax_jacobians(
      function,
      q_params,
      posterior,
      key,
      num_samples,
      control=control,
      **_RELAX_SURROGATE,
    )
  elif spec.stateful:
    # The baseline is the VAE's per-batch state (see the module docstring).
    jac, costs = common_vae.moving_average_score_function(
      function, q_params, posterior, key, num_samples, baseline
    )
  else:
    jac = spec.fn(function, q_params, posterior, key, num_samples)
  return jac["logits"].mean(0), costs


def encoder_gradient(
  estimator: str,
  model: model_lib.Model,
  num_samples: int,
  params: Params,
  baseline: jax.Array,
  x: jax.Array,
  key: chex.PRNGKey,
  control: Any = None,
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
    control: for `RELAXED`, the control (an `rgrad.RebarControl` or
      `rgrad.RelaxControl`); the estimate is differentiable in it.

  Returns:
    `(gradient like params["encoder"], costs [batch, num_samples])`.
  """
  spec = get_spec(estimator)
  if (estimator in RELAXED) != isinstance(
    control, (rgrad.RebarControl, rgrad.RelaxControl)
  ):
    raise ValueError(
      f"encoder_gradient: {estimator!r} needs a control iff it is one of "
      f"{RELAXED}; got {type(control).__name__}."
    )
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
    control,
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
