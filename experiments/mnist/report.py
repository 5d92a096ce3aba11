r"""Rebuilds the distorted-MNIST section of ``experiments/RESULTS.md`` from the kept ``results.json`` files.

  python experiments/mnist/report.py

Reads ``experiments/mnist/runs/<variant>/<model>/seed<k>/results.json`` (written by ``sweep.py``), groups runs
by cell and setting (steps, schedule, batch size), and writes one table per distortion: the paper's test
error beside our mean (and standard deviation over seeds), with the number of seeds, steps, schedule,
hardware and wall time per run. Any run not at the paper's protocol (150k steps, the 'paper' schedule,
batch 256) is labelled *reduced*. Below the tables, the issue's bars are checked per setting: ST-CNN beats
CNN and ST-FCN beats FCN at equal steps on RTS and TC.

Only the text between the ``<!-- mnist:begin -->`` and ``<!-- mnist:end -->`` markers is replaced, so other
experiment families can keep their own sections in the same file.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import statistics

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEGIN, END = "<!-- mnist:begin -->", "<!-- mnist:end -->"

# Paper test errors (%), REFERENCE.md section 2: RTS column and TC line from the paper; other cells "likely".
PAPER = {
  "r": {"fcn": 2.1, "cnn": 1.2, "st_fcn_aff": 1.2, "st_fcn_proj": 1.3, "st_fcn_tps": 1.1, "st_cnn_aff": 0.7,
        "st_cnn_proj": 0.8, "st_cnn_tps": 0.7},
  "rts": {"fcn": 5.2, "cnn": 0.8, "st_fcn_aff": 0.8, "st_fcn_proj": 0.9, "st_fcn_tps": 0.8, "st_cnn_aff": 0.5,
          "st_cnn_proj": 0.6, "st_cnn_tps": 0.5},
  "p": {"fcn": 3.1, "cnn": 1.5, "st_fcn_aff": 1.5, "st_fcn_proj": 1.4, "st_fcn_tps": 1.4, "st_cnn_aff": 0.8,
        "st_cnn_proj": 0.8, "st_cnn_tps": 0.8},
  "e": {"fcn": 3.2, "cnn": 1.4, "st_fcn_aff": 2.7, "st_fcn_proj": 2.6, "st_fcn_tps": 2.4, "st_cnn_aff": 1.2,
        "st_cnn_proj": 1.3, "st_cnn_tps": 1.1},
  "tc": {"fcn": 13.2, "cnn": 3.5, "st_fcn_aff": 2.0, "st_cnn_aff": 1.7},
}  # fmt: skip
PAPER_SOURCE = {"rts": "paper", "tc": "paper", "r": "likely", "p": "likely", "e": "likely"}
VARIANT_TITLES = {
  "r": "R (rotated)",
  "rts": "RTS (rotated, translated, scaled; 42x42)",
  "p": "P (projective)",
  "e": "E (elastic)",
  "tc": "TC (translated, cluttered; 60x60)",
}
MODEL_TITLES = {"fcn": "FCN", "cnn": "CNN", "st_fcn_aff": "ST-FCN Aff", "st_fcn_proj": "ST-FCN Proj",
                "st_fcn_tps": "ST-FCN TPS", "st_cnn_aff": "ST-CNN Aff", "st_cnn_proj": "ST-CNN Proj",
                "st_cnn_tps": "ST-CNN TPS"}  # fmt: skip
PAPER_PROTOCOL = {"steps": 150_000, "schedule": "paper", "batch_size": 256}

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "runs_dir", os.path.join(ROOT, "experiments", "mnist", "runs"), "Kept results.json files."
)
flags.DEFINE_string("output", os.path.join(ROOT, "experiments", "RESULTS.md"), "The results page to update.")


# What the tables read from each results.json (batch_size may also come from its config).
REQUIRED_FIELDS = ("variant", "model", "steps", "schedule", "test_error", "wall_seconds")


def load_runs(runs_dir: str) -> list[dict]:
  """Every ``<variant>/<model>/seed<k>/results.json`` under ``runs_dir``, checked by :func:`check_run`."""
  runs = []
  for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "seed*", "results.json"))):
    with open(path) as f:
      try:
        run = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    check_run(path, run)
    run["_path"] = os.path.relpath(path, ROOT)
    runs.append(run)
  return runs


def check_run(path: str, run) -> None:
  """Raises ``ValueError`` naming ``path`` unless ``run`` holds what the report reads, for a paper cell."""
  if not isinstance(run, dict):
    raise ValueError(f"{path}: expected a JSON object, got {type(run).__name__}.")
  missing = [k for k in REQUIRED_FIELDS if k not in run]
  config = run.get("config")
  if "batch_size" not in run and not (isinstance(config, dict) and "batch_size" in config):
    missing.append("batch_size")
  if missing:
    raise ValueError(f"{path}: missing {', '.join(missing)} (not a results.json written by sweep.py?).")
  if run["model"] not in PAPER.get(run["variant"], {}):
    raise ValueError(f"{path}: no paper cell for distortion {run['variant']!r} and model {run['model']!r}.")
  for key in ("test_error", "wall_seconds"):
    if isinstance(run[key], bool) or not isinstance(run[key], (int, float)):
      raise ValueError(f"{path}: {key} must be a number, got {run[key]!r}.")


def _setting(run):
  """``(steps, schedule, batch size, localisation lr multipliers)``.

  The multipliers are ``(localisation net, regression layer)`` for ST models and None for baselines; a
  regression multiplier that is unset (None) follows the localisation net's.
  """
  model = (run.get("config") or {}).get("model") or {}
  loc_lr = None
  if run["model"].startswith("st_"):
    body = model.get("lr_multiplier", 1.0)
    head = model.get("regression_lr_multiplier")
    loc_lr = (body, body if head is None else head)
  return (run["steps"], run["schedule"], run.get("batch_size", run["config"]["batch_size"]), loc_lr)


def _schedule_text(setting):
  """The schedule column: the schedule, plus the localisation lr multipliers when they are not 1."""
  text = setting[1]
  if setting[3] is None or setting[3] == (1.0, 1.0):
    return text
  body, head = setting[3]
  if body == head:
    return f"{text}, loc lr x{body:g}"
  return f"{text}, loc lr x{body:g}, regression lr x{head:g}"


def _hardware(run):
  hw = run.get("hardware", {})
  return f"{hw.get('device_count', '?')}x {hw.get('device_kind', '?')}"


def _fmt_minutes(seconds):
  return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def summarise(runs):
  """``{(variant, model, setting): [runs]}``."""
  groups = collections.defaultdict(list)
  for run in runs:
    groups[(run["variant"], run["model"], _setting(run))].append(run)
  return groups


def _mean_sd(runs):
  errors = [r["test_error"] for r in runs]
  mean = statistics.fmean(errors)
  sd = statistics.stdev(errors) if len(errors) > 1 else None
  return mean, sd


def variant_table(variant, groups) -> list[str]:
  """Markdown lines of one distortion's table."""
  lines = [
    f"### {VARIANT_TITLES[variant]}",
    "",
    f"Paper numbers: {PAPER_SOURCE[variant]} (REFERENCE.md section 2).",
    "",
    "| model | paper | ours (mean ± sd) | seeds | steps | schedule | batch | wall / run | hardware | scale |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for model, paper in PAPER[variant].items():
    settings = sorted((k[2] for k in groups if k[0] == variant and k[1] == model), reverse=True)
    if not settings:
      lines.append(f"| {MODEL_TITLES[model]} | {paper} | not run | | | | | | | |")
    for setting in settings:
      runs = groups[(variant, model, setting)]
      mean, sd = _mean_sd(runs)
      ours = f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
      steps, _, batch, loc_lr = setting
      protocol = dict(zip(("steps", "schedule", "batch_size"), setting[:3], strict=True))
      default_lr = all(x in (None, 1.0) for x in (loc_lr if isinstance(loc_lr, tuple) else (loc_lr,)))
      scale = "paper" if protocol == PAPER_PROTOCOL and default_lr else "**reduced**"
      wall = statistics.fmean(r["wall_seconds"] for r in runs)
      lines.append(
        f"| {MODEL_TITLES[model]} | {paper} | {ours} | {len(runs)} | {steps:,} | {_schedule_text(setting)} | "
        f"{batch} | "
        f"{_fmt_minutes(wall)} | {_hardware(runs[0])} | {scale} |"
      )
  return lines + [""]


def bar_checks(groups) -> list[str]:
  """ST-CNN < CNN and ST-FCN < FCN (mean test error) at equal settings, on RTS and TC.

  Equal settings: the same steps, schedule and batch size; an ST model's localisation lr multiplier (which
  the baseline has not) is shown in the setting.
  """
  lines = []
  for variant in ("rts", "tc"):
    for st_model, base in (("st_cnn_aff", "cnn"), ("st_fcn_aff", "fcn")):
      for key in sorted(k for k in groups if k[0] == variant and k[1] == st_model):
        other = (variant, base, key[2][:3] + (None,))
        if other not in groups:
          continue
        st_err, _ = _mean_sd(groups[key])
        base_err, _ = _mean_sd(groups[other])
        verdict = "yes" if st_err < base_err else "**no**"
        pair = f"{MODEL_TITLES[st_model]} {st_err:.2f} vs {MODEL_TITLES[base]} {base_err:.2f}"
        setting = f"{key[2][0]:,} steps, {_schedule_text(key[2])}, batch {key[2][2]}"
        lines.append(f"| {variant.upper()} | {pair} | {setting} | {verdict} |")
  if not lines:
    return ["No pair of runs at equal settings yet.", ""]
  return ["| distortion | test error % | setting | ST better |", "|---|---|---|---|", *lines, ""]


def render(runs) -> str:
  """The MNIST section of RESULTS.md."""
  groups = summarise(runs)
  out = [
    BEGIN,
    "## Distorted MNIST (paper Table 1 and TC)",
    "",
    "Rebuilt by `python experiments/mnist/report.py` from the `results.json` files in"
    " `experiments/mnist/runs/`; each run was made by `experiments/mnist/sweep.py` (the exact command is in"
    " its results.json). Test error in %, on the fixed 10,000-digit test set of each distortion."
    " **reduced** = not the paper's protocol (150k steps, SGD schedule, batch 256): such numbers are not"
    " comparable to the paper's cell.",
    "",
  ]
  for variant in PAPER:
    out += variant_table(variant, groups)
  out += ["### Bars: spatial transformer vs baseline at equal steps", "", *bar_checks(groups)]
  out.append(END)
  return "\n".join(out) + "\n"


def update(path: str, section: str) -> None:
  """Replaces the marked MNIST section of ``path`` (appending it, or creating the file, if absent)."""
  text = ""
  if os.path.exists(path):
    with open(path) as f:
      text = f.read()
  pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + r"\n?", re.S)
  if pattern.search(text):
    text = pattern.sub(lambda _: section, text)
  else:
    text = (text.rstrip() + "\n\n" if text.strip() else "# Results\n\n") + section
  with open(path, "w") as f:
    f.write(text)


def main(argv):
  del argv
  runs = load_runs(FLAGS.runs_dir)
  if not runs:  # a wrong --runs_dir must not turn every kept row into "not run"
    raise SystemExit(f"no results.json under {FLAGS.runs_dir}; {FLAGS.output} left unchanged.")
  update(FLAGS.output, render(runs))
  print(f"{len(runs)} runs -> {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
