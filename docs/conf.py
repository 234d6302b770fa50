"""Sphinx configuration of rgrad's documentation (the optax/chex layout).

Build (from the repository root, after ``pip install -e ".[docs]"``)::

  sphinx-build -W --keep-going -b html docs /tmp/rgrad-docs

Warnings are errors in CI (``.ci/run``), and the build is nitpicky: a
cross-reference that resolves to nothing fails it. Every object is documented
once, on the page of the public module it is imported from (``rgrad.exact``,
``rgrad.distributions``, ...); a reference to the same object by another public
path (``rgrad.gradient_moments`` for ``rgrad.diagnostics.gradient_moments``)
is resolved to that one entry by :func:`_resolve_alias` below. References to
JAX, NumPy, chex and the standard library stay plain text (intersphinx would
need the network at build time).
"""

import importlib
import os
import sys
import types

sys.path.insert(0, os.path.abspath(".."))
# The docstrings are read by importing rgrad; nothing is computed, and the CPU
# is enough.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "rgrad"
author = "rgrad authors"
copyright = "rgrad authors"  # noqa: A001 (Sphinx's name)

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "myst_parser",
  # Ships MathJax 3 and points mathjax_path at the copy in _static/, so that
  # the maths renders offline (the default loads MathJax from a CDN).
  "sphinx-mathjax-offline",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = []

# -- autodoc / autosummary / napoleon -----------------------------------------
autodoc_default_options = {
  "members": True,
  "member-order": "bysource",
  # Module constants (rgrad.base.CAPABILITIES, rgrad.exact.DEFAULT_NUM_POINTS)
  # carry no docstring of their own; their modules' docstrings describe them.
  "undoc-members": True,
  "show-inheritance": False,
}
# Signatures without annotations: rgrad annotates with chex/jax aliases that
# the runtime has already expanded (chex.ArrayTree becomes a five-way Union),
# which would make every estimator's signature several lines long; the Args
# sections say what each argument is.
autodoc_typehints = "none"
autodoc_preserve_defaults = True
autosummary_generate = False  # the API pages are written by hand, as optax's
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# A NamedTuple's "Attributes:" section as fields of the class: autodoc already
# documents each field, and two entries per field would be duplicates.
napoleon_use_ivar = True
add_module_names = False
# `name` in a docstring (Google style's quoting of an argument) is code.
default_role = "code"

# -- cross-references ---------------------------------------------------------
nitpicky = True
# Names outside rgrad (no intersphinx offline) and typing constructs.
nitpick_ignore_regex = [
  (r"py:.*", r"(jax|jnp|np|numpy|chex|optax|flax|nn|gymnax)\..*"),
  (r"py:.*", r"ml_collections\..*"),
  (r"py:.*", r"(typing|collections|abc|enum|dataclasses|functools)\..*"),
  (
    r"py:.*",
    r"(Any|Callable|Optional|Union|Sequence|Mapping|Iterable|Iterator|"
    r"NamedTuple|Literal|TypeVar|Protocol|Array|ArrayLike|ArrayTree|PRNGKey|"
    r"PyTree|Params|"
    r"ndarray|dtype|DTypeLike|Shape|Numeric)",
  ),
  (
    r"py:.*",
    r"(int|float|str|bool|bytes|tuple|list|dict|set|frozenset|object|type|"
    r"None|callable|optional|Ellipsis|function|NoneType)",
  ),
  (r"py:exc", r".*Error|Exception"),
  # Private helpers named in annotations (a base class in rgrad.distributions'
  # private files, a testing helper's return type) have no entry of their own.
  (r"py:class", r"rgrad(\.\w+)*\._\w+(\.\w+)*"),
]

# -- MathJax ------------------------------------------------------------------
# textmacros, so that \text{fan\_in} in a docstring renders as in LaTeX (from
# the bundled copy, like the rest of MathJax).
mathjax3_config = {
  "loader": {"load": ["[tex]/textmacros"]},
  "tex": {"packages": {"[+]": ["textmacros"]}},
}

# -- MyST (the README tour is included from README.md) ------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 4
suppress_warnings = ["myst.header"]

# -- HTML ---------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "rgrad"
# docs/_static/figures holds the experiments' PNGs, which the figure directives
# copy; MathJax is copied by sphinx-mathjax-offline. No html_static_path, so
# that nothing is copied twice.
html_theme_options = {
  "show_toc_level": 2,
  "use_download_button": False,
  "use_fullscreen_button": False,
}


