r"""Runs any subset of the distorted-MNIST experiments (Table 1 + TC) at any scale and number of seeds.

Each cell is one ordinary training run, the same command a user types:

  python -m stn_jax.main --config=configs/mnist.py:<variant>,<model> \
      --workdir=<root>/<variant>/<model>/seed<k> --config.seed=<k> --config.total_steps=<steps> \
      --config.schedule=<schedule> [--config.<field>=<value> ...]

run one after another in subprocesses. Checkpoints and event files stay in the (scratch) work directories; the
small ``results.json`` of each finished run (which records its own command line) is copied to
``experiments/mnist/runs/<variant>/<model>/seed<k>/results.json`` (``<model>_<tag>`` with ``--tag``, for runs
whose ``--set`` overrides differ from a kept run's, e.g. the localisation learning rate), which is kept in the
repository and read by ``report.py``. A cell whose results are already there is skipped if they are the
run asked for (:func:`kept_mismatches`); a kept run of another setting is an error before anything runs
(keep the new runs apart with ``--tag``). An interrupted run resumes from its last checkpoint when the sweep
is started again.

Examples:

  # Paper scale (GPU): every Table 1 and TC cell, 3 seeds, the paper's schedule (in <model>_paper/, beside
  # the kept reduced-scale runs).
  python experiments/mnist/sweep.py --cells=all --seeds=3 --steps=150000 --schedule=paper --tag=paper
  # Reduced scale on a CPU: RTS and TC, CNN vs ST-CNN, 1 seed, 600 fast-schedule steps at batch 128.
  python experiments/mnist/sweep.py --variants=rts,tc --models=cnn,st_cnn_aff --steps=600 --schedule=fast \
      --set=batch_size=128
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags, logging

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # for configs/ and stn_jax, when run as python experiments/mnist/sweep.py

from configs import mnist as mnist_configs  # noqa: E402
from stn_jax import rundir  # noqa: E402

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
flags.DEFINE_integer("seeds", 1, "Seeds 0 .. seeds-1 per cell.", lower_bound=1)
flags.DEFINE_integer("first_seed", 0, "First seed.", lower_bound=0)
flags.DEFINE_integer("steps", 150_000, "Training steps per run.", lower_bound=1)
flags.DEFINE_enum("schedule", "paper", ["paper", "fast"], "Optimizer schedule (see stn_jax/train_config.py).")
flags.DEFINE_multi_string("set", [], "Extra config overrides, e.g. --set=batch_size=128 (repeatable).")
flags.DEFINE_string(
  "tag", "", "Keep runs in <model>_<tag>/, not <model>/ (for runs whose --set overrides change the model)."
)
flags.DEFINE_string("workdir_root", "/tmp/stn_mnist_sweep", "Scratch root for checkpoints and event files.")
flags.DEFINE_string("runs_dir", RUNS_DIR, "Where the kept results.json files go.")
flags.DEFINE_bool("copy_figures", True, "Also keep each run's transforms.png next to its results.json.")
flags.DEFINE_bool("dry_run", False, "Only print the commands.")


def selected_cells(cells, variants, models):
  """The (variant, model) pairs of the chosen cell groups that pass the filters, in table order.

  Raises:
    ValueError: for an unknown cell group, distortion or model, or when nothing is selected (a misspelt
      filter must not end a sweep that ran nothing with success).
  """
  out = []
  for group in cells:
    if group not in CELLS:
      raise ValueError(f"unknown cell group {group!r}; expected one of {sorted(CELLS)}.")
    out += [c for c in CELLS[group] if c not in out]
  for kind, names, known in (
    ("distortion", variants, TABLE1_VARIANTS + ("tc",)),
    ("model", models, TABLE1_MODELS),
  ):
    unknown = [n for n in names or () if n not in known]
    if unknown:
      raise ValueError(f"unknown {kind}(s) {', '.join(map(repr, unknown))}; expected some of {list(known)}.")
  selected = [(v, m) for v, m in out if (not variants or v in variants) and (not models or m in models)]
  if not selected:
    raise ValueError(f"no cell of {cells} has distortion in {variants} and model in {models}.")
  return selected


def command(variant, model, seed, workdir, *, steps, schedule, overrides=()):
  """The training command of one run."""
  cmd = [
    sys.executable, "-m", "stn_jax.main", f"--config=configs/mnist.py:{variant},{model}",
    f"--workdir={workdir}", f"--config.seed={seed}", f"--config.total_steps={steps}",
    f"--config.schedule={schedule}",
  ]  # fmt: skip
  return cmd + [f"--config.{o}" for o in overrides]


def _value(text):
  """An override's value as the config holds it in JSON (``'128'`` -> 128, ``'(16, 40)'`` -> [16, 40])."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string, e.g. schedule=fast
  return json.loads(json.dumps(value))


