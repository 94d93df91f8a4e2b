"""A busy machine slows a `--cpu_devices=8` run down and never kills it.

XLA:CPU runs each simulated device on a thread. When one device reaches a collective late, the others warn after 20 s
(`... may be stuck`) and abort the whole process 40 s after that warning (`Termination timeout for 'all reduce ...' of
40 seconds exceeded ... Fatal Python error: Aborted`). The launcher (and conftest) wait a day instead
(`logs.patient_cpu_collectives`).
"""
import os
import subprocess
import sys
import time

import pytest

from mialth_jax.utils import logs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATE = 45  # seconds by which device 0 reaches the all-reduce after the other 7
# Both runs warn after 1 s (a user's own setting, which the launcher keeps), so that XLA's default termination, 40 s
# after the warning, falls before device 0 arrives; with XLA's 20 s warning the control would take over a minute.
WARN_AT_ONCE = "--xla_cpu_collective_call_warn_stuck_timeout_seconds=1"

# One all-reduce over 8 devices, device 0 arriving LATE seconds after the others; prints the sum (28).
ONE_LATE_DEVICE = f"""
import sys, time
if sys.argv[1] == "launcher":
  import launch.main  # sets the launcher's XLA flags and imports jax, as `python -m launch.main` does
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P

def late(index):
  if int(index) == 0:
    time.sleep({LATE})
  return np.float32(0)

def add(x):
  delay = jax.pure_callback(late, jax.ShapeDtypeStruct((), jnp.float32), jax.lax.axis_index("d"))
  return jax.lax.psum(x + delay, "d")

mesh = Mesh(np.array(jax.devices()), ("d",))
print(float(jax.jit(jax.shard_map(add, mesh=mesh, in_specs=P("d"), out_specs=P()))(jnp.arange(8.0))[0]))
"""


def _env_without_patience(*xla_flags: str) -> dict:
  """The test environment with XLA's own collective timeouts (conftest adds the patient ones), plus `xla_flags`."""
  flags = [f for f in os.environ["XLA_FLAGS"].split() if f.split("=")[0][2:] not in logs.PATIENT_COLLECTIVES]
  return {**os.environ, "XLA_FLAGS": " ".join([*flags, *xla_flags])}


def test_patient_flags_keep_the_users_own_values():
  user = "--xla_force_host_platform_device_count=8 --xla_cpu_collective_call_terminate_timeout_seconds=5"
  assert logs.patient_xla_flags(user, "0.10.2") == (
      user + " --xla_cpu_collective_call_warn_stuck_timeout_seconds=600 --xla_cpu_multi_thread_eigen=false")
  assert logs.patient_xla_flags("", "0.8.0") == ("--xla_cpu_collective_call_warn_stuck_timeout_seconds=600 "
                                                 "--xla_cpu_collective_call_terminate_timeout_seconds=86400 "
                                                 "--xla_cpu_multi_thread_eigen=false")
  assert logs.patient_xla_flags(user, "0.7.2") == user  # XLA would abort on flags it does not know


@pytest.mark.slow
def test_a_device_far_behind_the_others_no_longer_aborts_the_process():
  """The same program with XLA's default termination (the control) and under the launcher: only the first aborts."""
  runs = {mode: subprocess.Popen([sys.executable, "-c", ONE_LATE_DEVICE, mode], cwd=REPO,
                                 env=_env_without_patience(WARN_AT_ONCE), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
          for mode in ("default", "launcher")}
  (default_out, default_err), (patient_out, patient_err) = (runs[m].communicate(timeout=300) for m in runs)
  assert runs["default"].returncode == -6, default_err[-3000:]  # SIGABRT
  assert "Termination timeout for `all reduce" in default_err and "of 40 seconds exceeded" in default_err
  assert runs["launcher"].returncode == 0, patient_err[-3000:]
  assert patient_out.split() == ["28.0"]
  assert "may be stuck" in patient_err and "Termination timeout" not in patient_err


@pytest.mark.slow
def test_an_8_device_launch_on_an_overloaded_machine_finishes(tmp_path):
  """More busy processes than cores from the first train step on: 120 steps on 8 devices, then the evaluation."""
  launch = subprocess.Popen(
      [sys.executable, "-m", "launch.main", "--config=configs/default.py:smoke", f"--workdir={tmp_path / 'run'}",
       "--cpu_devices=8", "--config.train.num_steps=120", "--config.train.log_every_steps=10",
       "--config.train.eval_every_epochs=100", "--config.lottery.sparsities=()", "--config.attacks.protocols=()"],
      cwd=REPO, env=_env_without_patience(), stderr=subprocess.PIPE, text=True)
  hogs, seen = [], []
  try:
    for line in launch.stderr:
      seen.append(line)
      if "[dense] step 10/120" in line:
        started = time.time()
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * os.cpu_count() + 2)]
    launch.wait(timeout=600)
  finally:
    for hog in hogs:
      hog.kill()
      hog.wait()
  print(f"{len(hogs)} busy processes for the last {time.time() - started:.0f} s of the launch")
  assert launch.returncode == 0, "".join(seen)[-3000:]
  assert hogs and any("[dense] step 120/120" in line for line in seen), "".join(seen)[-3000:]
  assert os.path.exists(tmp_path / "run" / "models" / "dense" / "summary.json")
