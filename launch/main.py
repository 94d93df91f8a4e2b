"""Runs the lottery pipeline (and the attacks) for a config.

  python -m launch.main --config=configs/default.py --workdir=runs/default [--config.train.num_epochs=5] [--restart]
  python -m launch.main ... --retrain=dense    # make one model again (a damaged checkpoint), keeping the rest
  python -m launch.main --help      # the flags, then every config field with its default and meaning

A bad flag, setting or file, a full disk, or a diverging run (the project's `errors.UserError`s) ends the launch with
one line `error: ...` on stderr and exit status 2; anything else is a bug and shows its traceback (exit status 1).
Ctrl-C ends it with one line and exit status 130. A relaunch of the same command resumes a stopped or killed run.
"""
import functools
import os
import re
import sys
from typing import NoReturn

from mialth_jax.utils import logs

logs.patient_cpu_collectives()  # XLA reads $XLA_FLAGS once, when jax is imported below

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mialth_jax import config_lib, errors, plugins, run_dir  # noqa: E402
from mialth_jax.experiments import launch  # noqa: E402
from mialth_jax.utils import compilation_cache, config_sections, hosts, interrupts  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder (created; resumed if it holds the same run)")
_RESTART = flags.DEFINE_bool("restart", False, "if --workdir holds a run with a different config, move it aside to "
                             "<workdir>.old-<time> and start over (a run of the same config is resumed)")
_RETRAIN = flags.DEFINE_list(
    "retrain", [], "NAME[,NAME...]: models of the run to make again (names as in <workdir>/models/, or w0), e.g. "
    "after a damaged-checkpoint error. Their folders, cached outputs and attack results move into "
    "<workdir>/set_aside/<names>-<UTC time>/ (nothing is deleted); the launch makes and attacks them again, keeping "
    "everything else. Models made from a retrained one's weights (tickets pruned from dense) are kept: training gives "
    "the same bits on the same device count and platform, and the launch stops before the attacks, naming them, if "
    "it did not. w0 is made again from the seed. Give it once: a relaunch with it sets them aside again")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "one process of a multi-process job: start JAX's distributed runtime (TPU pod slices, "
    "multi-node GPU). Cloud TPU, SLURM and Open MPI jobs are detected; elsewhere give the three flags below")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"), "HOST:PORT of process 0's coordinator, the "
    "same for every process (default $JAX_COORDINATOR_ADDRESS); implies --multihost")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "processes in the job (default $JAX_NUM_PROCESSES); implies --multihost")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "this process's rank, 0..num_processes-1 (default $JAX_PROCESS_ID); implies --multihost")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "multi-process jobs: seconds to wait for every process to connect, and after "
    "which a process that stopped answering ends the others", lower_bound=1)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "on a CPU, run as this many XLA devices (0: JAX's default, one): each runs its share of the "
    "batch on its own thread; 8 trains CIFAR-sized networks 1.4-1.8x faster on 2 cores (docs/performance.md), "
    "results then differ from a one-device run in the last bits. Ignored on GPUs and TPUs", lower_bound=0)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "folder of JAX's persistent compilation cache, so that a relaunch does not compile "
    "again; 'none' turns it off. Default: $JAX_COMPILATION_CACHE_DIR if set, else "
    f"<workdir>/{run_dir.COMPILATION_CACHE} (one launch at a time holds a workdir: concurrent launches never share it)")
flags.mark_flags_as_required(["config", "workdir"])
_HELP_FLAGS = ("-?", "--help", "-help", "--helpshort", "-helpshort", "--helpfull", "-helpfull")


def fail(message) -> NoReturn:
  """Prints `error: message` as one line and exits with status 2, skipping the interpreter's shutdown: after a failed
  write, the shutdown would collect the writer's abandoned tasks and log their tracebacks after this line."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  _immediate_exit(2)


def _last_line(error: Exception) -> str:
  """The informative end of a multi-line library message (config_flags appends tracebacks)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _override_naming(argv: list[str], field: str) -> str:
  """The --config.* override that names `field`, for an unknown-field error."""
  names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  return next((n for n in names if field in n.split(".")), "--config")


def _user_error_in(error: BaseException) -> errors.UserError | None:
  """The innermost project UserError in `error`'s chain: get_config's own (config_flags re-raises it as the same
  type with a traceback for a message, inside an absl flag error)."""
  found = None
  while error is not None:
    found = error if isinstance(error, errors.UserError) else found
    error = error.__cause__ or error.__context__
  return found


