"""kill -9 in the middle of the zoo's training and relaunch: the zoo, its logits and the LiRA results end bit for bit
where an uninterrupted run's do (`launch.compare_runs`)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, "-m", "launch.main", "--config=tests/zoo_resume_case.py"]


def _zoo_checkpoints(workdir, kind):
  folder = os.path.join(workdir, "shadows", kind, "checkpoints")
  return sorted(int(s) for s in os.listdir(folder) if s.isdigit()) if os.path.isdir(folder) else []


def _kill_at_zoo_checkpoint(command, workdir, step, log_path):
  """Launches `command` on `workdir` and SIGKILLs it once the dense zoo's checkpoint at `step` exists."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen([*command, f"--workdir={workdir}"], cwd=REPO, stdout=log, stderr=log)
    while proc.poll() is None and step not in _zoo_checkpoints(workdir, "dense"):
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, open(log_path).read()[-3000:]


def test_a_zoo_killed_mid_training_resumes_to_the_same_result(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  done = subprocess.run([*COMMAND, f"--workdir={reference}"], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  _kill_at_zoo_checkpoint(COMMAND, killed, 8, tmp_path / "killed.log")
  assert not os.path.exists(os.path.join(killed, "shadows", "dense", "summary.json"))
  again = subprocess.run([*COMMAND, f"--workdir={killed}"], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert re.search(r"\[zoo dense\] resumed from the checkpoint at step (8|12)\b", again.stderr), again.stderr[-3000:]
  compared = subprocess.run([sys.executable, "-m", "launch.compare_runs", f"--a={reference}", f"--b={killed}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
  assert compared.returncode == 0, compared.stdout[-3000:]
  assert "shadows/dense/logits.npy" not in compared.stdout  # compared and equal, not missing
  assert os.path.exists(os.path.join(killed, "shadows", "ticket_s80", "logits.npy"))


def test_a_kill_between_a_checkpoint_and_its_curve_point_resumes_to_the_same_result(tmp_path):
  """The zoo checkpoints at steps 7 and 14 and keeps a curve point (weights and pool logits) at 14. A kill once the
  checkpoint at 14 exists, with the curve point's files then removed, is the state a kill between the two leaves
  (whatever the kill caught); the relaunch resumes at 14 and keeps the point from the restored state: the run ends
  bit for bit where an uninterrupted one does, curve point included."""
  command = [sys.executable, "-m", "launch.main", "--config=tests/zoo_resume_case.py:curve"]
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  done = subprocess.run([*command, f"--workdir={reference}"], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  curve = os.path.join(reference, "shadows", "dense", "curve")
  assert sorted(os.listdir(curve)) == ["14", "14.npy"], os.listdir(curve)
  _kill_at_zoo_checkpoint(command, killed, 14, tmp_path / "killed.log")
  zoo_dense = os.path.join(killed, "shadows", "dense")
  assert not os.path.exists(os.path.join(zoo_dense, "final"))  # the kill came before the zoo's last step
  for name in ("14", "14.npy"):
    path = os.path.join(zoo_dense, "curve", name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
  again = subprocess.run([*command, f"--workdir={killed}"], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "[zoo dense] resumed from the checkpoint at step 14" in again.stderr, again.stderr[-3000:]
  compared = subprocess.run([sys.executable, "-m", "launch.compare_runs", f"--a={reference}", f"--b={killed}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
  assert compared.returncode == 0, compared.stdout[-3000:]
  assert os.path.exists(os.path.join(zoo_dense, "curve", "14.npy"))
