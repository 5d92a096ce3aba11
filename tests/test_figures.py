"""Run-comparison curves: reading evaluations from metrics.jsonl and drawing them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stn_jax import figures, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_run(workdir, evals, *, with_wall=True):
  writer = metrics.MetricWriter(str(workdir), tensorboard=False)
  writer.write(50, {"train/loss": 1.0, "wall_seconds": 5.0})
  for step, error, wall in evals:
    record = {"eval/test_error": error} | ({"eval/wall_seconds": wall} if with_wall else {})
    writer.write(step, record)
  writer.close()
  return os.path.join(str(workdir), "metrics.jsonl")


def test_test_error_curves_reads_steps_errors_and_walls(tmp_path):
  path = _write_run(tmp_path, [(100, 40.0, 10.0), (200, 20.0, 21.5)])
  assert figures.test_error_curves(path) == ([100, 200], [40.0, 20.0], [10.0, 21.5])
  old = _write_run(tmp_path / "old", [(100, 40.0, None)], with_wall=False)
  assert figures.test_error_curves(old) == ([100], [40.0], [None])


def test_test_error_curves_rejects_a_run_without_evaluations(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(50, {"train/loss": 1.0})
  writer.close()
  with pytest.raises(ValueError, match="no evaluation"):
    figures.test_error_curves(os.path.join(str(tmp_path), "metrics.jsonl"))


def test_compare_runs_cli_prints_the_table_and_writes_the_figure(tmp_path):
  _write_run(tmp_path / "a", [(100, 40.0, 10.0), (200, 20.0, 21.5)])
  _write_run(tmp_path / "b", [(200, 30.0, None)], with_wall=False)
  out = str(tmp_path / "curves.png")
  script = os.path.join(ROOT, "experiments", "compare_runs.py")
  runs = [f"fast model={tmp_path / 'a'}", f"old={tmp_path / 'b' / 'metrics.jsonl'}"]
  done = subprocess.run([sys.executable, script, *runs, f"--out={out}"], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert "| fast model | 200 | 22 | 20.00 |" in done.stdout and "| old | 200 | - | 30.00 |" in done.stdout
  assert os.path.getsize(out) > 0
  bad = subprocess.run([sys.executable, script, "nolabel", f"--out={out}"], capture_output=True, text=True)
  assert bad.returncode != 0 and "LABEL=PATH" in bad.stderr
