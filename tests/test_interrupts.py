"""utils/interrupts.py: a Ctrl-C whose KeyboardInterrupt is swallowed where exceptions are only printed (here a
__del__, as JAX's garbage-collection callback does) is raised again by the next `check`, without the traceback Python
prints for what it drops; other dropped exceptions are still printed."""
import os
import signal
import sys

import pytest

from mialth_jax.utils import interrupts


class _SwallowsInterrupts:
  """SIGINT arrives while its __del__ runs: the KeyboardInterrupt raised there is printed and dropped."""

  def __del__(self):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100_000):  # bytecodes for the handler to run on, inside __del__
      pass


class _RaisesInDel:

  def __del__(self):
    raise ValueError("dropped by Python")


@pytest.fixture
def default_sigint():
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)
  interrupts._received = False  # noqa: SLF001 (the module's one piece of state, reset for the other tests)


def test_a_swallowed_interrupt_is_raised_by_check(default_sigint, monkeypatch):
  dropped = []
  monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
  interrupts.install()
  interrupts.check()  # nothing arrived yet
  _RaisesInDel()
  assert dropped == [ValueError]  # passed on to the previous hook, which prints it
  _SwallowsInterrupts()  # dropped at once: __del__ runs here
  assert dropped == [ValueError]  # the KeyboardInterrupt was not passed on: no "Exception ignored" traceback
  with pytest.raises(KeyboardInterrupt):
    interrupts.check()


def test_an_ignored_sigint_is_left_ignored(default_sigint):
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  interrupts.install()
  assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
