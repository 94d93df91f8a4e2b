"""TensorBoard event files beside each metrics.jsonl, so `tensorboard --logdir=<workdir>` plots every phase's loss,
accuracy and evaluations. Written synchronously with tensorboardX's EventsWriter (no background thread to outlive a
failed write), one file per launch and phase; a resumed phase first writes TensorBoard's purge marker (a START session
log at the resumed step + 1), so the steps it trains again replace those of the killed launch.
"""
import numbers
import os
import time

from tensorboardX import event_file_writer, summary
from tensorboardX.proto import event_pb2


class EventLog:
  """The event file of one phase's metrics in `folder` (opened on the first record)."""

  def __init__(self, folder: str):
    self.folder = folder
    self._writer = None
    self._purge_from = None

  def restart_after(self, step: int) -> None:
    """Records before this launch past `step` are to be dropped by TensorBoard."""
    self._purge_from = step + 1

  def _open(self):
    if self._writer is None:
      self._writer = event_file_writer.EventsWriter(os.path.join(self.folder, "events"),
                                                    f".{os.getpid()}.{time.time_ns()}")
      if self._purge_from is not None:
        self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=self._purge_from, session_log=(
            event_pb2.SessionLog(status=event_pb2.SessionLog.START))))
    return self._writer

  def __call__(self, record: dict) -> None:
    """Every number of a metrics record as a scalar "<phase>/<name>" at the record's step."""
    writer = self._open()
    for key, value in sorted(record.items()):
      if key not in ("step", "phase") and isinstance(value, numbers.Real) and not isinstance(value, bool):
        writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(record["step"]),
                                           summary=summary.scalar(f"{record.get('phase', 'train')}/{key}", value)))
    writer.flush()
