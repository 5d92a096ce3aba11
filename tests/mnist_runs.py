"""Synthetic distorted-MNIST runs for the tests of experiments/mnist/{report,sweep}.py (not a test module).

``write`` puts a ``results.json`` where ``sweep.py`` keeps one; ``load_report`` loads ``report.py`` from its
path. Both scripts define a ``--runs_dir`` flag on absl's global flags, so only ``report.py`` is imported into
the test process; ``sweep.py`` runs as the command a user types.
"""

import functools
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "experiments", "mnist", "report.py")
SWEEP = os.path.join(ROOT, "experiments", "mnist", "sweep.py")


@functools.cache
def load_report():
  """``experiments/mnist/report.py`` as the module ``mnist_report``, loaded once.

  Its ``report_runs`` attribute is the module that reads, checks and groups the runs.
  """
  spec = importlib.util.spec_from_file_location("mnist_report", REPORT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def write(
  runs_dir, variant, model, seed, error, *, steps=600, schedule="fast", batch=128, wall=60.0, loc_lr=1.0,
  regression_lr=None, tag="", device="cpu", **config,
):  # fmt: skip
  """A results.json with the fields train.py and sweep.py write that the report reads; returns its path.

  ``config`` holds further config fields (``data={"test_size": 1000}``, ``learning_rate=0.003``).
  """
  path = os.path.join(runs_dir, variant, f"{model}_{tag}" if tag else model, f"seed{seed}", "results.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  run = {
    "test_error": error,
    "steps": steps,
    "seed": seed,
    "variant": variant,
    "model": model,
    "schedule": schedule,
    "batch_size": batch,
    "wall_seconds": wall,
    "hardware": {"device_count": 1, "device_kind": device},
    "config": {"batch_size": batch, "model": {"name": model}, **config},
  }
  if model.startswith("st_"):
    run["config"]["model"]["lr_multiplier"] = loc_lr
    if regression_lr is not None:
      run["config"]["model"]["regression_lr_multiplier"] = regression_lr
  with open(path, "w") as f:
    json.dump(run, f)
  return path


def rows(section, title):
  """The table rows of the section that start with ``| <title> |``."""
  return [line for line in section.splitlines() if line.startswith(f"| {title} |")]
