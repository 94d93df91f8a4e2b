"""Bad flags, settings, files and folders: each stops `python -m launch.main` with one `error:` line and status 2.

Every case is launched as a user would (a subprocess, 8 simulated devices inherited from conftest), a few at a time,
and must leave every file that existed before it byte for byte unchanged, train nothing, and, on a new --workdir,
leave no folder behind.
"""
import concurrent.futures
import fcntl
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.data import base, npz, splits
from mialth_jax.errors import ConfigError
from mialth_jax.utils import checkpoint
from mialth_jax.utils import io

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resume_case  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=tests/resume_case.py"
IS_ROOT = os.geteuid() == 0


def _npz(path, **changes):
  """A small valid npz dataset (uint8 8x8x1 images, labels 0..2) with `changes` applied; returns --config flags."""
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8), "y_train": np.arange(64) % 3,
            "x_test": rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8), "y_test": np.arange(32) % 3}
  arrays.update(changes)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return ["--config.data.name=npz", f"--config.data.path={path}", "--config.data.num_train=-1"]


def _run_folder(workdir, seed=0):
  """A workdir that a launch of resume_case (with `seed`) began: its config.json."""
  config = resume_case.get_config()
  config.seed = seed
  os.makedirs(workdir)
  io.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))


def _other_config(tmp):
  _run_folder(tmp / "run", seed=7)
  return [CONFIG]


