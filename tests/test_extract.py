"""Exact sharded extraction: 8 devices = 1 device = a plain forward pass, order kept; 2 processes agree too."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import inference
from mialth_jax.data import base, examples

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import extract_case  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _predict(mesh):
  model, variables, images, ids = extract_case.make()
  variables = jax.device_put(variables, NamedSharding(mesh, P()))
  fn = inference.make_logits_fn(model, np.float32(0.5), np.float32(0.25), mesh)
  return inference.predict_logits(fn, variables, images, ids, extract_case.BATCH_SIZE, mesh)


@pytest.fixture(scope="module")
def reference():
  """A plain, unsharded eval-mode forward pass over the ids in order."""
  model, variables, images, ids = extract_case.make()
  x = (images[ids].astype(np.float32) / 255.0 - 0.5) / 0.25
  return np.asarray(model.apply(variables, x, train=False))


@pytest.fixture(scope="module")
def eight_devices():
  """The sharded prediction over the tests' 8 simulated devices."""
  mesh = inference.make_mesh()
  assert mesh.size == 8
  return _predict(mesh)


def test_eight_devices_keep_every_example_in_order(eight_devices, reference):
  assert eight_devices.shape == (101, 10)
  np.testing.assert_allclose(eight_devices, reference, rtol=1e-5, atol=1e-5)


def test_one_device_matches_eight(eight_devices):
  one = _predict(Mesh(np.asarray(jax.devices()[:1]), (inference.DATA_AXIS,)))
  np.testing.assert_allclose(one, eight_devices, rtol=1e-5, atol=1e-6)


def test_padding_covers_every_index_once():
  seen = []
  for batch, valid in inference.padded_batches(np.arange(21), batch_size=13, num_devices=8):
    assert len(batch) == 16  # 13 rounded up to the device count
    seen.extend(batch[:valid].tolist())
  assert seen == list(range(21))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_over_localhost_agree(tmp_path, reference):
  port = str(_free_port())
  outs = [str(tmp_path / f"p{i}.npy") for i in range(2)]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multihost_worker.py"), port, str(i), "2", outs[i]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  np.testing.assert_allclose(np.load(outs[0]), reference, rtol=1e-5, atol=1e-5)


def test_example_source_mixes_train_and_test_ids_in_order():
  x_train = np.arange(5).reshape(5, 1, 1, 1).astype(np.uint8)
  x_test = (100 + np.arange(3)).reshape(3, 1, 1, 1).astype(np.uint8)
  data = base.Dataset("t", x_train, np.arange(5, dtype=np.int32), x_test, np.array([7, 8, 9], np.int32), 10,
                      (1, 1, 1))
  source = examples.ExampleSource(data)
  ids = np.array([6, 0, 7, 4, 5])
  assert source[ids].ravel().tolist() == [101, 0, 102, 4, 100]
  assert source.labels(ids).tolist() == [8, 0, 9, 4, 7]
