"""Config sections owned by components (utils/config_sections.py): base() holds exactly the registered fields, every
field has a comment, --help lists them, and a section's check runs only on configs that have it."""
import ml_collections
import pytest

from mialth_jax import config_lib, errors
from mialth_jax.utils import config_sections


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  """Dotted names of the fields of a config, a field holding a dict (attacks.models) counted whole."""
  found = set()
  for key in config.keys():
    name, value = prefix + key, config[key]
    if isinstance(value, ml_collections.ConfigDict) and name in config_sections.SECTIONS:
      found |= _leaves(value, name + ".")
    else:
      found.add(name)
  return found


def test_every_field_of_base_is_registered_with_a_comment():
  config = config_lib.base()
  rows = config_sections.describe(config)
  fields = {name for name, value, _ in rows if value is not None or name not in config_sections.SECTIONS}
  assert fields == _leaves(config)
  assert all(comment.strip() for _, _, comment in rows), [name for name, _, comment in rows if not comment.strip()]


def test_a_section_is_built_nested_and_checked_only_where_present(monkeypatch):
  checked = []
  section = config_sections.Section("toy.inner", "a toy", {"a": (1, "one"), "b": ((2, 3), "two, three")},
                                    lambda config: checked.append(config.toy.inner.a))
  monkeypatch.setitem(config_sections.SECTIONS, "toy.inner", section)
  config = config_sections.build()
  assert config.toy.inner.a == 1 and tuple(config.toy.inner.b) == (2, 3)
  config_sections.validate(config)
  assert checked == [1]
  del config["toy"]
  config_sections.validate(config)  # a config recorded before the section existed is not checked by it
  assert checked == [1]
  assert ("toy.inner.b", (2, 3), "two, three") in config_sections.describe(config_sections.build())


def test_a_field_without_a_comment_is_refused():
  with pytest.raises(ValueError, match=r"config section 'x': fields \['b'\] have no comment"):
    config_sections.register("x", "x", {"a": (1, "one"), "b": (2, " ")})
  assert "x" not in config_sections.SECTIONS


def test_a_feature_section_check_names_its_field():
  config = config_lib.base()
  config.defences.admm.rho_growth = 0.5
  with pytest.raises(errors.ConfigError, match=r"^defences.admm.rho_growth=0.5: expected a factor >= 1"):
    config_lib.validate(config)
