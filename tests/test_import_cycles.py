"""No import cycles in the package mialth_jax: the graph of module-level imports (the `import` / `from ... import`
statements a module runs when it is imported: at its top level, including inside top-level `if` / `try` / `with`
blocks, but not inside functions or classes, nor under `if TYPE_CHECKING:`) has no cycle.

`from mialth_jax.x import y` is an edge to the module mialth_jax.x.y when y is a submodule, else to mialth_jax.x;
relative imports are resolved the same way. Checked on the source itself (nothing is imported).
"""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mialth_jax")


def _module_files(package_dir: str) -> dict[str, str]:
  """{dotted module name: path} of every .py file under `package_dir` (a package's own name for __init__.py)."""
  root, name = os.path.dirname(os.path.abspath(package_dir)), os.path.basename(os.path.abspath(package_dir))
  modules = {}
  for folder, _, files in os.walk(os.path.join(root, name)):
    for file in files:
      if file.endswith(".py"):
        parts = os.path.relpath(os.path.join(folder, file), root)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        modules[".".join(parts)] = os.path.join(folder, file)
  return modules


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
      isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(statements):
  """The Import / ImportFrom nodes run at import time: top level and inside top-level if / try / with blocks."""
  for node in statements:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node
    elif isinstance(node, ast.If):
      if not _is_type_checking(node.test):
        yield from _module_level_imports(node.body)
      yield from _module_level_imports(node.orelse)
    elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
      for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
        yield from _module_level_imports(block)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
      yield from _module_level_imports(node.body)


def _imported_modules(name: str, path: str, modules: dict[str, str]) -> set[str]:
  """The modules of `modules` that module `name` (at `path`) imports at module level."""
  is_package = os.path.basename(path) == "__init__.py"
  found = set()
  for node in _module_level_imports(ast.parse(open(path).read(), path).body):
    if isinstance(node, ast.Import):
      candidates = [alias.name for alias in node.names]
    else:
      if node.level:  # relative: from the module's own package, one level up per further dot
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module
      candidates = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names]
    found.update(c for c in candidates if c in modules and c != name)
  return found


def import_graph(package_dir: str) -> dict[str, set[str]]:
  """{module: the package's modules it imports at module level} for the package at `package_dir`."""
  modules = _module_files(package_dir)
  return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _cycle_through(graph: dict[str, set[str]], start: str, component: set[str]) -> list[str]:
  """A shortest cycle start -> ... -> start inside `component` (breadth first)."""
  parents, frontier = {start: None}, [start]
  while frontier:
    following = []
    for node in frontier:
      for target in sorted(graph[node] & component):
        if target == start:
          path = [node]
          while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
          return path[::-1] + [start]
        if target not in parents:
          parents[target] = node
          following.append(target)
    frontier = following
  raise AssertionError(f"{start} is on no cycle of {sorted(component)}")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle (a list of modules, the first repeated at the end) per strongly connected component of more than one
  module, in sorted order; empty when the graph is acyclic. Tarjan's algorithm, iterative."""
  index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]

  def visit(root):
    work = [(root, iter(sorted(graph[root])))]
    index[root] = low[root] = counter[0]
    counter[0] += 1
    stack.append(root)
    on_stack.add(root)
    while work:
      node, children = work[-1]
      child = next(children, None)
      if child is not None:
        if child not in index:
          index[child] = low[child] = counter[0]
          counter[0] += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(graph[child]))))
        elif child in on_stack:
          low[node] = min(low[node], index[child])
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        component = set()
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.add(member)
          if member == node:
            break
        components.append(component)

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return sorted(_cycle_through(graph, min(c), c) for c in components if len(c) > 1)


def _describe(cycles: list[list[str]]) -> str:
  return "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_package_has_no_import_cycles():
  cycles = find_cycles(import_graph(PACKAGE))
  assert not cycles, f"module-level import cycles in mialth_jax:\n{_describe(cycles)}"


def _write(folder, files: dict[str, str]) -> None:
  for relpath, text in files.items():
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_finds_a_cycle_in_a_two_module_package(tmp_path):
  _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
                    "pkg/b.py": "import os\ntry:\n  import pkg.a\nexcept ImportError:\n  pass\n"})
  graph = import_graph(str(tmp_path / "pkg"))
  assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
  cycles = find_cycles(graph)
  assert cycles == [["pkg.a", "pkg.b", "pkg.a"]]
  assert _describe(cycles) == "pkg.a -> pkg.b -> pkg.a"


def test_imports_inside_functions_and_under_type_checking_make_no_cycle(tmp_path):
  _write(tmp_path, {"pkg/__init__.py": "", "pkg/sub/__init__.py": "from . import c\n",
                    "pkg/a.py": "from pkg.sub import c\n",
                    "pkg/sub/c.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from pkg import a\n"
                                     "def f():\n  from .. import a\nclass K:\n  import pkg.a\n")})
  graph = import_graph(str(tmp_path / "pkg"))
  assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.c"}, "pkg.a": {"pkg.sub.c"}, "pkg.sub.c": set()}
  assert find_cycles(graph) == []


def test_relative_imports_and_names_that_are_not_modules_resolve_to_their_module(tmp_path):
  _write(tmp_path, {"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/x.py": "VALUE = 1\n",
                    "pkg/sub/c.py": "from ..x import VALUE\nfrom . import d\nfrom .d import helper\n",
                    "pkg/sub/d.py": "if True:\n  from pkg.sub.c import thing\n"})
  graph = import_graph(str(tmp_path / "pkg"))
  assert graph["pkg.sub.c"] == {"pkg.x", "pkg.sub.d"} and graph["pkg.sub.d"] == {"pkg.sub.c"}
  assert find_cycles(graph) == [["pkg.sub.c", "pkg.sub.d", "pkg.sub.c"]]
