"""Tests of the smaller experiment scripts: appendix figures and reruns, run comparison, distortion figure.

Each script is loaded from its path (``experiments/`` is not a package) or run as the command a user types,
on tiny fake inputs in a temporary directory; nothing here trains.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(*path):
  spec = importlib.util.spec_from_file_location(os.path.splitext(path[-1])[0], os.path.join(ROOT, *path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# ---------------------------------------------------------------------------------- appendix/figures.py


def test_figures_refuses_a_run_of_another_experiment_and_runs_without_pythonpath(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"data": {"name": "volume3d"}, "model": {"name": "x"}}))
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # run as documented, from the repo root
  script = os.path.join(ROOT, "experiments", "appendix", "figures.py")
  args = [sys.executable, script, "addition", str(tmp_path), str(tmp_path / "out.png")]
  proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 2, proc.stderr
  assert f"{tmp_path} is a 'volume3d' run (data.name in its config.json), not 'addition'" in proc.stderr
  assert not (tmp_path / "out.png").exists()


# ------------------------------------------------------------------------------ appendix/run_reduced.py


@pytest.fixture
def run_reduced(monkeypatch):
  """The script's module, its ``run`` replaced by a recorder (nothing trains)."""
  module = _load("experiments", "appendix", "run_reduced.py")
  calls = []

  def fake_run(experiment, model, scratch, extra, tag="", runs_dir=module.RUNS_DIR):
    calls.append((experiment, model, tag, runs_dir))
    return {"test_error": 1.0, "steps": 1, "wall_seconds": 1.0}

  monkeypatch.setattr(module, "run", fake_run)
  module.calls = calls
  return module


def test_run_reduced_refuses_to_replace_a_kept_result_without_force(
  run_reduced, tmp_path, monkeypatch, capsys
):
  kept = tmp_path / "addition" / "fcn_24k" / "results.json"
  kept.parent.mkdir(parents=True)
  kept.write_text('{"test_error": 66.0}')
  argv = ["run_reduced.py", "addition", "st_fcn_aff", "fcn", "--tag=24k", f"--runs_dir={tmp_path}"]
  monkeypatch.setattr(sys, "argv", argv)
  with pytest.raises(SystemExit) as info:
    run_reduced.main()
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "rerun with --force to replace them" in err and str(kept) in err
  assert run_reduced.calls == []  # refused before the first model (st_fcn_aff, not kept) trains
  assert kept.read_text() == '{"test_error": 66.0}'

  monkeypatch.setattr(sys, "argv", [*argv, "--force"])
  run_reduced.main()
  assert run_reduced.calls == [
    ("addition", "st_fcn_aff", "24k", str(tmp_path)),
    ("addition", "fcn", "24k", str(tmp_path)),
  ]


def test_run_reduced_keeps_results_under_runs_dir(run_reduced, tmp_path):
  assert run_reduced.kept_dir(str(tmp_path), "volume3d", "st_cnn", "1000steps") == os.path.join(
    str(tmp_path), "volume3d", "st_cnn_1000steps"
  )
  assert run_reduced.kept_dir(run_reduced.RUNS_DIR, "addition", "fcn") == os.path.join(
    ROOT, "experiments", "appendix", "runs", "addition", "fcn"
  )


# ------------------------------------------------------------------------------------- compare_runs.py


def test_compare_runs_refuses_a_label_given_twice(tmp_path, monkeypatch, capsys):
  compare_runs = _load("experiments", "compare_runs.py")
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "metrics.jsonl").write_text('{"step": 10, "eval/test_error": 50.0}\n')
  out = tmp_path / "curves.png"
  args = ["compare_runs.py", f"CNN={tmp_path / 'a'}", f"CNN={tmp_path / 'b'}", f"--out={out}"]
  monkeypatch.setattr(sys, "argv", args)
  with pytest.raises(SystemExit) as info:
    compare_runs.main()
  assert info.value.code == 2
  assert "label 'CNN' given twice" in capsys.readouterr().err
  assert not out.exists()


# ------------------------------------------------------------------------------ mnist/plot_distortions.py


def test_plot_distortions_draws_a_single_column(tmp_path, monkeypatch):
  plot_distortions = _load("experiments", "mnist", "plot_distortions.py")
  distortions = plot_distortions.distortions

  def blank_test_set(variant, seed, num):  # the layout is under test, not the distortions (10 s to make)
    side = distortions.VARIANTS[variant]
    return np.zeros((num, side, side, 1), np.float32), np.zeros((num,), np.int32)

  monkeypatch.setattr(distortions, "test_set", blank_test_set)
  out = tmp_path / "figs" / "one_column.png"
  plot_distortions.plot(out, cols=1)
  assert out.stat().st_size > 0
