r"""Runs the reduced-scale appendix experiments of this CPU and keeps their results in the repo.

  python experiments/appendix/run_reduced.py addition [model ...]
  python experiments/appendix/run_reduced.py volume3d [model ...]

Each run trains in ``--scratch`` (default ``/tmp/stn_appendix``; checkpoints stay there) with the ``,quick``
preset of its config plus the overrides below and any ``--override=--config.x=y``, then copies
``results.json`` (its command with the scratch path as ``$SCRATCH``, the CPU model and the load average),
``metrics.jsonl`` and the figures into
``experiments/appendix/runs/<experiment>/<model>/`` (``--runs_dir`` names another root), or ``<model>_<tag>/``
with ``--tag=<tag>`` (for runs with overrides). A kept result is never replaced unless ``--force`` is given:
without it, a command that would overwrite one stops before training anything. The co-localisation runs are
one command each, listed in ``experiments/appendix/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from stn_jax import provenance  # noqa: E402

RUNS_DIR = os.path.join(HERE, "runs")

# Reduced-scale settings per experiment: (config file, default models, extra overrides).
EXPERIMENTS = {
  "addition": (
    "configs/addition.py",
    ("fcn", "st_fcn_aff", "2xst_fcn_aff", "2xst_fcn_proj", "2xst_fcn_tps", "st_fcn_proj", "cnn"),
    ["--config.data.test_size=2000"],
  ),
  "volume3d": ("configs/volume3d.py", ("cnn", "st_cnn"), []),
}


def kept_dir(runs_dir: str, experiment: str, model: str, tag: str = "") -> str:
  """Where one run's results are kept: ``<runs_dir>/<experiment>/<model>[_<tag>]``."""
  return os.path.join(runs_dir, experiment, f"{model}_{tag}" if tag else model)


def run(
  experiment: str, model: str, scratch: str, extra: list[str], tag: str = "", runs_dir: str = RUNS_DIR
) -> dict:
  """Trains one model and returns its results dict.

  The results are also written to :func:`kept_dir` (``<model>_<tag>`` when a tag names a non-default
  setting), replacing what is there: callers check for a kept result first (see ``main``).
  """
  config, _, overrides = EXPERIMENTS[experiment]
  run_name = f"{model}_{tag}" if tag else model
  workdir = os.path.join(scratch, experiment, run_name)
  command = [
    sys.executable,
    "-m",
    "stn_jax.main",
    f"--config={config}:{model},quick",
    f"--workdir={workdir}",
    *overrides,
    *extra,
  ]
  printable = shlex.join(["python", *command[1:]]).replace(scratch, "$SCRATCH")
  print("+", printable, flush=True)
  host_before = provenance.host()
  t0 = time.time()
  subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  results["command"] = results["command"].replace(scratch, "$SCRATCH")  # the run's own, shell-quoted
  results["process_seconds"] = time.time() - t0
  results["scale"] = "reduced (CPU budget preset ',quick')"
  # The machine is shared: the load average says how much of it this run had.
  after = provenance.host()
  load = {"before": host_before["load_average_1_5_15_min"], "after": after["load_average_1_5_15_min"]}
  results["host"] = dict(after, load_average_1_5_15_min=load)
  out = kept_dir(runs_dir, experiment, model, tag)
  os.makedirs(out, exist_ok=True)
  provenance.write_json(os.path.join(out, "results.json"), results)
  for name in os.listdir(workdir):
    if name.endswith(".png") or name == "metrics.jsonl":  # the curves, for experiments/compare_runs.py
      shutil.copy(os.path.join(workdir, name), out)
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
  parser.add_argument("models", nargs="*")
  parser.add_argument("--scratch", default="/tmp/stn_appendix")
  parser.add_argument("--override", action="append", default=[], help="extra --config.x=y flags")
  parser.add_argument("--tag", default="", help="suffix of the run directories (for --override settings)")
  parser.add_argument("--runs_dir", default=RUNS_DIR, help="root of the kept results (default: %(default)s)")
  parser.add_argument(
    "--force",
    action="store_true",
    help="replace results already kept (a finished run in --scratch is reused, not retrained)",
  )
  args = parser.parse_args()
  models = args.models or EXPERIMENTS[args.experiment][1]
  # Checked for every model before the first one trains, so a refusal costs no training time.
  tag, runs_dir = args.tag, args.runs_dir
  paths = [os.path.join(kept_dir(runs_dir, args.experiment, m, tag), "results.json") for m in models]
  kept = [path for path in paths if os.path.exists(path)]
  if kept and not args.force:
    parser.error(
      "results already kept (rerun with --force to replace them, or use another --tag):\n  "
      + "\n  ".join(kept)
    )
  for model in models:
    results = run(args.experiment, model, args.scratch, args.override, tag, runs_dir)
    print(
      f"{model}: test error {results['test_error']:.2f}% after {results['steps']} steps, "
      f"{results['wall_seconds']:.0f} s",
      flush=True,
    )


if __name__ == "__main__":
  main()
