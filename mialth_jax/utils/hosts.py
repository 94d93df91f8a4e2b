"""Several processes as one job (TPU pod slices, multi-node GPU, two processes on localhost in the tests).

Starts JAX's distributed runtime with a timeout and a one-line error instead of a hang or a traceback, lets process 0
decide something for everyone (take the workdir's lock) with the same outcome on every process, and tells a lost
peer (killed, preempted) from a bug.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import errors
from mialth_jax.utils import rendezvous

_MESSAGE_BYTES = 2048   # an error message that process 0 hands to the others (longer ones are cut)
# What XLA's collectives and JAX's coordination client say when another process of the job is gone.
_PEER_LOST = re.compile(r"gloo|connection (reset|closed|refused)|heartbeat|coordination service|socket closed|"
                        r"broken pipe|barrier", re.IGNORECASE)


class DistributedError(errors.UserError, RuntimeError):
  """The processes of a multi-process job could not start together, or one of them stopped."""


def initialize(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
               timeout_s: int) -> None:
  """jax.distributed.initialize with what the launcher was given; what is missing JAX detects (Cloud TPU, SLURM,
  Open MPI). Every process waits at most `timeout_s` for the others; a peer whose heartbeats stop for `timeout_s`
  counts as dead, which ends the others too."""
  if coordinator_address is not None and not re.fullmatch(r"\S+:\d+", coordinator_address):
    raise DistributedError(f"--coordinator_address={coordinator_address}: expected HOST:PORT (e.g. 10.0.0.1:1234), "
                           "the address of process 0 and a free port there")
  if num_processes is not None and num_processes < 1:
    raise DistributedError(f"--num_processes={num_processes}: expected a positive number of processes")
  if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
    raise DistributedError(f"--process_id={process_id}: expected 0..{num_processes - 1} (--num_processes="
                           f"{num_processes})")
  if None not in (coordinator_address, num_processes, process_id):  # else JAX detects the cluster (and checks it)
    rendezvous.gather(coordinator_address, num_processes, process_id, timeout_s)
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id, initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=timeout_s, shutdown_timeout_seconds=timeout_s)
  except ValueError as e:  # JAX could not detect the cluster and was not told enough
    raise DistributedError(f"--multihost: {e} JAX detects a Cloud TPU, SLURM or Open MPI job by itself; elsewhere "
                           "give --coordinator_address, --num_processes and --process_id (or $JAX_COORDINATOR_ADDRESS,"
                           " $JAX_NUM_PROCESSES, $JAX_PROCESS_ID)") from e
  except jax.errors.JaxRuntimeError as e:
    raise DistributedError(f"--coordinator_address={coordinator_address}: the processes did not all connect within "
                           f"--distributed_timeout={timeout_s} s ({_first_line(e)}); start every process with the same "
                           "coordinator address, that of process 0's host, and --num_processes") from e
  _connect_collectives()


def _connect_collectives() -> None:
  """One all-reduce over every device, while the processes have just met: it sets up the collectives' connections.

  On CPUs (gloo) that setup waits only 30 s for the other processes, whereas a collective of an established group
  waits 30 minutes; without this, a process that loaded a compiled step from the compilation cache could give up
  on one that is still compiling it.
  """
  mesh = Mesh(np.asarray(jax.devices()), ("all",))
  local = np.ones(jax.local_device_count(), np.float32)
  ones = jax.make_array_from_process_local_data(NamedSharding(mesh, P("all")), local)
  jax.block_until_ready(jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(ones))


def _first_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0][:300] if lines else type(error).__name__


def is_peer_lost(error: BaseException) -> bool:
  """Whether `error` (from a collective or the coordination client) says another process of the job is gone."""
  return jax.process_count() > 1 and isinstance(error, jax.errors.JaxRuntimeError) and bool(
      _PEER_LOST.search(str(error)))


def peer_lost_message(error: BaseException) -> str:
  return (f"process {jax.process_index()} of {jax.process_count()}: another process of this job stopped or stopped "
          f"answering ({_first_line(error)}); relaunch every process with the same command to resume")


def on_process_zero(write) -> None:
  """Calls `write()` on process 0 only, between two barriers of every process: whatever any process checks before
  this point (does a result exist?) it checked before the file appeared, and whatever it checks after, it sees the
  file. With every shared file that a launch reads back written this way, all processes take the same decisions,
  hence run the same collectives. Every process must call it at the same point of the program; a UserError of the
  write ends every process (`decided_by_process_zero`)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("before a write of process 0")
  decided_by_process_zero(write, errors.UserError)


def decided_by_process_zero(decide, error_type=DistributedError) -> None:
  """Runs `decide()` on process 0 only; every process returns normally if it succeeded and raises if it raised a
  UserError (process 0 its own error, the others `error_type` with its message), so no process is left waiting
  for one that gave up. One process: `decide()` itself."""
  if jax.process_count() == 1:
    decide()
    return
  failure = None
  if jax.process_index() == 0:
    try:
      decide()
    except errors.UserError as e:
      failure = e
  message = str(failure or "").encode()[:_MESSAGE_BYTES]
  shared = multihost_utils.broadcast_one_to_all(np.frombuffer(message.ljust(_MESSAGE_BYTES, b"\0"), np.uint8))
  if failure is not None:
    raise failure
  text = bytes(shared).rstrip(b"\0").decode(errors="replace")
  if text:
    raise error_type(f"process 0 of this job: {text}")
