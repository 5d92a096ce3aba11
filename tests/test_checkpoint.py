"""Tests of the orbax checkpoint wrapper: round trip of a train state, newest-step bookkeeping, errors."""

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
