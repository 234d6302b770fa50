r"""Variance of Monte Carlo gradient estimators across cost functions.

Reproduces Figures 2 and 3 of Mohamed et al. (2020), Section 3: for
:math:`X \sim N(\mu, \sigma^2)` at :math:`\mu = \sigma = 1` and the costs

* ``square``: :math:`f(x; k) = (x - k)^2`,
* ``exp_sq``: :math:`f(x; k) = \exp(-k x^2)`,
* ``cos``:    :math:`f(x; k) = \cos(k x)`,

the variance of the single-sample estimators of :math:`\partial_\mu E[f]` and
:math:`\partial_\sigma E[f]` against :math:`k`, for the estimators

* ``pathwise``: :func:`rgrad.estimators.pathwise_jacobians`,
* ``score_function``: :func:`rgrad.estimators.score_function_jacobians`,
* ``score_function_cv``: the score function with the delta-method control
  variate :math:`h` (the second-order Taylor expansion of :math:`f` at
  :math:`\mu`), :func:`rgrad.control_variates.control_variate_jacobians`,
  with the near-optimal coefficient :math:`c^* = \mathrm{Cov}(g, g_h) /
  \mathrm{Var}(g_h)` per grid point and parameter coordinate, estimated by
  :func:`rgrad.control_variates.estimate_control_variate_coefficients` from an
  independent pilot batch of ``cv_num_pilot_samples`` draws (its own key) and
  then held fixed. Given :math:`c`, the estimates :math:`(f - c h)(x)
  \nabla\log p(x) + c\nabla E[h]` are iid and unbiased, and their exact
  variance is the score-function variance of :math:`f - c_\theta h`,
  component :math:`\theta`. This is the paper's curve (the delta method with
  an estimated coefficient); a fixed :math:`c = 1` is far *worse* than the
  plain score function for :math:`\cos(kx)` and :math:`\exp(-kx^2)`,
  where the quadratic :math:`h` is a poor global fit,
* ``measure_valued``: :func:`rgrad.estimators.measure_valued_jacobians`
  (coupled by default).

Every empirical mean and variance (``num_samples`` draws) is compared with the
exact gradient and exact single-sample variance by quadrature
(:mod:`rgrad.exact`, which shares no code with the estimators), with a z-score
whose standard error comes from the samples themselves.

The figures show what the paper shows: for :math:`(x - k)^2` the pathwise
variance of the :math:`\mu`-gradient is flat in :math:`k` (it is
:math:`4\sigma^2`; the :math:`\sigma`-gradient's is
:math:`4(\mu - k)^2 + 8\sigma^2`) while the score-function variance grows
like :math:`k^4`; for
:math:`\cos(k x)` the pathwise variance grows with :math:`k` (like
:math:`k^2`) while the score-function variance stays bounded (the cost does).

Beyond the paper:

* ``dim_sweep``: the cost summed over the ``d`` coordinates of a diagonal
  Gaussian, :math:`F(x) = \sum_i f(x_i; k)`. The estimators of
  :math:`\partial_{\mu_1}` from the pathwise and measure-valued estimators
  only see :math:`x_1`, so their variance does not depend on ``d``; the score
  function multiplies the *whole* cost by the score of :math:`x_1`, so its
  variance grows linearly in ``d``, and the total variance (summed over all
  ``2 d`` parameters) quadratically. The delta-method control variate's
  exact variance follows from the same decomposition with :math:`f - c h`
  in place of :math:`f` (its mean and variance by quadrature).
* ``sigma_sweep``: the variance against the scale :math:`\sigma` at a fixed
  :math:`k` per cost. Its (k, sigma) points are appended to the k grid, so it
  shares that program (and ``num_samples``, ``chunk_size`` and random
  numbers).
* Timings: the measured wall time per sample of each estimator (jitted, same
  run, compile time excluded), so that variance x time, the
  *work-normalized variance*, compares estimators at equal compute.

Parallelism and determinism. Draws are processed in chunks of ``chunk_size``;
chunk ``c`` draws its randomness from ``fold_in(key, c)`` with ``c`` the
*global* chunk index, and chunks are sharded over a 1-d ``jax.sharding.Mesh``
of all devices (every host's, with ``--config.distributed``) by
``jax.shard_map``; each device loops over its chunks with ``lax.map`` and
returns per-chunk central moments (mean and :math:`M_2, M_3, M_4`, in
float64), which are merged on the host in chunk order with the exact
shift formulas. Results are therefore independent of the number of devices,
and memory stays :math:`O(\text{chunk\_size} \times \text{grid})`. Each
(sweep, estimator) is compiled once for all costs: grid points (``k``,
``sigma``, ``d``) are ``vmap``-ed, never looped over in Python; the ``d``
sweep samples ``max(dims)`` coordinates and masks the cost, which leaves
the distribution of the first coordinate's estimates unchanged. Random
numbers are common across the grid points of one sweep (smooth curves),
independent across costs, estimators and sweeps.

Outputs in ``workdir``:

* ``results.json`` (deterministic: the same config gives the same bytes)::

    {"schema_version": 1,
     "config": {...},                       # the config used
     "records": [                # one per (cost, k, estimator, param)
       {"cost": "square" | "exp_sq" | "cos",
        "k": float,
        "estimator": "pathwise" | "score_function" | "score_function_cv"
                     | "measure_valued",
        "param": "mu" | "sigma",
        "mean": float,                      # empirical mean of the estimates
        "variance": float,                  # empirical (unbiased) variance
        "exact_mean": float,                # exact gradient (quadrature)
        "exact_variance": float,            # exact single-sample variance
                                            # (sf_cv: given its coefficient)
        "num_samples": int,
        "stderr": float,                    # standard error of `mean`
        "mean_z": float,                    # (mean - exact_mean) / stderr
        "variance_stderr": float,           # from the 4th central moment
        "variance_z": float | null,         # (variance - exact) / its stderr
        "variance_ratio": float | null,     # variance / exact_variance
                                            # (null if the latter is ~0)
        "cv_coefficient": float | null},    # sf_cv: the pilot's c for this
                                            # grid point and parameter
                                            # (first coordinate); else null
       ...],
     "sigma_sweep": [...],                  # records as above with "scale"
                                            # (the sigma of the Gaussian)
     "dim_sweep": [...],                    # records as above (first
                                            # coordinate) with "dim",
                                            # "total_variance" (summed over
                                            # the d coordinates of `param`)
                                            # and "exact_total_variance"
     "summary": {"max_abs_mean_z": float, "max_abs_variance_z": float}}

* ``timings.json`` (not deterministic, hence kept apart)::

    {"platform": str, "device_count": int, "process_count": int,
     "wall_time_s": float,
     "phases": {"estimators_s", "exact_s", "plot_s"},   # seconds
     "main": [{"estimator", "compile_s", "run_s", "num_evaluations",
               "seconds_per_sample"}, ...],   # one per estimator
     "dim_sweep": [...]}   # the same fields

  ``seconds_per_sample`` is ``run_s / num_evaluations`` with
  ``num_evaluations = num_samples * (grid points summed over the costs)``:
  one sample is one single-sample estimate of both gradients at one grid
  point (all costs share one program per estimator, so the time is their
  average; the cost functions are cheap next to the estimators' work). The
  control variate's ``run_s`` includes its pilot batch (once per device), a
  real cost of the method.
* ``results.csv``, ``sigma_sweep.csv``, ``dim_sweep.csv``: the records.
* ``variance_<cost>.png``: the paper's layout, log-variance against ``k``, one
  panel per parameter, one line per estimator, exact values dashed.
* ``dim_sweep.png``, ``sigma_sweep.png``, ``work_normalized_variance.png``.
* A table on stdout.

Usage: see `experiments/configs/estimator_variance.py`.

References:
  Mohamed, Rosca, Figurnov, Mnih. Monte Carlo Gradient Estimation in Machine
  Learning. JMLR 2020, https://arxiv.org/abs/1906.10652 (Section 3, Figures
  2-3; Sections 4-7).
  Pebay. Formulas for robust, one-pass parallel computation of covariances and
  arbitrary-order statistical moments. Sandia report SAND2008-6212 (merging
  central moments).
"""

