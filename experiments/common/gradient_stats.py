r"""Statistics of R independent gradient estimates at fixed parameters.

The model experiments measure an estimator's noise the same way: draw
:math:`g_1..g_R` i.i.d. estimates of the whole gradient (every parameter
array of a pytree) at the current parameters, and summarize them by

* the total variance :math:`\operatorname{tr} S = \sum_j
  \widehat{\mathrm{Var}}(g_{\cdot j})`, unbiased (``ddof=1``), with its
  jackknife standard error (:func:`total_variance`);
* the signal-to-noise ratio :math:`\|E g\| / \sqrt{\operatorname{tr}
  \Sigma}`, with the squared signal estimated without bias
  (:func:`signal_to_noise`).

References:
  Mohamed et al., JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 9.3).
  Efron and Stein, The jackknife estimate of variance, Ann. Statist. 1981.
"""

from typing import Any

import jax
import jax.numpy as jnp


def total_variance(grads: Any) -> dict[str, jax.Array]:
  r"""Trace of the covariance of R estimates, and its jackknife SE.

  With :math:`c_r = g_r - \bar g` and :math:`e_r = \|c_r\|^2` (summed over
  every coordinate of every leaf), :math:`\operatorname{tr} S =
  \sum_r e_r / (R - 1)`. Leaving estimate :math:`r` out moves the others'
  mean by :math:`-c_r/(R-1)`, so the leave-one-out trace is, exactly,

  .. math:: T_{-r} = \frac{\sum_s e_s - \frac{R}{R-1} e_r}{R - 2},

  and the jackknife variance :math:`\frac{R-1}{R}\sum_r (T_{-r} -
  \bar T)^2` is :math:`\frac{R}{(R-1)(R-2)^2}\sum_r (e_r - \bar e)^2`.
  Everything is computed from the centred estimates, so a mean much larger
  than the spread costs no precision. The jackknife is conservative: its
  square overestimates :math:`\mathrm{Var}(\operatorname{tr} S)` in
  expectation (the Efron-Stein inequality); for Gaussian estimates, where
  :math:`\mathrm{Var}(\operatorname{tr} S) = 2 \operatorname{tr}
  \Sigma^2 / (R - 1)`, by exactly the factor :math:`(R-1)/(R-2)` (7% at
  R = 16; rotate to the eigenbasis of :math:`\Sigma` and use
  :math:`E\sum_r (e_r - \bar e)^2 = 2 (R-1)(R-2) \operatorname{tr}
  \Sigma^2 / R`).

  Args:
    grads: a pytree whose leaves are ``[R, ...]``, R >= 3 estimates.

  Returns:
    ``grad_variance`` (:math:`\operatorname{tr} S`) and
    ``grad_variance_se`` (its jackknife standard error), scalars.

  Raises:
    ValueError: fewer than 3 estimates (the jackknife needs R - 2 > 0).
  """
  leaves = jax.tree.leaves(grads)
  num = leaves[0].shape[0]
  if num < 3:
    raise ValueError(f"total_variance needs R >= 3 estimates, got {num}.")
  squares = sum(
    jnp.sum(jnp.square(g - jnp.mean(g, axis=0)).reshape(num, -1), axis=1)
    for g in leaves
  )  # e_r, [R]
  variance = jnp.sum(squares) / (num - 1)
  spread = jnp.sum(jnp.square(squares - jnp.mean(squares)))
  se = jnp.sqrt(num * spread / ((num - 1) * (num - 2) ** 2))
  return {"grad_variance": variance, "grad_variance_se": se}


def signal_to_noise(grads: Any) -> dict[str, jax.Array]:
  r"""Variance and signal-to-noise ratio from R independent estimates.

  With :math:`g_1..g_R` i.i.d. with mean :math:`\mu` and covariance
  :math:`\Sigma`, :math:`\bar g` their mean and :math:`S` their sample
  covariance (``ddof=1``), :math:`E \operatorname{tr} S = \operatorname{tr}
  \Sigma` but :math:`E\|\bar g\|^2 = \|\mu\|^2 + \operatorname{tr}
  \Sigma / R`: the plug-in ratio :math:`\|\bar g\| /
  \sqrt{\operatorname{tr} S}` is biased upward and reads about
  :math:`1/\sqrt R` (0.25 for R = 16) when there is no signal at all. So the
  squared signal is estimated without bias by :math:`\|\bar g\|^2 -
  \operatorname{tr} S / R`, and

  .. math:: \widehat{\mathrm{SNR}^2} = \frac{\|\bar g\|^2 -
            \operatorname{tr} S / R}{\operatorname{tr} S}, \qquad
            \widehat{\mathrm{SNR}} = \sqrt{\max(\widehat{\mathrm{SNR}^2},
            0)}.

  The numerator of ``grad_snr_sq`` is unbiased (the ratio nearly so: for
  Gaussian draws :math:`\bar g` and :math:`S` are independent and the bias
  is a factor :math:`E[\operatorname{tr}\Sigma/\operatorname{tr} S] - 1
  \approx 2/(d(R-1))` for :math:`d` comparable coordinates); average that
  one over seeds or steps. ``grad_snr`` is clipped at 0, which biases it
  upward again, but only by the noise of the estimate, not by
  :math:`1/\sqrt R`.

  Args:
    grads: a pytree whose leaves are ``[R, ...]``, R >= 2 estimates.

  Returns:
    ``grad_variance`` (:math:`\operatorname{tr} S`), ``grad_snr_sq`` and
    ``grad_snr``, scalars.
  """
  leaves = jax.tree.leaves(grads)
  num_replicates = leaves[0].shape[0]
  variance = sum(jnp.sum(jnp.var(g, axis=0, ddof=1)) for g in leaves)
  mean_sq_norm = sum(jnp.sum(jnp.square(jnp.mean(g, axis=0))) for g in leaves)
  snr_sq = (mean_sq_norm - variance / num_replicates) / variance
  return {
    "grad_variance": variance,
    "grad_snr_sq": snr_sq,
    "grad_snr": jnp.sqrt(jnp.maximum(snr_sq, 0.0)),
  }
