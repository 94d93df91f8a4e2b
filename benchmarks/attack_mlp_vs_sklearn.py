"""optax_mlp vs scikit-learn's MLPClassifier: wall time of fit + score and accuracy on the same synthetic attack set.

  python benchmarks/attack_mlp_vs_sklearn.py --num_train=20000 --num_classes=100 --epochs=100

The attack set imitates an overfit target: members' true-class margin ~ N(5, 1.5), non-members' ~ N(3, 2.5), on
N(0, 1) logits; the attack sees the raw softmax vector (the paper's features). Baselines, timed in the same run:
  matched:         MLPClassifier with the same hidden sizes, epochs (max_iter), batch, learning rate and no L2, with
                   numpy's default BLAS threads;
  matched_1thread: the same with BLAS capped at one thread (faster on a busy machine, where threads contend);
  paper_1thread:   MLPClassifier with its defaults (hidden 100, up to 200 epochs, loss-plateau stop), as Bagmar et al.
                   used, one BLAS thread.
Targets: optax_mlp >= 10x faster than each baseline with an accuracy gap <= 0.01. optax_mlp is timed after a warm-up fit
on the same shapes (compiled program reused) and, separately, on its first call (compile included).

Two optax_mlp variants, timed interleaved (--reps; their ratio is the median of per-repetition ratios):
  optax_mlp:        all --epochs epochs (max_steps lifted): the like-for-like match of `matched`;
  optax_mlp_budget: the package default, at most --step_budget steps (epochs = min(epochs, ceil(step_budget / steps per
                    epoch))): the step is compute-bound, so only fewer epochs make it faster, and sets larger than
                    step_budget * batch / epochs examples (6,000 by default) converge in fewer epochs.
Appends one JSON line to benchmarks/results.jsonl.
"""
import time

import numpy as np
import threadpoolctl
from absl import app, flags

import harness
from mialth_jax.attacks import inputs as inputs_lib, optax_mlp, registry

flags.DEFINE_integer("num_train", 20_000, "attack-train examples (half members)")
flags.DEFINE_integer("num_test", 20_000, "attack-test examples (half members)")
flags.DEFINE_integer("num_classes", 100, "classes of the target model = attack features")
flags.DEFINE_integer("epochs", 100, "epochs of optax_mlp and of the matched MLPClassifier")
flags.DEFINE_multi_integer("hidden", [64], "hidden sizes of both MLPs")
flags.DEFINE_integer("step_budget", 3000, "optax_mlp_budget: at most this many steps (the package default)")
flags.DEFINE_integer("reps", 3, "interleaved repetitions of the two optax_mlp variants")
flags.DEFINE_boolean("paper_baseline", True, "also time MLPClassifier with its defaults (tens of seconds)")
F = flags.FLAGS


def synthetic_attack_set(num: int, num_classes: int, seed: int) -> tuple[inputs_lib.AttackInputs, np.ndarray]:
  """Softmax outputs of an imaginary overfit model: members get a larger, steadier true-class margin."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, num)
  is_member = rng.permutation(np.arange(num) < num // 2)
  logits = rng.normal(size=(num, num_classes))
  logits[np.arange(num), labels] += np.where(is_member, rng.normal(5.0, 1.5, num), rng.normal(3.0, 2.5, num))
  return inputs_lib.AttackInputs.from_logits(logits, labels), is_member


def timed_attack(config: dict, train, test, blas_threads: int | None = None) -> tuple[float, float, object]:
  """(seconds for fit + score, test accuracy, fitted attack); blas_threads caps numpy's BLAS (None: its default)."""
  with threadpoolctl.threadpool_limits(blas_threads):
    start = time.perf_counter()
    attack = registry.make_attack(config).fit(*train)
    predicted = attack.predict(test[0])
    seconds = time.perf_counter() - start
  return seconds, float(np.mean(predicted == test[1])), attack


def verdict(speedup: float, gap: float) -> str:
  return (f"speedup {speedup:.1f}x (>= 10x: {harness.verdict(speedup, 10)}), "
          f"accuracy gap {gap:.4f} (<= 0.01: {harness.verdict(gap, 0.01, higher_is_better=False)})")