import concurrent.futures
import csv
import functools
import json
import math
import os
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.common import distributed
from experiments.common import launch
from experiments.configs import estimator_variance as config_lib
from rgrad import control_variates
from rgrad import distributions
from rgrad import estimators
from rgrad import exact

PARAMS = ("mu", "sigma")
_SAMPLES_AXIS = "samples"
# Stable ids for key derivation: a cost's numbers do not depend on which other
# costs or estimators were selected.
_SWEEP_IDS = {"main": 0, "dim_sweep": 2}
# The pilot batches that estimate the control-variate coefficients draw from
# their own streams: no chunk of any sweep ever sees these numbers.
_PILOT_IDS = {"main": 3, "dim_sweep": 4}
# Relative accuracy of the quadrature references (rgrad.exact reaches 1e-10).
# z-scores divide by the Monte Carlo standard error combined with it, so an
# estimator that is exact up to roundoff (the delta method on the quadratic
# cost, where h = f and every estimate equals the gradient) is not flagged
# for differing from the reference in the 15th digit.
_REFERENCE_TOL = 1e-10
# An exact variance below this is zero up to roundoff: no variance ratio.
_ZERO_VARIANCE = 1e-20


# ---------------------------------------------------------------------------
# The costs of Figures 2-3, with closed-form moments of f(X).
# ---------------------------------------------------------------------------


class Cost(NamedTuple):
  r"""A scalar cost :math:`f(x; k)` applied elementwise.

  Attributes:
    fn: ``(x, k) -> f(x; k)``, elementwise in ``x``.
    label: the formula, for plots.
    moments: ``(k, loc, scale) -> (E f(X), Var f(X))`` for
      :math:`X \sim N(loc, scale^2)`, in closed form. Only the ``dim`` sweep's
      exact score-function variance needs them (the other coordinates'
      cost acts on the first coordinate's score as a random baseline).
    k_positive: whether ``k`` must be > 0 (``exp_sq``: for k < 0,
      exp(-k x^2) grows like a Gaussian's inverse and the estimators'
      variances become infinite once k <= -1/(4 sigma^2); the paper uses
      k > 0).
  """

  fn: Callable[[jax.Array, jax.Array], jax.Array]
  label: str
  moments: Callable[..., tuple[jax.Array, jax.Array]]
  k_positive: bool


def _square_moments(k, loc, scale):
  # X - k ~ N(loc - k, s^2): E (X-k)^2 = (loc-k)^2 + s^2 and
  # Var (X-k)^2 = 2 s^4 + 4 s^2 (loc-k)^2 (non-central chi-square).
  shift = loc - k
  return shift**2 + scale**2, 2 * scale**4 + 4 * scale**2 * shift**2


def _gaussian_exp_sq(a, loc, scale):
  # E exp(-a X^2) = (1 + 2 a s^2)^{-1/2} exp(-a loc^2 / (1 + 2 a s^2)).
  denom = 1.0 + 2.0 * a * scale**2
  return jnp.exp(-a * loc**2 / denom) / jnp.sqrt(denom)


def _exp_sq_moments(k, loc, scale):
  mean = _gaussian_exp_sq(k, loc, scale)
  return mean, _gaussian_exp_sq(2 * k, loc, scale) - mean**2


def _cos_moments(k, loc, scale):
  # E cos(kX) = exp(-k^2 s^2 / 2) cos(k loc); cos^2 = (1 + cos 2kx) / 2.
  mean = jnp.exp(-0.5 * (k * scale) ** 2) * jnp.cos(k * loc)
  second = 0.5 * (1.0 + jnp.exp(-2.0 * (k * scale) ** 2) * jnp.cos(2 * k * loc))
  return mean, second - mean**2


COSTS: dict[str, Cost] = {
  "square": Cost(
    fn=lambda x, k: jnp.square(x - k),
    label="(x - k)²",
    moments=_square_moments,
    k_positive=False,
  ),
  "exp_sq": Cost(
    fn=lambda x, k: jnp.exp(-k * jnp.square(x)),
    label="exp(-k x²)",
    moments=_exp_sq_moments,
    k_positive=True,
  ),
  "cos": Cost(
    fn=lambda x, k: jnp.cos(k * x),
    label="cos(k x)",
    moments=_cos_moments,
    k_positive=False,
  ),
}
assert tuple(COSTS) == config_lib.COSTS


# ---------------------------------------------------------------------------
# The estimators, all with the shared rgrad signature.
# ---------------------------------------------------------------------------


def _dist_builder(params: dict[str, jax.Array]) -> distributions.Normal:
  return distributions.Normal(loc=params["mu"], scale=params["sigma"])


class _Estimator(NamedTuple):
  """An estimator of the sweep, optionally with a pilot stage.

  Attributes:
    sample: ``(function, params, dist_builder, key, num_samples, aux) ->``
      jacobians, a pytree like `params` with a leading `num_samples` axis.
    pilot: None, or ``(function, params, dist_builder, key) -> aux``, run
      once per grid point on an independent key before any chunk; `aux` (a
      pytree like `params`) is then fixed for every chunk.
  """

  sample: Callable[..., Any]
  pilot: Callable[..., Any] | None = None


def _plain(estimator: Callable[..., Any]) -> _Estimator:
  return _Estimator(
    sample=lambda function, params, builder, key, n, aux: estimator(
      function, params, builder, key, n
    )
  )


def _estimator_fns(
  coupling: bool, num_pilot_samples: int
) -> dict[str, _Estimator]:
  """Name -> :class:`_Estimator`."""
  # The delta method (Mohamed et al. 7.4.2) with the near-optimal coefficient
  # c* = Cov(g, g_h) / Var(g_h), per parameter coordinate and grid point,
  # estimated from an independent pilot batch. Given c, the per-sample
  # estimates (f - c h) grad log p + c grad E[h] are iid and unbiased, so
  # their empirical variance is a single-sample variance, known exactly (the
  # score-function variance of f - c h). With c = 1 fixed instead, the
  # variance was far *above* the plain score function's for cos(kx) and
  # exp(-kx^2), where h is a poor global fit.
  cv_pilot = functools.partial(
    control_variates.estimate_control_variate_coefficients,
    num_samples=num_pilot_samples,
    estimator="score_function",
    control_variate="delta",
  )
  return {
    "pathwise": _plain(estimators.pathwise_jacobians),
    "score_function": _plain(estimators.score_function_jacobians),
    "score_function_cv": _Estimator(
      sample=lambda function, params, builder, key, n, aux: (
        control_variates.control_variate_jacobians(
          function,
          params,
          builder,
          key,
          n,
          estimator="score_function",
          control_variate="delta",
          coefficient=aux,
        )
      ),
      pilot=lambda function, params, builder, key: cv_pilot(
        function, params, builder, key
      ),
    ),
    "measure_valued": _plain(
      functools.partial(estimators.measure_valued_jacobians, coupling=coupling)
    ),
  }


# ---------------------------------------------------------------------------
# Config parsing: every check runs before any computation.
# ---------------------------------------------------------------------------


class _Parsed(NamedTuple):
  costs: tuple[str, ...]
  estimators: tuple[str, ...]
  k_grids: dict[str, np.ndarray]
  scales: np.ndarray
  dims: tuple[int, ...]


