"""A write failure ends a launch with its one `error:` line last (exit 2) and no traceback from Orbax's background
threads: a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes fail as a full disk's do) stops the first
checkpoint, w0, partway."""
import os
import resource
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _limit_file_size():
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))  # w0 of the default model is ~2.8 MB


def test_a_failed_checkpoint_write_is_the_last_line_and_the_only_traceback_free_message(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-m", "launch.main", "--config=configs/default.py:smoke",
                         f"--workdir={tmp_path / 'run'}", "--compilation_cache=none"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-3000:]
  assert lines[-1].startswith(f"error: {tmp_path / 'run' / 'w0'}: cannot write the checkpoint ("), lines[-1]
  assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr, done.stderr[-3000:]
