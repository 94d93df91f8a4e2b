"""Did pruning change leakage? Each ticket against the dense model of its run: one rule for every section that asks.

The answer for a ticket is model-level where the run has one (a feature registered in MODEL_LEVEL, e.g. every
reference model a target: ticket - dense over many model pairs), else the single pair: the run's ticket against its
dense model, on the paper protocol's largest attack set. For the single pair, the attack is the strongest on the dense
model (highest ROC AUC) among the attacks of the protocols registered with `in_verdict = True`, measured on the
SELECTION half of the attack-test examples (a fixed hash of their ids); the ticket and dense are then compared on the
other, JUDGED half only, so the attack is never chosen on the examples it is judged on. The AUC difference's interval
and p-value are DeLong's (paired: both models scored on the same examples), and every p-value of a report is
Holm-adjusted over its comparisons; "higher" / "lower" only where the adjusted p-value is below 0.05.
"""
import dataclasses
import os

import numpy as np
from absl import logging

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import compare, metrics, stats
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.experiments import protocols
from mialth_jax.lottery import recipes
from mialth_jax.utils import io
from mialth_jax.utils.registry import Registry

PROTOCOL = "paper"            # sets the attack set; its results are always candidates
ALPHA = 0.05                  # family-wise, after Holm's adjustment
MODEL_LEVEL = Registry("model-level verdict")  # name -> fn(workdir) -> [comparison with .ticket, .p_value, .line()]