def _garbage_splits(tmp):
  _run_folder(tmp / "run")
  (tmp / "run" / "splits.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
  return [CONFIG]


def _other_members(tmp):
  _run_folder(tmp / "run")
  np.savez(tmp / "run" / "splits.npz", members=np.arange(256), unused_train=np.arange(256, 898),
           test=np.arange(899))
  return [CONFIG]


_HELD_LOCKS = []  # open files whose flock this test process holds while the launches run


def _busy(tmp):
  _run_folder(tmp / "run")
  lock = open(tmp / "run" / ".lock", "a+")
  fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  _HELD_LOCKS.append(lock)
  return [CONFIG]


def _workdir_is_a_file(tmp):
  (tmp / "run").write_text("a file where the run folder should be\n")
  return [CONFIG]


def _parent_is_a_file(tmp):
  (tmp / "parent").write_text("a file where a folder should be\n")
  return [CONFIG, f"--workdir={tmp / 'parent' / 'run'}"]


def _read_only_parent(tmp):
  (tmp / "parent").mkdir()
  (tmp / "parent").chmod(0o500)
  return [CONFIG, f"--workdir={tmp / 'parent' / 'run'}"]


# (id, flags or a function(tmp) -> flags, expected part of the error line). --workdir=<tmp>/run is added unless the
# flags name one or the case is missing_workdir.
CASES = [
    ("missing_workdir", [CONFIG], "flag --workdir=None: Flag --workdir must have a value other than None"),
    ("config_file_missing", ["--config=tests/no_such_config.py"],
     "--config: cannot load the config file ([Errno 2] No such file or directory: 'tests/no_such_config.py')"),
    ("unknown_override", [CONFIG, "--config.train.learning_rat=0.1"],
     "--config.train.learning_rat: the config has no field 'learning_rat'; did you mean 'learning_rate'?"),
    ("unknown_choice", [CONFIG, "--config.train.schedule=linear"],
     "train.schedule='linear' is unknown; expected one of cosine, step, constant"),
    ("config_variant_typo", ["--config=configs/default.py:smok"],
     "--config=configs/default.py:smok: config variant 'smok' is unknown; expected none or 'smoke'"),
    ("sparsity_of_one", [CONFIG, "--config.lottery.sparsities=(0.8,1.0)"], "lottery.sparsities: 1.0 is outside [0, 1)"),
    ("sparsity_not_a_number", [CONFIG, "--config.lottery.sparsities=(0.5,'a')"],
     "lottery.sparsities: 'a' is not a number in [0, 1)"),
    ("negative_rewind_step", [CONFIG, "--config.lottery.rewind_step=-1"], "lottery.rewind_step must be >= 0, got -1"),
    ("batch_not_a_multiple_of_devices", [CONFIG, "--config.train.batch_size=60"],
     "train.batch_size=60 is not a multiple of the 8 devices"),
    ("negative_cpu_devices", [CONFIG, "--cpu_devices=-1"], "flag --cpu_devices=-1: -1 is not a non-negative integer"),
    # --cpu_devices takes effect: the tests' 8 simulated devices (XLA_FLAGS) become 3.
    ("batch_not_a_multiple_of_cpu_devices", [CONFIG, "--cpu_devices=3"],
     "train.batch_size=64 is not a multiple of the 3 devices"),
    ("attack_set_too_large", [CONFIG, "--config.attacks.sizes=(2000,)"],
     "attack set of 2000 needs 1000 members and 1000 non-members; only 256 members and 899 non-members available"),
    ("unknown_attack_type", ["--config=tests/resume_case.py:unknown_attack"],
     "unknown attack type 'threshold_los'; known: optax_mlp, sklearn_mlp"),
    ("npz_missing_keys", lambda tmp: [CONFIG, *_npz(tmp / "d.npz", x_test=None, y_test=None)],
     "d.npz: missing keys ['x_test', 'y_test']"),
    ("npz_object_array", lambda tmp: [CONFIG, *_npz(tmp / "d.npz", y_train=np.array([0, "1"] * 32, object))],
     "d.npz: not a readable npz without pickle (Object arrays cannot be loaded when allow_pickle=False)"),
    ("npz_labels_out_of_range",
     lambda tmp: [CONFIG, *_npz(tmp / "d.npz", y_test=np.arange(32) % 5, class_names=np.array(["a", "b", "c"]))],
     "d.npz:test: labels must lie in [0, 3), got [0, 4]"),
    ("npz_test_label_unseen_in_training",
     lambda tmp: [CONFIG, *_npz(tmp / "d.npz", y_test=np.where(np.arange(32) == 5, 7, np.arange(32) % 3))],
     "d.npz: y_test holds labels [7] that y_train lacks; add class_names (one name per class) to the npz"),
    ("npz_channels_first",
     lambda tmp: [CONFIG, *_npz(tmp / "d.npz", x_train=np.zeros((64, 3, 8, 8), np.uint8),
                                x_test=np.zeros((32, 3, 8, 8), np.uint8))],
     "d.npz:train: images of shape (64, 3, 8, 8) look channels-first (NCHW); expected NHWC uint8 images"),
    ("splits_npz_garbage", _garbage_splits, "run/splits.npz: not a readable npz without pickle (File is not a zip"),
    ("splits_npz_of_another_run", _other_members,
     "run/splits.npz: records other members, unused_train ids than this config draws (data.num_train, seed)"),
    ("workdir_of_another_config", _other_config,
     "run holds a run with a different config (seed); use a new --workdir, the same config, or --restart"),
    ("workdir_in_use", _busy, "run is in use by another launch"),
    ("workdir_is_a_file", _workdir_is_a_file, "run is a file, not a folder"),
    ("workdir_parent_is_a_file", _parent_is_a_file, "parent/run: cannot create it or its lock file (Not a directory)"),
    pytest.param("workdir_parent_read_only", _read_only_parent,
                 "parent/run: cannot create it or its lock file (Permission denied)",
                 marks=pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions; the two cases above "
                                                          "cover folders that cannot be created")),
    # A file size limit (RLIMIT_FSIZE, honoured by root too) makes the first large write, w0, fail as a full disk would.
    ("disk_write_fails", [CONFIG], "run/w0: cannot write the checkpoint ("),
]
# disk_write_fails runs the launcher under a file size limit of 20 kB: config.json and splits.npz fit, w0 does not.
# It is set in the child itself, as a preexec_fn would fork this multithreaded (JAX) process unsafely.
LIMITED_LAUNCHER = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)); "
                    "runpy.run_module('launch.main', run_name='__main__')")


def _case_id(case):
  return case.values[0] if hasattr(case, "values") else case[0]