def timed_optax(configs: dict, train, test) -> tuple[dict, dict, dict]:
  """(seconds lists, accuracies, first-call seconds) of optax_mlp variants, timed interleaved after a first call."""
  first = {name: timed_attack(config, train, test)[0] for name, config in configs.items()}
  acc = {}

  def run(name):
    seconds, acc[name], _ = timed_attack(configs[name], train, test)
    return harness.Measured(seconds, seconds)
  seconds, _ = harness.interleaved({name: (lambda name=name: run(name)) for name in configs}, F.reps)
  return seconds, acc, first


def main(argv):
  del argv
  train = synthetic_attack_set(F.num_train, F.num_classes, seed=0)
  test = synthetic_attack_set(F.num_test, F.num_classes, seed=1)
  configs = {"optax": {"type": "optax_mlp", "hidden": F.hidden, "epochs": F.epochs, "max_steps": 2 ** 62},
             "optax_budget": {"type": "optax_mlp", "hidden": F.hidden, "epochs": F.epochs,
                              "max_steps": F.step_budget}}
  epochs_budget = registry.make_attack(configs["optax_budget"]).epochs_for(F.num_train)
  setting = harness.setting(blas_threads=[f"{p['internal_api']}:{p['num_threads']}"
                                          for p in threadpoolctl.threadpool_info()])
  harness.print_setting(setting)
  seconds, accs, first = timed_optax(configs, train, test)
  optax_s, optax_acc, first_s = harness.median(seconds["optax"]), accs["optax"], first["optax"]
  budget_s, budget_acc = harness.median(seconds["optax_budget"]), accs["optax_budget"]
  budget_speedup = harness.ratio(seconds, "optax_budget", "optax")
  print(f"data: {F.num_train} train / {F.num_test} test x {F.num_classes} confidence features; hidden {F.hidden}, "
        f"{F.epochs} epochs, batch {optax_mlp.OptaxMLPAttack().batch_size}, Adam lr 1e-3")
  print(f"optax_mlp ({F.epochs} epochs):     {optax_s:7.2f} s fit+score (first call, compile included: "
        f"{first_s:.2f} s)  acc {optax_acc:.4f}")
  print(f"optax_mlp_budget ({epochs_budget} epochs): {budget_s:7.2f} s fit+score (first call: "
        f"{first['optax_budget']:.2f} s)  acc {budget_acc:.4f} -> x{budget_speedup:.2f} vs optax_mlp "
        f"(median of {F.reps} interleaved pairs), accuracy change {budget_acc - optax_acc:+.4f}")
  result = dict(setting, benchmark="attack_mlp_vs_sklearn", num_train=F.num_train, num_test=F.num_test,
                num_classes=F.num_classes, epochs=F.epochs, hidden=F.hidden, optax_s=optax_s,
                optax_first_call_s=first_s, optax_acc=optax_acc, step_budget=F.step_budget,
                budget_epochs=epochs_budget, optax_budget_s=budget_s, optax_budget_acc=budget_acc,
                budget_speedup_vs_optax=budget_speedup)
  matched = {"type": "sklearn_mlp", "hidden": F.hidden, "max_iter": F.epochs, "alpha": 0.0}
  baselines = [("matched", matched, None), ("matched_1thread", matched, 1)]
  if F.paper_baseline:
    baselines.append(("paper_1thread", {"type": "sklearn_mlp"}, 1))
  for name, config, threads in baselines:
    seconds, acc, attack = timed_attack(config, train, test, threads)
    speedup, gap = seconds / optax_s, abs(optax_acc - acc)
    budget_speedup, budget_gap = seconds / budget_s, abs(budget_acc - acc)
    result.update({f"{name}_s": seconds, f"{name}_acc": acc, f"{name}_epochs_run": attack.model_[-1].n_iter_,
                   f"{name}_speedup": speedup, f"{name}_acc_gap": gap, f"{name}_budget_speedup": budget_speedup,
                   f"{name}_budget_acc_gap": budget_gap})
    print(f"sklearn {name:<15} (BLAS threads {threads or 'default'}): {seconds:7.2f} s, "
          f"{attack.model_[-1].n_iter_} epochs, acc {acc:.4f} -> optax_mlp {verdict(speedup, gap)}; "
          f"optax_mlp_budget {verdict(budget_speedup, budget_gap)}")
  harness.append_result(dict(result, load_avg_end=harness.load_avg()))


if __name__ == "__main__":
  app.run(main)
