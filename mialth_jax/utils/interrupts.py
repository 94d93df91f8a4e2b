"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt in whatever code runs when SIGINT arrives. Raised inside a callback whose exceptions
are only printed (JAX's garbage-collection callback: "Exception ignored in: <function _xla_gc_callback>"), it
vanished, and a launch interrupted while compiling trained on to its end. `install` makes the handler also record
the signal, and keeps such a swallowed KeyboardInterrupt from printing its traceback; `check`, called once per step by
the training loops, raises it there.
"""
import signal
import sys

_received = False


def _handler(signum, frame):
  global _received
  _received = True
  signal.default_int_handler(signum, frame)


def _quiet_about_swallowed_interrupts(previous_hook):
  """An unraisable-exception hook that leaves out KeyboardInterrupt (`check` raises it again) and passes on the rest."""
  def hook(unraisable):
    if not (_received and isinstance(unraisable.exc_value, KeyboardInterrupt)):
      previous_hook(unraisable)
  return hook


def install() -> None:
  """Records SIGINT as well as raising it, unless SIGINT is ignored or handled otherwise (left as it is)."""
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = _quiet_about_swallowed_interrupts(sys.unraisablehook)


def check() -> None:
  """Raises KeyboardInterrupt if SIGINT arrived (its first raise may have been swallowed)."""
  if _received:
    raise KeyboardInterrupt
