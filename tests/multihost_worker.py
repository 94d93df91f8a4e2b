"""One process of a localhost multi-process run (started by tests/test_extract.py, not collected by pytest).

  python tests/multihost_worker.py PORT PROCESS_ID NUM_PROCESSES OUT.npz
Each process has 4 CPU devices; together they form one mesh and compute logits with `inference.predict_logits`.
"""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(port: str, process_id: str, num_processes: str, out: str) -> None:
  from mialth_jax.utils import hosts  # noqa: E402
  # The launcher's start: connects the collectives while both processes are here, so that the one which finds the
  # compiled forward pass in the cache does not give up (gloo waits 30 s to connect) on one still compiling it.
  hosts.initialize(f"localhost:{port}", int(num_processes), int(process_id), timeout_s=300)
  import numpy as np  # noqa: E402
  from mialth_jax import inference  # noqa: E402
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import extract_case  # noqa: E402
  model, variables, images, ids = extract_case.make()
  mesh = inference.make_mesh()
  assert mesh.size == 4 * int(num_processes), mesh
  variables = inference.global_array_tree(variables, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  logits = inference.predict_logits(inference.make_logits_fn(model, np.float32(0.5), np.float32(0.25), mesh),
                                    variables, images, ids, extract_case.BATCH_SIZE, mesh)
  if jax.process_index() == 0:
    np.save(out, logits)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
