"""Orbax checkpointing behind a small interface, so an orbax API change touches this file only.

A checkpoint holds the train state (a pytree of arrays: parameters, optimizer state, step) and a small JSON
dict of metadata (e.g. the wall time spent so far). Saves are asynchronous; ``wait()`` blocks until the last
one is on disk. Only complete checkpoints are listed, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory/<step>/``."""

  def __init__(self, directory: str, *, max_to_keep: int | None = 2):
    """Opens (creating if needed) a checkpoint directory.

    Args:
      directory: where checkpoints live.
      max_to_keep: how many of the newest checkpoints to keep (None = all).
    """
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", "meta"),
    )

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of every complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, meta: dict | None = None) -> None:
    """Starts saving ``state`` (pytree of arrays) and ``meta`` (JSON-able dict) as checkpoint ``step``."""
    self._manager.save(
      int(step),
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}))),
    )

  def restore(self, state_like, step: int | None = None):
    """Restores checkpoint ``step`` (default: the newest).

    Args:
      state_like: a pytree with the structure, shapes, dtypes and shardings to restore into (concrete arrays
        or ``jax.ShapeDtypeStruct``s); None restores the saved tree as it is (for inspection).
      step: which checkpoint.

    Returns:
      ``(state, meta)``.
    """
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}.")
    abstract = None if state_like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    out = self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    )
    return out["state"], dict(out["meta"] or {})

  def wait(self) -> None:
    """Blocks until pending saves are written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases resources."""
    self._manager.wait_until_finished()
    self._manager.close()
