"""Tests of the orbax checkpoint wrapper: round trip of a train state, newest-step bookkeeping, errors."""

import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stn_jax import checkpoint


def _state(scale=1.0):
  params = {
    "layers": {0: {"kernel": scale * jnp.ones((3, 2))}, 1: {"bias": jnp.arange(2.0)}},
    "b": jnp.zeros(4),
  }
  tx = optax.chain(optax.sgd(0.1, momentum=0.9), optax.scale(0.5))
  return {"step": jnp.asarray(7, jnp.int32), "params": params, "opt_state": tx.init(params)}


def test_round_trip_keeps_structure_values_and_meta(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() is None
  state = _state(2.0)
  ckpt.save(7, state, {"wall_seconds": 12.5})
  ckpt.wait()
  restored, meta = ckpt.restore(_state(0.0))
  assert meta == {"wall_seconds": 12.5}
  assert jax.tree.structure(restored) == jax.tree.structure(state)  # int dict keys and optax tuples survive
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert restored["step"].dtype == jnp.int32
  raw, _ = ckpt.restore(None)  # no template: plain arrays
  np.testing.assert_array_equal(np.asarray(raw["params"]["b"]), np.zeros(4))
  ckpt.close()


def test_newest_steps_are_kept(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(float(step)))
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
  restored, _ = ckpt.restore(_state(), step=2)
  np.testing.assert_array_equal(restored["params"]["layers"][0]["kernel"], 2.0 * np.ones((3, 2)))
  ckpt.close()
  # A new Checkpointer on the same directory (a restarted run) sees them.
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 3


def test_restore_without_checkpoint_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    checkpoint.Checkpointer(str(tmp_path)).restore(_state())


def test_an_unfinished_save_is_ignored_with_a_warning_and_replaced(tmp_path, caplog):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(3, _state(3.0))
  ckpt.close()
  (tmp_path / "6.orbax-checkpoint-tmp" / "state").mkdir(parents=True)  # what a kill mid-save leaves
  with caplog.at_level(logging.WARNING):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert "unfinished checkpoint(s) ['6.orbax-checkpoint-tmp']" in caplog.text and "step 3" in caplog.text
  assert ckpt.all_steps() == [3]
  ckpt.save(6, _state(6.0))  # the resumed run saves that step again
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == ["3", "6"]


@pytest.mark.parametrize("damage", ["truncate_array_file", "empty_metadata"])
def test_a_damaged_checkpoint_names_itself_and_the_previous_one(tmp_path, damage):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  for step in (3, 6):
    ckpt.save(step, _state(float(step)))
  ckpt.close()
  if damage == "empty_metadata":
    (tmp_path / "6" / "state" / "_METADATA").write_text("")
  else:
    for path in (tmp_path / "6" / "state").rglob("*"):
      if path.is_file() and path.parent.name == "d":  # the array data
        os.truncate(path, path.stat().st_size // 2)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 6  # the damage is in the files, not in the listing
  with pytest.raises(checkpoint.CheckpointError, match=rf"{tmp_path}/6 cannot be read .*resume from step 3"):
    ckpt.restore(_state())
  restored, _ = ckpt.restore(_state(), step=3)
  np.testing.assert_array_equal(restored["params"]["b"], np.zeros(4))
  with pytest.raises(FileNotFoundError, match="no checkpoint of step 4"):
    ckpt.restore(_state(), step=4)


def test_a_disk_too_full_for_the_checkpoints_is_refused_up_front(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  state = _state()
  size = 1.25 * sum(x.nbytes for x in jax.tree.leaves(state))  # the estimate of one checkpoint on disk
  usage = lambda free: lambda path: shutil._ntuple_diskusage(int(10 * size), int(10 * size - free), int(free))  # noqa: SLF001
  monkeypatch.setattr(shutil, "disk_usage", usage(3 * size))
  ckpt.check_free_space(state, num_saves=100)  # at most 3 on disk at once: the 2 kept and the one being saved
  ckpt.check_free_space(state, num_saves=0)
  monkeypatch.setattr(shutil, "disk_usage", usage(2 * size))
  ckpt.check_free_space(state, num_saves=2)
  with pytest.raises(OSError, match="MiB free, but 3 checkpoint"):
    ckpt.check_free_space(state, num_saves=100)
