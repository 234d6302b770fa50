r"""The sweeps, run on :mod:`rgrad.diagnostics`' moments engine.

Each (sweep, estimator) is one compiled program for all costs: the k grid
and the sigma sweep share the ``main`` program (their ``(k, scale)`` points
are one grid per cost), the dim sweep has its own. Draws are processed in
chunks of ``chunk_size``; chunk ``c`` of cost ``j`` draws from
``fold_in(key_j, c)``, ``key_j`` the cost's key (:func:`cost_key`), so a
cost's numbers do not depend on which other costs or estimators run, and
chunks are sharded over every device (of every process) by the engine,
which streams float64 moments up to the fourth
(``higher_moments=True``). Results are independent of the number of
devices up to rounding.

The control variate's coefficients come from a pilot batch per grid point,
computed once before the chunks from its own key (a stream no chunk ever
sees) and passed to every chunk through the engine's ``args``.

Centring. The engine streams the moments of each estimate minus a constant
*center* per grid point and coordinate, the exact gradient there
(:func:`rgrad.exact.exact_gradient`), and the center is added back to the
mean; the variance and the higher moments do not depend on it. Centred
values have small chunk means, so how those means are rounded cannot leak
into the merged variance. That matters where an estimator is exact up to
roundoff (the delta method on the quadratic cost, variance ~1e-30): there a
chunk mean near 8 reaches the merge rounded in one compiled program and
unrounded in another (XLA may contract a multiply-add), which adds spurious
variance of the same size and made one device and four disagree. The
center is a constant: any value gives the same statistics up to rounding,
so the comparison with the exact values stays honest.
"""

import concurrent.futures
import functools
import os
import time
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from experiments.configs import estimator_variance as config_lib
from experiments.estimator_variance import adapters
from experiments.estimator_variance.costs import COSTS
from experiments.estimator_variance.costs import PARAMS
from rgrad import diagnostics
from rgrad import exact

# Stable ids for key derivation: a cost's numbers do not depend on which other
# costs or estimators were selected.
SWEEP_IDS = {"main": 0, "dim_sweep": 2}
# The pilot batches that estimate the control-variate coefficients draw from
# their own streams: no chunk of any sweep ever sees these numbers.
PILOT_IDS = {"main": 3, "dim_sweep": 4}


def cost_key(seed: int, stream: int, cost: str, estimator: str) -> jax.Array:
  """The key of one (stream, cost, estimator); `stream` from the ids above."""
  key = jax.random.key(seed)
  key = jax.random.fold_in(key, stream)
  key = jax.random.fold_in(key, config_lib.COSTS.index(cost))
  return jax.random.fold_in(key, config_lib.ESTIMATORS.index(estimator))


def points(config, parsed, cost: str) -> np.ndarray:
  """The (k, scale) points of the k grid, then of the sigma sweep: [G, 2]."""
  ks = parsed.k_grids[cost]
  out = [np.stack([ks, np.full_like(ks, config.scale)], axis=1)]
  if config.sigma_sweep.enabled:
    k = np.full_like(parsed.scales, config.sigma_sweep.k[cost])
    out.append(np.stack([k, parsed.scales], axis=1))
  return np.concatenate(out)


def dim_masks(dims) -> np.ndarray:
  """Row i masks the cost to the first dims[i] of max(dims) coordinates."""
  return np.arange(max(dims))[None, :] < np.asarray(dims)[:, None]


class Job(NamedTuple):
  """One compiled program: every cost's grid for one (sweep, estimator)."""

  sweep: str  # a key of SWEEP_IDS
  estimator: str  # a config name
  adapter: adapters.Adapter
  problems: tuple[tuple[str, Any], ...]  # (cost, problem)
  grids: dict[str, np.ndarray]  # cost -> [G, ...] grid points
  centers: dict[str, dict[str, np.ndarray]]  # cost -> param -> [G, dim]
  num_samples: int
  chunk_size: int


@functools.partial(jax.jit, static_argnames=("costs", "num_points"))
def _exact_gradients(points, loc, *, costs, num_points):
  """{cost: [G, 2]} exact (d/dmu, d/dsigma) at the (k, scale) points."""

  def at(cost, point):
    f = lambda x: cost.fn(x, point[0])
    return jnp.stack(
      exact.exact_gradient(f, loc, point[1], num_points=num_points)
    )

  return {
    c: jax.vmap(functools.partial(at, COSTS[c]))(points[c]) for c in costs
  }


