r"""Hand-derived gradients against jax.grad and finite differences.

Runs :func:`rgrad.gradcheck.check_gradients` over

1. every primitive of :mod:`rgrad.primitives`, at random points of its domain
   (against autodiff and finite differences) and at its edge points such as
   0 and :math:`\pm 10^4` (against autodiff only: finite differences are
   meaningless at relu's kink and step out of the domain near a boundary);
2. random chains drawn from the registry (:func:`rgrad.chain_rule.
   sample_chain`), each checked as a full Jacobian product, in forward mode
   (a Jacobian built from JVPs) and in reverse mode (one built from VJPs),
   against autodiff at random and edge points (the ends of the input
   interval), and once against finite differences at the random points;
3. the hand-written MLP backward pass, for each activation;
4. backpropagation through time for a tanh RNN over `num_steps` steps,
   including the gradient with respect to :math:`h_0`;

then records :math:`\|\partial\ell_T/\partial h_0\|` over a grid of T and
recurrent scales (vanishing / exploding gradients), and times the
hand-derived MLP and RNN gradients against `jax.jit(jax.grad(...))`.

Outputs in `workdir`:

* `results.json`::

    {
      "all_passed": bool,
      "config": {...},                      # the config as a dict
      "checks": [                           # one per gradient check
        {"group": "primitive" | "composition" | "mlp" | "rnn",
         "name": str, "passed": bool, "num_points": int,
         "autodiff_max_abs": float, "autodiff_max_rel": float,
         "fd_max_abs": float | null, "fd_max_rel": float | null,
         "report": {...}}                   # GradCheckReport.to_dict()
      ],
      "rnn_h0_grad_norm": [
        {"num_steps": int, "recurrent_scale": float,
         "last_step_norm": float,           # ||d loss_T / d h_0||
         "all_steps_norm": float}           # ||d sum_t loss_t / d h_0||
      ],
      "timing": [
        {"model": "mlp" | "rnn", "hand_seconds": float,
         "jax_seconds": float, "ratio": float}   # ratio = hand / jax
      ]
    }

* `results.csv`: the checks, one row each (the columns above, no report);
* `rnn_h0_grad_norm.csv`: the gradient-norm grid.
"""

import csv
import json
import math
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments.common import launch
from rgrad import backprop
from rgrad import chain_rule
from rgrad import gradcheck
from rgrad import primitives as prims

_CSV_COLUMNS = (
  "group",
  "name",
  "passed",
  "num_points",
  "autodiff_max_abs",
  "autodiff_max_rel",
  "fd_max_abs",
  "fd_max_rel",
)


def _row(group: str, report: gradcheck.GradCheckReport) -> dict:
  def clean(v):
    return None if v is None or not math.isfinite(v) else v

  return {
    "group": group,
    "name": report.name,
    "passed": report.passed,
    "num_points": report.num_points,
    "autodiff_max_abs": clean(report.autodiff_max_abs),
    "autodiff_max_rel": clean(report.autodiff_max_rel),
    "fd_max_abs": clean(report.fd_max_abs),
    "fd_max_rel": clean(report.fd_max_rel),
    "report": report.to_dict(),
  }


# ---------------------------------------------------------------------------
# 1. Primitives.
# ---------------------------------------------------------------------------


def _uniform_in_domain(key, prim, shape):
  lo, hi = prim.domain
  lo, hi = max(lo, -3.0), min(hi, 3.0)
  lo = 0.1 if lo == 0.0 else lo  # keep x - h inside (0, inf)
  return jax.random.uniform(key, shape, jnp.float64, lo, hi)


