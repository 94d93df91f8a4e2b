"""The package's rooms and the one-way flow between them (docs/architecture.md), checked on the source itself:

  data, models -> lottery (training) -> attacks (on arrays and targets) -> experiments -> report

Every `import mialth_jax...` of every module counts, at the top or inside a function.
"""
import ast
import os
import re

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mialth_jax")

# room -> the rooms it may import. The shared foundations (errors, utils, layout) sit below everything.
FOUNDATIONS = {"errors", "utils", "layout", "plugins"}
ALLOWED = {
    "errors": set(),
    "plugins": set(),  # imports the feature modules by name (plugins.BUILTIN), at load() time
    "utils": {"errors"},
    "layout": {"utils"},
    "data": FOUNDATIONS,
    "models": FOUNDATIONS,
    "inference": FOUNDATIONS | {"data"},
    "run_dir": FOUNDATIONS,
    "lottery": FOUNDATIONS | {"data", "models", "inference", "run_dir"},
    "defences": FOUNDATIONS | {"data", "models", "inference", "run_dir", "lottery", "attacks"},
    "attacks": FOUNDATIONS | {"data", "models", "inference"},
    "audit": FOUNDATIONS,
    "experiments": FOUNDATIONS | {"data", "models", "inference", "run_dir", "lottery", "attacks", "config_lib",
                                  "defences"},
    "config_lib": FOUNDATIONS | {"data", "models", "lottery", "attacks", "experiments"},
    "report": FOUNDATIONS | {"data", "models", "lottery", "attacks", "audit", "experiments", "defences"},
    "api": FOUNDATIONS | {"data", "inference", "lottery", "attacks", "experiments"},
}


def _modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        yield os.path.relpath(path, PACKAGE), path


def _room(relpath: str) -> str:
  return relpath.split(os.sep)[0].removesuffix(".py")


def _imported_rooms(path: str) -> set[str]:
  """Rooms of mialth_jax that a module imports anywhere in its body."""
  rooms = set()
  for node in ast.walk(ast.parse(open(path).read())):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names] if node.module == "mialth_jax" else [
          node.module]
    for name in names:
      parts = name.split(".")
      if parts[0] == "mialth_jax" and len(parts) > 1:
        rooms.add(parts[1])
  return rooms


@pytest.mark.parametrize("relpath,path", sorted(_modules()))
def test_imports_flow_one_way(relpath, path):
  room = _room(relpath)
  if room == "__init__":
    return
  assert room in ALLOWED, f"{relpath}: a new room; add it to ALLOWED and docs/architecture.md"
  wrong = _imported_rooms(path) - ALLOWED[room] - {room}
  assert not wrong, f"{relpath} ({room}) imports {sorted(wrong)}"


def test_attacks_import_nothing_that_trains_or_orchestrates():
  for relpath, path in _modules():
    if _room(relpath) == "attacks":
      assert not _imported_rooms(path) & {"lottery", "experiments", "runner", "config_lib"}, relpath


def test_the_checker_sees_imports_inside_functions(tmp_path):
  module = tmp_path / "m.py"
  module.write_text("def f():\n  from mialth_jax.lottery import pipeline\n  import mialth_jax.report.plots\n")
  assert _imported_rooms(str(module)) == {"lottery", "report"}


@pytest.mark.parametrize("relpath,path", sorted(_modules()))
def test_modules_stay_small(relpath, path):
  assert sum(1 for _ in open(path)) <= 250, f"{relpath}: split it (modules stay under ~250 lines)"


# The core: the modules that every feature plugs into. They iterate over what is registered and name no feature.
CORE = ["config_lib.py", "plugins.py", "data/reserved.py", "utils/config_sections.py", "utils/registry.py",
        "lottery/train.py", "lottery/loop.py", "lottery/step_hooks.py", "lottery/pipeline.py", "lottery/context.py",
        "lottery/recipes.py", "lottery/train_state.py", "attacks/registry.py", "attacks/contracts.py",
        "experiments/launch.py", "experiments/protocols.py", "experiments/attack_runs.py", "experiments/verdict.py",
        "report/markdown.py", "report/sections.py", "report/collect.py"]
FEATURE_NAMES = r"min.?max|admm|lira|rmia|fine.?tune|input.gradient|smooth|shadow|zoo|adversarial"
NAMES_THE_FEATURES = {"plugins.py"}  # the one explicit place that lists the package's own feature modules


@pytest.mark.parametrize("relpath", CORE)
def test_the_core_names_no_feature(relpath):
  """grep -n -i -E "$FEATURE_NAMES" on each core module (code, comments and docstrings alike) finds nothing."""
  text = open(os.path.join(PACKAGE, relpath)).read()
  if relpath in NAMES_THE_FEATURES:
    text = text.split("BUILTIN = (")[0]
  found = [line for line in text.splitlines() if re.search(FEATURE_NAMES, line, re.IGNORECASE)]
  assert not found, f"{relpath} names features: {found}"


def test_the_feature_grep_finds_a_feature_name():
  assert re.search(FEATURE_NAMES, "the Min-Max defender", re.IGNORECASE) and not re.search(FEATURE_NAMES, "ticket")
