r"""The estimator registry: every gradient estimator of rgrad, by name.

Each entry is an :class:`EstimatorSpec`: the function with the shared
signature (or a :class:`rgrad.base.StatefulEstimator`), the distribution
capabilities it needs, how its rows depend on each other, whether it is
unbiased, how many cost evaluations one sample takes and a one-line
summary. Experiments, the benchmark, the VAE and the tests select
estimators by name from :data:`ESTIMATORS`, as big_vision selects a model
by ``config.model_name``, so an estimator is described once::

  spec = rgrad.get_estimator("leave_one_out")
  jacobians = spec.fn(cost, params, dist_builder, key, 16)

A user registers an estimator of their own with :func:`register_estimator`
(and removes it with :func:`unregister_estimator`); the registered entry
then runs through everything that reads the registry, the contract tests
included.

The ``objective`` field says what the estimator's mean estimates:
``"expectation"`` for :math:`\nabla_\theta E_{p(x;\theta)}[f(x)]`, where
``function`` is the cost :math:`f`; ``"negative_elbo"`` and
``"negative_iwae_bound"`` for the variational estimators of
:mod:`rgrad.variational`, where ``function`` is the log-joint
:math:`\log p(x, z)` and the mean estimates the gradient of
:math:`-\mathrm{ELBO}` or :math:`-\mathcal{L}_K`.
"""

import functools
import types
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

from rgrad import base
from rgrad import control_variates
from rgrad import discrete
from rgrad import estimators
from rgrad import variational
from rgrad.relax import rebar
from rgrad.relax import relax

OBJECTIVES = ("expectation", "negative_elbo", "negative_iwae_bound")


class EstimatorSpec(NamedTuple):
  """What rgrad knows about one estimator.

  Attributes:
    fn: the estimator, ``(function, params, dist_builder, key,
      num_samples) -> jacobians`` (leaves ``[num_samples, *leaf.shape]``), or
      a :class:`rgrad.base.StatefulEstimator`.
    distributions: the capabilities (:data:`rgrad.base.CAPABILITIES`) it
      needs of ``dist_builder(params)``; any distribution that has them
      works.
    rows: ``"iid"``, ``"pairs"`` (rows ``i`` and ``i + n/2`` are an
      antithetic pair) or ``"groups"`` (see :data:`rgrad.base.ROWS`).
    group_size: for ``"groups"``, the rows per group, an int, or
      ``"batch"`` for the whole call's ``num_samples``; 2 for ``"pairs"``;
      1 for ``"iid"``.
    unbiased: whether the mean of the rows is unbiased for the objective.
    cost_evaluations: cost evaluations per sample, an int, or a callable of
      the number of coordinates ``d`` of one draw (measure-valued: ``4 d``).
    summary: one line, for tables and error messages.
    objective: one of :data:`OBJECTIVES` (see the module docstring).
    min_num_samples: the smallest ``num_samples`` it accepts.
  """

  fn: base.Estimator | base.StatefulEstimator
  distributions: tuple[str, ...]
  rows: str
  group_size: int | str
  unbiased: bool
  cost_evaluations: int | Callable[[int], int]
  summary: str
  objective: str = "expectation"
  min_num_samples: int = 1

  @property
  def stateful(self) -> bool:
    return isinstance(self.fn, base.StatefulEstimator)

  def num_cost_evaluations(self, dim: int) -> int:
    """Cost evaluations per sample for draws of ``dim`` coordinates."""
    if callable(self.cost_evaluations):
      return int(self.cost_evaluations(dim))
    return int(self.cost_evaluations)


