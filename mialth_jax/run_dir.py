"""The run folder: its layout, and the rule that a finished run is never overwritten by a different config.

    <workdir>/config.json        the config of the latest launch
              splits.npz         member / non-member indices (see data.splits)
              w0/                Orbax: params + batch_stats at step 0
              rewind/            Orbax: params + batch_stats at lottery.rewind_step (late rewinding only)
              models/<name>/     dense, ticket_s80, imp_r3, random_prune_s80, random_reinit_s80, ...
                  mask/  final/  checkpoints/  metrics.jsonl  sparsity_report.json  summary.json (written last)
              lottery_summary.json
"""
import contextlib
import fcntl
import json
import os

import ml_collections

from mialth_jax.utils import io

# Sections whose values decide what a trained model is; the attacks section (and adding sparsities or controls)
# may change between launches on the same workdir, since they only add work.
MODEL_DEFINING = ("seed", "data", "model", "train", "lottery")
ADDITIVE = ("lottery.sparsities", "lottery.controls")


class RunDirError(ValueError):
  """The workdir cannot be used with this config."""


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and not name.startswith("attacks.models"):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def differing_fields(old: dict, new: dict) -> list[str]:
  """Model-defining fields whose values differ between two configs (as dicts).

  Fields present in only one of them are not compared: they come from a newer or older version of the defaults.
  """
  old_flat, new_flat = _flatten(old), _flatten(new)
  names = sorted(set(old_flat) & set(new_flat))
  return [n for n in names if n.split(".")[0] in MODEL_DEFINING and n not in ADDITIVE
          and old_flat.get(n) != new_flat.get(n)]


def prepare(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Creates the workdir, or checks that it holds a run of the same models; writes config.json."""
  path = os.path.join(workdir, "config.json")
  new = json.loads(config.to_json())  # tuples become lists, as in the file
  if os.path.exists(path):
    differing = differing_fields(io.read_json(path), new)
    if differing:
      raise RunDirError(f"{workdir} holds a run with a different config ({', '.join(differing)}); use a new "
                        "--workdir, or the same config")
  os.makedirs(workdir, exist_ok=True)
  io.write_json(path, new)


def model_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "models", name)


def is_finished(workdir: str, name: str) -> bool:
  return os.path.exists(os.path.join(model_dir(workdir, name), "summary.json"))


def finished_models(workdir: str) -> list[str]:
  """Names of the models whose training finished, dense first."""
  root = os.path.join(workdir, "models")
  names = sorted(n for n in os.listdir(root) if is_finished(workdir, n)) if os.path.isdir(root) else []
  return sorted(names, key=lambda n: n != "dense")


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on the workdir for one launch; a second launch on it fails at once.

  flock locks are released by the kernel when the process dies, so a killed run never leaves a stale lock.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, ".lock")
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise RunDirError(f"{workdir} is in use by another launch (pid {holder}); wait for it to finish or use "
                        "another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    yield