def _check_primitives(key, config, tol) -> list[dict]:
  rows = []
  n, dim = config.num_points, config.compositions.dim
  names = tuple(config.primitive_names) or tuple(sorted(prims.PRIMITIVES))
  for i, name in enumerate(names):
    prim = prims.get_primitive(name)
    k = jax.random.fold_in(key, i)
    edge = jnp.asarray(prim.edge_points, jnp.float64)
    if prim.elementwise:
      # d/dx_i sum_j f(x_j) = f'(x_i): one gradient checks all the points.
      fn = lambda x, f=prim.fn: jnp.sum(f(x))
      checks = [
        (
          f"{name}/random",
          fn,
          prim.derivative,
          _uniform_in_domain(k, prim, (n,)),
          True,
          False,
        ),
        (f"{name}/edge", fn, prim.derivative, edge, False, False),
      ]
    else:
      # Vector primitives: the Jacobian (or gradient) of each point.
      points = _uniform_in_domain(k, prim, (n, dim))
      edge_vec = jnp.broadcast_to(edge, (2, edge.size)) * jnp.asarray(
        [[1.0], [-1.0]]
      )
      checks = [
        (f"{name}/random", prim.fn, prim.jacobian, points, True, True),
        (f"{name}/edge", prim.fn, prim.jacobian, edge_vec, False, True),
      ]
      if name == "softmax":
        # The Jacobian-free VJP s * (v - <v, s>), through <v, softmax(x)>.
        v = jax.random.normal(jax.random.fold_in(k, 1), (dim,), jnp.float64)
        checks.append(
          (
            "softmax/vjp",
            lambda x, v=v: jnp.dot(v, prims.softmax(x)),
            lambda x, v=v: prims.softmax_vjp(x, v),
            points,
            True,
            True,
          )
        )
    for label, fn, grad_fn, x, fd, batched in checks:
      report = gradcheck.check_gradients(
        fn,
        grad_fn,
        x,
        name=label,
        tolerances=tol,
        finite_differences=fd,
        batched=batched,
      )
      rows.append(_row("primitive", report))
  if config.multi_argument:
    rows.extend(_check_multi_argument(jax.random.fold_in(key, 10_000), n, tol))
  return rows


def _check_multi_argument(key, n, tol) -> list[dict]:
  k = jax.random.split(key, 6)
  normal = lambda i, shape: jax.random.normal(k[i], shape, jnp.float64)
  # Affine: the full Jacobians of one vector, and the batched VJP.
  affine_params = {
    "x": normal(0, (3,)),
    "w": normal(1, (2, 3)),
    "b": normal(2, (2,)),
  }
  cot = normal(3, (n, 2))
  batch_params = dict(affine_params, x=normal(4, (n, 3)))
  logits = 3.0 * normal(5, (n, 4))
  labels = jax.nn.softmax(normal(0, (n, 4)))
  loc, scale = normal(1, (n,)), jnp.exp(normal(2, (n,)))
  x = loc + scale * normal(3, (n,))
  edge_logits = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], jnp.float64)
  edge_labels = jnp.asarray([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], jnp.float64)

  def ce(p):
    return jnp.sum(prims.softmax_cross_entropy(p["logits"], p["labels"]))

  def ce_grads(p):
    return prims.softmax_cross_entropy_grads(p["logits"], p["labels"])._asdict()

  checks = [
    (
      "affine/jacobians",
      lambda p: prims.affine(p["x"], p["w"], p["b"]),
      lambda p: prims.affine_jacobians(p["x"], p["w"], p["b"])._asdict(),
      affine_params,
      True,
    ),
    (
      "affine/vjp",
      lambda p: jnp.sum(cot * prims.affine(p["x"], p["w"], p["b"])),
      lambda p: prims.affine_vjp(p["x"], p["w"], p["b"], cot)._asdict(),
      batch_params,
      True,
    ),
    (
      "mean_squared_error",
      lambda p: prims.mean_squared_error(p["predictions"], p["targets"]),
      lambda p: prims.mean_squared_error_grads(
        p["predictions"], p["targets"]
      )._asdict(),
      {"predictions": logits, "targets": labels},
      True,
    ),
    (
      "softmax_cross_entropy/random",
      ce,
      ce_grads,
      {"logits": logits, "labels": labels},
      True,
    ),
    (
      "softmax_cross_entropy/edge",
      ce,
      ce_grads,
      {"logits": edge_logits, "labels": edge_labels},
      False,
    ),
    (
      "normal_log_prob",
      lambda p: jnp.sum(prims.normal_log_prob(p["x"], p["loc"], p["scale"])),
      lambda p: {
        k: v
        for k, v in prims.normal_log_prob_grads(p["x"], p["loc"], p["scale"])
        ._asdict()
        .items()
        if k != "log_scale"
      },
      {"x": x, "loc": loc, "scale": scale},
      True,
    ),
    (
      "normal_log_prob/log_scale",
      lambda p: jnp.sum(prims.normal_log_prob(x, loc, jnp.exp(p))),
      lambda p: prims.normal_log_prob_grads(x, loc, jnp.exp(p)).log_scale,
      jnp.log(scale),
      True,
    ),
  ]
  return [
    _row(
      "primitive",
      gradcheck.check_gradients(
        fn, grad_fn, params, name=name, tolerances=tol, finite_differences=fd
      ),
    )
    for name, fn, grad_fn, params, fd in checks
  ]


