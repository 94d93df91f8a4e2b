"""A write failure ends a launch with its one `error:` line last (exit 2), and none of the tracebacks Orbax's writer
threads log for it: a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes fail as a full disk's do) stops a
checkpoint (w0 or a model's final weights, as TensorStore splits the files) partway."""
import os
import re
import resource
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _limit_file_size():
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # config.json and splits.npz fit, w0's files do not


def test_a_failed_checkpoint_write_ends_with_its_error_line_and_without_orbaxs_thread_logs(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-m", "launch.main", "--config=configs/default.py:smoke",
                         f"--workdir={tmp_path / 'run'}", "--compilation_cache=none"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-3000:]
  assert re.match(rf"error: {re.escape(str(tmp_path / 'run'))}/(w0|models/\w+/final): cannot write the checkpoint \(",
                  lines[-1]), lines[-1]
  assert "_SignalingThread.run() raised an exception" not in done.stderr, done.stderr[-3000:]  # Orbax's thread logs
  # Left: TensorStore's callbacks may print "Event loop is closed" tracebacks before the error line (they write to
  # the stream directly, past sys.excepthook and logging); the error line stays last.