def judged_half(ids: np.ndarray) -> np.ndarray:
  """bool [N]: the examples that judge (True) and those that choose the attack (False), by a fixed hash of each id
  (Knuth's multiplicative hash), so the halves are the same for every model, attack and protocol of a run."""
  return (np.asarray(ids, np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32) >= np.uint64(2 ** 31)


def candidate_protocols() -> tuple[str, ...]:
  """The registered protocols whose attacks on a model's own outputs compete for "strongest", in their order."""
  return tuple(name for name, protocol in protocols.PROTOCOLS.items() if getattr(protocol, "in_verdict", False))


def direction(difference: float, p_adjusted: float) -> str:
  """"higher" / "lower" (ticket vs dense) only when the adjusted p-value is below ALPHA."""
  if not p_adjusted < ALPHA:
    return "no detectable difference"
  return "higher" if difference > 0 else "lower"


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One ticket against the dense model on the judged half: ROC AUC difference, ticket - dense (DeLong)."""
  ticket: str
  dense: str
  protocol: str
  attack: str
  size: int               # the attack set (members + non-members); metrics use its attack-test part
  num_examples: int       # judged attack-test examples compared
  roc_auc: compare.Difference
  p_adjusted: float = float("nan")  # Holm over the report's comparisons (NaN: not adjusted yet)

  @property
  def p_value(self) -> float:
    return self.roc_auc.p_value

  @property
  def direction(self) -> str:
    return direction(self.roc_auc.difference, self.p_adjusted if not np.isnan(self.p_adjusted) else self.p_value)

  def adjusted(self, p_adjusted: float) -> "Verdict":
    return dataclasses.replace(self, p_adjusted=float(p_adjusted))

  def line(self) -> str:
    d = self.roc_auc
    said = self.direction if self.direction.startswith("no ") else f"leakage {self.direction}"
    return (f"{self.ticket} vs {self.dense} (this pair of models): {said} (AUC {d.other:.3f} vs {d.base:.3f}, "
            f"difference {d.difference:+.3f} [unadjusted 95 % CI {d.ci[0]:+.3f}, {d.ci[1]:+.3f}], "
            f"DeLong p={d.p_value:.3g}, Holm-adjusted p={self.p_adjusted:.3g}; attack {self.attack}"
            f"{'' if self.protocol == PROTOCOL else f' ({self.protocol} protocol)'}, chosen on the other half of "
            f"attack-test; {self.num_examples} judged examples)")


@dataclasses.dataclass(frozen=True)
class Judgement:
  """Every ticket's answer (model-level where a feature gives one, else the single pair) and a sentence for each one
  that could not be given (or why none could)."""
  verdicts: list          # single-pair Verdicts, for the tickets without a model-level answer
  notes: list
  model_level: list = dataclasses.field(default_factory=list)

  @property
  def comparisons(self) -> list:
    return [*self.model_level, *self.verdicts]

  def adjusted(self, p_adjusted: list[float] | None = None) -> "Judgement":
    """The judgement with Holm-adjusted p-values: over its own comparisons, or the given ones (in `comparisons`
    order) when a report adjusts over several runs."""
    p_adjusted = stats.holm([c.p_value for c in self.comparisons]) if p_adjusted is None else p_adjusted
    done = [c.adjusted(p) for c, p in zip(self.comparisons, p_adjusted)]
    return Judgement(done[len(self.model_level):], self.notes, done[:len(self.model_level)])

  @property
  def method(self) -> str:
    """How the answers were reached, in one sentence."""
    said = []
    if self.model_level:
      said.append(self.model_level[0].method)
    if self.verdicts:
      v = self.verdicts[0]
      said.append(f"Single pairs: attack set n{v.size}, the attack with the highest ROC AUC on {v.dense} among the "
                  f"{' and '.join(candidate_protocols())} protocols' attacks on the selection half of attack-test, "
                  f"ticket vs {v.dense} compared on the other half (DeLong).")
    if not said:
      return f"No verdict ({PROTOCOL} protocol, every ticket vs the dense model)."
    return " ".join(said) + f" \"higher\" / \"lower\" only where the Holm-adjusted p-value is below {ALPHA}."

  @property
  def lines(self) -> list[str]:
    return [c.line() for c in self.comparisons] + self.notes


def adjust_all(judgements: list[Judgement]) -> list[Judgement]:
  """Holm over every comparison of several judgements (one report)."""
  p_values = stats.holm([c.p_value for j in judgements for c in j.comparisons])
  done, start = [], 0
  for j in judgements:
    done.append(j.adjusted(p_values[start:start + len(j.comparisons)]))
    start += len(j.comparisons)
  return done


def _scores(layout: layout_lib.RunLayout, size: int, model: str, protocol: str, attack: str) -> dict | None:
  """The per-example arrays of `attack` on `model`'s own outputs, or None when that result is not finished."""
  json_path, npz_path = layout.result(size, protocol, model, model, attack)
  return io.read_npz(npz_path) if os.path.exists(json_path) else None


def own_output_results(layout: layout_lib.RunLayout) -> list[dict]:
  """The metadata (protocol, source, target, attack, size, scores_path) of the finished results of
  `candidate_protocols()` on a model's own outputs."""
  candidates = candidate_protocols()
  found = []
  for json_path, npz_path in layout.finished_results():
    meta = io.read_json(json_path)
    if meta["protocol"] in candidates and meta["source"] == meta["target"]:
      found.append({k: meta[k] for k in ("protocol", "source", "target", "attack", "size")} | {"scores_path": npz_path})
  return found


def selection_auc(arrays: dict) -> float:
  """ROC AUC of a result's per-example arrays (ids, scores, is_member) on the selection half of its examples."""
  chooses = ~judged_half(arrays["ids"])
  return metrics.roc_auc(arrays["scores"][chooses], arrays["is_member"][chooses])


def _read_selection_auc(result: dict) -> float:
  return selection_auc(io.read_npz(result["scores_path"]))


@dataclasses.dataclass(frozen=True)
class Choice:
  """Which attack and which baseline answer "did this model change leakage?", for every section that asks it: the
  baseline is the run's dense model; the attack set is the paper protocol's largest; the attack is the strongest on
  the baseline (highest ROC AUC on the selection half, among `candidate_protocols()`' attacks on its own outputs)
  among those with a result on the model compared, else the strongest overall (then missing for that model)."""
  baseline: str
  size: int
  auc: dict               # {(protocol, attack): ROC AUC on the baseline, selection half}
  present: dict           # {model: {(protocol, attack)}} with a result at `size`

  def attack(self, model: str) -> tuple[str, str]:
    """The (protocol, attack) that compares `model` with the baseline."""
    both = [pa for pa in self.auc if pa in self.present.get(model, ())]
    return max(both or self.auc, key=lambda pa: (self.auc[pa], pa))


def choose(summaries: dict, results: list[dict], auc_of=_read_selection_auc) -> Choice | str:
  """The run's Choice from its models' summaries and its attack results (dicts with protocol, source, target, attack,
  size and scores_path; `auc_of(result)` gives the AUC that chooses, by default `selection_auc` of the result's
  per-example arrays, read from disk), or a sentence saying why there is none."""
  dense = layout_lib.select(summaries, kind="dense")
  if not dense:
    return "no finished dense model"
  candidates = candidate_protocols()
  own = [r for r in results if r["protocol"] in candidates and r["source"] == r["target"]]
  sizes = {r["size"] for r in own if r["protocol"] == PROTOCOL}
  if not sizes:
    return f"no {PROTOCOL}-protocol attack results (attacks.protocols must include {PROTOCOL})"
  size = max(sizes)
  at_size = [r for r in own if r["size"] == size]
  auc = {(r["protocol"], r["attack"]): auc_of(r) for r in sorted(at_size, key=lambda r: (r["protocol"], r["attack"]))
         if r["target"] == dense[0]}
  if not auc:
    return f"no {PROTOCOL}-protocol result on {dense[0]} at attack set n{size}"
  present = {}
  for r in at_size:
    present.setdefault(r["target"], set()).add((r["protocol"], r["attack"]))
  return Choice(dense[0], size, auc, present)


def judged_difference(base: dict, other: dict) -> compare.Difference:
  """other - base ROC AUC on the judged half of their common examples (per-example arrays), with DeLong's paired
  95 % interval and p-value."""
  judged = judged_half(base["ids"])
  d = stats.delong_paired(base["is_member"][judged], base["scores"][judged], other["scores"][judged])
  return compare.Difference(d["auc_a"], d["auc_b"], d["difference"], tuple(d["ci"]), d["p_value"])


def _compare(layout, size, dense, ticket, protocol, attack) -> Verdict | str:
  base, other = (_scores(layout, size, m, protocol, attack) for m in (dense, ticket))
  if other is None:
    return f"{ticket} vs {dense}: no `{attack}` ({protocol} protocol) result on {ticket} (attack set n{size})"
  if not (np.array_equal(base["ids"], other["ids"]) and np.array_equal(base["is_member"], other["is_member"])):
    raise AttackError(f"{layout.result(size, protocol, ticket, ticket, attack)[1]}: holds other attack-test examples "
                      f"than {layout.result(size, protocol, dense, dense, attack)[1]}")
  return Verdict(ticket, dense, protocol, attack, size, int(judged_half(base["ids"]).sum()),
                 judged_difference(base, other))


def judge(workdir: str) -> Judgement:
  """Every ticket (summary kind ticket or imp) of the run in `workdir` against its dense model, p-values not yet
  adjusted (`Judgement.adjusted`, or `adjust_all` over a report)."""
  layout = layout_lib.RunLayout(workdir)
  summaries = layout.summaries()
  dense = layout_lib.select(summaries, kind="dense")
  tickets = sorted((n for n, s in summaries.items() if s["kind"] in recipes.ticket_kinds()),
                   key=lambda n: (summaries[n]["sparsity"], n))
  if not dense or not tickets:
    return Judgement([], [f"no verdict: {workdir} holds no finished {'dense model' if not dense else 'ticket'}"])
  model_level = [c for provide in MODEL_LEVEL.values() for c in provide(workdir) if c.ticket in tickets]
  single = [t for t in tickets if t not in {c.ticket for c in model_level}]
  if not single:
    return Judgement([], [], model_level)
  choice = choose(summaries, own_output_results(layout))
  if isinstance(choice, str):
    return Judgement([], [f"no verdict for {', '.join(single)}: {choice}"], model_level)
  found = [_compare(layout, choice.size, choice.baseline, t, *choice.attack(t)) for t in single]
  return Judgement([v for v in found if isinstance(v, Verdict)], [v for v in found if isinstance(v, str)],
                   model_level)


def announce(workdir: str) -> Judgement:
  """Logs the verdict (Holm over the run's comparisons) and prints it to stdout, after a run's progress lines."""
  judgement = judge(workdir).adjusted()
  for line in ["Did pruning change leakage? " + judgement.method, *judgement.lines]:
    logging.info("%s", line)
    print(line, flush=True)
  return judgement
