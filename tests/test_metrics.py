"""Metric writers (stn_jax.metrics): every writer keeps its own TensorBoard file, in opening order."""

import os

from stn_jax import metrics


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