def _names(value: Any, field: str, valid: Sequence[str]) -> tuple[str, ...]:
  if isinstance(value, str):
    names = tuple(n.strip() for n in value.split(",") if n.strip())
  elif isinstance(value, (list, tuple)):
    names = tuple(str(n).strip() for n in value)
  else:
    raise TypeError(
      f"config.{field} must be a comma-separated string, got "
      f"{type(value).__name__}."
    )
  if not names:
    raise ValueError(
      f"config.{field} is empty; choose from: {', '.join(valid)}."
    )
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ValueError(
      f"Unknown name(s) {', '.join(repr(n) for n in unknown)} in "
      f"config.{field}; valid names are: {', '.join(valid)}."
    )
  if len(set(names)) != len(names):
    raise ValueError(f"config.{field} lists a name twice: {value!r}.")
  return names


def _positive_int(value: Any, field: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(
      f"config.{field} must be an int, got {type(value).__name__}."
    )
  if value < minimum:
    raise ValueError(f"config.{field} must be >= {minimum}, got {value}.")
  return int(value)


def _check_chunking(num_samples: Any, chunk_size: Any, prefix: str) -> None:
  num_samples = _positive_int(num_samples, f"{prefix}num_samples", 2)
  chunk_size = _positive_int(chunk_size, f"{prefix}chunk_size")
  if num_samples % chunk_size:
    raise ValueError(
      f"config.{prefix}num_samples ({num_samples}) must be a multiple of "
      f"config.{prefix}chunk_size ({chunk_size})."
    )


def _grid(spec: Any, field: str, geometric: bool = False) -> np.ndarray:
  """(start, stop, num) -> a float64 grid."""
  if not isinstance(spec, (list, tuple)) or len(spec) != 3:
    raise ValueError(
      f"config.{field} must be a (start, stop, num) triple, got {spec!r}."
    )
  start, stop, num = spec
  num = _positive_int(num, f"{field}[2] (num)")
  if not all(np.isfinite([start, stop])):
    raise ValueError(f"config.{field} has a non-finite end point: {spec!r}.")
  if geometric:
    if start <= 0 or stop <= 0:
      raise ValueError(
        f"config.{field} is geometric and needs start, stop > 0: {spec!r}."
      )
    return np.geomspace(start, stop, num)
  return np.linspace(start, stop, num)


def parse_config(config: ml_collections.ConfigDict) -> _Parsed:
  """Validates `config`; raises ValueError/TypeError naming the problem.

  Args:
    config: see `experiments/configs/estimator_variance.py`.

  Returns:
    The parsed cost and estimator names and grids.
  """
  costs = _names(config.costs, "costs", config_lib.COSTS)
  names = _names(config.estimators, "estimators", config_lib.ESTIMATORS)
  _check_chunking(config.num_samples, config.chunk_size, "")
  _positive_int(config.cv_num_pilot_samples, "cv_num_pilot_samples", 2)
  _positive_int(config.exact_num_points, "exact_num_points", 2)
  if not (np.isfinite(config.loc) and np.isfinite(config.scale)):
    raise ValueError("config.loc and config.scale must be finite.")
  if config.scale <= 0:
    raise ValueError(f"config.scale must be > 0, got {config.scale}.")
  k_grids = {c: _grid(config.k_grid[c], f"k_grid.{c}") for c in costs}
  for c in costs:
    ks = [("k_grid", k_grids[c])]
    if config.dim_sweep.enabled:
      ks.append(("dim_sweep.k", np.array([config.dim_sweep.k[c]])))
    if config.sigma_sweep.enabled:
      ks.append(("sigma_sweep.k", np.array([config.sigma_sweep.k[c]])))
    for field, k in ks:
      if not np.all(np.isfinite(k)):
        raise ValueError(f"config.{field}.{c} must be finite.")
      if COSTS[c].k_positive and np.any(k <= 0):
        raise ValueError(
          f"config.{field}.{c}: the cost {c} = exp(-k x^2) needs k > 0 "
          f"(it is unbounded for k <= 0), got {k.min()}."
        )
  scales = np.zeros(0)
  if config.sigma_sweep.enabled:
    scales = _grid(config.sigma_sweep.scales, "sigma_sweep.scales", True)
  dims: tuple[int, ...] = ()
  if config.dim_sweep.enabled:
    _check_chunking(
      config.dim_sweep.num_samples, config.dim_sweep.chunk_size, "dim_sweep."
    )
    if not isinstance(config.dim_sweep.dims, (list, tuple)):
      raise TypeError("config.dim_sweep.dims must be a tuple of ints.")
    dims = tuple(
      _positive_int(d, "dim_sweep.dims[i]") for d in config.dim_sweep.dims
    )
    if not dims or len(set(dims)) != len(dims):
      raise ValueError(
        f"config.dim_sweep.dims must be non-empty and distinct, got {dims}."
      )
  return _Parsed(costs, names, k_grids, scales, dims)


# ---------------------------------------------------------------------------
# Sharded, chunked moments.
# ---------------------------------------------------------------------------


def _central_moments(samples: jax.Array) -> jax.Array:
  """[n, *rest] -> [4, *rest]: the mean and the central sums M2, M3, M4."""
  mean = jnp.mean(samples, axis=0)
  centered = samples - mean
  sq = jnp.square(centered)
  return jnp.stack(
    [mean, sq.sum(0), (sq * centered).sum(0), jnp.square(sq).sum(0)]
  )


def _device_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh over every device (of every process)."""
  return jax.sharding.Mesh(np.array(jax.devices()), (_SAMPLES_AXIS,))


class _Program(NamedTuple):
  """A lowered sharded program and its inputs."""

  lowered: Any  # jax.stages.Lowered
  chunk_ids: jax.Array  # [padded], sharded over the mesh
  key_data: Any  # pytree of uint32 numpy key data, replicated
  pilot_key_data: Any  # the same, for `pilot_fn`
  num_chunks: int


def _lower_chunked_moments(
  chunk_fn: Callable[[Any, Any], Any],
  keys: Any,
  num_chunks: int,
  mesh: jax.sharding.Mesh,
  pilot_fn: Callable[[Any], Any],
  pilot_keys: Any,
) -> _Program:
  """Lowers the per-chunk central moments, chunks sharded over `mesh`.

  Args:
    chunk_fn: ``(keys, aux) ->`` a pytree of per-sample values, each leaf
      ``[chunk_size, *rest]``, for a pytree of keys.
    keys: a pytree of keys; chunk ``c`` gets ``fold_in(key, c)`` for each.
    num_chunks: number of chunks; padded up to a multiple of the device count
      (the padding chunks are computed and dropped).
    mesh: a 1-d mesh with axis ``samples``.
    pilot_fn: ``pilot_keys -> aux``, a pytree of arrays passed to every
      chunk. Every device computes it from the same replicated keys with the
      same per-device program, so `aux` does not depend on the device count
      (nor do the chunks, which all see the same `aux`).
    pilot_keys: a pytree of keys for `pilot_fn`, used as is.

  Returns:
    The lowered program; compile it, then call :func:`_execute`.
  """
  num_devices = mesh.devices.size
  padded = -(-num_chunks // num_devices) * num_devices
  sharding = NamedSharding(mesh, P(_SAMPLES_AXIS))
  all_ids = np.arange(padded, dtype=np.int32)
  chunk_ids = jax.make_array_from_callback(
    (padded,), sharding, lambda index: all_ids[index]
  )

  def local(ids, key_data, pilot_key_data):  # ids: this device's chunks
    aux = pilot_fn(jax.tree.map(jax.random.wrap_key_data, pilot_key_data))

    def one_chunk(chunk_id):
      chunk_keys = jax.tree.map(
        lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), chunk_id),
        key_data,
      )
      return jax.tree.map(_central_moments, chunk_fn(chunk_keys, aux))

    # A loop, not a vmap, over the local chunks: every chunk runs the same
    # computation whatever the number of chunks per device, so the numbers do
    # not depend on the device count.
    moments = jax.lax.map(one_chunk, ids)
    # One copy of `aux` per device (all equal); the host keeps the first.
    return jax.tree.map(lambda a: a[None], aux), moments

  # check_vma=False: the estimators take VJPs of closures over replicated
  # parameters with per-device cotangents, which the varying-manual-axes type
  # check rejects although every chunk is computed independently.
  sharded = jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(P(_SAMPLES_AXIS), P(), P()),
    out_specs=(P(_SAMPLES_AXIS), P(_SAMPLES_AXIS)),
    check_vma=False,
  )
  # Keys travel as host numpy key data: with several processes, a host value
  # is a replicated input of the global program (the same on every host).
  to_data = lambda k: np.asarray(jax.random.key_data(k))  # noqa: E731
  key_data = jax.tree.map(to_data, keys)
  pilot_key_data = jax.tree.map(to_data, pilot_keys)
  lowered = jax.jit(sharded).lower(chunk_ids, key_data, pilot_key_data)
  return _Program(lowered, chunk_ids, key_data, pilot_key_data, num_chunks)


def _compile(program: _Program) -> tuple[Any, float]:
  start = time.perf_counter()
  compiled = program.lowered.compile()
  return compiled, time.perf_counter() - start


def _execute(program: _Program, compiled) -> tuple[Any, Any, float]:
  """Runs; returns (aux, per-chunk moments, run seconds), host float64."""
  start = time.perf_counter()
  aux, out = jax.block_until_ready(
    compiled(program.chunk_ids, program.key_data, program.pilot_key_data)
  )
  run_s = time.perf_counter() - start
  if jax.process_count() > 1:
    aux, out = multihost_utils.process_allgather((aux, out), tiled=True)
  n = program.num_chunks
  aux = jax.tree.map(lambda a: np.asarray(a, np.float64)[0], aux)
  out = jax.tree.map(lambda s: np.asarray(s, np.float64)[:n], out)
  return aux, out, run_s


class Moments(NamedTuple):
  """Merged sample moments; each field has the shape of one sample."""

  mean: np.ndarray
  variance: np.ndarray  # unbiased
  stderr: np.ndarray  # of `mean`
  variance_stderr: np.ndarray  # of `variance`, from the 4th moment
  num_samples: int


def merge_moments(stats: np.ndarray, chunk_size: int) -> Moments:
  r"""Merges per-chunk central moments of equal-size chunks, in chunk order.

  With chunk means :math:`m_c`, overall mean :math:`m` and
  :math:`\delta_c = m_c - m`, expanding :math:`(x - m)^p = ((x - m_c) +
  \delta_c)^p` and using :math:`\sum_{x \in c} (x - m_c) = 0`:

  .. math::
    M_2 = \sum_c M_{2,c} + n_c \delta_c^2, \quad
    M_3 = \sum_c M_{3,c} + 3\delta_c M_{2,c} + n_c \delta_c^3, \quad
    M_4 = \sum_c M_{4,c} + 4\delta_c M_{3,c} + 6\delta_c^2 M_{2,c}
          + n_c\delta_c^4.

  The variance of the unbiased sample variance :math:`s^2` of :math:`N` draws
  is :math:`(\mu_4 - \sigma^4 (N-3)/(N-1)) / N`, estimated with
  :math:`\mu_4 = M_4/N` and :math:`\sigma^2 = s^2`.

  Args:
    stats: ``[num_chunks, 4, *rest]`` from :func:`_central_moments`.
    chunk_size: draws per chunk.

  Returns:
    The merged :class:`Moments`.
  """
  stats = np.asarray(stats, np.float64)
  means, m2, m3, m4 = (stats[:, i] for i in range(4))
  n = stats.shape[0] * chunk_size
  mean = means.mean(axis=0)
  delta = means - mean
  total_m2 = (m2 + chunk_size * delta**2).sum(0)
  total_m4 = (
    m4 + 4 * delta * m3 + 6 * delta**2 * m2 + chunk_size * delta**4
  ).sum(0)
  variance = total_m2 / (n - 1)
  mu4 = total_m4 / n
  var_of_var = np.maximum(mu4 - variance**2 * (n - 3) / (n - 1), 0.0) / n
  return Moments(
    mean=mean,
    variance=variance,
    stderr=np.sqrt(variance / n),
    variance_stderr=np.sqrt(var_of_var),
    num_samples=n,
  )


# ---------------------------------------------------------------------------
# The sweeps.
# ---------------------------------------------------------------------------


def _params(loc, scale, dim: int) -> dict[str, jax.Array]:
  return {
    "mu": jnp.full((dim,), loc, jnp.float64),
    "sigma": jnp.full((dim,), scale, jnp.float64),
  }


def _grid_samples(estimator: _Estimator, make_problem, grid, chunk_size: int):
  """chunk_fn: (key, aux) -> {param: [chunk_size, len(grid), dim]} estimates.

  `make_problem(g) -> (function, params)` for one grid point ``g``; the grid
  (and `aux`, one entry per grid point) is vmapped, so the whole grid
  compiles once. One key serves every grid point (common random numbers).
  """

  def chunk_fn(key, aux):
    def at(g, a):
      function, params = make_problem(g)
      return estimator.sample(
        function, params, _dist_builder, key, chunk_size, a
      )

    return jax.vmap(at, out_axes=1)(grid, aux)

  return chunk_fn


def _grid_pilot(estimator: _Estimator, make_problem, grid):
  """pilot_fn: key -> aux with a leading grid axis ({} without a pilot)."""

  def pilot_fn(key):
    if estimator.pilot is None:
      return {}

    def at(g):
      function, params = make_problem(g)
      return estimator.pilot(function, params, _dist_builder, key)

    return jax.vmap(at)(grid)

  return pilot_fn


def _key(seed: int, stream: int, cost: str, estimator: str) -> jax.Array:
  """The key of one (stream, cost, estimator); `stream` from `_SWEEP_IDS`."""
  key = jax.random.key(seed)
  key = jax.random.fold_in(key, stream)
  key = jax.random.fold_in(key, config_lib.COSTS.index(cost))
  return jax.random.fold_in(key, config_lib.ESTIMATORS.index(estimator))


def _z(value: float, exact_value: float, stderr: float) -> float:
  """z-score against a reference known to `_REFERENCE_TOL` (relative)."""
  tol = _REFERENCE_TOL * max(1.0, abs(exact_value))
  return (value - exact_value) / math.hypot(stderr, tol)


def _record(moments: Moments, index, exact_mean, exact_variance, **fields):
  """One JSON record for one grid point and parameter."""
  mean = float(moments.mean[index])
  variance = float(moments.variance[index])
  stderr = float(moments.stderr[index])
  var_se = float(moments.variance_stderr[index])
  exact_mean = float(exact_mean)
  if exact_variance is not None:
    exact_variance = float(exact_variance)
    if not math.isfinite(exact_variance):
      raise ValueError(
        f"non-finite exact variance at {fields}: the quadrature reference "
        "failed (too few exact_num_points for this cost?)."
      )
  defined = exact_variance is not None and exact_variance >= _ZERO_VARIANCE
  return dict(
    **fields,
    mean=mean,
    variance=variance,
    exact_mean=exact_mean,
    exact_variance=exact_variance,
    num_samples=moments.num_samples,
    stderr=stderr,
    mean_z=_z(mean, exact_mean, stderr),
    variance_stderr=var_se,
    variance_z=None
    if exact_variance is None
    else _z(variance, exact_variance, var_se),
    variance_ratio=variance / exact_variance if defined else None,
  )


def _delta_expansion(f, loc):
  r"""The delta-method control variate's Taylor coefficients at ``loc``.

  :math:`h(x) = f(\mu) + f'(\mu)(x - \mu) + \tfrac12 f''(\mu)(x - \mu)^2`
  (Mohamed et al. 7.4.2), the derivatives of the user's cost by `jax.grad`
  (not a call into the estimators).

  Returns:
    ``(f0, f1, f2, h)`` with ``h`` the control variate as a function.
  """
  loc = jnp.asarray(loc, jnp.float64)
  f0, f1 = jax.value_and_grad(f)(loc)
  f2 = jax.grad(jax.grad(f))(loc)

  def h(x):
    return f0 + f1 * (x - loc) + 0.5 * f2 * (x - loc) ** 2

  return f0, f1, f2, h


def _cv_variances(f, loc, scale, coefficients, num_points, shift=0.0):
  r"""Exact variances of the delta-method CV estimator, given its c.

  Given the coefficient :math:`c_\theta` of parameter :math:`\theta`, the
  controlled estimate :math:`(f - c_\theta h)(X)\, s_\theta(X) + c_\theta
  \partial_\theta E[h]` differs from the score-function estimate of
  :math:`f - c_\theta h` by a constant, so its variance is that estimate's
  (:func:`rgrad.exact.score_function_variance`), component :math:`\theta`.

  Args:
    f: the cost.
    loc, scale: the Gaussian.
    coefficients: [2], (c_mu, c_sigma).
    num_points: quadrature nodes.
    shift: a constant added to :math:`f - c h` (the dim sweep's other
      coordinates, see `_dim_exact`).

  Returns:
    [2] variances (mu, sigma).
  """
  _, _, _, h = _delta_expansion(f, loc)

  def variance(c, index):
    residual = lambda x: f(x) - c * h(x) + shift  # noqa: E731
    return exact.score_function_variance(
      residual, loc, scale, num_points=num_points
    )[index]

  return jnp.stack([variance(coefficients[0], 0), variance(coefficients[1], 1)])


def _exact_at(
  cost: Cost, k, loc, scale, coupling: bool, num_points: int, coefficients
):
  """Exact gradient [2] and variance [2] per estimator at one (k, scale).

  `coefficients` [2] are the control variate's (c_mu, c_sigma) there.
  """
  f = lambda x: cost.fn(x, k)  # noqa: E731
  kw = dict(num_points=num_points)
  return (
    jnp.stack(exact.exact_gradient(f, loc, scale, **kw)),
    {
      "pathwise": jnp.stack(exact.pathwise_variance(f, loc, scale, **kw)),
      "score_function": jnp.stack(
        exact.score_function_variance(f, loc, scale, **kw)
      ),
      "score_function_cv": _cv_variances(
        f, loc, scale, coefficients, num_points
      ),
      "measure_valued": jnp.stack(
        exact.measure_valued_variance(f, loc, scale, coupling=coupling, **kw)
      ),
    },
  )


def _residual_moments(cost: Cost, k, loc, scale, c, num_points: int):
  r"""Mean and variance of :math:`g = f - c\,h` under :math:`N(loc, s^2)`.

  By Gauss--Hermite quadrature, in two passes (:math:`E[(g - E g)^2]`): at
  :math:`c \approx 1` on the quadratic cost :math:`g` is roundoff, and the
  closed forms (:math:`\mathrm{Var} f - 2c\,\mathrm{Cov}(f, h) +
  c^2\mathrm{Var}\, h`, by Stein's lemma; the test checks them against this)
  would cancel to ~1e-14 instead of ~1e-30.
  """
  f = lambda x: cost.fn(x, k)  # noqa: E731
  _, _, _, h = _delta_expansion(f, loc)
  eps, weights = np.polynomial.hermite_e.hermegauss(num_points)
  weights = jnp.asarray(weights / weights.sum())
  x = loc + scale * jnp.asarray(eps)
  g = f(x) - c * h(x)
  mean = jnp.sum(weights * g)
  return mean, jnp.sum(weights * jnp.square(g - mean))


def _dim_cv_variances(cost: Cost, k, loc, scale, d, coefficients, num_points):
  r"""The dim sweep's delta-method CV variance, one coordinate, given c.

  For :math:`F = \sum_{i \le d} f(x_i)` the delta method's :math:`H =
  \sum_i h(x_i)` (the Hessian is diagonal), and coordinate 1's coefficient
  :math:`c` multiplies all of :math:`H`: its estimate is
  :math:`(g(x_1) + S)\,s(x_1)` up to a constant, with :math:`g = f - c h` and
  :math:`S = \sum_{1 < i \le d} g(x_i)` independent of :math:`x_1`. As for
  the plain score function (see `_dim_exact`) the variance is
  :math:`V(E S) + \mathrm{Var}(S)\,E[s^2]`, :math:`V(b)` the 1-d variance of
  :math:`g + b`, with :math:`E S` and :math:`\mathrm{Var}\, S` from
  :func:`_residual_moments`. By exchangeability this holds for every active
  coordinate with its own c.

  Args:
    cost, k, loc, scale: the problem (every coordinate alike).
    d: the dimension (float).
    coefficients: [2], (c_mu, c_sigma) of the coordinate.
    num_points: quadrature nodes.

  Returns:
    [2] variances (mu, sigma).
  """
  f = lambda x: cost.fn(x, k)  # noqa: E731
  score_sq = (1.0 / scale**2, 2.0 / scale**2)  # E[s^2] for mu, sigma
  out = []
  for index in range(2):
    c = coefficients[index]
    mean_g, var_g = _residual_moments(cost, k, loc, scale, c, num_points)
    both = _cv_variances(
      f, loc, scale, jnp.stack([c, c]), num_points, shift=(d - 1) * mean_g
    )
    out.append(both[index] + (d - 1) * var_g * score_sq[index])
  return jnp.stack(out)


def _points(config, parsed, cost: str) -> np.ndarray:
  """The (k, scale) points of the k grid, then of the sigma sweep: [G, 2]."""
  ks = parsed.k_grids[cost]
  points = [np.stack([ks, np.full_like(ks, config.scale)], axis=1)]
  if config.sigma_sweep.enabled:
    scales = parsed.scales
    k = np.full_like(scales, config.sigma_sweep.k[cost])
    points.append(np.stack([k, scales], axis=1))
  return np.concatenate(points)


def _exact_references(config, parsed, coefficients) -> dict[str, Any]:
  r"""Every exact reference, in one compiled program.

  Args:
    config: the config.
    parsed: `parse_config(config)`.
    coefficients: cost -> {"points": [G, 2] control-variate coefficients
      (c_mu, c_sigma) at `_points`, and with the dim sweep "dim":
      [len(dims), max(dims), 2] per coordinate}; zeros when the control
      variate is not run.

  Returns:
    cost -> {"points": (grad [2, G], {estimator: variance [2, G]}) at
    `_points`, and, with the dim sweep, "dim": (grad [2], {estimator:
    first-coordinate variance [2, len(dims)]}, {estimator: variance summed
    over the d active coordinates [2, len(dims)]})}; the parameters
    (mu, sigma) on the first axis.
  """
  loc, scale, coupling = config.loc, config.scale, config.coupling
  num_points = config.exact_num_points
  dims = np.asarray(parsed.dims, np.float64)
  points = {c: jnp.asarray(_points(config, parsed, c)) for c in parsed.costs}
  # The dim sweep's score function needs E f(X) (see `_dim_exact`).
  shifts = {
    c: jnp.asarray(
      (dims - 1) * float(COSTS[c].moments(config.dim_sweep.k[c], loc, scale)[0])
    )
    for c in parsed.costs
  }

  @jax.jit
  def compute(points, shifts, coefficients):
    out = {}
    for c, cost in ((c, COSTS[c]) for c in points):
      at = lambda g, cv, cost=cost: _exact_at(  # noqa: E731
        cost, g[0], loc, g[1], coupling, num_points, cv
      )
      out[c] = {
        "points": jax.vmap(at, out_axes=(1, 1))(
          points[c], coefficients[c]["points"]
        )
      }
      if len(dims):
        k = config.dim_sweep.k[c]

        def shifted(shift, cost=cost, k=k):
          f = lambda x: cost.fn(x, k) + shift  # noqa: E731
          return jnp.stack(
            exact.score_function_variance(f, loc, scale, num_points=num_points)
          )

        def cv_at(d, cv, cost=cost, k=k):  # cv: [2] of one coordinate
          return _dim_cv_variances(cost, k, loc, scale, d, cv, num_points)

        out[c]["dim_point"] = _exact_at(
          cost, k, loc, scale, coupling, num_points, jnp.zeros(2)
        )
        out[c]["dim_shifted"] = jax.vmap(shifted, out_axes=1)(shifts[c])
        # [len(dims), max_dim, 2]: every coordinate with its own c.
        out[c]["dim_cv"] = jax.vmap(jax.vmap(cv_at, (None, 0)))(
          jnp.asarray(dims), coefficients[c]["dim"]
        )
    return out

  out = jax.tree.map(
    np.asarray,
    compute(points, shifts, jax.tree.map(jnp.asarray, coefficients)),
  )
  for c in parsed.costs:
    if len(dims):
      out[c]["dim"] = _dim_exact(
        COSTS[c],
        config.dim_sweep.k[c],
        loc,
        scale,
        dims,
        out[c].pop("dim_point"),
        out[c].pop("dim_shifted"),
        out[c].pop("dim_cv"),
      )
  return out


class _Job(NamedTuple):
  """One compiled program: every cost's grid for one (sweep, estimator)."""

  sweep: str  # a key of _SWEEP_IDS
  estimator: str
  # cost -> (make_problem, grid), see `_grid_samples`.
  problems: dict[str, tuple[Callable[..., Any], jax.Array]]
  num_samples: int
  chunk_size: int


def _run_jobs(jobs: list[_Job], seed: int, estimator_fns, mesh):
  """Lowers, compiles (in parallel threads) and runs every job.

  XLA compilation dominates the run time of this experiment on a CPU and
  releases the GIL, so the programs are compiled concurrently, one thread per
  core; they are then run one at a time so that the timings are clean.

  Returns:
    {(sweep, estimator): ({cost: {param: Moments}}, timing dict)}, the
    Moments' fields of shape [len(grid), dim].
  """
  programs = []
  for job in jobs:
    estimator = estimator_fns[job.estimator]
    chunk_fns, pilot_fns = {}, {}
    for c, (make_problem, grid) in job.problems.items():
      chunk_fns[c] = _grid_samples(
        estimator, make_problem, grid, job.chunk_size
      )
      pilot_fns[c] = _grid_pilot(estimator, make_problem, grid)
    # All costs in one program: one compile per (sweep, estimator), the pilot
    # stage included.
    chunk_fn = lambda keys, aux, fns=chunk_fns: {  # noqa: E731
      c: fn(keys[c], aux[c]) for c, fn in fns.items()
    }
    pilot_fn = lambda keys, fns=pilot_fns: {  # noqa: E731
      c: fn(keys[c]) for c, fn in fns.items()
    }
    keys, pilot_keys = (
      {c: _key(seed, ids[job.sweep], c, job.estimator) for c in job.problems}
      for ids in (_SWEEP_IDS, _PILOT_IDS)
    )
    programs.append(
      _lower_chunked_moments(
        chunk_fn,
        keys,
        job.num_samples // job.chunk_size,
        mesh,
        pilot_fn,
        pilot_keys,
      )
    )
  workers = max(1, min(len(programs), os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    compiled = list(pool.map(_compile, programs))
  out = {}
  for job, program, (executable, compile_s) in zip(
    jobs, programs, compiled, strict=True
  ):
    aux, stats, run_s = _execute(program, executable)
    results = {
      c: {p: merge_moments(stats[c][p], job.chunk_size) for p in PARAMS}
      for c in job.problems
    }
    num_points = sum(int(grid.shape[0]) for _, grid in job.problems.values())
    evaluations = job.num_samples * num_points
    timing = dict(
      estimator=job.estimator,
      compile_s=compile_s,
      run_s=run_s,
      num_evaluations=evaluations,
      seconds_per_sample=run_s / evaluations,
    )
    logging.info(
      "%s / %s: compile %.2fs, run %.2fs (%.3g us per sample)",
      job.sweep,
      job.estimator,
      compile_s,
      run_s,
      1e6 * run_s / evaluations,
    )
    out[(job.sweep, job.estimator)] = (results, timing, aux)
  return out


def _first(moments: Moments) -> Moments:
  """The first coordinate of moments with fields [grid, dim]."""
  return Moments(*(f[:, 0] for f in moments[:4]), moments.num_samples)


def _main_jobs(config, parsed) -> list[_Job]:
  """The k grids and the sigma sweep, as one (k, scale) grid per cost."""
  problems = {}
  for c in parsed.costs:
    cost = COSTS[c]
    make_problem = lambda g, cost=cost: (  # noqa: E731
      lambda x: jnp.sum(cost.fn(x, g[0])),
      _params(config.loc, g[1], 1),
    )
    problems[c] = (make_problem, jnp.asarray(_points(config, parsed, c)))
  return [
    _Job("main", n, problems, config.num_samples, config.chunk_size)
    for n in parsed.estimators
  ]


def _cv_coefficients(config, parsed, out) -> dict[str, dict[str, Any]]:
  """The control variate's coefficients, as `_exact_references` takes them.

  Returns:
    cost -> {"points": [G, 2], "dim": [len(dims), max(dims), 2]} (c_mu,
    c_sigma) on the last axis; zeros (unused) when ``score_function_cv`` was
    not run.
  """
  run_cv = "score_function_cv" in parsed.estimators
  result = {}
  for c in parsed.costs:
    shapes = {"points": (len(_points(config, parsed, c)), 1)}
    sweeps = {"points": "main"}
    if parsed.dims:
      shapes["dim"] = (len(parsed.dims), max(parsed.dims))
      sweeps["dim"] = "dim_sweep"
    result[c] = {}
    for field, shape in shapes.items():
      if run_cv:
        aux = out[(sweeps[field], "score_function_cv")][2][c]
        values = np.stack([aux[p] for p in PARAMS], axis=-1)  # [*shape, 2]
      else:
        values = np.zeros((*shape, 2))
      result[c][field] = values[:, 0] if field == "points" else values
  return result


def _main_records(config, parsed, out, references):
  """Records of the k grids and of the sigma sweep."""
  records, sigma_records = [], []
  for c in parsed.costs:
    num_k = len(parsed.k_grids[c])
    exact_mean, exact_var = references[c]["points"]
    for i, (k, scale) in enumerate(_points(config, parsed, c)):
      main = i < num_k
      fields = dict(cost=c, k=float(k))
      if not main:
        fields["scale"] = float(scale)
      for name in parsed.estimators:
        results, _, aux = out[("main", name)]
        for j, p in enumerate(PARAMS):
          record = _record(
            _first(results[c][p]),
            i,
            exact_mean[j, i],
            exact_var[name][j, i],
            **fields,
            estimator=name,
            param=p,
            cv_coefficient=float(aux[c][p][i, 0]) if aux[c] else None,
          )
          (records if main else sigma_records).append(record)
  return records, sigma_records


def _dim_exact(cost: Cost, k, loc, scale, dims, at_point, shifted, cv):
  r"""Exact first-coordinate variances for :math:`F(x) = \sum_i f(x_i)`.

  Pathwise and measure-valued estimates of :math:`\partial_{\theta_1}` depend
  on :math:`x_1` only: their variance is the 1-d one. The score function's is
  :math:`(f(x_1) + S)\, s(x_1)` with :math:`S = \sum_{i>1} f(x_i)`
  independent of :math:`x_1`; averaging over :math:`S` gives
  :math:`V(E S) + \mathrm{Var}(S)\, E[s^2]`, where :math:`V(c)` is the 1-d
  score-function variance of :math:`f + c`, :math:`E S = (d-1) E f`,
  :math:`\mathrm{Var}\, S = (d-1) \mathrm{Var} f` (closed forms in `Cost`),
  and :math:`E[s^2] = 1/\sigma^2` (mu), :math:`2/\sigma^2` (sigma). The
  delta-method control variate's is the same with :math:`f - c h` in place
  of :math:`f` (`_dim_cv_variances`), per coordinate with its own c.

  Args:
    cost: the cost.
    k: its parameter.
    loc: the Gaussian's mean (every coordinate).
    scale: its standard deviation (every coordinate).
    dims: [D] dimensions.
    at_point: `_exact_at` at (k, scale): (grad [2], {estimator: [2]}).
    shifted: [2, D], the 1-d score-function variance of f + (d - 1) E f.
    cv: [D, max(dims), 2], the control variate's variance per coordinate.

  Returns:
    (exact_mean [2], {estimator: [2, D] first coordinate}, {estimator:
    [2, D] summed over the d active coordinates}).
  """
  grad, variances = at_point
  f_var = float(cost.moments(k, loc, scale)[1])
  score_sq = np.array([1.0, 2.0])[:, None] / scale**2
  ones = np.ones_like(dims)
  first = {
    "pathwise": variances["pathwise"][:, None] * ones,
    "score_function": shifted + score_sq * (dims - 1) * f_var,
    "measure_valued": variances["measure_valued"][:, None] * ones,
    "score_function_cv": cv[:, 0, :].T,
  }
  # Coordinates are exchangeable: the plain estimators' total is d times the
  # first coordinate's; the control variate's has one c per coordinate.
  total = {n: v * dims for n, v in first.items()}
  masks = _dim_masks(dims.astype(int))  # [D, max_dim]
  total["score_function_cv"] = np.einsum("dm,dmp->pd", masks, cv)
  return grad, first, total


def _dim_masks(dims: Sequence[int]) -> np.ndarray:
  """Row i masks the cost to the first dims[i] of max(dims) coordinates."""
  return np.arange(max(dims))[None, :] < np.asarray(dims)[:, None]


def _dim_jobs(config, parsed) -> list[_Job]:
  sweep = config.dim_sweep
  masks = jnp.asarray(_dim_masks(parsed.dims), jnp.float64)  # [D, max_dim]
  params = _params(config.loc, config.scale, max(parsed.dims))
  problems = {}
  for c in parsed.costs:
    cost, k = COSTS[c], sweep.k[c]
    make_problem = lambda mask, cost=cost, k=k: (  # noqa: E731
      lambda x: jnp.sum(mask * cost.fn(x, k)),
      params,
    )
    problems[c] = (make_problem, masks)
  return [
    _Job("dim_sweep", n, problems, sweep.num_samples, sweep.chunk_size)
    for n in parsed.estimators
  ]


def _dim_records(config, parsed, out, references):
  sweep = config.dim_sweep
  dims = parsed.dims
  masks = _dim_masks(dims)
  records = []
  for c in parsed.costs:
    exact_mean, exact_var, exact_total = references[c]["dim"]
    for i, d in enumerate(dims):
      for name in parsed.estimators:
        results, _, aux = out[("dim_sweep", name)]
        for j, p in enumerate(PARAMS):
          moments = results[c][p]  # fields [len(dims), max_dim]
          record = _record(
            _first(moments),
            i,
            exact_mean[j],
            exact_var[name][j, i],
            cost=c,
            k=float(sweep.k[c]),
            dim=int(d),
            estimator=name,
            param=p,
            cv_coefficient=float(aux[c][p][i, 0]) if aux[c] else None,
          )
          record["total_variance"] = float(moments.variance[i][masks[i]].sum())
          record["exact_total_variance"] = float(exact_total[name][j, i])
          records.append(record)
  return records


# ---------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------


def _write_csv(path: str, records: list[dict[str, Any]]) -> None:
  if not records:
    return
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)


def _print_table(records, costs, names) -> None:
  """Empirical (exact) variance, per cost and parameter, one row per k."""
  width = 26
  for cost in costs:
    for p in PARAMS:
      rows = [r for r in records if r["cost"] == cost and r["param"] == p]
      print(f"\nVariance of d/d{p} E[{cost}]: empirical (exact), z")
      print(f"{'k':>7} " + "".join(f"{n:>{width}}" for n in names))
      for k in sorted({r["k"] for r in rows}):
        cells = []
        for n in names:
          (r,) = [r for r in rows if r["k"] == k and r["estimator"] == n]
          exact_v = r["exact_variance"]
          ex = "  -  " if exact_v is None else f"{exact_v:.3g}"
          z = "" if r["variance_z"] is None else f" {r['variance_z']:+.1f}"
          cells.append(f" {r['variance']:.3g} ({ex}){z}".rjust(width))
        print(f"{k:7.3f} " + "".join(cells))


# Fixed margins: tight_layout measured every tick label and cost seconds.
_MARGINS = dict(
  left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.25, hspace=0.45
)

_COLORS = {
  "pathwise": "tab:blue",
  "score_function": "tab:orange",
  "score_function_cv": "tab:green",
  "measure_valued": "tab:red",
}


_LABELS = {
  "pathwise": "pathwise",
  "score_function": "score function",
  "score_function_cv": "score function + delta CV (estimated c)",
  "measure_valued": "measure-valued",
}


def _legend_below(fig, ax) -> None:
  """One legend for the figure, under the panels, so it hides no data."""
  handles, labels = ax.get_legend_handles_labels()
  fig.legend(
    handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False
  )
  # Fixed room in inches for the x labels plus two rows of legend entries.
  bottom = 1.0 / fig.get_figheight()
  fig.subplots_adjust(**{**_MARGINS, "bottom": bottom})


def _plot(workdir, parsed, results, timings) -> list[str]:
  import matplotlib  # noqa: PLC0415  (optional dependency)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  from matplotlib import ticker  # noqa: PLC0415

  # Plain-text tick labels and titles: mathtext parsing dominated the plotting
  # time (seconds per figure on a loaded CPU).
  plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")

  def log_scale(ax, which="y", **kwargs):
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", **kwargs)
    axis.set_major_formatter(plain)
    axis.set_minor_locator(ticker.NullLocator())

  paths = []

  def save(fig, legend_ax, filename: str) -> None:
    """Legend under the panels, then write `filename` in workdir and close."""
    _legend_below(fig, legend_ax)
    paths.append(os.path.join(workdir, filename))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

  def lines(ax, rows, x_field, y_of, exact_of=None):
    for n in parsed.estimators:
      sel = [r for r in rows if r["estimator"] == n]
      if not sel:
        continue
      xs = np.array([r[x_field] for r in sel], np.float64)
      ys = np.array([y_of(r) for r in sel], np.float64)
      # Roundoff-level "variances" (the delta method on the quadratic cost,
      # where the estimator is exact) cannot sit on a log axis with the rest.
      shown = ys > _ZERO_VARIANCE
      tag = (
        ""
        if shown.any()
        else " (zero where h = f, as for (x - k)²: off the log axis)"
      )
      ax.plot(
        xs[shown],
        ys[shown],
        ".-",
        color=_COLORS[n],
        label=_LABELS[n] + tag,
        lw=1.5,
        ms=4,
      )
      if exact_of is not None and sel[0]["exact_variance"] is not None:
        exact_ys = np.array([exact_of(r) for r in sel], np.float64)
        keep = exact_ys > _ZERO_VARIANCE
        ax.plot(xs[keep], exact_ys[keep], "--", color="k", lw=0.8)
    log_scale(ax)
    ax.grid(True, which="major", alpha=0.3)

  label = {"mu": "μ", "sigma": "σ"}
  records = results["records"]
  for c in parsed.costs:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, p in zip(axes, PARAMS, strict=True):
      rows = [r for r in records if r["cost"] == c and r["param"] == p]
      lines(
        ax,
        rows,
        "k",
        lambda r: r["variance"],
        lambda r: r["exact_variance"],
      )
      ax.set_xlabel("k")
      ax.set_ylabel("variance")
      ax.set_title(f"{COSTS[c].label}: gradient w.r.t. {label[p]}  (- - exact)")
    save(fig, axes[0], f"variance_{c}.png")

  # Work-normalized variance: variance x seconds per sample.
  per_sample = {t["estimator"]: t["seconds_per_sample"] for t in timings}
  fig, axes = plt.subplots(
    len(parsed.costs), 2, figsize=(10, 3.2 * len(parsed.costs)), squeeze=False
  )
  for row, c in enumerate(parsed.costs):
    for ax, p in zip(axes[row], PARAMS, strict=True):
      rows = [r for r in records if r["cost"] == c and r["param"] == p]
      lines(
        ax,
        rows,
        "k",
        lambda r: r["variance"] * per_sample[r["estimator"]],
      )
      ax.set_xlabel("k")
      ax.set_ylabel("variance x s/sample")
      ax.set_title(f"{COSTS[c].label}: work-normalized, {label[p]}")
  save(fig, axes[0, 0], "work_normalized_variance.png")

  if results["sigma_sweep"]:
    fig, axes = plt.subplots(
      len(parsed.costs),
      2,
      figsize=(10, 3.2 * len(parsed.costs)),
      squeeze=False,
    )
    for row, c in enumerate(parsed.costs):
      for ax, p in zip(axes[row], PARAMS, strict=True):
        rows = [
          r
          for r in results["sigma_sweep"]
          if r["cost"] == c and r["param"] == p
        ]
        lines(
          ax,
          rows,
          "scale",
          lambda r: r["variance"],
          lambda r: r["exact_variance"],
        )
        log_scale(ax, "x")
        ax.set_xlabel("σ")
        ax.set_ylabel("variance")
        ax.set_title(
          f"{COSTS[c].label}, k={rows[0]['k']:g}: {label[p]}  (- - exact)"
        )
    save(fig, axes[0, 0], "sigma_sweep.png")

  if results["dim_sweep"]:
    fig, axes = plt.subplots(
      len(parsed.costs),
      3,
      figsize=(14, 3.2 * len(parsed.costs)),
      squeeze=False,
    )
    for row, c in enumerate(parsed.costs):
      rows = [r for r in results["dim_sweep"] if r["cost"] == c]
      for ax, p in zip(axes[row][:2], PARAMS, strict=True):
        lines(
          ax,
          [r for r in rows if r["param"] == p],
          "dim",
          lambda r: r["variance"],
          lambda r: r["exact_variance"],
        )
        ax.set_title(
          f"{COSTS[c].label}, k={rows[0]['k']:g}: {label[p]}₁  (- - exact)"
        )
      # Total variance: summed over both parameters of all d coordinates.
      ax = axes[row][2]
      for n in parsed.estimators:
        sel = [r for r in rows if r["estimator"] == n]
        ds = sorted({r["dim"] for r in sel})
        total = np.array(
          [sum(r["total_variance"] for r in sel if r["dim"] == d) for d in ds]
        )
        exact_total = [
          sum(r["exact_total_variance"] for r in sel if r["dim"] == d)
          if all(r["exact_total_variance"] is not None for r in sel)
          else None
          for d in ds
        ]
        shown = total > _ZERO_VARIANCE
        ax.plot(
          np.array(ds)[shown], total[shown], ".-", color=_COLORS[n], lw=1.5
        )
        if None not in exact_total:
          # As in `lines`: roundoff-level references stay off the log axis.
          exact_total = np.array(exact_total, np.float64)
          keep = exact_total > _ZERO_VARIANCE
          ax.plot(
            np.array(ds)[keep], exact_total[keep], "--", color="k", lw=0.8
          )
      log_scale(ax)
      ax.grid(True, which="major", alpha=0.3)
      ax.set_title(f"{COSTS[c].label}: total variance, 2d params (- - exact)")
      for ax in axes[row]:
        log_scale(ax, "x", base=2)
        ax.set_xlabel("dimension d")
    save(fig, axes[0, 0], "dim_sweep.png")
  return paths


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the experiment and writes its outputs to `workdir`.

  Args:
    config: see `experiments/configs/estimator_variance.py`.
    workdir: output directory, created if needed.

  Returns:
    The contents of ``results.json``.

  Raises:
    ValueError, TypeError: a bad config (unknown cost or estimator names, ...),
      before any computation.
  """
  parsed = parse_config(config)
  # Float64 throughout: the per-chunk moments and the quadrature references.
  jax.config.update("jax_enable_x64", True)
  if config.distributed:
    distributed.initialize(
      config.coordinator_address, config.num_processes, config.process_id
    )
  start = time.perf_counter()
  mesh = _device_mesh()
  logging.info(
    "estimator_variance: %d device(s) (%s), %d process(es)",
    jax.device_count(),
    jax.devices()[0].platform,
    jax.process_count(),
  )
  estimator_fns = _estimator_fns(config.coupling, config.cv_num_pilot_samples)

  jobs = _main_jobs(config, parsed)
  if config.dim_sweep.enabled:
    jobs += _dim_jobs(config, parsed)
  phases = {}
  phase_start = time.perf_counter()
  out = _run_jobs(jobs, config.seed, estimator_fns, mesh)
  phases["estimators_s"] = time.perf_counter() - phase_start
  phase_start = time.perf_counter()
  references = _exact_references(
    config, parsed, _cv_coefficients(config, parsed, out)
  )
  phases["exact_s"] = time.perf_counter() - phase_start
  records, sigma_records = _main_records(config, parsed, out, references)
  dim_records = (
    _dim_records(config, parsed, out, references) if parsed.dims else []
  )
  main_timings = [t for (s, _), (_, t, _) in out.items() if s == "main"]
  dim_timings = [t for (s, _), (_, t, _) in out.items() if s == "dim_sweep"]

  def max_abs(field):
    values = [
      abs(r[field])
      for r in records + sigma_records + dim_records
      if r[field] is not None
    ]
    return max(values) if values else None

  results = {
    "schema_version": 1,
    # Through JSON, so that the returned dict equals the file (tuples become
    # lists).
    "config": json.loads(json.dumps(config.to_dict())),
    "records": records,
    "sigma_sweep": sigma_records,
    "dim_sweep": dim_records,
    "summary": {
      "max_abs_mean_z": max_abs("mean_z"),
      "max_abs_variance_z": max_abs("variance_z"),
    },
  }
  timings = {
    "platform": jax.devices()[0].platform,
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
    "wall_time_s": None,
    "phases": phases,
    "main": main_timings,
    "dim_sweep": dim_timings,
  }
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=1, allow_nan=False)
    _write_csv(os.path.join(workdir, "results.csv"), records)
    _write_csv(os.path.join(workdir, "sigma_sweep.csv"), sigma_records)
    _write_csv(os.path.join(workdir, "dim_sweep.csv"), dim_records)
    if config.plot:
      phase_start = time.perf_counter()
      for path in _plot(workdir, parsed, results, main_timings):
        logging.info("wrote %s", path)
      phases["plot_s"] = time.perf_counter() - phase_start
    _print_table(records, parsed.costs, parsed.estimators)
    print(
      "\nmax |z| of the means: {max_abs_mean_z}, of the variances: "
      "{max_abs_variance_z}".format(**results["summary"])
    )
    timings["wall_time_s"] = time.perf_counter() - start
    with open(os.path.join(workdir, "timings.json"), "w") as f:
      json.dump(timings, f, indent=1)
    print(f"wall time {timings['wall_time_s']:.1f}s; outputs in {workdir}")
  return results


if __name__ == "__main__":
  launch.run_app("estimator_variance", run)
