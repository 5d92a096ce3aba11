"""Metric writers: JSON lines (``metrics.jsonl``) and TensorBoard event files, plus a progress line.

Each record in ``metrics.jsonl`` is one JSON object ``{"step": int, "time": unix seconds, <name>: float,
...}``; train and eval scalars carry prefixes (``train/loss``, ``eval/test_error``). A resumed run first
drops the records it will write again (:func:`truncate`; TensorBoard hides them through ``purge_step``), then
appends to the same file; a reader still keeps the last record per (step, name) (see :func:`read_jsonl`).
Only process 0 writes in multi-host runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable

import jax


class MetricWriter:
  """Appends scalars to ``workdir/metrics.jsonl`` and to TensorBoard events under ``workdir/tensorboard``."""

  def __init__(self, workdir: str, *, tensorboard: bool = True, purge_step: int | None = None):
    """Opens the writers (process 0 only; elsewhere every call is a no-op).

    Args:
      workdir: the run directory.
      tensorboard: also write TensorBoard event files (needs ``tensorboardX``).
      purge_step: a resumed run's first step: TensorBoard hides the earlier events from this step on.
    """
    self._active = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if not self._active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = open(self.path, "a")  # noqa: SIM115 (closed in close())
    if tensorboard:
      import tensorboardX  # noqa: PLC0415 (optional dependency, only for writing)

      # tensorboardX names a file by the second it was opened in and the host, and opens it for writing from
      # the start: a writer opened within the same second (a quick rerun) would wipe the earlier file. The
      # nanosecond suffix keeps every file and keeps name order = opening order, which TensorBoard reads by.
      self._tb = tensorboardX.SummaryWriter(
        os.path.join(workdir, "tensorboard"), purge_step=purge_step, filename_suffix=f".{time.time_ns()}"
      )

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """Writes one record of scalars at ``step``."""
    if not self._active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    self._jsonl.flush()
    self.write_tensorboard(step, scalars)

  def write_tensorboard(self, step: int, scalars: dict[str, float]) -> None:
    """Writes scalars to TensorBoard only (replaying a record ``metrics.jsonl`` already holds)."""
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, float(value), int(step))
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes the files."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_jsonl(path: str) -> dict[str, list[tuple[int, float]]]:
  """Reads ``metrics.jsonl`` into ``{name: [(step, value), ...]}`` by step; the last write per step wins."""
  series: dict[str, dict[int, float]] = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      record = json.loads(line)
      step = record.pop("step")
      record.pop("time", None)
      for name, value in record.items():
        series.setdefault(name, {})[step] = value
  return {name: sorted(points.items()) for name, points in series.items()}


def truncate(path: str, keep: Callable[[dict], bool]) -> int:
  """Rewrites a ``metrics.jsonl`` with only the records for which ``keep(record)`` is true.

  A resumed run calls it to drop what a killed process wrote after its last checkpoint, which the resumed
  run writes again, so that the file holds each record once. A last line cut short by the kill is dropped
  too. The new file replaces the old one by a rename, so a kill during the rewrite loses nothing.

  Returns:
    How many lines were dropped.
  """
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if keep(record):
      kept.append(line if line.endswith("\n") else line + "\n")
  if len(kept) < len(lines):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return len(lines) - len(kept)


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Builds progress lines with the step rate and ETA, measured from the first step after compilation."""

  def __init__(self, total_steps: int, first_step: int):
    """Args: total_steps: the run's last step; first_step: the step the (possibly resumed) run starts at."""
    self.total_steps = int(total_steps)
    self._t0 = None
    self._s0 = int(first_step)
    self.steps_per_second = float("nan")

  def start(self, step: int) -> None:
    """Marks the reference point (call after the first, compiling, step has finished)."""
    self._t0, self._s0 = time.perf_counter(), int(step)

  def line(self, step: int, scalars: dict[str, float] | None = None) -> str:
    """A one-line summary at ``step``, e.g. ``step 500/3000 (17%) | loss 0.41 | 12.3 steps/s | ETA 3m22s``."""
    if self._t0 is not None and step > self._s0:
      self.steps_per_second = (step - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
    rate = self.steps_per_second
    eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
    parts = [f"step {step}/{self.total_steps} ({100.0 * step / max(self.total_steps, 1):.0f}%)"]
    parts += [f"{k} {v:.4g}" for k, v in (scalars or {}).items()]
    parts += [f"{rate:.2f} steps/s", f"ETA {_duration(eta)}"]
    return " | ".join(parts)