def _hashes(folder):
  return {os.path.join(root, f): hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
          for root, _, files in os.walk(folder) for f in files}


def _workdir(flags):
  return next((f.split("=", 1)[1] for f in flags if f.startswith("--workdir=")), None)


def _launch(name, flags, tmp):
  launcher = ["-c", LIMITED_LAUNCHER] if name == "disk_write_fails" else ["-m", "launch.main"]
  return subprocess.run([sys.executable, *launcher, *flags], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  """{case id: (result, files before, files after, case folder, --workdir)}, three launches at a time."""
  prepared = {}
  for case in CASES:
    name, make_flags = (case.values if hasattr(case, "values") else case)[:2]
    if hasattr(case, "marks") and IS_ROOT:
      continue
    tmp = tmp_path_factory.mktemp(name)
    flags = make_flags(tmp) if callable(make_flags) else make_flags
    if name != "missing_workdir" and not _workdir(flags):
      flags = [*flags, f"--workdir={tmp / 'run'}"]
    prepared[name] = (flags, tmp, _hashes(tmp))
  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    futures = {name: pool.submit(_launch, name, flags, tmp) for name, (flags, tmp, _) in prepared.items()}
    results = {name: f.result() for name, f in futures.items()}
  for lock in _HELD_LOCKS:
    lock.close()
  return {name: (results[name], before, _hashes(tmp), tmp, _workdir(flags))
          for name, (flags, tmp, before) in prepared.items()}


def test_a_sparsity_flag_given_twice_is_refused():
  """ml_collections adds a second --config.lottery.sparsities to the first ((0.8,) then (0.5, 0.8) gives (0.8, 0.5,
  0.8)); validation, which the launcher prints as its one `error:` line, refuses the repeated sparsity (in-process:
  the launch path of a validation error is the cases above)."""
  config = resume_case.get_config()
  config.lottery.sparsities = (0.8, 0.5, 0.8)
  with pytest.raises(ConfigError, match=r"^lottery\.sparsities: 0\.8 given more than once in \(0\.8, 0\.5, "
                     r"0\.8\); give --config\.lottery\.sparsities once$"):
    config_lib.validate(config)


@pytest.mark.parametrize("name,make_flags,message", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_stops_with_one_line_and_changes_nothing(outcomes, name, make_flags, message):
  del make_flags
  result, before, after, tmp, workdir = outcomes[name]
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
  assert result.stderr.count(message) == 1, result.stderr[-3000:]  # not logged a second time
  if workdir and not any(path.startswith(workdir) for path in before) and not os.path.isfile(workdir):
    assert not os.path.exists(workdir), os.listdir(workdir)  # a refused launch on a new folder leaves none
  if name != "disk_write_fails":  # TensorStore's callbacks may still print "Event loop is closed" tracebacks
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == errors[0]  # the error line is the last thing printed
  assert {path: after.get(path) for path in before} == before
  assert not checkpoint.exists(str(tmp / "run" / "w0"))


def test_checkpoint_of_another_shape_or_dtype_is_refused(tmp_path):
  tree = {"params": {"kernel": np.ones((3, 4), np.float32)}, "mask": np.ones((), bool)}
  checkpoint.save(str(tmp_path / "ok"), tree)
  wider = {"params": {"kernel": np.ones((5, 4), np.float32)}, "mask": np.ones((), bool)}
  with pytest.raises(checkpoint.CheckpointError, match=r"\['params'\]\['kernel'\] is float32 \(3, 4\), the model "
                                                       r"needs float32 \(5, 4\)"):
    checkpoint.restore(str(tmp_path / "ok"), wider)
  as_bool = {"params": {"kernel": np.ones((3, 4), bool)}, "mask": np.ones((), bool)}
  with pytest.raises(checkpoint.CheckpointError, match=r"is float32 \(3, 4\), the model needs bool \(3, 4\)"):
    checkpoint.restore(str(tmp_path / "ok"), as_bool)
  with pytest.raises(checkpoint.CheckpointError, match=r"\['params'\]\['bias'\] is missing"):
    checkpoint.restore(str(tmp_path / "ok"), {**tree, "params": {**tree["params"], "bias": np.ones(4, np.float32)}})
  restored = checkpoint.restore(str(tmp_path / "ok"), tree)
  assert np.array_equal(restored["params"]["kernel"], tree["params"]["kernel"]) and restored["mask"].dtype == bool


def test_unfinished_or_garbage_checkpoint_folders_are_never_taken_for_checkpoints(tmp_path):
  tree = {"w": np.arange(6, dtype=np.float32)}
  partial = tmp_path / ("w0" + checkpoint.TMP_SUFFIX)
  partial.mkdir()
  (partial / "_CHECKPOINT_METADATA").write_text("{}")
  assert not checkpoint.exists(str(tmp_path / "w0"))
  checkpoint.save(str(tmp_path / "w0"), tree)  # Orbax replaces the killed save's temporary folder
  assert checkpoint.exists(str(tmp_path / "w0")) and not partial.exists()
  (tmp_path / "garbage").mkdir()
  (tmp_path / "garbage" / "_METADATA").write_text("not json")
  assert not checkpoint.exists(str(tmp_path / "garbage"))
  with pytest.raises(checkpoint.CheckpointError, match="garbage: no finished checkpoint there"):
    checkpoint.restore(str(tmp_path / "garbage"), tree)
  with pytest.raises(checkpoint.CheckpointError, match="garbage: exists but is not a finished Orbax checkpoint"):
    checkpoint.save(str(tmp_path / "garbage"), tree)
  (tmp_path / "w0" / "_METADATA").write_text("not json")
  with pytest.raises(checkpoint.CheckpointError, match="w0: checkpoint does not match the model"):
    checkpoint.restore(str(tmp_path / "w0"), tree)


def test_damaged_files_raise_one_line_errors_naming_them(tmp_path):
  empty, single, torn = tmp_path / "empty.npz", tmp_path / "single.npz", tmp_path / "torn.npz"
  empty.write_bytes(b"")
  with open(single, "wb") as f:
    np.save(f, np.zeros(3))
  np.savez(torn, a=np.arange(100))
  torn.write_bytes(torn.read_bytes()[:150])
  for path, reason in ((empty, "No data left in file"), (single, "a single .npy array, not an .npz archive"),
                       (torn, "File is not a zip file")):
    with pytest.raises(io.UnreadableFileError, match=f"{path}: not a readable npz without pickle \\({reason}"):
      io.read_npz(str(path))
  _npz(tmp_path / "d.npz", x_test=np.zeros((0, 8, 8, 1), np.uint8), y_test=np.zeros(0, int))
  with pytest.raises(base.DataError, match="train and test splits must hold at least one image each"):
    npz.load(str(tmp_path / "d.npz"))
  np.savez(tmp_path / "splits.npz", members=np.array([0.5, 1.0]), unused_train=np.arange(3), test=np.arange(2))
  with pytest.raises(base.DataError, match="members must be a 1-D integer array, got float64"):
    splits.load(str(tmp_path / "splits.npz"))
  (tmp_path / "config.json").write_text('{"seed": 0,')
  with pytest.raises(io.UnreadableFileError, match="config.json: not valid JSON"):
    io.read_json(str(tmp_path / "config.json"))
  (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"st\n{"step": 2}\n')
  with pytest.raises(io.UnreadableFileError, match="metrics.jsonl: line 2 is not JSON"):
    io.MetricsLog(str(tmp_path / "metrics.jsonl")).truncate_after(5)


def test_an_internal_bug_shows_its_traceback_and_exits_1(tmp_path):
  """Only the project's user errors become one `error:` line; a bug (here a KeyError in a recipe) keeps its traceback."""
  result = subprocess.run([sys.executable, "-m", "launch.main", "--config=tests/internal_bug_case.py",
                           f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback (most recent call last)" in result.stderr
  assert "KeyError: 'a key that is not there'" in result.stderr
  assert not [line for line in result.stderr.splitlines() if line.startswith("error: ")]
