"""The runs behind ``report.py``'s tables: the paper's cells, and the kept ``results.json`` files, checked.

``load_runs`` reads ``<variant>/<model>[_<tag>]/seed<k>/results.json`` under a runs directory, refusing (and
naming the file) a malformed run or one that is not the run its path says; ``summarise`` groups the runs into
table rows, refusing runs of one row that differ in what they ran and a config and seed kept twice;
``paper_config_differences`` says where a run departs from the paper's protocol. The tables and the page are
``report.py``'s, which puts the repository root on ``sys.path`` (for ``stn_jax`` and ``configs/``) before it
imports this module.
"""

from __future__ import annotations

import collections
import glob
import json
import math
import os

from stn_jax import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
PAPER_PROTOCOL = {"steps": 150_000, "schedule": "paper", "batch_size": 256}


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
