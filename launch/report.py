"""Writes report.md and PNG plots for one or more run folders (recomputing every metric from the saved scores).

  python -m launch.report --workdir=runs/cifar10_r18_subset,runs/cifar100_r18_subset --out=runs/report
"""
import sys

from absl import app, flags, logging

from mialth_jax import errors
from mialth_jax.report import collect, markdown

_WORKDIRS = flags.DEFINE_list("workdir", None, "run folder(s), comma-separated")
_OUT = flags.DEFINE_string("out", None, "folder for report.md and plots/ (default: the first run folder)")
_NAME = flags.DEFINE_string("report_name", "report.md", "file name of the report inside --out")
_PREAMBLE = flags.DEFINE_string("preamble", "", "Markdown file put at the top of the report (commands, hardware)")
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


def main(argv):
  del argv
  try:
    runs = [collect.load_run(w, _BOOTSTRAP.value) for w in _WORKDIRS.value]
    path = markdown.write(runs, _OUT.value or _WORKDIRS.value[0], _NAME.value, read_preamble(_PREAMBLE.value))
  except errors.UserError as e:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    sys.exit(2)
  logging.info("wrote %s", path)
  print(path)


if __name__ == "__main__":
  app.run(main)
