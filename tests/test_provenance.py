"""Every launch records its commit, versions and devices; a report states them per run, and says when models
predate the record."""
import os
import subprocess
import time

from mialth_jax.utils import io, provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_commit_is_the_checkouts_own():
  head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
  if head.returncode:
    assert provenance.commit() == "unknown (not a git checkout)"
  else:
    assert provenance.commit().split()[0] == head.stdout.strip()


def test_the_summary_lists_each_distinct_value_and_notes_models_made_before_the_record(tmp_path):
  workdir = str(tmp_path)
  assert provenance.summary(workdir).startswith("launches not recorded")
  os.makedirs(tmp_path / "models" / "dense")
  io.write_json(str(tmp_path / "models" / "dense" / "summary.json"), {"name": "dense"})
  time.sleep(1.1)  # the launch below starts after the model was made (timestamps to the second)
  provenance.record(workdir)
  first = io.read_jsonl(provenance.path(workdir))[0]
  io.append_jsonl(provenance.path(workdir), {**first, "commit": "abc"})
  said = provenance.summary(workdir)
  assert said.startswith(f"2 recorded launch(es); commit {first['commit']}, abc; jax {first['versions']['jax']}")
  assert said.endswith("some models were made by earlier launches, before launches.jsonl existed")