def kept_mismatches(results, variant, model, seed, *, steps, schedule, overrides=()):
  """How a kept ``results.json`` differs from the run the sweep would make now (empty: it is that run).

  The run asked for is ``configs/mnist.py:<variant>,<model>`` with the seed, steps, schedule and ``--set``
  overrides applied, as ``stn_jax.main`` builds it. Fields that cannot change the result
  (``stn_jax.rundir.BOOKKEEPING_FIELDS``) and fields only one of the two configs has (added to the config
  since) are not compared.

  Args:
    results: the kept run's results dict.
    variant: the distortion.
    model: the model name.
    seed: the requested seed.
    steps: the requested total steps.
    schedule: the requested schedule.
    overrides: the requested ``field=value`` config overrides (``--set``).

  Returns:
    One line per difference.
  """
  # The recorded seed, steps and schedule (which report.py reads) stand for their config fields.
  out = [
    f"{field} {results.get(field)!r}, not {value!r}"
    for field, value in (("seed", seed), ("steps", steps), ("schedule", schedule))
    if results.get(field) != value
  ]
  wanted = rundir.flatten(json.loads(json.dumps(mnist_configs.get_config(f"{variant},{model}").to_dict())))
  for field in ("seed", "total_steps", "schedule"):
    del wanted[field]
  for override in overrides:
    field, _, text = override.partition("=")
    wanted[field] = _value(text)
  kept = rundir.flatten(results.get("config") or {})
  changed, _ = rundir.differences(kept, wanted)  # flat dicts flatten to themselves
  out += [f"{field} {had!r}, not {want!r}" for field, (had, want) in changed.items()]
  out += [f"{o.partition('=')[0]} not recorded" for o in overrides if o.partition("=")[0] not in kept]
  return out


def main(argv):
  del argv
  try:
    cells = selected_cells(FLAGS.cells, FLAGS.variants, FLAGS.models)
  except ValueError as e:
    raise SystemExit(f"sweep.py: {e}") from None
  seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
  logging.info(
    "%d cells x %d seeds, %d steps, schedule %s.", len(cells), len(seeds), FLAGS.steps, FLAGS.schedule
  )
  # Every kept run is checked before anything trains, so a mismatch cannot stop a sweep half-way.
  todo, mismatches = [], []
  for variant, model in cells:
    run_name = f"{model}_{FLAGS.tag}" if FLAGS.tag else model
    for seed in seeds:
      kept = os.path.join(FLAGS.runs_dir, variant, run_name, f"seed{seed}")
      if not os.path.exists(os.path.join(kept, "results.json")):
        todo.append((variant, model, run_name, seed, kept))
        continue
      with open(os.path.join(kept, "results.json")) as f:
        results = json.load(f)
      wrong = kept_mismatches(
        results, variant, model, seed, steps=FLAGS.steps, schedule=FLAGS.schedule, overrides=FLAGS.set
      )
      if wrong:
        mismatches.append(f"{kept}: {'; '.join(wrong)}")
      else:
        logging.info("skip %s/%s/seed%d: results kept in %s", variant, run_name, seed, kept)
  if mismatches:
    raise SystemExit(
      "sweep.py: kept runs differ from the runs asked for (keep new runs apart with --tag, or move the kept "
      "ones away):\n  " + "\n  ".join(mismatches)
    )
  for variant, model, run_name, seed, kept in todo:
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
