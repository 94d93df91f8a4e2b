"""What a launch shows on the terminal, and the XLA settings it needs before JAX starts.

Keeps the terminal readable (our progress lines, not Orbax's INFO chatter or JAX's probe for a TPU runtime that is not
installed), names the long silent start-up step (the train step's compilation), and keeps XLA:CPU from aborting a run
whose simulated devices fall behind each other on a busy machine.
"""
import importlib.metadata
import logging as std_logging
import os

# XLA:CPU runs each of --cpu_devices' devices on a thread; a collective (BatchNorm's statistics, the gradient
# all-reduce) waits for all of them, and by default warns after 20 s and aborts the process 40 s after that warning.
# On a busy host a thread can fall that far behind with nothing wrong: warn after 10 minutes, give up a day later.
# And XLA:CPU's multi-threaded Eigen off: with several simulated devices on a busy 2-core host, runs hung for good (3
# times in one session: a CIFAR-10 launch on 8 devices, two 8-device test runs), every XLA worker thread idle and the
# main thread waiting in PjRtCpuLoadedExecutable::Execute, the wedge that PyAutoLabs/PyAutoFit#1530 traced to the
# Eigen pool and avoided with this flag. Its cost here: none measured (the default run on 1 device, 3 paired runs:
# wall time 0.971x of the run with it on). It did not stop the wedge: three more, with it on, are why the train step
# runs one step at a time on several CPU devices (lottery/train.py, make_jitted_step).
PATIENT_COLLECTIVES = {"xla_cpu_collective_call_warn_stuck_timeout_seconds": 600,
                       "xla_cpu_collective_call_terminate_timeout_seconds": 24 * 3600,
                       "xla_cpu_multi_thread_eigen": "false"}
# XLA aborts on a flag it does not know; these two exist from jaxlib 0.8.0 (0.7.2 lacks them).
_PATIENT_SINCE = (0, 8)
# jit names of the train step (lottery/train.py): its first compilation is the launch's longest silent wait.
TRAIN_STEP_JITS = ("jit(gather_and_step)", "jit(train_step)")


def patient_xla_flags(xla_flags: str, jaxlib_version: str) -> str:
  """`xla_flags` with PATIENT_COLLECTIVES appended, except those it sets already (the user's value wins)."""
  if tuple(int(p) for p in jaxlib_version.split(".")[:2]) < _PATIENT_SINCE:
    return xla_flags
  extra = [f"--{name}={value}" for name, value in PATIENT_COLLECTIVES.items() if f"--{name}=" not in xla_flags]
  return " ".join([xla_flags.strip(), *extra]).strip()


def patient_cpu_collectives() -> None:
  """Adds PATIENT_COLLECTIVES to $XLA_FLAGS. XLA reads it when jax is imported: call this before that import."""
  flags = patient_xla_flags(os.environ.get("XLA_FLAGS", ""), importlib.metadata.version("jaxlib"))
  if flags:
    os.environ["XLA_FLAGS"] = flags


class _DropLibraryInfo(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "/orbax/" in record.pathname or "/etils/" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


class _DropMissingTpuRuntime(std_logging.Filter):
  """JAX probes for a TPU on every start; where no TPU runtime is installed (libtpu.so) the probe's failure is noise."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message.startswith("Unable to initialize backend 'tpu'") and "libtpu.so" in message)


class _AnnounceTrainStepCompile(std_logging.Filter):
  """Turns JAX's debug record 'Compiling <jit name> ...' of the train step into one INFO line, and drops the rest."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    lowering = isinstance(record.msg, str) and record.msg.startswith("Compiling %s") and record.args
    if not (lowering and record.args[0] in TRAIN_STEP_JITS):
      return record.levelno > std_logging.DEBUG
    record.msg, record.args = "compiling the train step, %s ...", record.args[:1]
    record.levelno = std_logging.INFO
    record.levelname = "INFO"
    return True


def quiet_libraries() -> None:
  """Drops INFO records that Orbax and etils log through absl, and JAX's failed probe for a TPU runtime; announces
  the train step's compilation. Warnings and errors still show."""
  std_logging.getLogger("absl").addFilter(_DropLibraryInfo())
  std_logging.getLogger("jax._src.xla_bridge").addFilter(_DropMissingTpuRuntime())
  lowering = std_logging.getLogger("jax._src.interpreters.pxla")  # logs each jit it lowers, at DEBUG
  lowering.setLevel(std_logging.DEBUG)
  lowering.addFilter(_AnnounceTrainStepCompile())
