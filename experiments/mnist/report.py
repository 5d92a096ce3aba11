r"""Rebuilds the distorted-MNIST section of ``experiments/RESULTS.md`` from the kept ``results.json`` files.

  python experiments/mnist/report.py

Reads ``experiments/mnist/runs/<variant>/<model>[_<tag>]/seed<k>/results.json`` (written by ``sweep.py``),
groups runs by cell, setting (steps, schedule, batch size, localisation lr multipliers) and run directory, and
writes one table per distortion: the paper's test error beside our mean (and standard deviation over seeds),
with the number of seeds, steps, schedule, hardware and wall time per run. Runs in one row must agree on
every config field that can change the result (all but the seed and ``stn_jax/rundir.py``'s bookkeeping
fields), and no config may be counted twice for one seed; anything else is refused, naming the files. Rows
that the table's columns cannot tell apart (two run directories at one setting) are labelled with their
directory and the fields in which they differ. A row is labelled 'paper' only when its runs are at the
paper's protocol: 150k steps, the 'paper' schedule, batch 256, default learning-rate factors and every other
recorded config field as ``configs/mnist.py`` ships it (the seed, bookkeeping fields and where the data was
read from may differ); anything else is *reduced*. Below the tables, the issue's bars are checked per setting:
ST-CNN beats CNN and ST-FCN beats FCN at equal steps on RTS and TC.

Only the text between the ``<!-- mnist:begin -->`` and ``<!-- mnist:end -->`` markers is replaced, so other
experiment families can keep their own sections in the same file.
"""

from __future__ import annotations

import collections
import glob
import json
import math
import os
import re
import statistics
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # for configs/ and stn_jax, when run as python experiments/mnist/report.py

from stn_jax import rundir  # noqa: E402

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
REQUIRED_FIELDS = ("variant", "model", "seed", "steps", "schedule", "test_error", "wall_seconds")
# Config fields that may differ between the runs of one row: the seed, and those that cannot change the
# result (stn_jax/rundir.py's, which also binds a run directory to its config).
NOT_PROTOCOL = (*rundir.BOOKKEEPING_FIELDS, "seed")


def load_runs(runs_dir: str) -> list[dict]:
  """Every ``<variant>/<model>[_<tag>]/seed<k>/results.json`` under ``runs_dir``, checked.

  Raises:
    ValueError: naming the file, for a malformed run (:func:`check_run`) or one whose variant, model or seed
      disagree with its path (:func:`check_path`).
  """
  runs = []
  for path in sorted(glob.glob(os.path.join(runs_dir, "*", "*", "seed*", "results.json"))):
    with open(path) as f:
      try:
        run = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    check_run(path, run)
    variant_dir, run_dir, seed_dir = os.path.normpath(path).split(os.sep)[-4:-1]
    check_path(path, run, variant_dir, run_dir, seed_dir)
    run["_path"] = os.path.relpath(path, ROOT)
    run["_run_dir"] = run_dir
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
    if not math.isfinite(run[key]) or run[key] < 0:  # json.load accepts NaN and Infinity
      raise ValueError(f"{path}: {key} must be finite and non-negative, got {run[key]!r}.")
  if run["test_error"] > 100:
    raise ValueError(f"{path}: test_error is a percentage, got {run['test_error']!r} (> 100).")
  if isinstance(run["seed"], bool) or not isinstance(run["seed"], int):
    raise ValueError(f"{path}: seed must be an integer, got {run['seed']!r}.")


def check_path(path: str, run: dict, variant_dir: str, run_dir: str, seed_dir: str) -> None:
  """Raises ``ValueError`` naming ``path`` unless the run is the one its path says (see ``sweep.py``).

  Args:
    path: the results.json file.
    run: its contents, checked by :func:`check_run`.
    variant_dir: the distortion directory; must be the recorded variant.
    run_dir: ``<model>`` or ``<model>_<tag>``, for the recorded model.
    seed_dir: ``seed<k>``, for the recorded seed.
  """
  wrong = []
  if run["variant"] != variant_dir:
    wrong.append(f"variant {run['variant']!r} is not its directory {variant_dir!r}")
  if run_dir != run["model"] and not run_dir.startswith(run["model"] + "_"):
    wrong.append(f"model {run['model']!r} does not name its directory {run_dir!r} (<model> or <model>_<tag>)")
  if seed_dir != f"seed{run['seed']}":
    wrong.append(f"seed {run['seed']!r} is not its directory {seed_dir!r}")
  config = run.get("config") or {}
  recorded = {
    "seed": config.get("seed"),
    "model.name": (config.get("model") or {}).get("name"),
    "data.variant": (config.get("data") or {}).get("variant"),
  }
  for field, top in (("seed", "seed"), ("model.name", "model"), ("data.variant", "variant")):
    if recorded[field] is not None and recorded[field] != run[top]:
      wrong.append(f"config.{field} {recorded[field]!r} is not the recorded {top} {run[top]!r}")
  if wrong:
    raise ValueError(f"{path}: " + "; ".join(wrong) + ".")


