"""Did pruning change leakage? Each ticket against the dense model of its run, from the saved per-example scores.

Largest attack set of the paper protocol. The attack is the strongest on the dense model (highest ROC AUC) among the
attacks of the protocols that attack a model's own outputs on the same attack-test examples (those registered with
`in_verdict = True`: the paper protocol and features' protocols that score the same examples); the ticket is attacked
by the same attack on the same examples, and a paired bootstrap (`attacks.compare`) gives the
difference in ROC AUC (ticket - dense) with its 95 % interval and p-value. "higher" / "lower" only when that interval
excludes 0. Choosing the attack on the dense model's own results favours the dense model slightly (the best of a few
attacks is an optimistic estimate), so a "lower" that only just excludes 0 is weak evidence.
"""
import dataclasses
import os

import numpy as np
from absl import logging

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import compare, metrics as metrics_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.experiments import protocols
from mialth_jax.lottery import recipes
from mialth_jax.utils import io

PROTOCOL = "paper"            # sets the attack set; its results are always candidates


def candidate_protocols() -> tuple[str, ...]:
  """The registered protocols whose attacks on a model's own outputs compete for "strongest", in their order."""
  return tuple(name for name, protocol in protocols.PROTOCOLS.items() if getattr(protocol, "in_verdict", False))


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One ticket against the dense model: ROC AUC and attack accuracy differences, ticket - dense."""
  ticket: str
  dense: str
  protocol: str
  attack: str
  size: int               # the attack set (members + non-members); metrics use its attack-test part
  num_examples: int       # attack-test examples compared
  roc_auc: compare.Difference
  accuracy: compare.Difference

  @property
  def direction(self) -> str:
    return self.roc_auc.direction

  def line(self) -> str:
    d = self.roc_auc
    said = self.direction if self.direction.startswith("no ") else f"leakage {self.direction}"
    return (f"{self.ticket} vs {self.dense}: {said} (AUC {d.other:.3f} vs {d.base:.3f}, difference "
            f"{d.difference:+.3f} [95 % CI {d.ci[0]:+.3f}, {d.ci[1]:+.3f}], paired bootstrap p={d.p_value:.3f}, "
            f"strongest attack {self.attack}{'' if self.protocol == PROTOCOL else f' ({self.protocol} protocol)'})")


@dataclasses.dataclass(frozen=True)
class Judgement:
  """Every ticket's verdict, and a sentence for each one that could not be given (or why none could)."""
  verdicts: list
  notes: list

  @property
  def method(self) -> str:
    """How the verdicts were reached, in one sentence."""
    if not self.verdicts:
      return f"No verdict ({PROTOCOL} protocol, every ticket vs the dense model)."
    v = self.verdicts[0]
    return (f"Attack set n{v.size} ({v.num_examples} attack-test examples), the attack with the highest ROC AUC on "
            f"{v.dense} among the {' and '.join(candidate_protocols())} protocols' attacks; paired bootstrap of the "
            f"ROC AUC difference (ticket - {v.dense}); \"higher\" / \"lower\" only when its 95 % CI excludes 0.")

  @property
  def lines(self) -> list[str]:
    return [v.line() for v in self.verdicts] + self.notes


def _scores(layout: layout_lib.RunLayout, size: int, model: str, protocol: str, attack: str) -> dict | None:
  """The per-example arrays of `attack` on `model`'s own outputs, or None when that result is not finished."""
  json_path, npz_path = layout.result(size, protocol, model, model, attack)
  return io.read_npz(npz_path) if os.path.exists(json_path) else None


def own_output_results(layout: layout_lib.RunLayout) -> list[dict]:
  """The metadata (protocol, source, target, attack, size) of the finished results of `candidate_protocols()` on a
  model's own outputs."""
  candidates = candidate_protocols()
  found = []
  for json_path, _ in layout.finished_results():
    meta = io.read_json(json_path)
    if meta["protocol"] in candidates and meta["source"] == meta["target"]:
      found.append({k: meta[k] for k in ("protocol", "source", "target", "attack", "size")})
  return found


