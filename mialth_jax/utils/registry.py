"""Named registries: attacks, protocols and training recipes are each a `Registry`, filled by `register` calls.

A new attack, protocol or recipe is one module plus one `register` call (from the package or from user code);
config validation and the report read the registries, so nothing else needs an edit.
"""
from mialth_jax import errors


class Registry(dict):
  """name -> entry, with a `register` decorator and lookups that fail with a one-line `error` (a user error)."""

  def __init__(self, what: str, error: type[Exception] = errors.ConfigError, entries: dict | None = None):
    super().__init__(entries or {})
    self.what = what
    self.error = error
    self.abouts = {}  # name -> what the entry is, for `listing`

  def register(self, name: str, entry=None, *, replace: bool = False, about: str = ""):
    """Adds `entry` under `name` (used as `register(name, entry)` or as a decorator `@register(name)`); `about`, a
    few words on what it is, joins the name in `listing`."""
    def add(value):
      if name in self and not replace:
        raise ValueError(f"{self.what} {name!r} is already registered")
      self[name] = value
      self.abouts[name] = about
      return value
    return add if entry is None else add(entry)

  def listing(self) -> str:
    """'a (what a is) | b | ...': the registered names, for a config field's help text."""
    return " | ".join(f"{name} ({self.abouts[name]})" if self.abouts.get(name) else name for name in self)

  def lookup(self, name: str, field: str = ""):
    """The entry for `name`; an unknown name raises naming the field (or the kind of entry) and the known names."""
    if name not in self:
      where = f"{field}: " if field else ""
      raise self.error(f"{where}unknown {self.what} {name!r}; known: {', '.join(self)}")
    return self[name]
