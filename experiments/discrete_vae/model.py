r"""The model: a sigmoid belief net with one layer of binary latents.

A factorized Bernoulli prior :math:`p(b) = \prod_l \mathrm{Bernoulli}(b_l;
\sigma(\eta^p_l))` over :math:`L` binary latents (logits :math:`\eta^p`
learned, or held at 0, i.e. :math:`p = 1/2`), a Bernoulli decoder
:math:`p_\theta(x \mid b) = \mathrm{Bernoulli}(x; \mathrm{logits} =
D_\theta(b))` over the pixels and a factorized Bernoulli encoder
:math:`q_\phi(b \mid x) = \mathrm{Bernoulli}(b; \mathrm{logits} =
E_\phi(x))`, as in the DisARM paper's VAE experiments (Dong, Mnih and
Tucker, 2020, Section 5; Yin and Zhou, 2019, Section 4.2):

* ``"linear"``: :math:`E_\phi` and :math:`D_\theta` are affine maps (the
  paper's 784-200 model);
* ``"nonlinear"``: two deterministic hidden layers of ``hidden_dim`` units
  before the logits on each side, with LeakyReLU (slope 0.3, as in the
  paper's code) or tanh activations (the paper's 784-200-200-200 model).

The output bias of the decoder may start at the logit of the training
set's mean pixel (the paper's ``initialize_with_bias``), which spares the
first steps learning the average image. The ``flax.linen`` modules are used
as pure ``init``/``apply`` functions over explicit parameter pytrees
(:class:`Model`): ``{"encoder": ..., "decoder": ..., "prior": {"logits":
[L]}}``.

References:
  Dong, Mnih and Tucker, DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables, NeurIPS 2020, https://arxiv.org/abs/2006.10680.
  Yin and Zhou, ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks, ICLR 2019, https://arxiv.org/abs/1807.11143.
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rgrad import distributions

Params = Any
MODELS = ("linear", "nonlinear")
ACTIVATIONS = {
  "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.3),
  "tanh": nn.tanh,
}


class Logits(nn.Module):
  """Inputs -> Bernoulli logits: hidden layers (none: affine), then `out`."""

  hidden_dims: tuple[int, ...]
  out_dim: int
  activation: str

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    h = inputs
    for width in self.hidden_dims:
      h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
    return nn.Dense(self.out_dim, name="out")(h)


class Model(NamedTuple):
  """Pure functions of explicit parameter pytrees.

  Attributes:
    encode: `(encoder params, x [..., D]) -> q's logits [..., L]`.
    decode: `(decoder params, b [..., L]) -> p(x | b)'s logits [..., D]`.
    prior_logits: `(generative params) -> p(b)'s logits [L]`; zeros under
      `stop_gradient` when the prior is fixed.
    init: `(key, mean image [D] or None) -> params`.
  """

  encode: Callable[[Params, jax.Array], jax.Array]
  decode: Callable[[Params, jax.Array], jax.Array]
  prior_logits: Callable[[Params], jax.Array]
  init: Callable[[chex.PRNGKey, np.ndarray | None], Params]


def make_model(
  kind: str,
  latent_dim: int,
  hidden_dim: int,
  data_dim: int,
  activation: str = "leaky_relu",
  learn_prior: bool = True,
) -> Model:
  """The encoder, decoder and prior as pure functions of parameter pytrees.

  Args:
    kind: one of `MODELS`.
    latent_dim: L, the number of binary latents.
    hidden_dim: width of the two hidden layers of the "nonlinear" model.
    data_dim: D, the number of pixels.
    activation: one of `ACTIVATIONS` (the "nonlinear" model's).
    learn_prior: learn the prior's logits (else p(b_l = 1) = 1/2).

  Returns:
    A `Model`. `init(key, mean_image)` returns `{"encoder", "decoder",
    "prior"}`; with a `mean_image`, the decoder's output bias is
    `logit(clip(mean_image, 1e-3, 1 - 1e-3))`.
  """
  hidden = (hidden_dim, hidden_dim) if kind == "nonlinear" else ()
  encoder = Logits(hidden, latent_dim, activation)
  decoder = Logits(hidden, data_dim, activation)

  def init(key: chex.PRNGKey, mean_image: np.ndarray | None) -> Params:
    k_enc, k_dec = jax.random.split(key)
    decoder_params = decoder.init(k_dec, jnp.zeros((latent_dim,)))["params"]
    if mean_image is not None:
      mean = np.clip(np.asarray(mean_image, np.float64), 1e-3, 1 - 1e-3)
      bias = decoder_params["out"]["bias"]
      decoder_params = {
        **decoder_params,
        "out": {
          **decoder_params["out"],
          "bias": jnp.asarray(np.log(mean / (1 - mean)), bias.dtype),
        },
      }
    return {
      "encoder": encoder.init(k_enc, jnp.zeros((data_dim,)))["params"],
      "decoder": decoder_params,
      "prior": {"logits": jnp.zeros((latent_dim,), jnp.float32)},
    }

  def prior_logits(generative: Params) -> jax.Array:
    logits = generative["prior"]["logits"]
    # A zero gradient leaves Adam's update exactly 0: a fixed prior stays 0.
    return logits if learn_prior else jax.lax.stop_gradient(logits)

  return Model(
    encode=lambda p, x: encoder.apply({"params": p}, x),
    decode=lambda p, b: decoder.apply({"params": p}, b),
    prior_logits=prior_logits,
    init=init,
  )


def posterior(q_params: dict[str, jax.Array]) -> distributions.Bernoulli:
  """q(b | x) from the encoder's output `{"logits": [..., L]}`."""
  return distributions.Bernoulli(q_params["logits"])


def generative(params: Params) -> Params:
  """The parameters of p(x, b): the decoder's and the prior's."""
  return {"decoder": params["decoder"], "prior": params["prior"]}


def log_joint(
  model: Model, generative_params: Params, x: jax.Array, b: jax.Array
) -> jax.Array:
  """log p(x, b) = log p(x | b) + log p(b), one image x `[D]`, b `[L]`."""
  log_likelihood = distributions.Bernoulli(
    model.decode(generative_params["decoder"], b)
  ).log_prob(x)
  prior = distributions.Bernoulli(model.prior_logits(generative_params))
  return log_likelihood + prior.log_prob(b)


def log_weights(
  model: Model,
  params: Params,
  x: jax.Array,
  key: chex.PRNGKey,
  num_samples: int,
) -> jax.Array:
  r""":math:`\log p(x, b_k) - \log q(b_k \mid x)` at fresh draws of q.

  The draws are under ``stop_gradient`` (a step function of the logits), so
  the gradient of the result in the generative parameters is the exact
  gradient at the sampled :math:`b_k`.

  Args:
    model: the model's pure functions.
    params: `{"encoder", "decoder", "prior"}`.
    x: one image `[D]`.
    key: consumed.
    num_samples: draws (K).

  Returns:
    `[num_samples]` log weights.
  """
  q = posterior({"logits": model.encode(params["encoder"], x)})
  b = q.sample(key, (num_samples,))  # [K, L]
  log_p = jax.vmap(functools.partial(log_joint, model, generative(params), x))(
    b
  )
  return log_p - q.log_prob(b)
