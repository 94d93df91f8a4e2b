"""TensorBoard event files beside metrics.jsonl: the smoke run's model folders hold them, and read back (a TFRecord
reader written here, independent of the writer) they carry the same numbers as metrics.jsonl."""
import glob
import os
import struct

from tensorboardX.proto import event_pb2

from mialth_jax.layout import RunLayout
from mialth_jax.utils import io


def read_events(path: str) -> list:
  """Every Event of a TFRecord file: [length u64][crc u32][data][crc u32] records."""
  found = []
  with open(path, "rb") as f:
    while header := f.read(12):
      (length,) = struct.unpack("<Q", header[:8])
      event = event_pb2.Event()
      event.ParseFromString(f.read(length))
      f.read(4)
      found.append(event)
  return found


def test_each_model_folder_holds_events_with_the_metrics_of_its_jsonl(smoke_run):
  layout = RunLayout(smoke_run)
  for name in ("dense", "ticket_s80"):
    files = glob.glob(os.path.join(layout.model_dir(name), "events.out.tfevents.*"))
    assert len(files) == 1
    scalars = {(e.step, v.tag): v.simple_value for e in read_events(files[0]) for v in e.summary.value}
    expected = {(r["step"], f"{r['phase']}/{k}"): v for r in io.read_jsonl(layout.metrics(name))
                for k, v in r.items() if k not in ("step", "phase")}
    assert scalars.keys() == expected.keys() and len(expected) > 4
    assert all(abs(scalars[k] - v) <= 1e-6 * max(1.0, abs(v)) for k, v in expected.items())  # float32 in the file


def test_a_resumed_phase_marks_the_steps_it_replaces(tmp_path):
  log = io.MetricsLog(str(tmp_path / "metrics.jsonl"))
  for step in (1, 2, 3):
    log({"phase": "train", "step": step, "loss": 1.0 / step})
  resumed = io.MetricsLog(str(tmp_path / "metrics.jsonl"))
  resumed.truncate_after(2)
  resumed({"phase": "train", "step": 3, "loss": 0.25})
  files = sorted(glob.glob(str(tmp_path / "events.out.tfevents.*")), key=os.path.getmtime)
  assert len(files) == 2
  second = read_events(files[-1])
  starts = [e.step for e in second if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START]
  assert starts == [3] and [r["step"] for r in io.read_jsonl(str(tmp_path / "metrics.jsonl"))] == [1, 2, 3]