def _centers(config, parsed) -> tuple[dict[str, Any], dict[str, Any]]:
  """The centers of the main and of the dim sweep's grids (see above).

  Returns:
    ``(main, dim)``, each cost -> param -> ``[G, dim]``; the dim sweep's
    are zero on the coordinates its mask switches off (their gradient).
  """
  # One program: the dim sweep's (k, scale) point after the main points.
  main_points = {c: points(config, parsed, c) for c in parsed.costs}
  every_point = {
    c: np.concatenate([p, [[config.dim_sweep.k[c], config.scale]]])
    if parsed.dims
    else p
    for c, p in main_points.items()
  }
  grads = _exact_gradients(
    every_point,
    float(config.loc),
    costs=parsed.costs,
    num_points=config.exact_num_points,
  )
  grads = {c: np.asarray(g) for c, g in grads.items()}  # [G (+ 1), 2]
  main = {
    c: {p: grads[c][: len(g), j, None] for j, p in enumerate(PARAMS)}
    for c, g in main_points.items()
  }
  dim = {}
  if parsed.dims:
    masks = dim_masks(parsed.dims)  # [D, max_dim]
    dim = {
      c: {p: np.where(masks, g[-1, j], 0.0) for j, p in enumerate(PARAMS)}
      for c, g in grads.items()
    }
  return main, dim


def jobs(config, parsed) -> list[Job]:
  """The main jobs (k grids and sigma sweep), then the dim sweep's."""
  main_centers, dim_centers = _centers(config, parsed)
  loc = float(config.loc)
  sweeps = [
    (
      "main",
      tuple((c, adapters.KGridProblem(COSTS[c], loc)) for c in parsed.costs),
      {c: points(config, parsed, c) for c in parsed.costs},
      main_centers,
      config.num_samples,
      config.chunk_size,
    )
  ]
  if parsed.dims:
    sweep = config.dim_sweep
    masks = dim_masks(parsed.dims).astype(np.float64)  # [D, max_dim]
    problems = tuple(
      (
        c,
        adapters.DimProblem(
          COSTS[c], float(sweep.k[c]), loc, float(config.scale), masks.shape[1]
        ),
      )
      for c in parsed.costs
    )
    grids = {c: masks for c in parsed.costs}
    sweeps.append(
      (
        "dim_sweep",
        problems,
        grids,
        dim_centers,
        sweep.num_samples,
        sweep.chunk_size,
      )
    )
  return [
    Job(
      name,
      estimator,
      adapters.adapter(estimator, config.coupling, config.cv_num_pilot_samples),
      problems,
      grids,
      centers,
      num_samples,
      chunk_size,
    )
    for name, problems, grids, centers, num_samples, chunk_size in sweeps
    for estimator in parsed.estimators
  ]


class Outcome(NamedTuple):
  """What one job produced.

  Attributes:
    moments: cost -> param -> :class:`rgrad.GradientMoments` as float64
      NumPy, fields ``[G, dim]``.
    coefficients: cost -> param -> ``[G, dim]`` pilot coefficients, or None.
    timing: the job's timings.json entry.
  """

  moments: dict[str, dict[str, diagnostics.GradientMoments]]
  coefficients: dict[str, dict[str, np.ndarray]] | None
  timing: dict[str, Any]


@functools.partial(jax.jit, static_argnames="pilot")
def _run_pilot(keys, grids, *, pilot: adapters.GridPilot):
  return pilot(keys, grids)


def _keys(seed: int, ids: dict[str, int], job: Job) -> dict[str, jax.Array]:
  """{cost: key} of `job` for the stream ids `ids`.

  With several processes a host value is a replicated input of the global
  program (the same on every process), so keys travel as host key data.
  """
  keys = {
    c: cost_key(seed, ids[job.sweep], c, job.estimator) for c, _ in job.problems
  }
  if jax.process_count() == 1:
    return keys
  return {
    c: jax.random.wrap_key_data(np.asarray(jax.random.key_data(k)))
    for c, k in keys.items()
  }


class _Program(NamedTuple):
  job: Job
  keys: dict[str, jax.Array]
  pilot_keys: dict[str, jax.Array] | None
  pilot: Any  # jax.stages.Lowered of the pilot, or None
  engine: Any  # jax.stages.Lowered of the engine


