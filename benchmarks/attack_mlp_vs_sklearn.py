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
on the same shapes (compiled program reused) and, separately, on its first call (compile included). Appends one JSON
line to benchmarks/results.jsonl.
"""
import os
import platform
import time

import jax
import numpy as np
import threadpoolctl
from absl import app, flags

from mialth_jax.attacks import inputs as inputs_lib, registry
from mialth_jax.utils import io

flags.DEFINE_integer("num_train", 20_000, "attack-train examples (half members)")
flags.DEFINE_integer("num_test", 20_000, "attack-test examples (half members)")
flags.DEFINE_integer("num_classes", 100, "classes of the target model = attack features")
flags.DEFINE_integer("epochs", 100, "epochs of optax_mlp and of the matched MLPClassifier")
flags.DEFINE_multi_integer("hidden", [64], "hidden sizes of both MLPs")
flags.DEFINE_boolean("paper_baseline", True, "also time MLPClassifier with its defaults (tens of seconds)")
flags.DEFINE_string("results", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl"),
                    "JSON-lines file the result is appended to")
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


def setting() -> dict:
  """Hardware and threading, including the load: on a shared machine other jobs slow multi-threaded BLAS most."""
  blas = [f"{p['internal_api']}:{p['num_threads']}" for p in threadpoolctl.threadpool_info()]
  return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
          "usable_cores": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
          "blas_threads": blas, "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()]}


def verdict(speedup: float, gap: float) -> str:
  return (f"speedup {speedup:.1f}x (>= 10x: {'met' if speedup >= 10 else 'NOT met'}), "
          f"accuracy gap {gap:.4f} (<= 0.01: {'met' if gap <= 0.01 else 'NOT met'})")


def main(argv):
  del argv
  train = synthetic_attack_set(F.num_train, F.num_classes, seed=0)
  test = synthetic_attack_set(F.num_test, F.num_classes, seed=1)
  first_s, _, _ = timed_attack({"type": "optax_mlp", "hidden": F.hidden, "epochs": F.epochs}, train, test)
  optax_s, optax_acc, _ = timed_attack({"type": "optax_mlp", "hidden": F.hidden, "epochs": F.epochs}, train, test)
  print("setting: " + ", ".join(f"{k}={v}" for k, v in setting().items()))
  print(f"data: {F.num_train} train / {F.num_test} test x {F.num_classes} confidence features; hidden {F.hidden}, "
        f"{F.epochs} epochs, batch 200, Adam lr 1e-3")
  print(f"optax_mlp:                     {optax_s:7.2f} s fit+score (first call, compile included: {first_s:.2f} s)"
        f"  acc {optax_acc:.4f}")
  result = dict(setting(), num_train=F.num_train, num_test=F.num_test, num_classes=F.num_classes, epochs=F.epochs,
                hidden=F.hidden, optax_s=optax_s, optax_first_call_s=first_s, optax_acc=optax_acc)
  matched = {"type": "sklearn_mlp", "hidden": F.hidden, "max_iter": F.epochs, "alpha": 0.0}
  baselines = [("matched", matched, None), ("matched_1thread", matched, 1)]
  if F.paper_baseline:
    baselines.append(("paper_1thread", {"type": "sklearn_mlp"}, 1))
  for name, config, threads in baselines:
    seconds, acc, attack = timed_attack(config, train, test, threads)
    speedup, gap = seconds / optax_s, abs(optax_acc - acc)
    result.update({f"{name}_s": seconds, f"{name}_acc": acc, f"{name}_epochs_run": attack.model_[-1].n_iter_,
                   f"{name}_speedup": speedup, f"{name}_acc_gap": gap})
    print(f"sklearn {name:<15} (BLAS threads {threads or 'default'}): {seconds:7.2f} s, "
          f"{attack.model_[-1].n_iter_} epochs, acc {acc:.4f} -> {verdict(speedup, gap)}")
  io.append_jsonl(F.results, result)


if __name__ == "__main__":
  app.run(main)