def check_spec(spec: Any, name: str = "spec") -> EstimatorSpec:
  """Validates an :class:`EstimatorSpec`; raises naming the bad field."""
  if not isinstance(spec, EstimatorSpec):
    raise TypeError(
      f"{name} must be an rgrad.EstimatorSpec, got {type(spec).__name__}."
    )
  if not (callable(spec.fn) or isinstance(spec.fn, base.StatefulEstimator)):
    raise TypeError(f"{name}.fn must be callable, got {spec.fn!r}.")
  unknown = [c for c in spec.distributions if c not in base.CAPABILITIES]
  if isinstance(spec.distributions, str) or unknown:
    raise ValueError(
      f"{name}.distributions must be a tuple of capability names from "
      f"{sorted(base.CAPABILITIES)}, got {spec.distributions!r}."
    )
  if spec.rows not in base.ROWS:
    raise ValueError(
      f"{name}.rows must be one of {base.ROWS}, got {spec.rows!r}."
    )
  expected = {"iid": (1,), "pairs": (2,)}.get(spec.rows)
  if expected is not None and spec.group_size not in expected:
    raise ValueError(
      f"{name}.group_size must be {expected[0]} for rows={spec.rows!r}, got "
      f"{spec.group_size!r}."
    )
  if spec.rows == "groups" and not (
    spec.group_size == "batch"
    or (isinstance(spec.group_size, int) and spec.group_size >= 2)
  ):
    raise ValueError(
      f'{name}.group_size must be an int >= 2 or "batch" for rows="groups", '
      f"got {spec.group_size!r}."
    )
  if spec.objective not in OBJECTIVES:
    raise ValueError(
      f"{name}.objective must be one of {OBJECTIVES}, got {spec.objective!r}."
    )
  if not isinstance(spec.min_num_samples, int) or spec.min_num_samples < 1:
    raise ValueError(
      f"{name}.min_num_samples must be an int >= 1, got "
      f"{spec.min_num_samples!r}."
    )
  if not isinstance(spec.summary, str) or not spec.summary:
    raise ValueError(f"{name}.summary must be a non-empty string.")
  return spec


