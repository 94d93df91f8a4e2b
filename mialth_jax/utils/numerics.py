"""Host-side numerics shared by evaluation and the attacks."""
import numpy as np


def log_softmax(logits) -> np.ndarray:
  """float64 log-softmax over the last axis, shifted by each row's maximum.

  float64 and a log-softmax rather than log(softmax): a float32 softmax of a confident output rounds the true class to
  1.0 and the others to 0, whose log is -inf.
  """
  x = np.asarray(logits, np.float64)
  shifted = x - x.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
