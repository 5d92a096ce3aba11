r"""Compares runs' test error against the training step and against each run's own wall time.

  python experiments/compare_runs.py "CNN=RUN_DIR_1" "2xST-FCN TPS=RUN_DIR_2" --out=curves.png

Each ``LABEL=PATH`` names a run directory (or its ``metrics.jsonl``); labels must differ. Prints every
evaluation as a table (step, the run's wall time when it started, test error) and draws both views with
``stn_jax.figures.plot_run_comparison``. Runs that evaluate only at the end give one point each; set
``--config.eval_every`` for a curve. Wall times are the runs' own (summed over resumes), so they compare
runs on one machine only, and only under similar load.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stn_jax import figures  # noqa: E402


def parse_run(arg: str) -> tuple[str, str]:
  """``'LABEL=PATH'`` -> ``(label, path of metrics.jsonl)``."""
  label, sep, path = arg.partition("=")
  if not sep or not label or not path:
    raise ValueError(f"expected LABEL=PATH, got {arg!r}")
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  if not os.path.exists(path):
    raise ValueError(f"{label}: no such file {path}")
  return label, path


def parse_runs(args: list[str]) -> dict[str, str]:
  """``['LABEL=PATH', ...]`` -> ``{label: path of metrics.jsonl}``, refusing a label given twice.

  Raises:
    ValueError: for a malformed argument, a missing file or a repeated label (a dict would keep only the
      last run of that label, and the table and figure would silently lose the others).
  """
  runs = {}
  for arg in args:
    label, path = parse_run(arg)
    if label in runs:
      raise ValueError(f"label {label!r} given twice ({runs[label]} and {path}); give each run its own label")
    runs[label] = path
  return runs


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or LABEL=.../metrics.jsonl)")
  parser.add_argument("--out", required=True, help="output PNG")
  args = parser.parse_args()
  try:
    runs = parse_runs(args.runs)
  except ValueError as e:
    parser.error(str(e))
  print("| run | step | wall s | test error % |\n|---|---:|---:|---:|")
  for label, path in runs.items():
    for step, error, wall in zip(*figures.test_error_curves(path), strict=True):
      print(f"| {label} | {step} | {'-' if wall is None else f'{wall:.0f}'} | {error:.2f} |")
  figures.plot_run_comparison(runs, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
