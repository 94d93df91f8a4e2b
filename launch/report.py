"""Writes report.md and PNG plots for one or more run folders (recomputing every metric from the saved scores).

  python -m launch.report --workdir=runs/cifar10_r18_subset,runs/cifar100_r18_subset --out=runs/report
"""
import os
import sys

from absl import app, flags, logging

from mialth_jax import errors, plugins
from mialth_jax.report import collect, markdown, sections

_WORKDIRS = flags.DEFINE_list("workdir", None, "run folder(s), comma-separated")
_OUT = flags.DEFINE_string("out", None, "folder for report.md and plots/ (default: the first run folder)")
_NAME = flags.DEFINE_string("report_name", "report.md", "file name of the report inside --out")
_PREAMBLE = flags.DEFINE_string("preamble", "", "Markdown file put at the top of the report (commands, hardware)")
_SECTIONS = flags.DEFINE_list("sections", [], "report sections to write, by name (e.g. verdict,runs,fit_curves; "
                               "default: every registered section)")
_BOOTSTRAP = flags.DEFINE_integer("num_bootstrap", 1000, "bootstrap resamples for the confidence intervals")
flags.mark_flag_as_required("workdir")


def read_preamble(path: str) -> str:
  if not path:
    return ""
  try:
    with open(path) as f:
      return f.read()
  except OSError as e:
    raise collect.ReportError(f"--preamble={path}: cannot read it ({e.strerror or e})") from e


def out_dir(path: str | None, default: str) -> str:
  """The report's folder, checked before any work: --out must be a folder, or a new one inside a folder."""
  if path is None:
    return default
  if os.path.exists(path) and not os.path.isdir(path):
    raise collect.ReportError(f"--out={path} is a file; expected a folder for report.md and plots/")
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise collect.ReportError(f"--out={path}: cannot create it ({parent} is not a writable folder)")
  return path


def main(argv):
  del argv
  plugins.load()  # the report sections (and any other built-in feature)
  try:
    out = out_dir(_OUT.value, _WORKDIRS.value[0])
    sections.ordered(_SECTIONS.value)  # an unknown name fails before any run is read
    runs = [collect.load_run(w, _BOOTSTRAP.value) for w in _WORKDIRS.value]
    path = markdown.write(runs, out, _NAME.value, read_preamble(_PREAMBLE.value), _SECTIONS.value)
  except errors.UserError as e:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    sys.exit(2)
  logging.info("wrote %s", path)
  print(path)


if __name__ == "__main__":
  app.run(main)