def _builtin() -> dict[str, EstimatorSpec]:
  cv = control_variates
  return {
    "pathwise": EstimatorSpec(
      fn=estimators.pathwise_jacobians,
      distributions=("reparameterized",),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=1,
      summary="pathwise (reparameterization) gradient, Mohamed et al. Sec. 5",
    ),
    "score_function": EstimatorSpec(
      fn=estimators.score_function_jacobians,
      distributions=("score",),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=1,
      summary="score function (REINFORCE), Mohamed et al. Sec. 4",
    ),
    "measure_valued": EstimatorSpec(
      fn=estimators.measure_valued_jacobians,
      distributions=("weak_derivatives",),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=lambda d: 4 * d,
      summary="measure-valued (weak derivatives, coupled), Sec. 6",
    ),
    "measure_valued_uncoupled": EstimatorSpec(
      fn=functools.partial(estimators.measure_valued_jacobians, coupling=False),
      distributions=("weak_derivatives",),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=lambda d: 4 * d,
      summary="measure-valued, independent positive and negative parts",
    ),
    "leave_one_out": EstimatorSpec(
      fn=cv.leave_one_out_jacobians,
      distributions=("score",),
      rows="groups",
      group_size="batch",
      unbiased=True,
      cost_evaluations=1,
      summary="score function with the leave-one-out baseline (Kool et al.)",
      min_num_samples=2,
    ),
    "score_function_moving_average": EstimatorSpec(
      fn=cv.moving_average_baseline(),
      distributions=("score",),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=1,
      summary="score function with a moving-average baseline of past costs",
    ),
    "antithetic_pathwise": EstimatorSpec(
      fn=cv.antithetic_pathwise_jacobians,
      distributions=("reparameterized", "reflection"),
      rows="pairs",
      group_size=2,
      unbiased=True,
      cost_evaluations=1,
      summary="pathwise over antithetic pairs (x, 2 mu - x)",
      min_num_samples=2,
    ),
    "antithetic_score_function": EstimatorSpec(
      fn=cv.antithetic_score_function_jacobians,
      distributions=("score", "reflection"),
      rows="pairs",
      group_size=2,
      unbiased=True,
      cost_evaluations=1,
      summary="score function over antithetic pairs (x, 2 mu - x)",
      min_num_samples=2,
    ),
    "delta_method": EstimatorSpec(
      fn=cv.delta_method_jacobians,
      distributions=("score", "mean_and_covariance"),
      rows="iid",
      group_size=1,
      unbiased=True,
      # f and the quadratic control variate h at every draw.
      cost_evaluations=2,
      summary="score function with the delta-method control variate, c = 1",
    ),
    "stl": EstimatorSpec(
      fn=variational.stl_jacobians,
      distributions=("reparameterized", "log_prob"),
      rows="iid",
      group_size=1,
      unbiased=True,
      cost_evaluations=1,
      summary="sticking the landing, -ELBO gradient (Roeder et al.)",
      objective="negative_elbo",
    ),
    "dreg": EstimatorSpec(
      fn=variational.dreg_jacobians,
      distributions=("reparameterized", "log_prob"),
      rows="groups",
      group_size="batch",
      unbiased=True,
      cost_evaluations=1,
      summary="doubly reparameterized, -IWAE bound gradient (Tucker et al.)",
      objective="negative_iwae_bound",
    ),
    # Discrete estimators (rgrad.discrete). The pair estimators evaluate the
    # cost once per row: f(b) in row i, f(b~) in row i + n/2.
    "arm": EstimatorSpec(
      fn=discrete.arm_jacobians,
      distributions=("uniform_noise",),
      rows="pairs",
      group_size=2,
      unbiased=True,
      cost_evaluations=1,
      summary="ARM, antithetic uniforms for Bernoulli logits (Yin & Zhou)",
      min_num_samples=2,
    ),
    "disarm": EstimatorSpec(
      fn=discrete.disarm_jacobians,
      distributions=("uniform_noise",),
      rows="pairs",
      group_size=2,
      unbiased=True,
      cost_evaluations=1,
      summary="DisARM, ARM Rao-Blackwellized given the pair (Dong et al.)",
      min_num_samples=2,
    ),
    "concrete": EstimatorSpec(
      fn=functools.partial(discrete.concrete_jacobians, temperature=2.0 / 3.0),
      distributions=("relaxation",),
      rows="iid",
      group_size=1,
      unbiased=False,
      cost_evaluations=1,
      summary="concrete / Gumbel-softmax relaxation, tau = 2/3 (biased)",
    ),
    "straight_through": EstimatorSpec(
      fn=functools.partial(
        discrete.straight_through_jacobians, temperature=1.0
      ),
      distributions=("relaxation",),
      rows="iid",
      group_size=1,
      unbiased=False,
      cost_evaluations=1,
      summary="straight-through (Gumbel), relaxed backward, tau = 1 (biased)",
    ),
    "vimco": EstimatorSpec(
      fn=variational.vimco_jacobians,
      distributions=("score", "log_prob"),
      rows="groups",
      group_size="batch",
      unbiased=True,
      cost_evaluations=1,
      summary="VIMCO, score function of the -IWAE bound (Mnih & Rezende)",
      objective="negative_iwae_bound",
      min_num_samples=2,
    ),
    # REBAR and RELAX (rgrad.relax), stateful: they learn their control.
    "rebar": EstimatorSpec(
      fn=rebar(),
      distributions=("score", "conditional_relaxation"),
      rows="iid",
      group_size=1,
      unbiased=True,
      # f(b), f(sigmoid(z / lambda)), f(sigmoid(z~ / lambda)) per draw.
      cost_evaluations=3,
      summary="REBAR, learned temperature and scale (Tucker et al. 2017)",
    ),
    "relax": EstimatorSpec(
      fn=relax(),
      distributions=("score", "conditional_relaxation"),
      rows="iid",
      group_size=1,
      unbiased=True,
      # As REBAR: the surrogate is the REBAR term plus a network.
      cost_evaluations=3,
      summary="RELAX, REBAR term plus a learned MLP (Grathwohl et al. 2018)",
    ),
  }


