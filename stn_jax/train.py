"""Supervised training loop for the image classification experiments (distorted MNIST and kin).

``train_and_evaluate(config, workdir)`` checks the config's training fields (:mod:`stn_jax.train_config`:
validation, length in steps, the ``'paper'`` and ``'fast'`` schedules), builds the task, the model and the
jitted train step (:mod:`stn_jax.train_steps`), then runs one step per iteration. Each step samples its own
batch on the device from a key derived from ``(seed, step)`` only, so a run restarted from a checkpoint sees
exactly the data stream of an uninterrupted run and ends with the same parameters.

The run directory gets ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``, ``config.json``,
``results.json`` and the figures of :mod:`stn_jax.figures`. ``metrics.jsonl`` also records the run's
``wall_seconds`` with every log line, and ``eval/wall_seconds`` (the time an evaluation started) with every
evaluation: the time of this run's processes, summed over resumes, so that runs can be compared at equal
training time.

Rerunning a command resumes from the newest checkpoint; a finished run (final checkpoint and
``results.json``) is not touched again: its stored results are returned (delete ``results.json`` to
re-evaluate it). A directory is bound to its config (:mod:`stn_jax.rundir`): a command whose config differs
in anything but bookkeeping fields (logging, evaluation and checkpoint periods, figures) is refused.

Interruptions: everything a step records (log line, evaluation) is written before that step's checkpoint,
and ``results.json`` is written last (after the figures, atomically), so a run killed at any moment and
rerun ends as an uninterrupted run: a resumed run first drops the ``metrics.jsonl`` records of steps after
its checkpoint, which it writes again, and TensorBoard hides their events (``purge_step``). A rerun that
redoes the final evaluation drops that evaluation's record and, since TensorBoard can only hide whole steps,
hides the whole last step there and replays its training scalars from ``metrics.jsonl``: both keep one point
per step. In a single-process run, SIGINT (Ctrl-C) or SIGTERM stops the run after the current step with a
checkpoint of it (holding the training metrics not yet logged) and raises :class:`stn_jax.guards.Interrupted`;
a second signal stops at once. The free disk space is checked against the checkpoints still to write before
training starts.

A non-finite training loss, non-finite parameters or optimizer state (checked before every checkpoint and
before the final evaluation) or a non-finite test loss stop the run with a ``FloatingPointError``; no
checkpoint is written after the failure, so the last good one is kept.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time

import jax
import numpy as np
from absl import logging
from flax import nnx

from stn_jax import (
  checkpoint,
  figures,
  guards,
  metrics,
  parallel,
  provenance,
  rundir,
  train_config,
  train_steps,
)


def _due(step: int, total_steps: int, every: int) -> bool:
  """Whether an action of period ``every`` (0 = never) runs at ``step``; the last step always counts."""
  return bool(every) and (step % every == 0 or step == total_steps)


def train_and_evaluate(config, workdir: str, *, mesh=None) -> dict:
  """Trains ``config.model`` on ``config.data``, evaluates it, writes results and figures to ``workdir``.

  Restarting with the same config and workdir resumes from the newest checkpoint; a finished run returns
  its stored results (its final checkpoint is evaluated again only when ``results.json`` is missing or
  unreadable).

  Args:
    config: a ``ml_collections.ConfigDict`` as built by ``configs/mnist.py``.
    workdir: the run directory (created if needed).
    mesh: the data-parallel mesh (default: all devices).

  Returns:
    The dict written to ``workdir/results.json``.
  """
  t_start = time.time()
  train_config.validate_config(config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  is_main = jax.process_index() == 0

  # Checks the data and model fields before anything is written.
  setup = train_steps.create_setup(config, mesh=mesh)
  task, graphdef, state, total_steps = setup.task, setup.graphdef, setup.state, setup.total_steps

  os.makedirs(workdir, exist_ok=True)
  results_path = os.path.join(workdir, "results.json")
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.checkpoints_to_keep)
  latest = ckpt.latest_step()
  rundir.claim(workdir, config, has_progress=latest is not None or os.path.exists(results_path))
  if latest is not None and latest > total_steps:
    raise rundir.ConfigMismatchError(
      f"{workdir} holds a checkpoint at step {latest}, beyond this run's {total_steps} steps; use a new "
      "workdir."
    )
  stored = _read_results(results_path) if latest == total_steps else None
  if stored is not None:
    ckpt.close()
    logging.info(
      "%s already holds this finished run (step %d, test error %.2f%%); nothing to do. Delete its "
      "results.json to re-evaluate it.",
      workdir,
      latest,
      stored["test_error"],
    )
    return stored
  start_step, wall_before, history = 0, 0.0, []
  if latest is not None:
    state, meta = ckpt.restore(state)
    start_step, wall_before = int(state["step"]), float(meta.get("wall_seconds", 0.0))
    # Training metrics of the steps since the last log line, saved by a stop on a signal (float32 as logged).
    history = [{k: np.float32(v) for k, v in h.items()} for h in meta.get("train_history", [])]
    logging.info("Resumed from step %d of %d (%s).", start_step, total_steps, ckpt.directory)
  every = config.checkpoint_every
  saves = (total_steps // every - start_step // every if every else 0) + bool(
    start_step < total_steps and (not every or total_steps % every)
  )
  ckpt.check_free_space(state, saves)
  logging.info(
    "Model %s: %d parameters; %d steps, batch %d, schedule %s.",
    config.model.name,
    setup.param_count,
    total_steps,
    config.batch_size,
    config.schedule,
  )

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  # Records this run writes again are dropped: those a killed process wrote after the checkpoint and, when
  # the final evaluation is redone, that evaluation. TensorBoard can only hide whole steps (purge_step), so
  # in the latter case the last step's training scalars, which stay in metrics.jsonl, are replayed to
  # TensorBoard alone. Without them (metrics.jsonl lost) the old evaluation point stays beside the new one.
  redo_final = start_step == total_steps
  replay = []
  if is_main and os.path.exists(metrics_path):

    def keep(record):
      if redo_final and record["step"] == start_step:
        if any(k.startswith("eval/") for k in record):
          return False
        replay.append(record)
      return record["step"] <= start_step

    dropped = metrics.truncate(metrics_path, keep)
    if dropped:
      logging.info("Dropped %d records of %s that this run writes again.", dropped, metrics_path)
  writer = metrics.MetricWriter(workdir, purge_step=start_step if replay else start_step + 1)
  for record in replay:
    writer.write_tensorboard(record["step"], {k: v for k, v in record.items() if k not in ("step", "time")})
  progress = metrics.Progress(total_steps, start_step)
  test_images, test_labels = (np.asarray(a) for a in task.test_set())
  lr_fn = train_config.learning_rate_schedule(config, total_steps)
  wall = lambda: wall_before + time.time() - t_start

  def evaluate_and_log(step: int) -> dict:
    """Evaluates on the test set and writes the result, with the run's wall time when it started."""
    started = wall()
    result = train_steps.evaluate(
      graphdef, state["params"], test_images, test_labels, batch_size=config.eval_batch_size, mesh=mesh
    )
    writer.write(step, {"eval/wall_seconds": started, **{f"eval/{k}": v for k, v in result.items()}})
    return result

  history_start, end, saved = start_step - len(history), start_step, latest
  with guards.stop_requests() as stop:
    for step in range(start_step + 1, total_steps + 1):
      state, step_metrics = setup.step_fn(state, setup.train_data)
      history.append(step_metrics)
      end = step
      if step == start_step + 1:
        jax.block_until_ready(step_metrics)
        progress.start(step)
      at = functools.partial(_due, step, total_steps)
      if at(config.log_every) or at(config.checkpoint_every) or at(config.eval_every):
        history = jax.device_get(history)
        guards.check_finite(history, history_start, ckpt)
        mean = {f"train/{k}": float(np.mean([h[k] for h in history])) for k in history[0]}
        history, history_start = [], step
        if at(config.log_every):
          mean["train/learning_rate"] = float(lr_fn(step - 1))
          if math.isfinite(progress.steps_per_second):
            mean["train/steps_per_second"] = progress.steps_per_second
          mean["wall_seconds"] = wall()  # the run's own time, resumed runs included (not the time between)
          writer.write(step, mean)
          logging.info("%s", progress.line(step, {"loss": mean["train/loss"], "acc": mean["train/accuracy"]}))
        # Evaluate before saving: a checkpoint must come after every record of its step, or a kill during
        # this evaluation would resume past it and lose it.
        if at(config.eval_every) and step != total_steps:
          result = evaluate_and_log(step)
          logging.info("step %d: test error %.2f%%", step, result["test_error"])
        if at(config.checkpoint_every):
          guards.check_state(state, step, ckpt)
          ckpt.save(step, state, {"wall_seconds": wall()})
          saved = step
      if stop:
        break
    history = jax.device_get(history)
    if history:  # steps after the last periodic check (all periods 0, or a stop request)
      guards.check_finite(history, history_start, ckpt)
    guards.check_state(state, end, ckpt)
    if saved != end:
      pending = [{k: float(v) for k, v in h.items()} for h in history]
      ckpt.save(end, state, {"wall_seconds": wall(), "train_history": pending})
    ckpt.close()
  if end < total_steps:
    writer.close()
    raise guards.Interrupted(
      f"{signal.Signals(stop[0]).name} received: stopped after step {end} of {total_steps} with a "
      f"checkpoint in {ckpt.directory}. Rerun the same command to resume.",
      stop[0],
    )

  result = evaluate_and_log(total_steps)
  if not math.isfinite(result["test_loss"]):
    raise FloatingPointError(
      f"the test loss after {total_steps} steps is {result['test_loss']}; no results.json written. The final "
      f"checkpoint is in {ckpt.directory}."
    )
  logging.info("Final test error after %d steps: %.2f%%", total_steps, result["test_error"])
  results = {
    **result,
    "steps": total_steps,
    "seed": int(config.seed),
    "variant": config.data.get("variant"),
    "model": config.model.name,
    "schedule": config.schedule,
    "batch_size": int(config.batch_size),
    "param_count": setup.param_count,
    "wall_seconds": wall(),
    "steps_per_second": progress.steps_per_second if math.isfinite(progress.steps_per_second) else None,
    "resumed_from_step": start_step or None,
    "command": provenance.command(),
    **provenance.environment(),
    "config": config.to_dict(),
  }
  writer.close()
  if is_main:  # results.json last: it marks the run finished, so a rerun would not redraw missing figures
    figures.write_run_figures(
      workdir,
      nnx.merge(graphdef, jax.device_get(state["params"])),
      test_images,
      test_labels,
      num_examples=config.num_figure_examples,
    )
    provenance.write_json(results_path, results)
  return results


def _read_results(path: str) -> dict | None:
  """A finished run's ``results.json``, or None when there is none or it cannot be read (then the run is
  evaluated again and the file rewritten)."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    logging.warning("Cannot read %s (%s); evaluating the final checkpoint again to rewrite it.", path, e)
    return None
