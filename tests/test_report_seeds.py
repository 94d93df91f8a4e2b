"""Table 1 over seeds: runs that differ only in their seed are grouped and summarised as mean +- sd."""
import numpy as np

from mialth_jax.data import splits as splits_lib
from mialth_jax.report import collect, defences, seeds


def _run(label, seed, dense_acc, ticket_acc, epochs=20):
  models = {"dense": {"kind": "dense", "sparsity": 0.0, "train_accuracy": 0.9 + seed / 100, "test_accuracy": 0.7},
            "ticket_s80": {"kind": "ticket", "sparsity": 0.8, "train_accuracy": 0.8, "test_accuracy": 0.71}}
  result = lambda target, attack, acc: {"protocol": "paper", "source": target, "target": target,  # noqa: E731
                                        "attack": attack, "size": 10, "accuracy": acc, "precision": acc + 0.1,
                                        "roc_auc": acc + 0.02}
  attacks = [result("dense", "sklearn_mlp", dense_acc), result("ticket_s80", "sklearn_mlp", ticket_acc),
             result("dense", "loss", 0.6), result("ticket_s80", "loss", 0.62)]
  config = {"seed": seed, "data": {"name": "npz", "path": "cifar10_small.npz"}, "model": {"name": "resnet18"},
            "train": {"num_epochs": epochs}, "lottery": {"sparsities": [0.8]}}
  empty = np.zeros(0, np.int64)
  return collect.Run(label, label, config, models, attacks, {}, splits_lib.Splits(empty, empty, empty))


def test_runs_that_differ_only_in_seed_give_mean_and_sample_sd():
  runs = [_run("s0", 0, 0.52, 0.55), _run("s1", 1, 0.54, 0.57), _run("s2", 2, 0.56, 0.56),
          _run("long", 0, 0.60, 0.60, epochs=80)]  # another recipe: not grouped with them
  assert [[r.label for r in g] for g in seeds.groups(runs)] == [["s0", "s1", "s2"]]
  lines = seeds.section(runs, None).splitlines()
  dense = next(line for line in lines if line.startswith("| dense |"))
  assert dense.startswith(f"| dense | 0.540 +- {np.std([0.52, 0.54, 0.56], ddof=1):.3f} | 0.640 +- 0.020 |")
  ticket = next(line for line in lines if line.startswith("| ticket_s80 |"))
  assert ticket.startswith("| ticket_s80 | 0.560 +- 0.010 |")
  assert dense.endswith("| 0.910 +- 0.010 | 0.700 +- 0.000 |")  # train, then test accuracy
  paired = next(line for line in lines if line.startswith("- ticket_s80 - dense"))
  differences = [0.03, 0.03, 0.0]
  assert f"attack accuracy 0.020 +- {np.std(differences, ddof=1):.3f}" in paired
  assert "lower in 0 of 3 runs" in paired


def test_no_section_without_two_seeds_of_one_recipe():
  assert seeds.section([_run("s0", 0, 0.5, 0.5), _run("long", 0, 0.5, 0.5, epochs=80)], None) == ""


def test_a_mean_that_rounds_to_zero_prints_without_a_sign():
  assert seeds._mean_sd([-0.0004, 0.0002, -0.0001]).startswith("0.000 +- ")


def test_the_defences_group_seeds_only_of_equal_defence_settings():
  runs = [_run("s0", 0, 0.5, 0.5), _run("s1", 1, 0.5, 0.5), _run("rho1", 2, 0.5, 0.5)]
  for run, rho in zip(runs, (1e-3, 1e-3, 1.0)):
    run.config["defences"] = {"admm": {"rho": rho}}
  assert [[r.label for r in g] for g in seeds.groups(runs)] == [["s0", "s1", "rho1"]]  # Table 1 reads no defences
  assert [[r.label for r in g] for g in seeds.groups(runs, defences.SEED_KEYS)] == [["s0", "s1"]]
