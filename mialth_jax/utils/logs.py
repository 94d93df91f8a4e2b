"""Keeps the terminal readable: our progress lines, not Orbax's per-checkpoint INFO chatter."""
import logging as std_logging


class _DropLibraryInfo(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "/orbax/" in record.pathname or "/etils/" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def quiet_libraries() -> None:
  """Drops INFO records that Orbax and etils log through absl; warnings and errors still show."""
  std_logging.getLogger("absl").addFilter(_DropLibraryInfo())