def config_help() -> str:
  """Every config field with its default and comment, for --help: the registered sections of config_lib.base()."""
  lines = ["\nconfig fields (defaults of config_lib.base(): the core's sections and those registered by features; a "
           "config file changes some of them; override any with --config.<field>=<value>):"]
  for name, value, comment in config_sections.describe(config_lib.base()):
    entry = f"[{name}]" if value is None else f"  {name} = {value!r}"
    lines.append(f"{entry:<46} {comment}".rstrip() if comment else entry)
  return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag, config file or config override reported by `fail`; --help lists the
  config fields too and exits 0."""
  if any(a in _HELP_FLAGS for a in argv[1:]):
    app.usage(shorthelp=not any("helpfull" in a for a in argv[1:]), writeto_stdout=True)
    print(config_help())
    sys.exit(0)
  try:
    args = flags.FLAGS(argv)
    _CONFIG.value.keys()  # config_flags defers a config file's load error until the config is used
    return args
  except flags.Error as e:
    user_error = _user_error_in(e)  # get_config refused its argument, e.g. an unknown variant
    if user_error:
      fail(f"{next((a for a in argv if a.startswith('--config=')), '--config')}: {user_error}")
    fail(_last_line(e))
  except (AttributeError, KeyError) as e:
    # ml_collections nests the missing key's repr, maybe with a hint: '\'trian\'\nDid you mean "train" ...?'
    field = re.search(r"(\w+)", str(e)).group(1)
    hint = re.search(r'Did you mean "(\w+)"', str(e))
    fail(f"{_override_naming(argv, field)}: the config has no field {field!r}"
         + (f"; did you mean {hint.group(1)!r}?" if hint else ""))
  except (OSError, SyntaxError) as e:
    fail(f"--config: cannot load the config file ({_last_line(e)})")


def _use_compilation_cache(flag: str | None, workdir: str) -> None:
  """--compilation_cache, else $JAX_COMPILATION_CACHE_DIR, else <workdir>/.jax_cache ('none': no cache). With a
  persistent cache a relaunch (a resumed run, another attack config) does not compile the train step again. Entries
  that a killed launch left truncated are dropped first (JAX would otherwise warn and compile them again forever)."""
  folder = flag or os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(workdir, run_dir.COMPILATION_CACHE)
  if folder.lower() == "none":
    jax.config.update("jax_enable_compilation_cache", False)
    return
  dropped = compilation_cache.drop_damaged_entries(folder)
  if dropped:
    logging.warning("compilation cache %s: dropped %d damaged entries (a killed launch was writing them; they "
                    "compile again): %s", folder, len(dropped), ", ".join(dropped))
  jax.config.update("jax_compilation_cache_dir", folder)


def _env_int(flag, name: str) -> int | None:
  """--flag if given, else the integer in $name, else None."""
  if flag.present or name not in os.environ:
    return flag.value
  try:
    return int(os.environ[name])
  except ValueError:
    raise hosts.DistributedError(f"${name}={os.environ[name]!r}: expected an integer (--{flag.name})") from None


def _start_distributed() -> None:
  """jax.distributed.initialize with the flags (or $JAX_*), if --multihost or any of them was given."""
  num_processes, process_id = _env_int(_NUM_PROCESSES, "JAX_NUM_PROCESSES"), _env_int(_PROCESS_ID, "JAX_PROCESS_ID")
  given = [f for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID) if f.present]
  if _MULTIHOST.value or given:
    hosts.initialize(_COORDINATOR.value, num_processes, process_id, _DISTRIBUTED_TIMEOUT.value)


def _immediate_exit(status: int) -> NoReturn:
  """Exits at once, skipping the interpreter's shutdown (interrupted while w0 was initialised and saved, the shutdown
  crashed: a segmentation fault, exit 139). Nothing is lost: every artefact is written atomically and metrics lines
  are appended whole (a torn last line is dropped on resume)."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


def main(argv):
  del argv
  plugins.load()
  logs.quiet_libraries()
  _use_compilation_cache(_COMPILATION_CACHE.value, _WORKDIR.value)
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)   # before anything starts the backend
  interrupts.install()
  try:
    _start_distributed()
    logging.info("process %d of %d, %d local / %d global devices (%s)", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
    if _RESTART.value:
      hosts.decided_by_process_zero(functools.partial(_restart, _CONFIG.value, _WORKDIR.value), run_dir.RunDirError)
    logging.info("loading the data (data.name=%s) and preparing %s ...", _CONFIG.value.data.name, _WORKDIR.value)
    launch.run(_CONFIG.value, _WORKDIR.value, retrain=tuple(_RETRAIN.value))
  except errors.UserError as e:
    fail(e)
  except jax.errors.JaxRuntimeError as e:
    if not hosts.is_peer_lost(e):
      raise
    fail(hosts.peer_lost_message(e))
  except KeyboardInterrupt:
    print("interrupted: relaunch the same command to resume", file=sys.stderr)
    _immediate_exit(130)


def _restart(config, workdir: str) -> None:
  moved = run_dir.restart(config, workdir)
  if moved:
    logging.warning("--restart: moved the run with a different config to %s", moved)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
