"""Per run: the empirical epsilon of every model and attack (audit/epsilon.py), beside AUC and TPR, and the one-run
bounds of the canaries protocol (experiments/canaries.py); for a model with a DP guarantee (its summary.json holds
"epsilon", and "delta", which the bound then uses), beside that guarantee.

Attack-set results: the threshold is chosen on the verdict's selection half of the attack-test examples (its fixed id
hash) and the bound computed on the judged half (audit.threshold=split), or every threshold is tried on all of them,
Bonferroni-corrected (bonferroni). Zoo targets (each zoo model attacked leave-one-out): the bound per target, at the
threshold chosen on the other targets' pooled scores; the table gives its median and maximum over the zoo targets
and the run's own model.
"""
import glob
import os

import numpy as np

from mialth_jax.audit import epsilon as epsilon_lib
from mialth_jax.experiments import canaries as canaries_lib, verdict, zoo_targets
from mialth_jax.layout import RunLayout
from mialth_jax.report import fmt, sections
from mialth_jax.utils import io


def guarantee(summary: dict | None) -> str:
  """The model's (epsilon, delta) DP guarantee, "-" for a model without one."""
  if not summary or "epsilon" not in summary:
    return "-"
  return f"{summary['epsilon']:.3g} (δ {summary.get('delta', float('nan')):.1e})"


def result_bound(run, result: dict, settings: dict) -> dict:
  """audit/epsilon.py's bound of one attack result on the verdict's judged half, at the attacked model's own DP
  delta where it has one (its bound is compared with its guarantee there), else audit.delta."""
  arrays = io.read_npz(result["scores_path"])
  delta = (run.summary(result["target"]) or {}).get("delta", settings["delta"])
  return epsilon_lib.empirical_epsilon(arrays["scores"], arrays["is_member"], verdict.judged_half(arrays["ids"]),
                                       delta, settings["confidence"], settings["threshold"])


def attack_rows(run, settings: dict) -> list[str]:
  """One row per attack result of the run."""
  lines = []
  for r in sorted(run.attacks, key=lambda r: (r["size"], r["protocol"], r["source"], r["target"], r["attack"])):
    found = result_bound(run, r, settings)
    model = r["target"] if r["source"] == r["target"] else f"{r['source']} -> {r['target']}"
    at = "-" if found["tpr"] is None else f"{found['tpr']:.3f} / {found['fpr']:.3f}"
    lines.append(f"| n{r['size']} | {r['protocol']} | {model} | {r['attack']} | {r['roc_auc']:.3f} | "
                 f"{fmt.tpr(r, 0.01)} | {found['num_judged']} | {at} | **{found['epsilon']:.3f}** | "
                 f"{guarantee(run.summary(r['target']))} |")
  return lines


def zoo_rows(run, settings: dict) -> list[str]:
  """One row per zoo kind and reference attack: the per-target bounds' median and maximum, and the run's model's."""
  layout = RunLayout(run.workdir)
  lines = []
  for kind, by_attack in zoo_targets.results(layout).items():
    for attack in by_attack:
      targets = zoo_targets.read(layout, kind, attack)
      bounds = epsilon_lib.leave_one_target_out(targets.scores, targets.member, settings["delta"],
                                                settings["confidence"])
      zoo = [b["epsilon"] for b, n in zip(bounds, targets.names) if n != zoo_targets.TARGET]
      own = [b["epsilon"] for b, n in zip(bounds, targets.names) if n == zoo_targets.TARGET]
      lines.append(f"| {kind} | {attack} | {len(zoo)} | {np.median(zoo):.3f} | {np.max(zoo):.3f} | "
                   f"{fmt.number(own[0] if own else None)} |")
  return lines


def canary_rows(run) -> list[str]:
  """One row per canaries-protocol result (attacks/canaries/n<size>/<model>/<attack>.json); the guarantee is the
  audited model's (the run's model trained again with its canaries)."""
  lines = []
  audited = RunLayout(os.path.join(run.workdir, canaries_lib.PROTOCOL)).summaries()
  pattern = os.path.join(run.workdir, "attacks", canaries_lib.PROTOCOL, "n*", "*", "*.json")
  for path in sorted(glob.glob(pattern)):
    r = io.read_json(path)
    one_run = r["one_run"]
    guessed = "every k" if one_run["guesses"] is None else f"{one_run['correct']} of {one_run['guesses']}"
    lines.append(f"| n{r['size']} | {r['target']} | {r['attack']} | {r['num_canaries']} {r['canary_kind']} | "
                 f"{r['num_members']} | {r['roc_auc']:.3f} | {guessed} | **{one_run['epsilon']:.3f}** | "
                 f"{guarantee(audited.get(r['target']))} |")
  return lines


@sections.register("empirical_epsilon", order=136, per_run=True)
def empirical_epsilon(runs, out) -> str:
  run = runs[0]
  settings = epsilon_lib.settings(run.config)
  chosen = ("the threshold chosen on the verdict's selection half of the attack-test examples, the bound computed on "
            "the judged half" if settings["threshold"] == "split" else
            "every threshold tried on all attack-test examples, Bonferroni-corrected")
  lines = [f"## Empirical epsilon ({run.label})", "",
           f"Lower bounds on ε at δ = {settings['delta']:g} (a DP model: its own δ), holding with probability "
           f"{settings['confidence']:g}: ε ≥ log((TPR_lo − δ) / FPR_hi), Clopper-Pearson bounds "
           f"(jax_privacy.auditing), {chosen}. Conditional on each trained model (its examples are the trials).", "",
           "| attack set | protocol | model | attack | AUC | TPR @ 1 % FPR | judged | TPR / FPR at the threshold | "
           "ε lower bound | DP guarantee |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
           *attack_rows(run, settings)]
  zoo = zoo_rows(run, settings)
  if zoo:
    lines += ["", "Zoo targets (leave-one-out): each target's bound at the threshold chosen on the other targets.", "",
              "| kind | attack | zoo targets | median ε bound | max ε bound | run's model |",
              "| --- | --- | --- | --- | --- | --- |", *zoo]
  canary = canary_rows(run)
  if canary:
    lines += ["", "One-run audit with canaries (Steinke et al. 2023), each model trained again with its canaries; "
              "guesses: correct of made (abstaining on the rest).", "",
              "| attack set | model | attack | canaries | included | AUC on canaries | guesses | one-run ε bound | "
              "DP guarantee |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *canary]
  return sections.text(lines)
