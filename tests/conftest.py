"""Test-wide JAX settings: 8 simulated CPU devices, the fast PRNG and a persistent compilation cache shared by the
tests (launches in tests use it too, instead of a cache in each workdir), and the launcher's patient XLA:CPU
collectives (tests run 8 devices on a machine that other tests keep busy).

These must be set before jax is imported anywhere, which is why they live here.
"""
import os

from mialth_jax.utils import logs

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
logs.patient_cpu_collectives()
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/mialth_jax/jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

from mialth_jax import plugins  # noqa: E402

plugins.load()

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
