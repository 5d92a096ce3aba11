"""What stops a training run safely: stop requests from signals, and non-finite losses or parameters.

A run stopped by either keeps its last good checkpoint and says so; rerunning the same command resumes from
it (:mod:`stn_jax.train`).
"""

from __future__ import annotations

import contextlib
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging


class Interrupted(KeyboardInterrupt):
  """The run stopped on SIGINT or SIGTERM after saving a checkpoint; the same command resumes it.

  A ``KeyboardInterrupt``, so that code catching ``Exception`` (e.g. to go on with a sweep's next run) stops.
  """

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


@contextlib.contextmanager
def stop_requests():
  """Turns the first SIGINT / SIGTERM into a request (the yielded list gets the signal number) that the loop
  honours after its current step; a second signal raises :class:`Interrupted` at once (no checkpoint).

  A signal the launcher set to be ignored stays ignored, as Python itself leaves it: a job started with ``&``
  from a script ignores SIGINT (stop it with SIGTERM), one under ``nohup`` ignores SIGHUP.
  """
  requested = []
  # Signal handlers live in the main thread. With several processes, each would stop at the step its own
  # signal arrived at and the others would wait for it in the next collective: keep the default there.
  if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
    yield requested
    return

  def handler(signum, frame):
    del frame
    if requested:
      raise Interrupted(
        f"{signal.Signals(signum).name} received again: stopped at once. Rerun the same command to resume "
        "from the last checkpoint.",
        signum,
      )
    requested.append(signum)
    logging.warning(
      "%s: stopping after the current step, with a checkpoint (send it again to stop at once).",
      signal.Signals(signum).name,
    )

  watched = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
  previous = {s: signal.signal(s, handler) for s in watched}
  try:
    yield requested
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def last_good(ckpt) -> str:
  ckpt.wait()
  last = ckpt.latest_step()
  if last is None:
    return f"No checkpoint was written before it (in {ckpt.directory})."
  return f"Last good checkpoint: step {last} in {ckpt.directory}."


def check_finite(history, first_step: int, ckpt) -> None:
  """Raises ``FloatingPointError`` naming the first step whose loss is NaN/inf."""
  losses = np.asarray([h["loss"] for h in history])
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise FloatingPointError(
      f"training loss is {losses[bad[0]]} at step {first_step + int(bad[0]) + 1}; stopping. "
      f"{last_good(ckpt)} Lower the learning rate or check the data."
    )


@jax.jit
def all_finite(tree):
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def check_state(state, step: int, ckpt) -> None:
  """Raises ``FloatingPointError`` if the parameters or the optimizer state hold NaN/inf after ``step``.

  The loss is computed before each update, so a last update that overflows would otherwise reach a
  checkpoint (or the final evaluation) unnoticed.
  """
  if not bool(all_finite({"params": state["params"], "opt_state": state["opt_state"]})):
    raise FloatingPointError(
      f"the parameters or optimizer state are not finite after step {step}; stopping without saving them. "
      f"{last_good(ckpt)} Lower the learning rate or check the data."
    )
