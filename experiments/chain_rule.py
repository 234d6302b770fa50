r"""Hand-derived gradients against jax.grad and finite differences.

Runs :func:`rgrad.gradcheck.check_gradients` over

1. every primitive of :mod:`rgrad.primitives`, at random points of its domain
   (against autodiff and finite differences) and at its edge points such as
   0 and :math:`\pm 10^4` (against autodiff only: finite differences are
   meaningless at relu's kink and step out of the domain near a boundary);
2. random chains drawn from the registry
   (:func:`rgrad.chain_rule.sample_chain`), each checked as a full Jacobian
   product, in forward mode (a Jacobian built from JVPs) and in reverse
   mode (one built from VJPs), against autodiff at random and edge points
   (the ends of the input interval), and once against finite differences
   at the random points;
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

The checks themselves live in :mod:`experiments.chain_rule_checks`; this
module checks the config, runs them, and adds the gradient norms, the timing
and the outputs. A bad config value is a
:class:`experiments.common.config.ConfigError`, raised before any
computation (on the command line: one line on stderr and exit status 1).
"""

import os
import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments import chain_rule_checks
from experiments.common import config as config_checks
from experiments.common import launch
from experiments.common import outputs
from rgrad import backprop
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
_NORM_COLUMNS = (
  "num_steps",
  "recurrent_scale",
  "last_step_norm",
  "all_steps_norm",
)


# ---------------------------------------------------------------------------
# Config checks.
# ---------------------------------------------------------------------------


def _integers(values: Any, field: str, minimum: int = 1) -> tuple[int, ...]:
  """A non-empty sequence of ints >= `minimum`."""
  if not isinstance(values, Sequence) or isinstance(values, str) or not values:
    raise config_checks.ConfigError(
      f"config.{field} must be a non-empty sequence of ints, got {values!r}."
    )
  return tuple(
    config_checks.integer(v, f"{field}[{i}]", minimum)
    for i, v in enumerate(values)
  )


def _reals(values: Any, field: str) -> tuple[float, ...]:
  """A non-empty sequence of finite numbers."""
  if not isinstance(values, Sequence) or isinstance(values, str) or not values:
    raise config_checks.ConfigError(
      f"config.{field} must be a non-empty sequence of numbers, got {values!r}."
    )
  return tuple(
    config_checks.real(v, f"{field}[{i}]") for i, v in enumerate(values)
  )


def parse_config(config: ml_collections.ConfigDict) -> None:
  """Checks every config value, before any computation.

  Raises:
    ConfigError: naming the bad field (:mod:`experiments.common.config`).
  """
  config_checks.integer(config.seed, "seed", minimum=0)
  for name, value in config.tolerances.items():
    config_checks.real(value, f"tolerances.{name}", low=0.0)
  config_checks.integer(config.num_points, "num_points")
  if config.primitive_names:  # empty: every primitive
    config_checks.names(
      config.primitive_names, "primitive_names", sorted(prims.PRIMITIVES)
    )
  c = config.compositions
  config_checks.integer(c.num_chains, "compositions.num_chains", minimum=0)
  config_checks.integer(c.max_depth, "compositions.max_depth")
  config_checks.integer(c.dim, "compositions.dim")
  interval = _reals(c.interval, "compositions.interval")
  if len(interval) != 2 or not interval[0] < interval[1]:
    raise config_checks.ConfigError(
      f"config.compositions.interval must be (lo, hi) with lo < hi, got "
      f"{interval}."
    )
  m = config.mlp
  if len(_integers(m.layer_sizes, "mlp.layer_sizes")) < 2:
    raise config_checks.ConfigError(
      "config.mlp.layer_sizes needs an input and an output size, got "
      f"{tuple(m.layer_sizes)}."
    )
  config_checks.integer(m.batch_size, "mlp.batch_size")
  elementwise = sorted(n for n, p in prims.PRIMITIVES.items() if p.elementwise)
  config_checks.names(m.activations, "mlp.activations", elementwise)
  r = config.rnn
  for name in ("input_size", "hidden_size", "output_size", "num_steps"):
    config_checks.integer(r[name], f"rnn.{name}")
  config_checks.real(r.recurrent_scale, "rnn.recurrent_scale")
  _integers(r.grad_norm_steps, "rnn.grad_norm_steps")
  _reals(r.grad_norm_scales, "rnn.grad_norm_scales")
  config_checks.integer(
    config.timing.num_warmup, "timing.num_warmup", minimum=0
  )
  config_checks.integer(config.timing.num_repeats, "timing.num_repeats")


# ---------------------------------------------------------------------------
# Gradient norms through time.
# ---------------------------------------------------------------------------


def _rnn_grad_norms(key, config) -> list[dict]:
  r = config.rnn
  grads = jax.jit(backprop.rnn_loss_and_grads)
  rows = []
  max_steps = max(r.grad_norm_steps)
  for scale in r.grad_norm_scales:
    # The same parameters and inputs for every T: only the horizon changes.
    params, h0, xs, ys = chain_rule_checks.rnn_problem(
      key, config, max_steps, scale
    )
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
  params, x, y = chain_rule_checks.mlp_problem(k_mlp, config)
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
  rnn_args = chain_rule_checks.rnn_problem(
    k_rnn, config, r.num_steps, r.recurrent_scale
  )
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

  Raises:
    ConfigError: for a bad config value, before any computation; `workdir`
      is not created.
  """
  parse_config(config)
  # Derivative checks to 1e-10 need float64.
  jax.config.update("jax_enable_x64", True)
  outputs.make_workdir(workdir)
  key = jax.random.key(config.seed)
  k_prim, k_comp, k_mlp, k_rnn, k_norm, k_time = jax.random.split(key, 6)
  del key
  tol = gradcheck.Tolerances(**config.tolerances.to_dict())

  checks = []
  group_keys = (k_prim, k_comp, k_mlp, k_rnn)
  for (group, fn), k in zip(chain_rule_checks.GROUPS, group_keys, strict=True):
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

  # Strict JSON: no NaN or infinity is ever written.
  outputs.write_json(os.path.join(workdir, "results.json"), results)
  outputs.write_csv(os.path.join(workdir, "results.csv"), checks, _CSV_COLUMNS)
  outputs.write_csv(
    os.path.join(workdir, "rnn_h0_grad_norm.csv"), grad_norms, _NORM_COLUMNS
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
