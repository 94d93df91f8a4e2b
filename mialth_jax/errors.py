"""The project's user errors: what the launcher turns into one `error: ...` line and exit status 2.

Anything else that escapes a launch is a bug and keeps its traceback (exit status 1). Each subsystem subclasses
`UserError`; the subclasses also derive from the built-in class they replace (ValueError, ...), so callers that catch
those keep working.
"""


class UserError(Exception):
  """Caused by the user's settings, files or run; the message is one line naming what was wrong and what was expected."""


class ConfigError(UserError, ValueError):
  """A config value is out of range, unknown or inconsistent with the data or devices."""
