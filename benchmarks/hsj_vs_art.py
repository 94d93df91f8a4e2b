"""Cross-check: our HopSkipJump boundary distances (attacks/label_only.py, batched in one jitted program) against
ART's `HopSkipJump` (adversarial-robustness-toolbox, per example in NumPy) on the same model and the same examples.

  pip install -e '.[art]'
  python benchmarks/hsj_vs_art.py --workdir=runs/adversarial_default --num_examples=100

ART queries the model through a `BlackBoxClassifier` whose predict function is the run's network in eval mode
returning one-hot predicted labels only (label-only access, as ours). Both run untargeted l_2 HopSkipJump from each
example's predicted label with the same budget (iterations, init_eval, max_eval, init_size); ART draws its random
numbers from NumPy's global state, ours from per-example JAX keys, so single distances differ and their distributions
should agree. Prints both distributions (quartiles), the ratio of medians, the rank correlation over examples, a
two-sample Kolmogorov-Smirnov test, the membership ROC AUC of each on the attack set's members vs non-members, and
examples per second of each (with the ratio); appends one JSON line to benchmarks/results.jsonl.
"""
import time

import jax
import numpy as np
from absl import app, flags
from scipy import stats

import harness
from mialth_jax.attacks import adversarial, adversarial_signals, metrics
from mialth_jax.experiments import attack_runs, targets

flags.DEFINE_string("workdir", "runs/adversarial_default", "a finished run folder (its dense model is attacked)")
flags.DEFINE_string("model", "dense", "which finished model")
flags.DEFINE_integer("num_examples", 100, "examples: half attack-test members, half attack-test non-members")
flags.DEFINE_integer("iterations", 10, "HopSkipJump iterations (ART: max_iter)")
flags.DEFINE_integer("init_eval", 50, "gradient queries of the first iteration")
flags.DEFINE_integer("max_eval", 500, "gradient queries of any iteration at most")
flags.DEFINE_integer("init_size", 100, "uniform-noise trials for the starting point")
flags.DEFINE_integer("seed", 0, "seed of both (ART: NumPy's global seed)")
F = flags.FLAGS


def art_distances(target, ids: np.ndarray) -> tuple[np.ndarray, float]:
  """ART's HopSkipJump l_2 distances (0 where the model misclassifies, as ART's LabelOnlyDecisionBoundary) and
  seconds taken."""
  from art.attacks.evasion import HopSkipJump
  from art.estimators.classification import BlackBoxClassifier
  logits_fn = jax.jit(adversarial.pixel_logits_fn(target.model, target.variables, target.mean, target.std))
  num_classes = target.model.num_classes
  one_hot = np.eye(num_classes, dtype=np.float32)
  predict = lambda x: one_hot[np.asarray(logits_fn(x.astype(np.float32))).argmax(1)]  # noqa: E731  labels only
  x = target.source[ids].astype(np.float32) / 255.0
  classifier = BlackBoxClassifier(predict, x.shape[1:], num_classes, clip_values=(0.0, 1.0))
  attack = HopSkipJump(classifier, targeted=False, norm=2, max_iter=F.iterations, max_eval=F.max_eval,
                       init_eval=F.init_eval, init_size=F.init_size, verbose=False)
  np.random.seed(F.seed)
  started = time.perf_counter()
  x_adv = attack.generate(x)
  seconds = time.perf_counter() - started
  distance = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
  distance[predict(x).argmax(1) != target.source.labels(ids)] = 0.0
  return distance, seconds


def main(argv):
  del argv
  ctx = targets.open_run(F.workdir, "--workdir")
  target = targets.model_target(ctx, F.model)
  split = attack_runs.attack_split(ctx, attack_runs.resolve_size(ctx, -1), write=False)
  half = F.num_examples // 2
  ids = np.r_[split.test_members[:half], split.test_nonmembers[:half]]
  member = np.r_[np.ones(half, bool), np.zeros(half, bool)]
  setting = harness.setting(workdir=F.workdir, model=F.model, num_examples=len(ids), iterations=F.iterations,
                            init_eval=F.init_eval, max_eval=F.max_eval, init_size=F.init_size)
  harness.print_setting(setting)
  signal = adversarial_signals.Signal.make("hsj_distance", F.seed, iterations=F.iterations, init_eval=F.init_eval,
                                           max_eval=F.max_eval, init_size=F.init_size)
  adversarial_signals.evaluate(signal, target, ids[:8], 64)  # compile once, outside the timing
  started = time.perf_counter()
  ours = adversarial_signals.evaluate(signal, target, ids, 64).astype(np.float64)
  ours_seconds = time.perf_counter() - started
  art, art_seconds = art_distances(target, ids)
  both = (ours > 0) & (art > 0)  # correctly classified by the model: a boundary distance was searched
  result = {"benchmark": "hsj_vs_art", **setting, "examples_searched": int(both.sum())}
  for name, d in (("ours", ours), ("art", art)):
    q = np.percentile(d[both], [25, 50, 75])
    auc = metrics.roc_auc(d, member)
    result[name] = {"quartiles": q.tolist(), "mean": float(d[both].mean()), "roc_auc_members_farther": auc,
                    "examples_per_s": len(ids) / (ours_seconds if name == "ours" else art_seconds)}
    print(f"{name:>4}: distance quartiles {q[0]:.4f} {q[1]:.4f} {q[2]:.4f}, mean {d[both].mean():.4f}; membership "
          f"ROC AUC {auc:.3f}; {result[name]['examples_per_s']:.1f} examples/s")
  result["median_ratio"] = float(np.median(ours[both]) / np.median(art[both]))
  result["spearman"] = float(stats.spearmanr(ours[both], art[both]).statistic)
  result["ks_pvalue"] = float(stats.ks_2samp(ours[both], art[both]).pvalue)
  result["speed_ratio"] = art_seconds / ours_seconds
  print(f"median ours / ART {result['median_ratio']:.3f}; Spearman over examples {result['spearman']:.3f}; "
        f"KS two-sample p = {result['ks_pvalue']:.3f}; ours {result['speed_ratio']:.1f}x ART's examples/s")
  harness.append_result(result)


if __name__ == "__main__":
  app.run(main)
