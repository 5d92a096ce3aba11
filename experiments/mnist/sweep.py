r"""Runs any subset of the distorted-MNIST experiments (Table 1 + TC) at any scale and number of seeds.

Each cell is one ordinary training run, the same command a user types:

  python -m stn_jax.main --config=configs/mnist.py:<variant>,<model> \
      --workdir=<root>/<variant>/<model>/seed<k> --config.seed=<k> --config.total_steps=<steps> \
      --config.schedule=<schedule> [--config.<field>=<value> ...]

run one after another in subprocesses. Checkpoints and event files stay in the (scratch) work directories; the
small ``results.json`` of each finished run (which records its own command line) is copied to
``experiments/mnist/runs/<variant>/<model>/seed<k>/results.json`` (``<model>_<tag>`` with ``--tag``, for runs
whose ``--set`` overrides change the model, e.g. the localisation learning rate), which is kept in the
repository and read by ``report.py``. A cell whose results are already there is skipped; an interrupted
run resumes from its last checkpoint when the sweep is started again.

Examples:

  # Paper scale (GPU): every Table 1 and TC cell, 3 seeds, the paper's schedule.
  python experiments/mnist/sweep.py --cells=all --seeds=3 --steps=150000 --schedule=paper
  # Reduced scale on a CPU: RTS and TC, CNN vs ST-CNN, 1 seed, 1000 fast-schedule steps.
  python experiments/mnist/sweep.py --variants=rts,tc --models=cnn,st_cnn_aff --steps=1000 --schedule=fast
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags, logging

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS_DIR = os.path.join(ROOT, "experiments", "mnist", "runs")

TABLE1_VARIANTS = ("r", "rts", "p", "e")
TABLE1_MODELS = (
  "fcn",
  "cnn",
  "st_fcn_aff",
  "st_fcn_proj",
  "st_fcn_tps",
  "st_cnn_aff",
  "st_cnn_proj",
  "st_cnn_tps",
)
TC_MODELS = ("fcn", "cnn", "st_fcn_aff", "st_cnn_aff")
CELLS = {
  "table1": [(v, m) for v in TABLE1_VARIANTS for m in TABLE1_MODELS],
  "tc": [("tc", m) for m in TC_MODELS],
}
CELLS["all"] = CELLS["table1"] + CELLS["tc"]

FLAGS = flags.FLAGS
flags.DEFINE_list("cells", ["all"], "Cell groups: table1, tc or all (before the variant/model filters).")
flags.DEFINE_list("variants", None, "Only these distortions (r, rts, p, e, tc).")
flags.DEFINE_list("models", None, "Only these models (e.g. cnn,st_cnn_aff).")
flags.DEFINE_integer("seeds", 1, "Seeds 0 .. seeds-1 per cell.")
flags.DEFINE_integer("first_seed", 0, "First seed.")
flags.DEFINE_integer("steps", 150_000, "Training steps per run.")
flags.DEFINE_enum("schedule", "paper", ["paper", "fast"], "Optimizer schedule (see stn_jax/train.py).")
flags.DEFINE_multi_string("set", [], "Extra config overrides, e.g. --set=batch_size=128 (repeatable).")
flags.DEFINE_string(
  "tag", "", "Keep runs in <model>_<tag>/, not <model>/ (for runs whose --set overrides change the model)."
)
flags.DEFINE_string("workdir_root", "/tmp/stn_mnist_sweep", "Scratch root for checkpoints and event files.")
flags.DEFINE_string("runs_dir", RUNS_DIR, "Where the kept results.json files go.")
flags.DEFINE_bool("copy_figures", True, "Also keep each run's transforms.png next to its results.json.")
flags.DEFINE_bool("dry_run", False, "Only print the commands.")


def selected_cells(cells, variants, models):
  """The (variant, model) pairs of the chosen cell groups that pass the filters, in table order."""
  out = []
  for group in cells:
    if group not in CELLS:
      raise ValueError(f"unknown cell group {group!r}; expected one of {sorted(CELLS)}.")
    out += [c for c in CELLS[group] if c not in out]
  return [(v, m) for v, m in out if (not variants or v in variants) and (not models or m in models)]


def command(variant, model, seed, workdir, *, steps, schedule, overrides=()):
  """The training command of one run."""
  cmd = [
    sys.executable, "-m", "stn_jax.main", f"--config=configs/mnist.py:{variant},{model}",
    f"--workdir={workdir}", f"--config.seed={seed}", f"--config.total_steps={steps}",
    f"--config.schedule={schedule}",
  ]  # fmt: skip
  return cmd + [f"--config.{o}" for o in overrides]


def main(argv):
  del argv
  cells = selected_cells(FLAGS.cells, FLAGS.variants, FLAGS.models)
  seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
  logging.info(
    "%d cells x %d seeds, %d steps, schedule %s.", len(cells), len(seeds), FLAGS.steps, FLAGS.schedule
  )
  for variant, model in cells:
    run_name = f"{model}_{FLAGS.tag}" if FLAGS.tag else model
    for seed in seeds:
      kept = os.path.join(FLAGS.runs_dir, variant, run_name, f"seed{seed}")
      if os.path.exists(os.path.join(kept, "results.json")):
        logging.info("skip %s/%s/seed%d: results kept in %s", variant, run_name, seed, kept)
        continue
      workdir = os.path.join(FLAGS.workdir_root, variant, run_name, f"seed{seed}")
      cmd = command(
        variant, model, seed, workdir, steps=FLAGS.steps, schedule=FLAGS.schedule, overrides=FLAGS.set
      )
      printable = shlex.join(["python", *cmd[1:]])
      print(printable, flush=True)
      if FLAGS.dry_run:
        continue
      start = time.time()
      env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
      subprocess.run(cmd, cwd=ROOT, env=env, check=True)
      with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
      results["sweep_wall_seconds"] = time.time() - start
      os.makedirs(kept, exist_ok=True)
      with open(os.path.join(kept, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
      if FLAGS.copy_figures and os.path.exists(os.path.join(workdir, "transforms.png")):
        shutil.copy(os.path.join(workdir, "transforms.png"), os.path.join(kept, "transforms.png"))
      print(f"{variant}/{run_name}/seed{seed}: test error {results['test_error']:.2f}% "
            f"({results['wall_seconds']:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
  app.run(main)
