"""utils/io.py's gzipped JSON: deterministic bytes, a faithful round trip, damage detected on read."""
import gzip
import json

import pytest

from mialth_jax.utils import io


def test_a_gzipped_json_reads_back_equal_and_a_damaged_copy_is_named(tmp_path):
  """io.write_json writes equal bytes for equal objects (no time in the header) and reads back what it wrote; a
  truncated or bit-flipped copy (gzip's CRC) is one UnreadableFileError naming the file."""
  obj = {"ids": list(range(1000)), "exposure": [0.5, None, 1.25] * 300}
  path, again = tmp_path / "x.json.gz", tmp_path / "y.json.gz"
  io.write_json(str(path), obj)
  io.write_json(str(again), obj)
  assert path.read_bytes() == again.read_bytes()
  assert io.read_json(str(path)) == obj == json.loads(gzip.decompress(path.read_bytes()))
  data = path.read_bytes()
  (tmp_path / "torn.json.gz").write_bytes(data[:len(data) // 2])
  flipped = bytearray(data)
  flipped[len(data) // 2] ^= 0xFF
  (tmp_path / "flipped.json.gz").write_bytes(bytes(flipped))
  for name in ("torn.json.gz", "flipped.json.gz"):
    with pytest.raises(io.UnreadableFileError, match=f"{name}: not valid JSON"):
      io.read_json(str(tmp_path / name))