_REGISTRY: dict[str, EstimatorSpec] = {
  name: check_spec(spec, f"ESTIMATORS[{name!r}]")
  for name, spec in _builtin().items()
}
BUILTIN_NAMES: tuple[str, ...] = tuple(_REGISTRY)

ESTIMATORS: Mapping[str, EstimatorSpec] = types.MappingProxyType(_REGISTRY)
"""Read-only mapping from name to every registered :class:`EstimatorSpec`."""


def get_estimator(name: str) -> EstimatorSpec:
  """Looks up an estimator by name.

  Raises:
    ValueError: naming the unknown estimator and listing the known ones.
  """
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    known = ", ".join(sorted(_REGISTRY))
    raise ValueError(
      f"Unknown estimator {name!r}; known estimators: {known}."
    ) from None


def _same_fn(registered: Any, estimator: Any) -> bool:
  """`estimator` is `registered`, or a ``functools.partial`` equal to it."""
  if registered is estimator:
    return True
  return (
    isinstance(registered, functools.partial)
    and isinstance(estimator, functools.partial)
    and registered.func is estimator.func
    and registered.args == estimator.args
    and registered.keywords == estimator.keywords
  )


def find_estimator(estimator: Any) -> tuple[str | None, EstimatorSpec | None]:
  """``(name, spec)`` of a registered name, spec, or estimator function.

  The one lookup behind every API that takes "an estimator" in any of its
  forms (:func:`rgrad.gradient_moments`, :mod:`rgrad.testing`): a name is
  looked up (:func:`get_estimator`); a spec is returned with its registered
  name, or None if it is not registered; a function or
  :class:`rgrad.base.StatefulEstimator` is found by identity, or as a
  ``functools.partial`` equal to a registered one, else ``(None, None)``.

  Raises:
    ValueError: an unknown name.
  """
  if isinstance(estimator, str):
    return estimator, get_estimator(estimator)
  if isinstance(estimator, EstimatorSpec):
    name = next((n for n, s in _REGISTRY.items() if s is estimator), None)
    return name, estimator
  for name, spec in _REGISTRY.items():
    if _same_fn(spec.fn, estimator):
      return name, spec
  return None, None


def register_estimator(
  name: str, spec: EstimatorSpec, *, overwrite: bool = False
) -> EstimatorSpec:
  """Adds `spec` to the registry under `name` and returns it.

  Registration is an explicit call, never a side effect of an import; the
  built-in entries cannot be replaced.

  Raises:
    ValueError: a bad name, a name already taken (unless `overwrite`, and
      never for a built-in), or a bad spec (see :func:`check_spec`).
    TypeError: `spec` not an :class:`EstimatorSpec`.
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise ValueError(
      f"register_estimator: name must be an identifier string, got {name!r}."
    )
  check_spec(spec, f"register_estimator({name!r})")
  if name in BUILTIN_NAMES:
    raise ValueError(
      f"register_estimator: {name!r} is a built-in estimator and cannot be "
      "replaced; register yours under another name."
    )
  if name in _REGISTRY and not overwrite:
    raise ValueError(
      f"register_estimator: {name!r} is already registered; pass "
      "overwrite=True to replace it."
    )
  _REGISTRY[name] = spec
  return spec


def unregister_estimator(name: str) -> EstimatorSpec:
  """Removes the user-registered estimator `name` and returns its spec.

  Raises:
    ValueError: an unknown name or a built-in one.
  """
  if name in BUILTIN_NAMES:
    raise ValueError(
      f"unregister_estimator: {name!r} is built in and cannot be removed."
    )
  spec = get_estimator(name)
  del _REGISTRY[name]
  return spec


def estimators_for(
  *, objective: str = "expectation", stateful: bool | None = False
) -> tuple[str, ...]:
  """Names of the registered estimators with `objective` (and statefulness)."""
  return tuple(
    name
    for name, spec in _REGISTRY.items()
    if spec.objective == objective
    and (stateful is None or spec.stateful == stateful)
  )
