"""utils/compilation_cache.py: an entry of JAX's persistent compilation cache truncated by a killed launch makes every
later launch warn and compile it again; dropping it before the launch ends that, and intact entries stay."""
import os
import subprocess
import sys

from mialth_jax.utils import compilation_cache

_COMPILE = """
import sys, jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
print(jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)))
"""
_WARNING = "Error reading persistent compilation cache entry"


def _compile(folder) -> str:
  """Runs one jitted function in a fresh process with `folder` as its cache; returns its stderr."""
  done = subprocess.run([sys.executable, "-c", _COMPILE, str(folder)], capture_output=True, text=True, check=True,
                        env={k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"})
  return done.stderr


def _truncate(path) -> None:
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def _entries(folder) -> dict:
  return {name: os.path.getsize(folder / name) for name in os.listdir(folder) if name.endswith("-cache")}


def test_a_truncated_entry_is_dropped_and_written_again_and_intact_ones_are_kept(tmp_path):
  folder = tmp_path / "cache"
  _compile(folder)
  entries = _entries(folder)
  damaged = next(name for name in entries if name.startswith("jit__lambda"))
  _truncate(folder / damaged)
  assert _WARNING in _compile(folder)  # JAX reads the truncated entry, warns and does not replace it
  assert _WARNING in _compile(folder)
  assert compilation_cache.drop_damaged_entries(str(folder)) == [damaged]
  assert _entries(folder) == {name: size for name, size in entries.items() if name != damaged}
  assert _WARNING not in _compile(folder)
  assert _entries(folder) == entries  # written again whole
  assert compilation_cache.drop_damaged_entries(str(folder)) == []


def test_only_entries_written_since_the_last_check_are_read(tmp_path):
  folder = tmp_path / "cache"
  _compile(folder)
  assert compilation_cache.drop_damaged_entries(str(folder)) == []
  old, new = sorted(_entries(folder))[:2]
  for name in (old, new):
    _truncate(folder / name)
  checked = os.path.getmtime(folder / compilation_cache._MARKER)  # noqa: SLF001
  os.utime(folder / old, (checked - 60, checked - 60))  # damaged before the last check: that check read it whole
  os.utime(folder / new, (checked + 60, checked + 60))  # written after it
  assert compilation_cache.drop_damaged_entries(str(folder)) == [new]
  os.remove(folder / compilation_cache._MARKER)  # noqa: SLF001 (no record of a check: every entry is read)
  assert compilation_cache.drop_damaged_entries(str(folder)) == [old]


def test_a_missing_folder_has_nothing_to_drop(tmp_path):
  assert compilation_cache.drop_damaged_entries(str(tmp_path / "absent")) == []
  assert not (tmp_path / "absent").exists()
