"""What made a run's results: the code's commit, the library versions and the devices of every launch.

Each launch appends one line to <workdir>/launches.jsonl; a report states them for every run it reads, so a number
quoted from it can be traced to the code and the machine that made it.
"""
import datetime
import glob
import importlib.metadata
import os
import subprocess

import jax

from mialth_jax.utils import io

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scikit-learn")
_SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def commit() -> str:
  """The checkout's commit ("<sha> (uncommitted changes)" when its files differ from it), or why it is unknown."""
  try:
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=_SOURCE, capture_output=True, text=True,
                         timeout=10, check=True).stdout.strip()
    changed = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                             cwd=_SOURCE, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown (not a git checkout)"
  return f"{sha} (uncommitted changes)" if changed else sha


def versions() -> dict[str, str]:
  found = {}
  for name in PACKAGES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = "not installed"
  return found


def describe() -> dict:
  """This launch: commit, versions, devices, processes and the time it started (UTC)."""
  return {"commit": commit(), "versions": versions(), "devices": jax.device_count(),
          "platform": jax.devices()[0].platform, "processes": jax.process_count(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def path(workdir: str) -> str:
  return os.path.join(workdir, "launches.jsonl")


def record(workdir: str) -> None:
  """Appends this launch's description to the run's launches.jsonl (process 0 only)."""
  if jax.process_index() == 0:
    io.append_jsonl(path(workdir), describe())


def summary(workdir: str) -> str:
  """One line: the distinct commits, jax / jaxlib versions and device counts of the run's launches."""
  if not os.path.exists(path(workdir)):
    return "launches not recorded (a run made before launches.jsonl existed)"
  launches = io.read_jsonl(path(workdir))
  distinct = lambda key: ", ".join(dict.fromkeys(str(key(l)) for l in launches))  # noqa: E731
  first = datetime.datetime.fromisoformat(launches[0]["started"]).timestamp()
  finished = glob.glob(os.path.join(workdir, "models", "*", "summary.json")) + glob.glob(
      os.path.join(workdir, "shadows", "*", "summary.json"))
  earlier = any(os.path.getmtime(p) < first for p in finished)
  return (f"{len(launches)} recorded launch(es); commit {distinct(lambda l: l['commit'])}; jax "
          f"{distinct(lambda l: l['versions']['jax'])}, jaxlib {distinct(lambda l: l['versions']['jaxlib'])}; "
          f"{distinct(lambda l: l['devices'])} {distinct(lambda l: l['platform'])} device(s)"
          + ("; some models were made by earlier launches, before launches.jsonl existed" if earlier else ""))
