"""Progress lines for long loops: step, loss, accuracy, images/s and ETA."""
import time

from absl import logging


class Meter:
  """Reports throughput measured since the previous report. The first report's interval includes compiling the step,
  so it gives no ETA (an ETA from it would be far too long); the next ones do."""

  def __init__(self, name: str, total_steps: int, start_step: int, batch_size: int):
    self.name = name
    self.total = total_steps
    self.batch_size = batch_size
    self.last_step = start_step
    self.last_time = time.perf_counter()
    self.reported = False

  def update(self, step: int, loss: float, accuracy: float) -> None:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    eta = hms((self.total - step) / max(rate, 1e-9)) if self.reported else "after the next report (compiling included)"
    logging.info("[%s] step %d/%d  loss %.4f  acc %.3f  %.0f img/s  ETA %s", self.name, step, self.total, loss,
                 accuracy, rate * self.batch_size, eta)
    self.last_step = step
    self.last_time = now
    self.reported = True

  def skip_time(self) -> None:
    """Leaves the time since the last report (e.g. an evaluation) out of the next rate."""
    self.last_time = time.perf_counter()


def hms(seconds: float) -> str:
  """'H:MM:SS' of a duration."""
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
