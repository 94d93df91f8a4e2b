"""A plain-TCP roll call of a job's processes at the coordinator's address, before JAX's distributed runtime starts.

JAX's client aborts the whole process (a C++ fatal error and a stack dump) when the coordinator cannot be reached or
not every process registers in time. This roll call finds those cases first and says them in one line: process 0
listens on the coordinator's port, every other process connects (retrying until the timeout) and says its id and
the job's size; process 0 answers `go` once all have come, or the reason why not. Then process 0 closes the port and
starts JAX's coordinator there (the other processes' JAX clients retry until it is up).
"""
import socket
import time

from mialth_jax import errors


class RendezvousError(errors.UserError, RuntimeError):
  """The processes of a job did not all meet at the coordinator's address in time."""


def _split(address: str) -> tuple[str, int]:
  host, port = address.rsplit(":", 1)
  return host.strip("[]"), int(port)


def gather(address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
  """Returns once every process of the job has reached `address`; raises RendezvousError otherwise."""
  if num_processes == 1:
    return
  deadline = time.monotonic() + timeout_s
  if process_id == 0:
    _host(address, num_processes, deadline, timeout_s)
  else:
    _join(address, num_processes, process_id, deadline, timeout_s)


def _host(address: str, num_processes: int, deadline: float, timeout_s: float) -> None:
  """Process 0: listens on the coordinator's port until every other process has said who it is."""
  port = _split(address)[1]
  try:
    server = (socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
              if socket.has_dualstack_ipv6() else socket.create_server(("", port)))
  except OSError as e:
    raise RendezvousError(f"--coordinator_address={address}: process 0 cannot listen on port {port} "
                          f"({e.strerror or e}); choose a free port") from e
  arrived: dict[int, socket.socket] = {}
  with server:
    while len(arrived) < num_processes - 1 and time.monotonic() < deadline:
      server.settimeout(max(0.01, deadline - time.monotonic()))
      try:
        connection, _ = server.accept()
      except TimeoutError:
        break
      problem = _register(connection, arrived, num_processes, deadline)
      if problem:
        _release(arrived, problem)
        raise RendezvousError(f"--coordinator_address={address}: {problem}")
  missing = sorted(set(range(1, num_processes)) - set(arrived))
  problem = missing and (f"processes {missing} of {num_processes} did not reach the coordinator within "
                         f"--distributed_timeout={timeout_s:g} s; start every process with the same "
                         "--coordinator_address and --num_processes")
  _release(arrived, problem)
  if problem:
    raise RendezvousError(f"--coordinator_address={address}: {problem}")


def _line(connection: socket.socket) -> str:
  """One line from the connection (up to 4 KiB), without its newline."""
  data = b""
  while not data.endswith(b"\n") and len(data) < 4096:
    chunk = connection.recv(4096)
    if not chunk:
      break
    data += chunk
  return data.decode(errors="replace").strip()


def _register(connection: socket.socket, arrived: dict, num_processes: int, deadline: float) -> str:
  """Reads a newcomer's `mialth <process id> <num processes>` and keeps its connection; a stranger (not one of
  ours) is dropped. Returns what is wrong with the job, told to the newcomer too ("" if nothing)."""
  connection.settimeout(max(0.01, deadline - time.monotonic()))
  try:
    tag, process_id, their_count = _line(connection).split()
    process_id, their_count = int(process_id), int(their_count)
    if tag != "mialth":
      raise ValueError(tag)
  except (OSError, ValueError):
    connection.close()
    return ""
  problem = ""
  if their_count != num_processes:
    problem = f"process {process_id} was started with --num_processes={their_count}, process 0 with {num_processes}"
  elif process_id in arrived or not 0 < process_id < num_processes:
    problem = f"two processes say --process_id={process_id}, or it is outside 1..{num_processes - 1}"
  if problem:
    _release({process_id: connection}, problem)
  else:
    arrived[process_id] = connection
  return problem


def _release(arrived: dict, problem: str) -> None:
  """Tells every waiting process to go on (no problem) or why the job stops."""
  for connection in arrived.values():
    try:
      connection.sendall(("go\n" if not problem else f"error {problem}\n").encode())
    except OSError:
      pass
    connection.close()


def _join(address: str, num_processes: int, process_id: int, deadline: float, timeout_s: float) -> None:
  """Another process: connects to process 0 (retrying until the deadline), says who it is and waits for `go`
  (process 0 answers within `timeout_s` of its own start, which came before this connection)."""
  host, port = _split(address)
  while True:
    try:
      connection = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
      break
    except OSError as e:
      if time.monotonic() + 0.5 >= deadline:
        raise RendezvousError(f"--coordinator_address={address}: no process 0 answered there within "
                              f"--distributed_timeout={timeout_s:g} s ({e.strerror or e}); start process 0 with the "
                              "same address, on that host, with a free port") from e
      time.sleep(0.5)
  with connection:
    try:
      connection.sendall(f"mialth {process_id} {num_processes}\n".encode())
      connection.settimeout(timeout_s + 5)
      answer = _line(connection)
    except OSError as e:
      answer = f"error process 0 did not answer ({e.strerror or e})"
  if answer != "go":
    raise RendezvousError(f"--coordinator_address={address}: "
                          + (answer.removeprefix("error ") or "process 0 closed the connection"))