# -- Resolving one object's other public names --------------------------------
def _import(name: str):
  """The object named by a dotted path, or None."""
  parts = name.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    try:
      for attr in parts[i:]:
        obj = getattr(obj, attr)
    except AttributeError:
      return None
    return obj
  return None


_ATOMS = (int, float, str, bool, bytes, type(None))
# Filled once per build, after every page has been read.
_DOCUMENTED = {}


def _documented(env) -> dict:
  """id(object) -> the full name it is documented under."""
  if not _DOCUMENTED:
    for fullname in env.get_domain("py").objects:
      obj = _import(fullname)
      if obj is not None and not isinstance(obj, _ATOMS):
        _DOCUMENTED.setdefault(id(obj), fullname)
  return _DOCUMENTED


def _resolve_alias(app, env, node, contnode):
  """Resolves `rgrad.X` to the entry of the object it names, if documented."""
  if node.get("refdomain") != "py":
    return None
  target = node["reftarget"].lstrip("~.")
  domain = env.get_domain("py")
  module = node.get("py:module") or ""
  if module.startswith("experiments") or target.startswith("experiments."):
    return _experiment_code(target, module, contnode)
  if node["reftype"] == "mod":
    # A private submodule (rgrad.exact._lqr) is documented on its package's
    # page.
    parts = target.split(".")
    while parts and parts[-1].startswith("_"):
      parts.pop()
    name = ".".join(parts)
    if name != target and name in domain.modules:
      return domain.resolve_xref(
        env, node["refdoc"], app.builder, "mod", name, node, contnode
      )
    return None
  context = [node.get("py:module"), node.get("py:class")]
  candidates = [target]
  if context[0]:
    candidates.append(f"{context[0]}.{target}")
    if context[1]:
      candidates.append(f"{context[0]}.{context[1]}.{target}")
  candidates.append(f"rgrad.{target}")
  for candidate in candidates:
    obj = _import(candidate)
    if obj is None or isinstance(obj, _ATOMS):
      continue
    fullname = _documented(env).get(id(obj))
    if fullname is not None:
      return domain.resolve_xref(
        env, node["refdoc"], app.builder, "obj", fullname, node, contnode
      )
  return None


def _experiment_code(target, module, contnode):
  """A reference into the experiments' code: plain text if it exists.

  The experiments' modules are documented by their package docstrings on the
  experiment pages, not entry by entry; a reference to one of their modules
  or functions is kept as text, and one to a name that does not exist still
  fails the build.
  """
  candidates = [target]
  if module:
    candidates += [f"{module}.{target}", f"{module.rsplit('.', 1)[0]}.{target}"]
  if any(_import(candidate) is not None for candidate in candidates):
    return contnode
  return None


# The subpackages whose __all__ every name of must be documented.
_PACKAGES = (
  "interop",
  "distributions",
  "exact",
  "control_variates",
  "relax",
  "rl",
  "testing",
)


def _check_all_documented(app, env):
  """Warns for every name in a public `__all__` that no page documents."""
  import rgrad  # noqa: PLC0415

  documented = _documented(env)
  packages = [rgrad] + [
    importlib.import_module(f"rgrad.{name}") for name in _PACKAGES
  ]
  for package in packages:
    for name in package.__all__:
      obj = getattr(package, name)
      fullname = f"{package.__name__}.{name}"
      if isinstance(obj, _ATOMS) or isinstance(obj, types.ModuleType):
        if fullname not in env.get_domain("py").objects and not any(
          f.endswith(f".{name}") for f in env.get_domain("py").objects
        ):
          _warn(app, f"{fullname} is in __all__ but not documented")
      elif id(obj) not in documented:
        _warn(app, f"{fullname} is in __all__ but not documented")


def _warn(app, message: str) -> None:
  from sphinx.util import logging  # noqa: PLC0415

  logging.getLogger("rgrad.docs").warning(message)


def _drop_type_docstrings(app, what, name, obj, options, lines):
  """A constant without a doc comment shows no docstring, not its type's."""
  del app, name, options
  doc = type(obj).__doc__
  if what == "data" and doc and "\n".join(lines).strip() == doc.strip():
    lines.clear()


def setup(app):
  app.connect("autodoc-process-docstring", _drop_type_docstrings)
  app.connect("missing-reference", _resolve_alias)
  app.connect("env-check-consistency", _check_all_documented)