@dataclasses.dataclass(frozen=True)
class Choice:
  """Which attack and which baseline answer "did this model change leakage?", for every section that asks it: the
  baseline is the run's dense model; the attack set is the paper protocol's largest; the attack is the strongest on
  the baseline (highest ROC AUC among `candidate_protocols()`' attacks on its own outputs) among those with a result
  on the model compared, else the strongest overall (then missing for that model)."""
  baseline: str
  size: int
  auc: dict               # {(protocol, attack): ROC AUC on the baseline}
  present: dict           # {model: {(protocol, attack)}} with a result at `size`

  def attack(self, model: str) -> tuple[str, str]:
    """The (protocol, attack) that compares `model` with the baseline."""
    both = [pa for pa in self.auc if pa in self.present.get(model, ())]
    return max(both or self.auc, key=lambda pa: (self.auc[pa], pa))


def choose(summaries: dict, results: list[dict], auc_of=None) -> Choice | str:
  """The run's Choice from its models' summaries and its attack results (dicts with protocol, source, target, attack,
  size and, at least on the baseline, roc_auc; or `auc_of(result)` gives it), or a sentence saying why there is none.
  """
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
  auc_of = auc_of or (lambda r: r["roc_auc"])
  auc = {(r["protocol"], r["attack"]): auc_of(r) for r in sorted(at_size, key=lambda r: (r["protocol"], r["attack"]))
         if r["target"] == dense[0]}
  if not auc:
    return f"no {PROTOCOL}-protocol result on {dense[0]} at attack set n{size}"
  present = {}
  for r in at_size:
    present.setdefault(r["target"], set()).add((r["protocol"], r["attack"]))
  return Choice(dense[0], size, auc, present)


def _compare(layout, size, dense, ticket, protocol, attack, base: dict, num_bootstrap: int,
             seed: int) -> Verdict | str:
  other = _scores(layout, size, ticket, protocol, attack)
  if other is None:
    return f"{ticket} vs {dense}: no `{attack}` ({protocol} protocol) result on {ticket} (attack set n{size})"
  if not (np.array_equal(base["ids"], other["ids"]) and np.array_equal(base["is_member"], other["is_member"])):
    raise AttackError(f"{layout.result(size, protocol, ticket, ticket, attack)[1]}: holds other attack-test examples "
                      f"than {layout.result(size, protocol, dense, dense, attack)[1]}")
  diff = compare.paired_difference(base["is_member"], base["scores"], base["predicted"], other["scores"],
                                   other["predicted"], num_bootstrap=num_bootstrap, seed=seed)
  return Verdict(ticket, dense, protocol, attack, size, len(base["ids"]), diff["roc_auc"], diff["accuracy"])


def judge(workdir: str, num_bootstrap: int = 1000, seed: int = 0) -> Judgement:
  """Every ticket (summary kind ticket or imp) of the run in `workdir` against its dense model."""
  layout = layout_lib.RunLayout(workdir)
  summaries = layout.summaries()
  dense = layout_lib.select(summaries, kind="dense")
  tickets = sorted((n for n, s in summaries.items() if s["kind"] in recipes.TICKET_KINDS),
                   key=lambda n: (summaries[n]["sparsity"], n))
  if not dense or not tickets:
    return Judgement([], [f"no verdict: {workdir} holds no finished {'dense model' if not dense else 'ticket'}"])
  base = {}

  def auc_of(r: dict) -> float:
    s = base[(r["protocol"], r["attack"])] = _scores(layout, r["size"], r["target"], r["protocol"], r["attack"])
    return metrics_lib.attack_metrics(s["scores"], s["is_member"], s["predicted"], num_bootstrap=0)["roc_auc"]

  choice = choose(summaries, own_output_results(layout), auc_of)
  if isinstance(choice, str):
    return Judgement([], [f"no verdict: {choice}"])
  chosen = {t: choice.attack(t) for t in tickets}
  found = [_compare(layout, choice.size, choice.baseline, t, *chosen[t], base[chosen[t]], num_bootstrap, seed)
           for t in tickets]
  return Judgement([v for v in found if isinstance(v, Verdict)], [v for v in found if isinstance(v, str)])


def announce(workdir: str, num_bootstrap: int = 1000, seed: int = 0) -> Judgement:
  """Logs the verdict and prints it to stdout, after a run's progress lines."""
  judgement = judge(workdir, num_bootstrap, seed)
  for line in ["Did pruning change leakage? " + judgement.method, *judgement.lines]:
    logging.info("%s", line)
    print(line, flush=True)
  return judgement
