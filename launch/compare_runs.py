"""Compares two run folders artefact by artefact: are they the same run, bit for bit?

  python -m launch.compare_runs --a=runs/default_before --b=runs/default_after

Checkpoints (w0, rewind, every model's mask and final weights) are restored and compared leaf by leaf, bit for bit;
every .npz / .npy array (splits, attack splits, confidences, per-example scores, zoo logits) byte for byte; every JSON
and JSON-lines value exactly, except wall-clock fields. config.json is the input, not a result, and is not compared;
neither is set_aside/ (what --retrain replaced), so a run with a retrained model compares equal to the original.
Exits 0 when both folders hold the same artefacts with the same contents, 1 otherwise, printing each difference. Used
to show that a refactoring changed no result. With --allow_added_fields, JSON fields that only the second run has (a
metric added since the first was made) are listed but not counted: every value both runs have must still be equal.
"""
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags

from mialth_jax.layout import RunLayout
from mialth_jax.utils import io

_A = flags.DEFINE_string("a", None, "first run folder")
_B = flags.DEFINE_string("b", None, "second run folder")
_ALLOW_ADDED = flags.DEFINE_bool("allow_added_fields", False, "JSON fields only in --b are listed, not differences")
flags.mark_flags_as_required(["a", "b"])

WALL_CLOCK = {"wall_seconds", "seconds"}  # timings (summary.json; the adversarial statistics): the only fields that
# may differ between two identical runs
INPUTS = {"config.json",   # what was asked, not what came out: code versions add config fields with their defaults
          "launches.jsonl"}  # who ran it (commit, versions, time): provenance, not a result


def artefacts(root: str) -> dict[str, str]:
  """{relative path: kind} of the run's results: checkpoints (folders), npz, json and jsonl files."""
  found = {}
  for folder, dirs, files in os.walk(root):
    rel = os.path.relpath(folder, root)
    if os.path.isfile(os.path.join(folder, "_CHECKPOINT_METADATA")):
      found[rel] = "checkpoint"
      dirs.clear()
      continue
    # periodic train states: resume aids, not results; what --retrain set aside: the results it replaced
    dirs[:] = [d for d in dirs if d != "checkpoints" and os.path.join(folder, d) != RunLayout(root).set_aside]
    for name in files:
      kind = os.path.splitext(name)[1][1:]
      if kind in ("npz", "npy", "json", "jsonl") and name not in INPUTS:
        found[os.path.normpath(os.path.join(rel, name))] = kind
  return found


def _flatten(tree, prefix=()):
  """(path, leaf) pairs of a nested dict, in sorted key order."""
  if isinstance(tree, dict):
    for key in sorted(tree):
      yield from _flatten(tree[key], prefix + (key,))
  else:
    yield "/".join(map(str, prefix)), tree


def same_arrays(a: dict, b: dict) -> list[str]:
  """Names of arrays that differ in presence, dtype, shape or any bit."""
  return [k for k in sorted(set(a) | set(b))
          if k not in a or k not in b or a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
          or a[k].tobytes() != b[k].tobytes()]


def _without_wall_clock(value):
  if isinstance(value, dict):
    return {k: _without_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK}
  if isinstance(value, list):
    return [_without_wall_clock(v) for v in value]
  return value


def _drop_added(a, b, path: str, added: list[str]):
  """b without the dict keys that a lacks (recorded in `added`), at every depth where both are dicts or lists."""
  if isinstance(a, dict) and isinstance(b, dict):
    added += [f"{path}/{k}" for k in sorted(set(b) - set(a))]
    return {k: _drop_added(a[k], v, f"{path}/{k}", added) for k, v in b.items() if k in a}
  if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    return [_drop_added(x, y, f"{path}[{i}]", added) for i, (x, y) in enumerate(zip(a, b))]
  return b


def differences(a_root: str, b_root: str, added: list[str] | None = None) -> list[str]:
  """One line per difference between the two run folders; empty when they hold the same results.

  When `added` is a list, JSON fields only the second run has are appended to it instead of counting as differences.
  """
  a, b = artefacts(a_root), artefacts(b_root)
  out = [f"only in {root}: {rel}" for rel, root in
         [(r, a_root) for r in sorted(set(a) - set(b))] + [(r, b_root) for r in sorted(set(b) - set(a))]]
  for rel in sorted(set(a) & set(b)):
    pa, pb = os.path.join(a_root, rel), os.path.join(b_root, rel)
    if a[rel] == "checkpoint":
      differing = same_arrays(dict(_flatten(_to_numpy(pa))), dict(_flatten(_to_numpy(pb))))
    elif a[rel] == "npz":
      with np.load(pa, allow_pickle=False) as fa, np.load(pb, allow_pickle=False) as fb:
        differing = same_arrays(dict(fa.items()), dict(fb.items()))
    elif a[rel] == "npy":
      differing = same_arrays({"array": np.load(pa)}, {"array": np.load(pb)})
    else:
      read = io.read_jsonl if a[rel] == "jsonl" else io.read_json
      va, vb = _without_wall_clock(read(pa)), _without_wall_clock(read(pb))
      if added is not None:
        vb = _drop_added(va, vb, rel, added)
      differing = ["values"] if va != vb else []
    out += [f"differs: {rel} ({', '.join(differing)})"] if differing else []
  return out


def _to_numpy(path: str):
  """A checkpoint's tree as numpy arrays, restored as stored (no target: nothing is cast)."""
  with ocp.StandardCheckpointer() as checkpointer:
    return jax.tree.map(np.asarray, checkpointer.restore(os.path.abspath(path)))


def main(argv):
  del argv
  added = [] if _ALLOW_ADDED.value else None
  found = differences(_A.value, _B.value, added)
  for line in found:
    print(line)
  if added:
    print(f"fields only in {_B.value} (not compared): {', '.join(sorted({p.rsplit('/', 1)[-1] for p in added}))}")
  count = len(artefacts(_A.value))
  print(f"{count} artefacts compared: {'identical' if not found else f'{len(found)} differences'}")
  sys.exit(1 if found else 0)


if __name__ == "__main__":
  app.run(main)