def protocol_differences(a: dict, b: dict, *, skip_model=False) -> dict:
  """``{field: (a's value, b's value)}`` for the config fields that can change the result and differ.

  Only fields both runs record are compared: a field the config gained later is absent from older runs (as in
  ``stn_jax/rundir.py``). ``skip_model`` leaves out ``model.*`` (which a baseline and an ST model differ in).
  """
  changed, _ = rundir.differences(a.get("config") or {}, b.get("config") or {}, ignore=NOT_PROTOCOL)
  return {k: v for k, v in changed.items() if not (skip_model and k.startswith("model."))}


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


# Config fields that say where the data was read from, not what it is (the MNIST bytes are checked on load).
DATA_LOCATION = ("data.source", "data.data_dir")


def paper_config_differences(run) -> dict:
  """``{field: (run's value, paper's)}`` where ``run``'s config departs from the paper protocol's.

  The reference is ``configs/mnist.py:<variant>,<model>`` as shipped (150k steps, the 'paper' schedule,
  batch 256, the full test set, default learning rates); the seed, bookkeeping fields and the data's location
  may differ. Only fields the run records are compared (as :func:`protocol_differences`).
  """
  from configs import mnist as mnist_configs  # noqa: PLC0415 (ml_collections only, no JAX)

  paper = {"config": mnist_configs.get_config(f"{run['variant']},{run['model']}").to_dict()}
  diff = protocol_differences(run, paper)
  return {k: v for k, v in diff.items() if k not in DATA_LOCATION}


def _schedule_text(setting):
  """The schedule column: the schedule, plus the localisation lr multipliers when they are not 1."""
  text = setting[1]
  if setting[3] is None or setting[3] == (1.0, 1.0):
    return text
  body, head = setting[3]
  if body == head:
    return f"{text}, loc lr x{body:g}"
  return f"{text}, loc lr x{body:g}, regression lr x{head:g}"


def _hardware(runs):
  """Every distinct hardware of ``runs`` (with its number of runs when there are several kinds)."""
  counts = collections.Counter()  # keeps the order of first appearance
  for run in runs:
    hw = run.get("hardware") or {}
    counts[f"{hw.get('device_count', '?')}x {hw.get('device_kind', '?')}"] += 1
  if len(counts) == 1:
    return next(iter(counts))
  return ", ".join(f"{kind} ({n} run{'s' if n > 1 else ''})" for kind, n in counts.items())


def _fmt_minutes(seconds):
  return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def summarise(runs):
  """``{(variant, model, setting, run directory): [runs]}``, one table row each.

  Raises:
    ValueError: naming the files, when the runs of a row differ in a field that can change the result, or
      when two files hold the same config and seed (they would be counted twice).
  """
  groups = collections.defaultdict(list)
  for run in runs:
    groups[(run["variant"], run["model"], _setting(run), run.get("_run_dir", run["model"]))].append(run)
  conflicts = []
  for rows in groups.values():
    for other in rows[1:]:
      diff = protocol_differences(rows[0], other)
      if diff:
        fields = ", ".join(f"{k} {va!r} vs {vb!r}" for k, (va, vb) in diff.items())
        conflicts.append(f"{_where(rows[0])} and {_where(other)} differ in {fields}")
  if conflicts:
    raise ValueError(
      "runs kept in one directory at one setting differ in what they ran, so they cannot share a row: "
      + "; ".join(conflicts)
      + ". Keep each setting in its own <model>_<tag> directory (sweep.py --tag)."
    )
  by_seed = collections.defaultdict(list)
  for run in runs:
    by_seed[(run["variant"], run["model"], _setting(run), run["seed"])].append(run)
  duplicates = []
  for same in by_seed.values():
    for i, a in enumerate(same):
      duplicates += [f"{_where(a)} and {_where(b)}" for b in same[i + 1 :] if not protocol_differences(a, b)]
  if duplicates:
    raise ValueError(
      "the same config and seed are kept twice, and would be counted twice: "
      + "; ".join(duplicates)
      + ". Remove one of each pair."
    )
  return groups


def _where(run):
  """The file a run came from, for messages."""
  return run.get("_path", f"{run['variant']}/{run['model']}/seed{run['seed']}")


