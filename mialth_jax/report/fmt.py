"""Number formats shared by the report's tables."""


def number(x, digits: int = 3) -> str:
  """x to `digits` decimals, "-" for None."""
  return "-" if x is None else f"{x:.{digits}f}"


def with_ci(r: dict, key: str = "accuracy") -> str:
  """The value with its 95 % bootstrap interval where the result has one (TPR intervals came later than the rest)."""
  if f"{key}_ci" not in r:
    return number(r[key])
  return f"{r[key]:.3f} [{r[key + '_ci'][0]:.3f}, {r[key + '_ci'][1]:.3f}]"


def percent(fraction: float) -> str:
  """0.8 -> "80 %"."""
  return f"{fraction * 100:g} %"
