"""Metric writers (stn_jax.metrics) and what the training loop leaves in them across reruns.

TensorBoard and ``metrics.jsonl`` must show the same points, one per step and scalar, however a run was
interrupted or re-evaluated (read back with ``helpers.tensorboard_steps``, which applies TensorBoard's rule
for restarts).
"""

import json
import os
import shutil

import helpers
import pytest

from configs import mnist as mnist_configs
from stn_jax import metrics, train


def test_writers_opened_within_one_second_keep_their_own_event_files(tmp_path):
  for step in range(3):  # a quick rerun opens its writer in the same second as the run before it
    writer = metrics.MetricWriter(str(tmp_path), purge_step=step)
    writer.write(step, {"train/loss": float(step)})
    writer.close()
  names = sorted(os.listdir(tmp_path / "tensorboard"))
  assert len(names) == 3
  opened = [int(name.rsplit(".", 1)[1]) for name in names]  # the nanosecond suffix
  assert opened == sorted(opened) and len(set(opened)) == 3
  assert len(metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))["train/loss"]) == 3


def test_write_tensorboard_leaves_metrics_jsonl_alone(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write(1, {"train/loss": 2.0})
  writer.write_tensorboard(2, {"train/loss": 1.0})
  writer.close()
  assert metrics.read_jsonl(str(tmp_path / "metrics.jsonl")) == {"train/loss": [(1, 2.0)]}
  assert helpers.tensorboard_steps(str(tmp_path)) == {"train/loss": [1, 2]}


def test_truncate_keeps_what_is_asked_and_drops_a_line_cut_short(tmp_path):
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in (1, 2, 3)]
  path.write_text("\n".join(lines) + '\n{"step": 4, "train/lo')
  assert metrics.truncate(str(path), lambda r: r["step"] != 2) == 2
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 3]


def _config():
  config = mnist_configs.get_config("e,tiny_fcn")
  config.update(
    batch_size=32, total_steps=4, schedule="fast", warmup_steps=0, log_every=2, eval_every=2,
    checkpoint_every=2, eval_batch_size=64, num_figure_examples=0,
  )  # fmt: skip
  config.data.test_size = 96
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 4-step run (train and eval records at steps 2 and 4), copied by each test that changes it."""
  workdir = str(tmp_path_factory.mktemp("finished"))
  results = train.train_and_evaluate(_config(), workdir)
  expected = {"train/loss": [2, 4], "eval/test_error": [2, 4]}
  assert {k: v for k, v in helpers.tensorboard_steps(workdir).items() if k in expected} == expected
  return workdir, results


def _copy(finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished[0], workdir)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    f.write("{")  # unreadable: a rerun evaluates the final checkpoint again
  return workdir


def test_a_redone_final_evaluation_leaves_one_tensorboard_point_per_step(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  again = train.train_and_evaluate(_config(), workdir)
  assert again["resumed_from_step"] == 4 and again["test_loss"] == finished[1]["test_loss"]
  assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 2
  assert helpers.records(workdir) == [(2, "train"), (2, "eval"), (4, "train"), (4, "eval")]
  # TensorBoard shows every scalar of metrics.jsonl once per step, the last step's training scalars included.
  assert helpers.tensorboard_steps(workdir) == helpers.jsonl_steps(workdir)


def test_a_kill_while_the_rerun_opens_its_writers_loses_no_record(finished, tmp_path, monkeypatch):
  workdir = _copy(finished, tmp_path)
  opened = metrics.MetricWriter.__init__

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # stands for a SIGKILL after metrics.jsonl was truncated

  monkeypatch.setattr(metrics.MetricWriter, "__init__", killed)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(_config(), workdir)
  # Only the redone evaluation's record went.
  assert helpers.records(workdir) == [(2, "train"), (2, "eval"), (4, "train")]
  monkeypatch.setattr(metrics.MetricWriter, "__init__", opened)
  train.train_and_evaluate(_config(), workdir)
  assert helpers.records(workdir) == [(2, "train"), (2, "eval"), (4, "train"), (4, "eval")]
  assert helpers.tensorboard_steps(workdir) == helpers.jsonl_steps(workdir)


def test_a_lost_metrics_jsonl_keeps_the_last_training_points_in_tensorboard(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  os.remove(os.path.join(workdir, "metrics.jsonl"))
  train.train_and_evaluate(_config(), workdir)
  assert helpers.records(workdir) == [(4, "eval")]
  shown = helpers.tensorboard_steps(workdir)
  assert shown["train/loss"] == [2, 4]  # nothing to replay them from: the old points stay visible
  assert shown["eval/test_error"] == [2, 4, 4]  # so the old evaluation point stays beside the new one