def _label(groups, key):
  """The model column of row ``key``.

  Its title, plus its run directory and the fields in which it differs when another row of the same model has
  the same setting (the other columns then cannot tell the two apart).
  """
  twins = [k for k in groups if k[:3] == key[:3] and k != key]
  if not twins:
    return MODEL_TITLES[key[1]]
  own = groups[key][0]
  diff = {}
  for twin in twins:
    diff.update({k: va for k, (va, _) in protocol_differences(own, groups[twin][0]).items()})
  fields = "".join(f", {k}={v}" for k, v in sorted(diff.items()))
  return f"{MODEL_TITLES[key[1]]} (`{key[3]}/`{fields})"


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
    keys = sorted((k for k in groups if k[0] == variant and k[1] == model), key=lambda k: k[2:], reverse=True)
    if not keys:
      lines.append(f"| {MODEL_TITLES[model]} | {paper} | not run | | | | | | | |")
    for key in keys:
      runs, setting = groups[key], key[2]
      mean, sd = _mean_sd(runs)
      ours = f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
      steps, _, batch, loc_lr = setting
      protocol = dict(zip(("steps", "schedule", "batch_size"), setting[:3], strict=True))
      default_lr = all(x in (None, 1.0) for x in (loc_lr if isinstance(loc_lr, tuple) else (loc_lr,)))
      # Also every other recorded config field (test set size, learning rate, widths, ...) as the paper's.
      at_paper = protocol == PAPER_PROTOCOL and default_lr
      at_paper = at_paper and not any(paper_config_differences(run) for run in runs)
      scale = "paper" if at_paper else "**reduced**"
      wall = statistics.fmean(r["wall_seconds"] for r in runs)
      lines.append(
        f"| {_label(groups, key)} | {paper} | {ours} | {len(runs)} | {steps:,} | {_schedule_text(setting)} | "
        f"{batch} | "
        f"{_fmt_minutes(wall)} | {_hardware(runs)} | {scale} |"
      )
  return lines + [""]


def bar_checks(groups) -> list[str]:
  """ST-CNN < CNN and ST-FCN < FCN (mean test error) at equal settings, on RTS and TC.

  Equal settings: the same steps, schedule and batch size, and no difference outside the models' own fields
  (``model.*``); an ST model's localisation lr multiplier (which the baseline has not) is shown in the
  setting.
  """
  lines = []
  for variant in ("rts", "tc"):
    for st_model, base in (("st_cnn_aff", "cnn"), ("st_fcn_aff", "fcn")):
      for key in sorted(k for k in groups if k[0] == variant and k[1] == st_model):
        for other in sorted(k for k in groups if k[:3] == (variant, base, key[2][:3] + (None,))):
          if protocol_differences(groups[key][0], groups[other][0], skip_model=True):
            continue
          st_err, _ = _mean_sd(groups[key])
          base_err, _ = _mean_sd(groups[other])
          verdict = "yes" if st_err < base_err else "**no**"
          pair = f"{_label(groups, key)} {st_err:.2f} vs {_label(groups, other)} {base_err:.2f}"
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
    " **reduced** = not the paper's protocol (150k steps, SGD schedule, batch 256, every other config field"
    " as shipped): such numbers are not comparable to the paper's cell.",
    "",
  ]
  for variant in PAPER:
    out += variant_table(variant, groups)
  out += ["### Bars: spatial transformer vs baseline at equal steps", "", *bar_checks(groups)]
  out.append(END)
  return "\n".join(out) + "\n"


def update(path: str, section: str) -> None:
  """Replaces the marked MNIST section of ``path`` (appending it, or creating the file, if absent).

  Raises:
    ValueError: when ``path`` has a begin or end marker without the other, or more than one of either (the
      file is left as it is: which text is ours to replace is then unclear).
  """
  text = ""
  if os.path.exists(path):
    with open(path) as f:
      text = f.read()
  begins, ends = text.count(BEGIN), text.count(END)
  if begins or ends:
    if begins != 1 or ends != 1 or text.index(BEGIN) > text.index(END):
      raise ValueError(
        f"{path}: expected one {BEGIN} line followed by one {END} line, found {begins} begin and {ends} end "
        "marker(s); mend the markers by hand."
      )
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + r"\n?", re.S)
    text = pattern.sub(lambda _: section, text)
  else:
    text = (text.rstrip() + "\n\n" if text.strip() else "# Results\n\n") + section
  # Written beside the page and renamed over it, so that an interrupted write cannot leave half a page.
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def main(argv):
  del argv
  try:
    runs = load_runs(FLAGS.runs_dir)
    if not runs:  # a wrong --runs_dir must not turn every kept row into "not run"
      raise ValueError(f"no results.json under {FLAGS.runs_dir}.")
    update(FLAGS.output, render(runs))
  except ValueError as e:
    raise SystemExit(f"report.py: {e} {FLAGS.output} left unchanged.") from None
  print(f"{len(runs)} runs -> {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
