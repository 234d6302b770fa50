"""No pytest mark sits where absl's parameterization drops it.

``@pytest.mark.slow`` above ``@parameterized.parameters(...)`` marks the
parameterization's generator object, which absl's metaclass replaces by the
generated test methods, so the mark is silently lost: ``-m slow`` does not
select them and ``-m "not slow"`` still runs them. (Below the
parameterization the generated methods copy it; on the class it always
holds.) This reads every test file's syntax tree, without importing it, and
names each mark decorator that has an absl parameterization decorator under
it. A mark reached through another name (``slow = pytest.mark.slow``) is not
seen; none is written so.
"""

import ast
import glob
import os

from absl.testing import absltest

_TESTS = os.path.dirname(os.path.abspath(__file__))
# absl.testing.parameterized's decorators that generate test methods.
_GENERATORS = ("parameters", "named_parameters", "product")


def _dotted(node: ast.expr) -> str:
  """``a.b.c`` for a decorator ``@a.b.c`` or ``@a.b.c(...)``; else ""."""
  if isinstance(node, ast.Call):
    node = node.func
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not isinstance(node, ast.Name):
    return ""
  return ".".join([node.id, *reversed(parts)])


def lost_marks(source: str, filename: str) -> list[str]:
  """``file:line name`` of each mark above a parameterization in `source`."""
  found = []
  for node in ast.walk(ast.parse(source, filename)):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    names = [_dotted(d) for d in node.decorator_list]  # Outermost first.
    generated = [
      i
      for i, n in enumerate(names)
      if n.startswith("parameterized.") and n.split(".")[-1] in _GENERATORS
    ]
    for i, name in enumerate(names):
      if name.startswith("pytest.mark.") and generated and i < max(generated):
        line = node.decorator_list[i].lineno
        found.append(f"{os.path.basename(filename)}:{line} {node.name}")
  return found


class LostMarkTest(absltest.TestCase):
  def test_detects_a_mark_above_the_parameterization(self):
    source = (
      "class T:\n"
      "  @pytest.mark.slow\n"
      "  @parameterized.parameters(1, 2)\n"
      "  def test_a(self, x): pass\n"
      "  @parameterized.named_parameters(('x', 1))\n"
      "  @pytest.mark.slow\n"
      "  def test_b(self, x): pass\n"
    )
    self.assertEqual(lost_marks(source, "t_test.py"), ["t_test.py:2 test_a"])

  def test_no_test_file_loses_a_mark(self):
    lost = []
    for path in sorted(glob.glob(os.path.join(_TESTS, "*.py"))):
      with open(path) as f:
        lost += lost_marks(f.read(), path)
    self.assertEqual(
      lost, [], "marks above @parameterized are lost; mark the class"
    )


if __name__ == "__main__":
  absltest.main()
