"""Number formats shared by the report's tables."""
from mialth_jax.attacks import stats


def number(x, digits: int = 3) -> str:
  """x to `digits` decimals, "-" for None."""
  return "-" if x is None else f"{x:.{digits}f}"


def with_ci(r: dict, key: str = "accuracy") -> str:
  """The value with its 95 % bootstrap interval where the result has one (TPR intervals came later than the rest);
  "-" where the result has no such metric (a score-only attack has no accuracy)."""
  if f"{key}_ci" not in r:
    return number(r.get(key))
  return f"{r[key]:.3f} [{r[key + '_ci'][0]:.3f}, {r[key + '_ci'][1]:.3f}]"


def attack_set(size: int, results: list[dict]) -> str:
  """How every report names an attack set: "attack set n1796, 898 attack-test examples" (metrics are on the latter)."""
  judged = {r["num_members"] + r["num_nonmembers"] for r in results if r.get("size") == size}
  return f"attack set n{size}" + (f", {judged.pop()} attack-test examples" if len(judged) == 1 else "")


def percent(fraction: float) -> str:
  """0.8 -> "80 %"."""
  return f"{fraction * 100:g} %"


def tpr_measure(r: dict, level: float) -> dict:
  """A result's TPR at FPR <= `level` as attacks.stats.tpr_at_fpr gives it: the exact (Clopper-Pearson) interval of
  its true positives among the members, and whether its non-members give >= 10 expected false positives at `level`."""
  return stats.tpr_measure(r[f"tpr_at_fpr_{level}"], r["num_members"], r["num_nonmembers"], level)


def tpr(r: dict, level: float) -> str:
  """A result's TPR at FPR <= `level` with its exact interval, or "-" and the non-members it would need."""
  return stats.format_tpr(tpr_measure(r, level))
