"""Test-wide JAX settings: 8 simulated CPU devices, the fast PRNG and a persistent compilation cache shared by the
tests (launches in tests use it too, instead of a cache in each workdir), and the launcher's patient XLA:CPU
collectives (tests run 8 devices on a machine that other tests keep busy).

These must be set before jax is imported anywhere, which is why they live here.
"""
import fcntl
import os
import subprocess
import sys

from mialth_jax.utils import logs

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
logs.patient_cpu_collectives()
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/mialth_jax/jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

from mialth_jax import plugins  # noqa: E402

plugins.load()  # the built-in features (report sections ...) for tests that call the core directly

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
  parser.addoption("--cifar-dir", default=os.environ.get("MIALTH_CIFAR_DIR", ""),
                   help="folder holding cifar10_small.npz / cifar100_small.npz (or set MIALTH_CIFAR_DIR)")


@pytest.fixture(scope="session")
def cifar_dir(request):
  """Folder with the real CIFAR subsets; tests that need it are skipped with the reason shown (-ra)."""
  candidates = [request.config.getoption("--cifar-dir"), os.path.join(REPO_ROOT, "..", "shared", "data")]
  for path in candidates:
    if path and os.path.exists(os.path.join(path, "cifar10_small.npz")):
      return os.path.abspath(path)
  pytest.skip("real CIFAR subsets not found: pass --cifar-dir or set MIALTH_CIFAR_DIR to the folder with "
              "cifar10_small.npz")


# ---- Two tiers (issue 25). `pytest` runs the fast tier (pyproject's addopts: -m "not slow"); `pytest -m slow` runs
# the end-to-end tier. Slow tests are marked here, in one place, by file or by test (a name without parameters), and
# every test that needs the real CIFAR subsets (the `cifar_dir` fixture, directly or through another fixture); a test
# file may also mark its own tests with @pytest.mark.slow.
SLOW_FILES = {
    "test_bad_input.py",        # ~24 launches of the real command line, each a fresh Python with JAX
    "test_default_run.py",      # the full 15-epoch default run
    "test_resume.py",           # runs killed in every phase and relaunched
    "test_zoo_resume.py",       # a zoo killed mid-training and relaunched
    "test_multihost.py",        # multi-process jobs over localhost
    "test_same_results.py",     # the reference commit's run against this checkout's
    "test_torch_parity.py",     # PyTorch parity (skipped without torch)
    "test_pipeline.py",         # the lottery pipeline end to end, and bad settings through the real command line
    "test_attack_protocols.py", # paper / transfer / shadow protocols on a 40-epoch overfitted run
    "test_adversarial_protocol.py",  # the adversarial protocol and both defences on a 15-epoch run
}
SLOW_TESTS = {
    "test_launcher.py::test_ctrl_c_ends_a_launch_with_one_line_and_status_130",
    "test_launcher.py::test_a_launch_says_what_it_does_and_caches_compilations_in_its_workdir",
    "test_extract.py::test_two_processes_over_localhost_agree",
    "test_defences.py::test_killed_inside_an_admm_round_resumes_to_the_same_bits",
}


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    file = os.path.basename(str(item.path))
    needs_cifar = "cifar_dir" in getattr(item, "fixturenames", ())  # CIFAR, and tfds data prepared from it
    if file in SLOW_FILES or f"{file}::{item.originalname}" in SLOW_TESTS or needs_cifar:
      item.add_marker(pytest.mark.slow)


# ---- Runs shared by the whole test session, built once however many xdist workers ask for them.
def _session_dir(tmp_path_factory) -> str:
  """A folder shared by every worker of this pytest session (xdist: the parent of the workers' base temp folders;
  without xdist: the session's own base temp folder)."""
  base = tmp_path_factory.getbasetemp()
  return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def build_once(tmp_path_factory, name: str, build) -> str:
  """`build(folder)` run once per session under a file lock: the first worker to ask builds `folder`, the others wait
  and then read it. A failed build leaves no mark, so each asking worker tries (and reports) it again."""
  root = os.path.join(_session_dir(tmp_path_factory), "shared_runs")
  os.makedirs(root, exist_ok=True)
  folder, done = os.path.join(root, name), os.path.join(root, name + ".done")
  with open(os.path.join(root, name + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not os.path.exists(done):
        if os.path.exists(folder):  # a failed build of another worker
          os.rename(folder, f"{folder}.failed.{os.getpid()}")
        build(folder)
        open(done, "w").close()
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return folder


def _launch_smoke(workdir: str) -> None:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user's laptop
  done = subprocess.run([sys.executable, "-m", "launch.main", "--config=configs/default.py:smoke",
                         f"--workdir={workdir}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> str:
  """The shared tiny run: `configs/default.py:smoke` (dense + ticket_s80 on digits, attacked) launched as a user
  launches it, on one CPU device; built once per session. Read it, never write into it (copy it to change it)."""
  return build_once(tmp_path_factory, "smoke", _launch_smoke)
