r"""The gradient checks of `experiments/chain_rule.py`, one function a group.

Each group is a function ``(key, config, tol) -> rows``: it runs
:func:`rgrad.gradcheck.check_gradients` on its problems and returns one row
per check (the columns of the experiment's ``results.json``, see
:mod:`experiments.chain_rule`). :data:`GROUPS` lists them in the order the
experiment runs them:

1. ``primitives``: every primitive of :mod:`rgrad.primitives` at random
   points of its domain (against autodiff and finite differences) and at its
   edge points (autodiff only), and the multi-argument primitives;
2. ``compositions``: random chains from :func:`rgrad.chain_rule.sample_chain`
   as full Jacobian products, in forward and in reverse mode;
3. ``mlp``: the hand-written MLP backward pass, for each activation;
4. ``rnn``: backpropagation through time, including :math:`h_0`.

The MLP and RNN problems (:func:`mlp_problem`, :func:`rnn_problem`) are
shared with the experiment's gradient-norm grid and timing.
"""

import math

import jax
import jax.numpy as jnp

from rgrad import backprop
from rgrad import chain_rule
from rgrad import gradcheck
from rgrad import primitives as prims


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


def check_primitives(key, config, tol) -> list[dict]:
  """Each primitive at random and edge points; the multi-argument ones too."""
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


def check_compositions(key, config, tol) -> list[dict]:
  """`compositions.num_chains` random chains, three modes and one FD check."""
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


def mlp_problem(key, config):
  """MLP parameters, inputs [batch, in] and targets [batch, out]."""
  k_p, k_x, k_y = jax.random.split(key, 3)
  sizes = tuple(config.mlp.layer_sizes)
  params = backprop.mlp_init(k_p, sizes)
  x = jax.random.normal(k_x, (config.mlp.batch_size, sizes[0]), jnp.float64)
  y = jax.random.normal(k_y, (config.mlp.batch_size, sizes[-1]), jnp.float64)
  return params, x, y


def rnn_problem(key, config, num_steps, recurrent_scale):
  """RNN parameters, h_0 [H], inputs [T, I] and targets [T, O]."""
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


def check_mlp(key, config, tol) -> list[dict]:
  """The hand-written MLP backward pass, one check per activation."""
  params, x, y = mlp_problem(key, config)
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


def check_rnn(key, config, tol) -> list[dict]:
  """BPTT over `rnn.num_steps` steps, the parameters and h_0 together."""
  r = config.rnn
  params, h0, xs, ys = rnn_problem(key, config, r.num_steps, r.recurrent_scale)

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


# name -> the group's check function, in the order the experiment runs them.
GROUPS = (
  ("primitives", check_primitives),
  ("compositions", check_compositions),
  ("mlp", check_mlp),
  ("rnn", check_rnn),
)
