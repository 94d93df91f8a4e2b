"""Stopping at a fit: `train.stop_at` ends a model's training at the first evaluation where a metric reaches a target
("train_accuracy>=0.9", "train_loss<=0.3", "test_accuracy>=0.6"), so models can be compared at equal fit rather than
after equal steps. The learning-rate schedule is still the one planned for `train.num_epochs` / `num_steps` (a model
stopped early has not decayed its rate as far); evaluations run every `train.eval_every_epochs`, which sets how
finely the stop is placed. The step a model stopped at is its summary.json's `steps` (and `stopped_at`).
"""
import dataclasses
import operator
import re

from mialth_jax import errors

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
_OPERATORS = {"<=": operator.le, ">=": operator.ge}
_FORM = re.compile(r"^\s*(\w+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclasses.dataclass(frozen=True)
class StopAt:
  metric: str
  op: str
  value: float

  def met(self, evaluation: dict) -> bool:
    """Whether an evaluation's metrics reach the target."""
    return _OPERATORS[self.op](evaluation[self.metric], self.value)

  def __str__(self) -> str:
    return f"{self.metric}{self.op}{self.value:g}"


def parse(text: str) -> StopAt | None:
  """The StopAt of `train.stop_at` ("" for none); anything else is one ConfigError naming the field."""
  if not text:
    return None
  found = _FORM.match(text)
  if not found or found.group(1) not in METRICS:
    raise errors.ConfigError(f"train.stop_at={text!r}: expected '<metric><=value' or '<metric>>=value' with metric "
                             f"one of {', '.join(METRICS)} (e.g. 'train_accuracy>=0.9'), or '' for none")
  try:
    value = float(found.group(3))
  except ValueError as e:
    raise errors.ConfigError(f"train.stop_at={text!r}: {found.group(3)!r} is not a number") from e
  return StopAt(found.group(1), found.group(2), value)
