"""Tests of experiments/appendix/evaluate.py: re-evaluating a finished run on more test examples."""

import importlib.util
import json
import os
import subprocess
import sys

import helpers
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import mnist as mnist_configs
from stn_jax import checkpoint, data, layers, models, train_config

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


def _checkpointed_run(workdir, *, step: int, total_steps: int) -> None:
  """A run directory whose newest checkpoint is ``step`` of ``total_steps`` (untrained, no training)."""
  config = mnist_configs.get_config("r,tiny_cnn")
  config.total_steps, config.data.test_size = total_steps, 8
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  task = data.get_task(config.data)
  model = models.create_model(
    config.model, input_shape=task.input_shape, num_classes=task.num_classes, rngs=nnx.Rngs(0)
  )
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  tx = train_config.make_optimizer(config, layers.lr_multipliers(model), train_config.num_steps(config))
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  ckpt.save(step, {"step": jnp.asarray(step, jnp.int32), "params": params, "opt_state": tx.init(params)})
  ckpt.close()


def test_the_step_reported_is_the_restored_checkpoints_not_the_configs(tmp_path):
  # An interrupted run (or one whose last checkpoint was not kept): its config says 50 steps, its newest
  # checkpoint is step 3, and that is what gets evaluated.
  _checkpointed_run(tmp_path, step=3, total_steps=50)
  r = evaluate.evaluate(str(tmp_path), test_size=8, batch=8)
  assert r["steps"] == 3 and r["test_size"] == 8 and r["model"] == "tiny_cnn"


def test_a_directory_without_checkpoints_is_an_error_and_is_not_changed(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(ValueError, match="no checkpoints/ directory"):
    evaluate.evaluate(str(tmp_path), test_size=8)
  assert os.listdir(tmp_path) == ["config.json"]


def test_runs_from_the_repo_root_without_pythonpath():
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run(
    [sys.executable, _PATH, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr
  assert "--test_size" in proc.stdout