def _lower(job: Job, seed: int, mesh) -> _Program:
  """Lowers the job's pilot (if any) and its engine program."""
  keys = _keys(seed, SWEEP_IDS, job)
  pilot, pilot_keys, coefficients = None, None, {c: None for c in job.grids}
  if job.adapter.pilot_num_samples is not None:
    pilot_keys = _keys(seed, PILOT_IDS, job)
    stage = adapters.GridPilot(job.adapter, job.problems)
    pilot = _run_pilot.lower(pilot_keys, job.grids, pilot=stage)
    coefficients = jax.eval_shape(
      functools.partial(_run_pilot, pilot=stage), pilot_keys, job.grids
    )
  args = {c: (g, coefficients[c], job.centers[c]) for c, g in job.grids.items()}
  engine = diagnostics.stream_moments.lower(
    keys,
    args,
    chunk_fn=adapters.GridChunk(job.adapter, job.problems),
    num_samples=job.num_samples,
    chunk_size=job.chunk_size,
    higher_moments=True,
    mesh=mesh,
  )
  return _Program(job, keys, pilot_keys, pilot, engine)


def _compile(lowered) -> tuple[Any, float]:
  start = time.perf_counter()
  compiled = None if lowered is None else lowered.compile()
  return compiled, time.perf_counter() - start


def _as_numpy(moments: diagnostics.GradientMoments, centers):
  """{cost: {param: GradientMoments}}, float64 NumPy, centers added back."""
  fields = ("mean", "variance", "stderr", "variance_stderr")
  arrays = {f: jax.tree.map(np.asarray, getattr(moments, f)) for f in fields}
  arrays["mean"] = jax.tree.map(np.add, centers, arrays["mean"])
  return {
    c: {
      p: moments._replace(**{f: arrays[f][c][p] for f in fields})
      for p in PARAMS
    }
    for c in arrays["mean"]
  }


def run_jobs(jobs_: list[Job], seed: int) -> dict[tuple[str, str], Outcome]:
  """Lowers, compiles (in parallel threads) and runs every job.

  XLA compilation releases the GIL, so the programs are compiled
  concurrently, one thread per core; they are then run one at a time so that
  the timings are clean.

  Returns:
    ``{(sweep, estimator): Outcome}``.
  """
  mesh = diagnostics.default_mesh()
  programs = [_lower(job, seed, mesh) for job in jobs_]
  lowered = [p.pilot for p in programs] + [p.engine for p in programs]
  workers = max(1, min(len(lowered), os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    compiled = list(pool.map(_compile, lowered))
  pilots, engines = compiled[: len(programs)], compiled[len(programs) :]
  out = {}
  for program, (pilot, pilot_compile_s), (engine, compile_s) in zip(
    programs, pilots, engines, strict=True
  ):
    job = program.job
    start = time.perf_counter()
    coefficients = None
    if pilot is not None:
      # To the host: with several processes, a replicated input next.
      coefficients = jax.tree.map(
        lambda a: np.asarray(a, np.float64),
        jax.block_until_ready(pilot(program.pilot_keys, job.grids)),
      )
    pilot_s = time.perf_counter() - start if pilot is not None else 0.0
    args = {
      c: (g, None if coefficients is None else coefficients[c], job.centers[c])
      for c, g in job.grids.items()
    }
    start = time.perf_counter()
    sums = jax.block_until_ready(engine(program.keys, args))
    run_s = time.perf_counter() - start
    moments = _as_numpy(
      diagnostics.finalize_moments(sums, job.num_samples, higher_moments=True),
      job.centers,
    )
    grid_points = sum(int(g.shape[0]) for g in job.grids.values())
    evaluations = job.num_samples * grid_points
    timing = dict(
      estimator=job.estimator,
      compile_s=compile_s + pilot_compile_s,
      run_s=run_s,
      pilot_s=pilot_s,
      num_evaluations=evaluations,
      seconds_per_sample=(run_s + pilot_s) / evaluations,
    )
    logging.info(
      "%s / %s: compile %.2fs, run %.2fs (%.3g us per sample)",
      job.sweep,
      job.estimator,
      timing["compile_s"],
      run_s + pilot_s,
      1e6 * timing["seconds_per_sample"],
    )
    out[(job.sweep, job.estimator)] = Outcome(moments, coefficients, timing)
  return out
