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
import os
import re
import statistics
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments", "mnist"))  # for report_runs, also when loaded by path
sys.path.insert(0, ROOT)  # for configs/ and stn_jax, when run as python experiments/mnist/report.py

import report_runs  # noqa: E402

BEGIN, END = "<!-- mnist:begin -->", "<!-- mnist:end -->"

# The heading of each distortion's table and the model column's names.
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

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "runs_dir", os.path.join(ROOT, "experiments", "mnist", "runs"), "Kept results.json files."
)
flags.DEFINE_string("output", os.path.join(ROOT, "experiments", "RESULTS.md"), "The results page to update.")


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
    diff.update({k: va for k, (va, _) in report_runs.protocol_differences(own, groups[twin][0]).items()})
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
    f"Paper numbers: {report_runs.PAPER_SOURCE[variant]} (REFERENCE.md section 2).",
    "",
    "| model | paper | ours (mean ± sd) | seeds | steps | schedule | batch | wall / run | hardware | scale |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for model, paper in report_runs.PAPER[variant].items():
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
      at_paper = protocol == report_runs.PAPER_PROTOCOL and default_lr
      at_paper = at_paper and not any(report_runs.paper_config_differences(run) for run in runs)
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
          if report_runs.protocol_differences(groups[key][0], groups[other][0], skip_model=True):
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
  groups = report_runs.summarise(runs)
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
  for variant in report_runs.PAPER:
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
    runs = report_runs.load_runs(FLAGS.runs_dir)
    if not runs:  # a wrong --runs_dir must not turn every kept row into "not run"
      raise ValueError(f"no results.json under {FLAGS.runs_dir}.")
    update(FLAGS.output, render(runs))
  except ValueError as e:
    raise SystemExit(f"report.py: {e} {FLAGS.output} left unchanged.") from None
  print(f"{len(runs)} runs -> {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
