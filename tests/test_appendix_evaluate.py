"""Tests of experiments/appendix/evaluate.py: re-evaluating a finished run on more test examples."""

import importlib.util
import json
import os

import helpers
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PATH = os.path.join(ROOT, "experiments", "appendix", "evaluate.py")
_spec = importlib.util.spec_from_file_location("evaluate", _PATH)
evaluate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate)


@pytest.mark.slow  # trains two steps end to end (~1 min under load)
def test_evaluating_on_the_training_runs_test_set_reproduces_its_error(tmp_path):
  helpers.train_tiny_run(tmp_path, "rts,tiny_cnn", test_size=64)
  recorded = json.loads((tmp_path / "results.json").read_text())["test_error"]
  r = evaluate.evaluate(str(tmp_path), test_size=64, batch=24)  # uneven batches on purpose
  assert r["test_error"] == pytest.approx(recorded, abs=1e-9)
  assert r["test_size"] == 64 and r["steps"] == 2 and r["model"] == "tiny_cnn"
  p = r["test_error"] / 100
  assert r["standard_error"] == pytest.approx(100 * (p * (1 - p) / 64) ** 0.5)
