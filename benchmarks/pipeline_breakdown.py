"""The default digits pipeline end to end from a fresh process, broken down into phases from its log timestamps.

  python benchmarks/pipeline_breakdown.py [--config=configs/default.py --xla_flags='...' --compilation_cache]

Runs `python -m launch.main --config=CONFIG --workdir=<fresh temporary folder>` from the repository root with
JAX_LOG_COMPILES=1, and splits its wall time at the log lines that open each phase:
  start + imports     process start -> "process 0 of 1" (Python, JAX, Flax, Orbax, TFDS imports; backend start)
  setup + w0          -> the first model's line (data, splits, model size, w0 init and checkpoint)
  train <model>       -> the next model's line (mask, restore, compile, steps, evaluations, checkpoints)
  attacks             -> process exit (confidence extraction, attack fitting, bootstrap intervals, JSON)
XLA compile seconds are summed per phase and per jitted function. --compilation_cache points JAX's persistent
compilation cache at an empty folder: a first launch on a new machine. Without it the launcher's own persistent cache
(`~/.cache/mialth_jax/jax_cache`, or $JAX_COMPILATION_CACHE_DIR) is used, warm after any earlier launch. Target:
total <= 120 s. Appends one JSON line to benchmarks/results.jsonl.
"""
import collections
import datetime
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import harness

flags.DEFINE_string("config", "configs/default.py", "config file, relative to the repository root")
flags.DEFINE_string("xla_flags", "", "XLA_FLAGS for the pipeline process (e.g. a candidate speed fix)")
flags.DEFINE_boolean("compilation_cache", False, "give the pipeline an empty persistent compilation cache")
F = flags.FLAGS
TARGET_S = 120.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_LINE = re.compile(r"^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d+) +\d+ (\S+?):\d+\] (.*)$")
MODEL_LINE = re.compile(r"^\[(\S+)\] \S+, sparsity")
COMPILE_LINE = re.compile(r"Finished XLA compilation of (.+) in ([\d.]+) sec")
CACHE_HIT = "Persistent compilation cache hit"


def run_pipeline(folder: str) -> tuple[float, float, float, str]:
  """(start epoch seconds, wall seconds, child CPU seconds, stderr) of one launch into folder/run."""
  env = dict(os.environ, JAX_LOG_COMPILES="1", XLA_FLAGS=F.xla_flags)
  if F.compilation_cache:
    env.update(JAX_COMPILATION_CACHE_DIR=os.path.join(folder, "jax_cache"))
  command = [sys.executable, "-m", "launch.main", f"--config={F.config}", f"--workdir={os.path.join(folder, 'run')}"]
  cpu_before = _children_cpu()
  start = time.time()
  proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.time() - start
  if proc.returncode:
    raise RuntimeError(f"pipeline exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
  return start, wall, _children_cpu() - cpu_before, proc.stderr


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def log_events(stderr: str, start: float) -> list[tuple[float, str, str]]:
  """(seconds since the process started, source file, message) of every absl log line."""
  day = datetime.date.fromtimestamp(start)
  events = []
  for line in stderr.splitlines():
    m = LOG_LINE.match(line)
    if m:
      stamp = datetime.datetime.strptime(f"{day.year}{m[1]} {m[2]}", "%Y%m%d %H:%M:%S.%f").timestamp()
      events.append((stamp - start, m[3], m[4]))
  return events


def phases(events, wall: float) -> list[tuple[str, float, float]]:
  """(name, start, end) of each phase, in seconds since the process started."""
  marks = [("start + imports", 0.0)]
  marks += [("setup + w0", t) for t, src, msg in events if src == "main.py" and msg.startswith("process ")][:1]
  marks += [(f"train {MODEL_LINE.match(msg)[1]}", t) for t, src, msg in events if MODEL_LINE.match(msg)]
  summaries = [t for t, src, msg in events if src == "pipeline.py" and "test acc" in msg]
  marks += [("attacks", summaries[-1])] if summaries else []
  ends = [t for _, t in marks[1:]] + [wall]
  return [(name, t, end) for (name, t), end in zip(marks, ends)]


def compile_seconds(events, start: float, end: float) -> collections.Counter:
  """XLA compile seconds per jitted function between two times."""
  total = collections.Counter()
  for t, _, msg in events:
    m = COMPILE_LINE.search(msg)
    if m and start <= t < end:
      total[m[1]] += float(m[2])
  return total


def main(argv):
  del argv
  setting = harness.setting(config=F.config, pipeline_xla_flags=F.xla_flags, compilation_cache=F.compilation_cache)
  harness.print_setting(setting)
  with tempfile.TemporaryDirectory() as workdir:
    start, wall, cpu, stderr = run_pipeline(workdir)
  events = log_events(stderr, start)
  print(f"\n{F.config} from a fresh process: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads; "
        f"{cpu / wall:.2f} of {setting['usable_cores']} cores on average)")
  print(f"  {'phase':<22} {'seconds':>8} {'share':>6} {'compile':>8}  largest compiles")
  rows = []
  for name, t0, t1 in phases(events, wall):
    compiles = compile_seconds(events, t0, t1)
    top = ", ".join(f"{k} {v:.1f}" for k, v in compiles.most_common(3))
    print(f"  {name:<22} {t1 - t0:8.1f} {100 * (t1 - t0) / wall:5.0f}% {sum(compiles.values()):8.1f}  {top}")
    rows.append({"phase": name, "seconds": t1 - t0, "compile_s": sum(compiles.values()), "compiles": dict(compiles)})
  everything = compile_seconds(events, 0, wall)
  counts = collections.Counter(COMPILE_LINE.search(m)[1] for _, _, m in events if COMPILE_LINE.search(m))
  print("  XLA compilation in all: " + f"{sum(everything.values()):.1f} s; by function (count, seconds): " +
        ", ".join(f"{k} ({counts[k]}, {v:.1f})" for k, v in everything.most_common(6)) +
        f"; persistent cache hits: {sum(CACHE_HIT in m for _, _, m in events)}")
  throughput = [msg for _, _, msg in events if "img/s" in msg]
  print("  last progress line of each model: " +
        "; ".join(m.split("  ")[0] + " " + m.split("  ")[-2] for m in _last_per_model(throughput)))
  print(f"total {wall:.1f} s, target <= {TARGET_S:.0f} s: {harness.verdict(wall, TARGET_S, higher_is_better=False)}"
        f" (ratio target / total = {TARGET_S / wall:.2f})")
  harness.append_result({"benchmark": "pipeline_breakdown", "target_s": TARGET_S, **setting,
                         "load_avg_end": harness.load_avg(), "wall_s": wall, "cpu_s": cpu,
                         "met": wall <= TARGET_S, "phases": rows, "compile_s": sum(everything.values()),
                         "compile_counts": dict(counts)})


def _last_per_model(lines: list[str]) -> list[str]:
  """The last progress line of each model, in order."""
  last = {}
  for line in lines:
    last[line.split("]")[0]] = line
  return list(last.values())


if __name__ == "__main__":
  app.run(main)
