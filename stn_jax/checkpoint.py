"""Orbax checkpointing behind a small interface, so an orbax API change touches this file only.

A checkpoint holds the train state (a pytree of arrays: parameters, optimizer state, step) and a small JSON
dict of metadata (e.g. the wall time spent so far). Saves are asynchronous; ``wait()`` blocks until the last
one is on disk. Orbax writes each checkpoint under a temporary name and renames it when complete, so only
complete checkpoints are listed: a run killed mid-save resumes from the previous one (the unfinished one is
named in a warning, and replaced when that step is saved again).

A listed checkpoint that cannot be read (a file damaged after the save, or one written by other code) raises
:class:`CheckpointError` naming its directory and the previous checkpoint. There is no silent fall-back to an
older checkpoint: damage on disk is worth a look, and deleting the named directory resumes from the previous
one.
"""

from __future__ import annotations

import errno
import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

# Orbax's suffix for a checkpoint being written (``<step>.orbax-checkpoint-tmp...``).
_UNFINISHED = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
  """A listed checkpoint that cannot be restored."""


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory/<step>/``."""

  def __init__(self, directory: str, *, max_to_keep: int | None = 2):
    """Opens (creating if needed) a checkpoint directory.

    Args:
      directory: where checkpoints live.
      max_to_keep: how many of the newest checkpoints to keep (None = all).
    """
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", "meta"),
    )
    unfinished = sorted(name for name in os.listdir(self.directory) if _UNFINISHED in name)
    if unfinished:
      logging.warning(
        "Ignoring unfinished checkpoint(s) %s in %s (a save cut short, e.g. by a kill); the newest complete "
        "checkpoint is step %s.",
        unfinished,
        self.directory,
        self.latest_step(),
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
    if step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory} (has {self.all_steps()}).")
    abstract = None if state_like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    try:
      out = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
      )
    except (MemoryError, jax.errors.JaxRuntimeError):
      raise  # out of (device) memory says nothing about the files
    except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many types; all mean "unreadable")
      path = os.path.join(self.directory, str(step))
      earlier = [s for s in self.all_steps() if s < step]
      then = f"resume from step {earlier[-1]}, the previous checkpoint" if earlier else "start over"
      cause = e
      while cause.__cause__ is not None:  # the innermost error names the file (orbax wraps tensorstore's)
        cause = cause.__cause__
      reason = (str(cause).strip().splitlines() or [""])[0][:200]
      raise CheckpointError(
        f"checkpoint {path} cannot be read ({type(cause).__name__}: {reason}): its files are damaged, or it "
        "was written by other code (a changed model or optimizer: then run that code, or use a new "
        f"--workdir). If the files are damaged, delete that directory to {then}."
      ) from e
    return out["state"], dict(out["meta"] or {})

  def check_free_space(self, state, num_saves: int) -> None:
    """Raises ``OSError`` (ENOSPC) now if the disk cannot hold the checkpoints still to be written.

    A full disk would otherwise surface at a save hours into the run. A save writes the new checkpoint before
    deleting the oldest, so up to ``max_to_keep + 1`` are on disk at once.

    Args:
      state: the pytree that will be saved (its array sizes estimate a checkpoint's size).
      num_saves: how many saves the run still makes.
    """
    # On disk a checkpoint was up to ~20% larger than its arrays (metadata; tiny test models) and ~5% smaller
    # for the addition CNN: 25% over the arrays is a safe estimate.
    size = 1.25 * sum(int(x.nbytes) for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))
    keep = self.max_to_keep
    count = num_saves if keep is None else min(num_saves, max(keep + 1 - len(self.all_steps()), 1))
    free = shutil.disk_usage(self.directory).free
    if count > 0 and free < count * size:
      raise OSError(
        errno.ENOSPC,
        f"{self.directory} has {free / 2**20:.1f} MiB free, but {count} checkpoint(s) of "
        f"{size / 2**20:.1f} MiB are still to be written; free some space or use another --workdir",
      )

  def wait(self) -> None:
    """Blocks until pending saves are written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases resources."""
    self._manager.wait_until_finished()
    self._manager.close()