# ---------------------------------------------------------------------------
# 2. Random compositions.
# ---------------------------------------------------------------------------


def _forward_mode_jacobian(chain, x):
  # Column j of J is J e_j: push every basis tangent through (vmapped JVPs).
  basis = jnp.eye(x.size, dtype=x.dtype)
  cols = jax.vmap(lambda t: chain_rule.chain_jvp(chain, x, t)[1])(basis)
  return jnp.moveaxis(cols, 0, -1)  # [*y.shape, n]


def _reverse_mode_jacobian(chain, x):
  # Row i of J is e_i^T J: pull every basis cotangent back (vmapped VJPs).
  y, pullback = chain_rule.chain_vjp(chain, x)
  basis = jnp.eye(y.size, dtype=y.dtype).reshape((y.size,) + y.shape)
  return jax.vmap(pullback)(basis).reshape(y.shape + x.shape)


def _check_compositions(key, config, tol) -> list[dict]:
  c = config.compositions
  rows = []
  for i in range(c.num_chains):
    k_depth, k_chain, k_x = jax.random.split(jax.random.fold_in(key, i), 3)
    depth = int(jax.random.randint(k_depth, (), 1, c.max_depth + 1))
    chain = chain_rule.sample_chain(
      k_chain, depth, dim=c.dim, interval=tuple(c.interval)
    )
    lo, hi = c.interval
    points = jax.random.uniform(
      k_x, (config.num_points, c.dim), jnp.float64, lo, hi
    )
    # Edge points: the ends of the interval the chain was drawn for.
    edge = jnp.asarray(
      [
        [lo] * c.dim,
        [hi] * c.dim,
        [lo, hi] * (c.dim // 2) + [lo] * (c.dim % 2),
      ],
      jnp.float64,
    )
    fn = lambda x, chain=chain: chain_rule.chain_value(chain, x)
    modes = (
      (
        "jacobian",
        lambda x, chain=chain: chain_rule.chain_jacobian(chain, x)[1],
      ),
      ("forward", lambda x, chain=chain: _forward_mode_jacobian(chain, x)),
      ("reverse", lambda x, chain=chain: _reverse_mode_jacobian(chain, x)),
    )
    # Finite differences once per chain, at the random points; every mode
    # against autodiff at the random and the edge points together.
    everywhere = jnp.concatenate([points, edge])
    checks = [("jacobian/fd", modes[0][1], points, True)]
    checks += [(mode, grad_fn, everywhere, False) for mode, grad_fn in modes]
    for label, grad_fn, x, fd in checks:
      report = gradcheck.check_gradients(
        fn,
        jax.jit(grad_fn),
        x,
        name=f"[{chain.name}]/{label}",
        tolerances=tol,
        finite_differences=fd,
        batched=True,
      )
      rows.append(_row("composition", report))
  return rows


# ---------------------------------------------------------------------------
# 3-4. The MLP and the RNN.
# ---------------------------------------------------------------------------


def _mlp_problem(key, config):
  k_p, k_x, k_y = jax.random.split(key, 3)
  sizes = tuple(config.mlp.layer_sizes)
  params = backprop.mlp_init(k_p, sizes)
  x = jax.random.normal(k_x, (config.mlp.batch_size, sizes[0]), jnp.float64)
  y = jax.random.normal(k_y, (config.mlp.batch_size, sizes[-1]), jnp.float64)
  return params, x, y


def _rnn_problem(key, config, num_steps, recurrent_scale):
  r = config.rnn
  k_p, k_h, k_x, k_y = jax.random.split(key, 4)
  params = backprop.rnn_init(
    k_p,
    r.input_size,
    r.hidden_size,
    r.output_size,
    recurrent_scale=recurrent_scale,
  )
  h0 = 0.5 * jax.random.normal(k_h, (r.hidden_size,), jnp.float64)
  xs = jax.random.normal(k_x, (num_steps, r.input_size), jnp.float64)
  ys = jax.random.normal(k_y, (num_steps, r.output_size), jnp.float64)
  return params, h0, xs, ys


def _check_mlp(key, config, tol) -> list[dict]:
  params, x, y = _mlp_problem(key, config)
  rows = []
  for activation in config.mlp.activations:
    report = gradcheck.check_gradients(
      lambda p, a=activation: backprop.mlp_loss(p, x, y, a),
      jax.jit(
        lambda p, a=activation: backprop.mlp_loss_and_grads(p, x, y, a)[1]
      ),
      params,
      name=f"mlp/{activation}/{'-'.join(map(str, config.mlp.layer_sizes))}",
      tolerances=tol,
    )
    rows.append(_row("mlp", report))
  return rows


def _check_rnn(key, config, tol) -> list[dict]:
  r = config.rnn
  params, h0, xs, ys = _rnn_problem(key, config, r.num_steps, r.recurrent_scale)

  def grads(p):
    _, (g, dh0) = backprop.rnn_loss_and_grads(p["params"], p["h0"], xs, ys)
    return {"params": g, "h0": dh0}

  report = gradcheck.check_gradients(
    lambda p: backprop.rnn_loss(p["params"], p["h0"], xs, ys),
    jax.jit(grads),
    {"params": params, "h0": h0},
    name=f"rnn/T={r.num_steps}/H={r.hidden_size}",
    tolerances=tol,
  )
  return [_row("rnn", report)]


def _rnn_grad_norms(key, config) -> list[dict]:
  r = config.rnn
  grads = jax.jit(backprop.rnn_loss_and_grads)
  rows = []
  max_steps = max(r.grad_norm_steps)
  for scale in r.grad_norm_scales:
    # The same parameters and inputs for every T: only the horizon changes.
    params, h0, xs, ys = _rnn_problem(key, config, max_steps, scale)
    for num_steps in r.grad_norm_steps:
      last = jnp.zeros((num_steps,)).at[-1].set(1.0)
      args = (params, h0, xs[:num_steps], ys[:num_steps])
      _, (_, dh0_last) = grads(*args, last)
      _, (_, dh0_all) = grads(*args, jnp.ones((num_steps,)))
      rows.append(
        {
          "num_steps": int(num_steps),
          "recurrent_scale": float(scale),
          "last_step_norm": float(jnp.linalg.norm(dh0_last)),
          "all_steps_norm": float(jnp.linalg.norm(dh0_all)),
        }
      )
  return rows


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def _median_seconds(fns: dict[str, Callable], args, config) -> dict[str, float]:
  """Median wall time per function, calls interleaved so drift hits both."""
  for fn in fns.values():
    for _ in range(config.timing.num_warmup):
      jax.block_until_ready(fn(*args))
  times = {name: [] for name in fns}
  for _ in range(config.timing.num_repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def _timing(key, config) -> list[dict]:
  k_mlp, k_rnn = jax.random.split(key)
  params, x, y = _mlp_problem(k_mlp, config)
  act = config.mlp.activations[0]
  mlp = _median_seconds(
    {
      "hand": jax.jit(
        lambda p, x, y: backprop.mlp_loss_and_grads(p, x, y, act)
      ),
      "jax": jax.jit(
        jax.value_and_grad(lambda p, x, y: backprop.mlp_loss(p, x, y, act))
      ),
    },
    (params, x, y),
    config,
  )
  r = config.rnn
  rnn_args = _rnn_problem(k_rnn, config, r.num_steps, r.recurrent_scale)
  rnn = _median_seconds(
    {
      "hand": jax.jit(backprop.rnn_loss_and_grads),
      "jax": jax.jit(jax.value_and_grad(backprop.rnn_loss, argnums=(0, 1))),
    },
    rnn_args,
    config,
  )
  return [
    {
      "model": model,
      "hand_seconds": t["hand"],
      "jax_seconds": t["jax"],
      "ratio": t["hand"] / t["jax"],
    }
    for model, t in (("mlp", mlp), ("rnn", rnn))
  ]


# ---------------------------------------------------------------------------
# The experiment.
# ---------------------------------------------------------------------------


def _write_csv(path, rows, columns):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _table(rows) -> str:
  def fmt(v):
    return f"{'-':>10}" if v is None else f"{v:>10.1e}"

  lines = [
    f"{'group':<12}{'check':<58}{'ok':>4}{'ad abs':>10}{'ad rel':>10}"
    f"{'fd abs':>10}{'fd rel':>10}"
  ]
  for r in rows:
    lines.append(
      f"{r['group']:<12}{r['name'][:57]:<58}"
      f"{'yes' if r['passed'] else 'NO':>4}{fmt(r['autodiff_max_abs'])}"
      f"{fmt(r['autodiff_max_rel'])}{fmt(r['fd_max_abs'])}"
      f"{fmt(r['fd_max_rel'])}"
    )
  return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every check, writes results.json and the CSVs, returns the results.

  Args:
    config: see experiments/configs/chain_rule.py.
    workdir: output directory, created if needed.

  Returns:
    The dict written to `results.json` (schema in the module docstring).
  """
  # Derivative checks to 1e-10 need float64.
  jax.config.update("jax_enable_x64", True)
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(config.seed)
  k_prim, k_comp, k_mlp, k_rnn, k_norm, k_time = jax.random.split(key, 6)
  del key
  tol = gradcheck.Tolerances(**config.tolerances.to_dict())

  checks = []
  for group, fn, k in (
    ("primitives", _check_primitives, k_prim),
    ("compositions", _check_compositions, k_comp),
    ("mlp", _check_mlp, k_mlp),
    ("rnn", _check_rnn, k_rnn),
  ):
    start = time.perf_counter()
    rows = fn(k, config, tol)
    logging.info(
      "%s: %d checks, %d failed, %.1fs",
      group,
      len(rows),
      sum(not r["passed"] for r in rows),
      time.perf_counter() - start,
    )
    checks.extend(rows)

  grad_norms = _rnn_grad_norms(k_norm, config)
  timing = _timing(k_time, config)
  results = {
    "all_passed": all(r["passed"] for r in checks),
    "config": config.to_dict(),
    "checks": checks,
    "rnn_h0_grad_norm": grad_norms,
    "timing": timing,
  }

  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, allow_nan=False, default=list)
  _write_csv(os.path.join(workdir, "results.csv"), checks, _CSV_COLUMNS)
  _write_csv(
    os.path.join(workdir, "rnn_h0_grad_norm.csv"),
    grad_norms,
    ("num_steps", "recurrent_scale", "last_step_norm", "all_steps_norm"),
  )

  logging.info("Gradient checks:\n%s", _table(checks))
  norm_lines = [
    f"  scale={r['recurrent_scale']:<4} T={r['num_steps']:<5}"
    f" ||dl_T/dh0||={r['last_step_norm']:.3e}"
    f" ||dL/dh0||={r['all_steps_norm']:.3e}"
    for r in grad_norms
  ]
  logging.info("RNN gradient norm w.r.t. h_0:\n%s", "\n".join(norm_lines))
  for t in timing:
    logging.info(
      "timing %s: hand %.3e s, jax.grad %.3e s, ratio hand/jax = %.2f",
      t["model"],
      t["hand_seconds"],
      t["jax_seconds"],
      t["ratio"],
    )
  logging.info(
    "%d checks, all passed: %s; results in %s",
    len(checks),
    results["all_passed"],
    workdir,
  )
  return results


if __name__ == "__main__":
  launch.run_app("chain_rule", run)
