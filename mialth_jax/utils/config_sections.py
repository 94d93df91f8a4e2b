"""Config sections: each component owns its part of the config, with a comment per field and its validation.

  config_sections.register("defences.my_defence", "what the section is for (defences/my_defence.py)", {
      "rounds": (3, "rounds of the defence's second phase"),
      "strength": (1.0, "weight of its loss term"),
  }, validate=check_my_defence)

`config_lib.base()` builds the config from the registered sections, in registration order (a dotted path nests a
section in its parent, registered before it); `--help` lists every field with its default and comment; `validate`
runs every section's check on a config that has the section (a config recorded before a section existed has not).
A comment may be a function returning the text, called when the fields are described: a field whose choices are a
registry's names lists those that features registered (`Registry.listing`), whenever they were imported.
"""
import dataclasses
from typing import Callable

import ml_collections

from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class Section:
  path: str                # "train" or "defences.my_defence"; "" for top-level fields
  comment: str             # what the section is for
  fields: dict             # field name -> (default, comment: a string, or a function returning one)
  validate: Callable[[ml_collections.ConfigDict], None] | None = None


SECTIONS = Registry("config section")


def register(path: str, comment: str, fields: dict, validate=None) -> Section:
  """Adds a section (or, with path "", top-level fields); every field must have a comment."""
  missing = [name for name, (_, comment) in fields.items() if not text(comment).strip()]
  if missing:
    raise ValueError(f"config section {path!r}: fields {missing} have no comment")
  return SECTIONS.register(path, Section(path, comment, dict(fields), validate))


def text(comment) -> str:
  """A field's comment as text (a function's, called now)."""
  return comment() if callable(comment) else comment


def _node(config: ml_collections.ConfigDict, path: str) -> ml_collections.ConfigDict:
  for key in filter(None, path.split(".")):
    if key not in config:
      config[key] = ml_collections.ConfigDict()
    config = config[key]
  return config


def build() -> ml_collections.ConfigDict:
  """A fresh config holding every registered section's defaults."""
  config = ml_collections.ConfigDict()
  for section in SECTIONS.values():
    node = _node(config, section.path)
    for name, (default, _) in section.fields.items():
      node[name] = default
  return config


def has(config: ml_collections.ConfigDict, path: str) -> bool:
  """Whether `config` holds the section at `path`."""
  for key in filter(None, path.split(".")):
    if key not in config:
      return False
    config = config[key]
  return True


def validate(config: ml_collections.ConfigDict) -> None:
  """Every registered section's check, for the sections the config has."""
  for section in SECTIONS.values():
    if section.validate is not None and has(config, section.path):
      section.validate(config)


def describe(config: ml_collections.ConfigDict) -> list[tuple[str, object, str]]:
  """(dotted name, value in `config`, comment) of every registered section and field, in registration order; a
  section's value is None, a field holding a dict (e.g. attacks.models) gives it whole."""
  rows = []
  for section in SECTIONS.values():
    if not has(config, section.path):
      continue
    node = _node(config, section.path)
    if section.path:
      rows.append((section.path, None, section.comment))
    prefix = f"{section.path}." if section.path else ""
    for name, (_, comment) in section.fields.items():
      value = node[name]
      rows.append((prefix + name, value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value,
                   text(comment)))
  return rows
