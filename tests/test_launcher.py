"""What `python -m launch.main` shows and where it puts things: --help lists every config field, start-up says what
it is doing, the compilation cache lives in the workdir (or where the user says), Ctrl-C ends a launch with one line.
"""
import os
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from mialth_jax import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A dense model only, 4 steps on digits: the quickest launch that compiles and runs the train step.
QUICK = ["--config=configs/default.py:smoke", "--config.lottery.sparsities=()", "--config.attacks.protocols=()"]


def _launch(*flags, env=None, **kwargs):
  return subprocess.run([sys.executable, "-m", "launch.main", *flags], cwd=REPO, capture_output=True, text=True,
                        timeout=600, env=env, **kwargs)


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted names of every field of `config`; attacks.models ({name: {type, ...}}) counts as one field."""
  names = []
  for key, value in config.items():
    name = f"{prefix}{key}"
    nested = isinstance(value, ml_collections.ConfigDict) and name != "attacks.models"
    names += _fields(value, name + ".") if nested else [name]
  return names


def test_help_exits_0_and_lists_every_config_field_with_its_default_and_comment():
  for flag in ("--help", "--helpfull"):
    result = _launch(flag)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "--workdir: run folder" in out and "--compilation_cache:" in out and "--cpu_devices:" in out
    assert ("--verbosity" in out) == (flag == "--helpfull")  # --helpfull adds every module's flags (absl.logging's)
    listed = out[out.index("config fields"):]
    for name in _fields(config_lib.base()):
      assert f"  {name} = " in listed, name
  assert "  train.batch_size = 128" in listed and "global batch, a multiple of the device count" in listed
  line = next(line for line in listed.splitlines() if line.startswith("  data.name = "))
  assert line.split() == ["data.name", "=", "'digits'", "digits", "|", "npz", "|", "tfds"]


def test_a_launch_says_what_it_does_and_caches_compilations_in_its_workdir(tmp_path):
  """Without $JAX_COMPILATION_CACHE_DIR the cache is <workdir>/.jax_cache, and a relaunch drops an entry a killed
  launch left truncated (tests/test_compilation_cache.py); --compilation_cache=none turns the cache off."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  result = _launch(*QUICK, f"--workdir={tmp_path / 'run'}", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  said = [next(i for i, line in enumerate(lines) if text in line)
          for text in ("loading the data (data.name=digits)", "compiling the train step", "[dense] step 4/4")]
  assert said == sorted(said), lines
  assert "libtpu" not in result.stderr and "Unable to initialize backend" not in result.stderr
  cache = tmp_path / "run" / ".jax_cache"
  step_entry = next(name for name in os.listdir(cache) if name.startswith("jit_gather_and_step"))
  os.truncate(cache / step_entry, os.path.getsize(cache / step_entry) // 2)
  again = _launch(*QUICK, f"--workdir={tmp_path / 'run'}", env=env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"compilation cache {cache}: dropped 1 damaged entries" in again.stderr and step_entry in again.stderr
  assert not os.path.exists(cache / step_entry)
  off = _launch(*QUICK, f"--workdir={tmp_path / 'off'}", "--compilation_cache=none", env=env)
  assert off.returncode == 0, off.stderr[-3000:]
  assert os.path.exists(tmp_path / "off" / "models" / "dense" / "summary.json")
  assert not os.path.exists(tmp_path / "off" / ".jax_cache")


@pytest.mark.parametrize("moment, after", [("loading the data", 0.0), ("forward FLOPs per image", 1.0),
                                           ("compiling the train step", 0.0), ("[dense] step ", 0.0)])
def test_ctrl_c_ends_a_launch_with_one_line_and_status_130(tmp_path, moment, after):
  """SIGINT `after` seconds past the line `moment` of the launch's log: while loading, while w0 is initialised,
  compiled and saved (1 s after the model-size line: an interrupt there used to end in a segmentation fault, exit
  139, in the interpreter's shutdown), while XLA compiles the train step (an empty compilation cache, so it really
  compiles), after the first progress line. The launch gets SIGINT's default disposition, as from a terminal: pytest
  started in the background of a non-interactive shell (`pytest &`) inherits SIGINT ignored, and so would the launch,
  which then ran to its end."""
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "empty_cache")}
  launch = subprocess.Popen([sys.executable, "-m", "launch.main", "--config=tests/resume_case.py",
                             f"--workdir={tmp_path / 'run'}"], cwd=REPO, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  seen = []
  for line in launch.stderr:
    seen.append(line)
    if moment in line:
      time.sleep(after)
      launch.send_signal(signal.SIGINT)
      break
  rest = launch.communicate(timeout=300)[1]
  assert launch.returncode == 130, "".join(seen) + rest
  assert rest.strip().splitlines()[-1] == "interrupted: relaunch the same command to resume", rest[-3000:]
  assert "Traceback" not in rest and "KeyboardInterrupt" not in rest and "Fatal Python error" not in rest, rest[-3000:]
  assert not os.path.exists(tmp_path / "run" / ".jax_cache")
