"""What DP-SGD's guarantee is computed from (defences/dp_sgd.py): the run's Poisson sampling, the batches it draws
(jax-privacy's batch selection) and their accounting (dp-accounting's PLD accountant).

Each step draws every member independently with probability q = train.batch_size / N (`CyclicPoissonSampling`, cycle
length 1), seeded by (seed, step) alone so that steps are independent (what the accounting assumes) and a resumed run
draws the same batches; the batch is truncated at random to `max_batch_size` and padded to that length rounded up to
the device count (the step is compiled for one shape). The accountant composes one `TruncatedSubsampledGaussianDpEvent`
per step (truncated Poisson subsampling, arXiv:2508.15089) under add-or-remove-one adjacency, so the truncation is
accounted exactly rather than assumed away; a target epsilon is met by `dp_accounting.mechanism_calibration` on the
same event.
"""
import dataclasses
import functools

import dp_accounting
import numpy as np
from dp_accounting import mechanism_calibration
from jax_privacy import batch_selection
from scipy import stats

ADJACENCY = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
ACCOUNTANT = ("dp_accounting PLD (value discretisation 1e-4), add-or-remove-one, truncated Poisson-subsampled "
              "Gaussian per step")
PLD_DISCRETISATION = 1e-4     # jax-privacy's default for its PLD accountant
CALIBRATION_TOL = 0.005       # noise multipliers within this of the largest-epsilon one that meets the target
TRUNCATION_PROBABILITY = 1e-4  # the automatic max_batch_size: a Poisson batch exceeds it with at most this probability
_BATCH_STREAM = 0xD95


@dataclasses.dataclass(frozen=True)
class Sampling:
  """A run's Poisson sampling: N members, rate q, batches truncated to `max_batch_size`."""
  members: int
  sampling_rate: float
  max_batch_size: int


def training_event(sampling: Sampling, phases: tuple) -> dp_accounting.DpEvent:
  """Every private training a model's weights depend on: `steps` truncated Poisson-subsampled Gaussian mechanisms
  per (noise multiplier, steps) phase."""
  return dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(
      dp_accounting.TruncatedSubsampledGaussianDpEvent(sampling.members, sampling.sampling_rate,
                                                       sampling.max_batch_size, noise_multiplier), steps)
      for noise_multiplier, steps in phases])


def _accountant() -> dp_accounting.pld.PLDAccountant:
  return dp_accounting.pld.PLDAccountant(ADJACENCY, value_discretization_interval=PLD_DISCRETISATION)


@functools.lru_cache(maxsize=64)
def epsilon(sampling: Sampling, phases: tuple, delta: float) -> float:
  """The epsilon at `delta` of the private trainings `phases` ((noise multiplier, steps), ...)."""
  return float(_accountant().compose(training_event(sampling, phases)).get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def calibrated_noise(sampling: Sampling, steps: int, target_epsilon: float, delta: float) -> float:
  """The smallest noise multiplier (within CALIBRATION_TOL) whose `steps`-step training has epsilon <= target."""
  return float(mechanism_calibration.calibrate_dp_mechanism(
      _accountant, lambda noise_multiplier: training_event(sampling, ((noise_multiplier, steps),)), target_epsilon,
      delta, mechanism_calibration.LowerEndpointAndGuess(0.0, 1.0), tol=CALIBRATION_TOL))


@dataclasses.dataclass(frozen=True)
class PoissonBatches:
  """`LoopConfig.batch_selection`: step -> (positions padded to `length`, which rows are real). The truncation is
  the sampling's (what the accounting sees); `length` rounds it up to the device count (padding only)."""
  seed: int
  sampling: Sampling
  length: int

  def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    sampler = batch_selection.CyclicPoissonSampling(
        sampling_prob=self.sampling.sampling_rate, iterations=1, truncated_batch_size=self.sampling.max_batch_size,
        partition_type=batch_selection.PartitionType.INDEPENDENT)
    rng = np.random.default_rng([self.seed, _BATCH_STREAM, step])
    chosen = next(sampler.batch_iterator(self.sampling.members, rng)).astype(np.int64)
    [padded] = batch_selection.split_and_pad_global_batch(chosen, self.length)
    return np.maximum(padded, 0), padded >= 0


def sampling_of(ctx) -> Sampling:
  """The run's Poisson sampling: rate train.batch_size / N, truncated at max_batch_size (0: the size a batch
  exceeds with probability <= TRUNCATION_PROBABILITY; neither depends on the device count)."""
  members, expected = len(ctx.splits.members), ctx.config.train.batch_size
  size = ctx.config.defences.dp_sgd.max_batch_size
  if size == 0:
    size = min(members, max(expected, int(stats.binom.isf(TRUNCATION_PROBABILITY, members, expected / members))))
  return Sampling(members, expected / members, size)
