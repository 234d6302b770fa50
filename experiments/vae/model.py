r"""The model: Bernoulli decoder, diagonal-Gaussian encoder, their densities.

A standard normal prior :math:`p(z) = N(0, I_L)`, a Bernoulli decoder
:math:`p_\theta(x \mid z) = \mathrm{Bernoulli}(\mathrm{logits} = D_\theta(z))`
over the pixels, and a diagonal-Gaussian encoder
:math:`q_\phi(z \mid x) = N(\mu_\phi(x), \mathrm{diag}\,e^{2 s_\phi(x)})`,
both one-hidden-layer MLPs (Kingma and Welling, 2014, Appendix C). The
``flax.linen`` modules are used as pure ``init``/``apply`` functions over
explicit parameter pytrees (:class:`Model`), so that the estimators and the
optimizer see plain pytrees.

References:
  Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014,
  https://arxiv.org/abs/1312.6114.
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from rgrad import distributions

Params = Any


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
  """The encoder/decoder MLPs as pure functions of parameter pytrees.

  `init(key)` returns `{"encoder": ..., "decoder": ...}`, each a flax
  `params` collection.
  """
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


def posterior(q_params: dict[str, jax.Array]) -> distributions.LogScaleNormal:
  """q(z | x) from the encoder outputs `{"loc": ..., "log_scale": ...}`."""
  return distributions.LogScaleNormal(q_params["loc"], q_params["log_scale"])


def log_likelihood(
  model: Model, decoder_params: Params, x: jax.Array, z: jax.Array
) -> jax.Array:
  """log p(x | z) for one image x `[dim]` and one latent z `[latent_dim]`."""
  return distributions.Bernoulli(model.decode(decoder_params, z)).log_prob(x)


def log_joint(
  model: Model, decoder_params: Params, x: jax.Array, z: jax.Array
) -> jax.Array:
  """log p(x, z) = log p(x | z) + log N(z; 0, I)."""
  prior = distributions.Normal(jnp.zeros_like(z), jnp.ones_like(z))
  return log_likelihood(model, decoder_params, x, z) + prior.log_prob(z)


def gaussian_kl(loc: jax.Array, log_scale: jax.Array) -> jax.Array:
  r"""KL(N(loc, e^{2 log_scale}) || N(0, I)), summed over the last axis.

  .. math:: \mathrm{KL} = \tfrac12 \textstyle\sum_l
            (\mu_l^2 + e^{2 s_l} - 1 - 2 s_l).
  """
  return 0.5 * jnp.sum(
    jnp.square(loc) + jnp.exp(2.0 * log_scale) - 1.0 - 2.0 * log_scale, -1
  )


def log_densities(
  model: Model,
  decoder_params: Params,
  loc: jax.Array,
  log_scale: jax.Array,
  x: jax.Array,
  key: chex.PRNGKey,
  num_samples: int,
) -> tuple[jax.Array, jax.Array]:
  r""":math:`\log p(x, z_k)` and :math:`\log q(z_k \mid x)` at fresh draws.

  The draws are reparameterized, :math:`z_k = \mu + e^{s} \epsilon_k`,
  :math:`\epsilon_k \sim N(0, I)`, so both are differentiable in the encoder
  outputs `loc`, `log_scale` `[n, latent_dim]` and the decoder parameters.

  Args:
    model: the model's pure functions.
    decoder_params: the decoder's parameters.
    loc: encoder means `[n, latent_dim]`.
    log_scale: encoder log standard deviations `[n, latent_dim]`.
    x: the images `[n, dim]`.
    key: consumed.
    num_samples: draws per image (K).

  Returns:
    `(log_p, log_q)`, each `[num_samples, n]`.
  """
  eps = jax.random.normal(key, (num_samples, *loc.shape), loc.dtype)
  z = loc + jnp.exp(log_scale) * eps  # [K, n, latent_dim]
  log_p = jax.vmap(
    jax.vmap(functools.partial(log_joint, model, decoder_params))
  )(jnp.broadcast_to(x, (num_samples, *x.shape)), z)  # [K, n]
  log_q = posterior({"loc": loc, "log_scale": log_scale}).log_prob(z)
  return log_p, log_q
