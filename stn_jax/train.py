"""Supervised training loop for the image classification experiments (distorted MNIST and kin).

``train_and_evaluate(config, workdir)`` builds the task and the model, then runs one jitted train step per
iteration. The step samples its own batch on the device (``task.sample_train`` inside ``jit``), from a key
derived from ``(seed, step)`` only: a run restarted from a checkpoint sees exactly the data stream of an
uninterrupted run and ends with the same parameters. The train state is a plain pytree
``{'step', 'params', 'opt_state'}`` (parameters as an ``nnx`` pure dict), replicated over a 1D ``'data'``
mesh while the batch is sharded over it (``stn_jax.parallel``).

Schedules (``config.schedule``):

* ``'paper'``: SGD with momentum ``config.momentum``, learning rate ``config.learning_rate`` (default 0.01)
  divided by 10 after 1/3 and 2/3 of the run (the paper's 50k and 100k of 150k steps).
* ``'fast'``: Adam, learning rate (default 1e-3) with linear warm-up over ``config.warmup_steps`` (at most
  10% of the run) then cosine decay to 0 at the last step: converges in far fewer steps, for limited budgets.

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
its checkpoint (and a final evaluation it redoes), which it writes again. In a single-process run, SIGINT
(Ctrl-C) or SIGTERM stops the run after the current step with a checkpoint of it (holding the training
metrics not yet logged) and raises :class:`stn_jax.guards.Interrupted`; a second signal stops at once. The
free disk space is checked against the checkpoints still to write before training starts.

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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from stn_jax import checkpoint, data, figures, guards, layers, metrics, models, parallel, provenance, rundir

SCHEDULES = ("paper", "fast")


def validate_config(config) -> None:
  """Raises ``rundir.ConfigError`` (a ``ValueError``) naming the first field the loop cannot run with."""

  def need(ok: bool, field: str, what: str):
    if not ok:
      raise rundir.ConfigError(f"config.{field} must be {what}, got {config.get(field)!r}.")

  def number(field):
    value = config.get(field)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

  def integer(field, minimum):
    value = config.get(field)
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

  positive_int = functools.partial(integer, minimum=1)
  count = functools.partial(integer, minimum=0)
  need(config.get("schedule") in SCHEDULES, "schedule", f"one of {SCHEDULES}")
  need(positive_int("batch_size"), "batch_size", "an int >= 1")
  if config.get("num_epochs") is None:
    need(positive_int("total_steps"), "total_steps", "an int >= 1")
  else:
    need((number("num_epochs") or 0) > 0 and math.isfinite(config.num_epochs), "num_epochs", "> 0")
    need(positive_int("examples_per_epoch"), "examples_per_epoch", "an int >= 1")
  lr = config.get("learning_rate")
  need(
    lr is None or (number("learning_rate") is not None and 0 < lr < math.inf), "learning_rate", "None or > 0"
  )
  if config.schedule == "paper":
    m = number("momentum")
    need(config.get("momentum") is None or (m is not None and 0 <= m < 1), "momentum", "None or in [0, 1)")
  for field in ("warmup_steps", "log_every", "eval_every", "checkpoint_every", "num_figure_examples"):
    need(count(field), field, "an int >= 0")
  need(positive_int("eval_batch_size"), "eval_batch_size", "an int >= 1")
  keep = config.get("checkpoints_to_keep")
  need(
    keep is None or positive_int("checkpoints_to_keep"), "checkpoints_to_keep", "None (all) or an int >= 1"
  )
  # Fields a config file derived from a data field (e.g. configs/mnist.py's widths from the distortion).
  for key, value in (config.get("built_for") or {}).items():
    current = config.data.get(key)
    if current != value:
      raise rundir.ConfigError(
        f"config.data.{key} is {current!r}, but the config's model fields were derived for {value!r}; choose "
        f"it with the config file's argument instead of --config.data.{key}."
      )


def num_steps(config) -> int:
  """Training length in steps: from ``config.num_epochs`` when set, else ``config.total_steps``."""
  if config.get("num_epochs") is not None:
    return max(1, math.ceil(config.num_epochs * config.examples_per_epoch / config.batch_size))
  return int(config.total_steps)


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (see the module docstring for the schedules)."""
  if config.schedule == "paper":
    lr = 0.01 if config.learning_rate is None else config.learning_rate
    bounds = {max(1, round(total_steps * f)): 0.1 for f in (1 / 3, 2 / 3)}
    return optax.piecewise_constant_schedule(lr, bounds)
  if config.schedule == "fast":
    lr = 1e-3 if config.learning_rate is None else config.learning_rate
    warmup = min(int(config.warmup_steps), total_steps // 10)  # short runs: at most 10% warm-up
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), end_value=0.0)
  raise ValueError(f"unknown schedule {config.schedule!r}; expected one of {SCHEDULES}.")


def make_optimizer(config, lr_multipliers, total_steps: int) -> optax.GradientTransformation:
  """The optimizer of ``config.schedule``, with per-parameter learning-rate multipliers.

  Args:
    config: the run config.
    lr_multipliers: pytree of floats shaped like the params (``layers.lr_multipliers(model)``).
    total_steps: the run's length (sets the schedule).

  Returns:
    The optax transformation. Parameters whose multiplier is not 1 get their updates scaled through
    ``optax.multi_transform`` (one label per distinct multiplier), which equals scaling their learning rate.
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.schedule == "paper":
    base = lambda: optax.sgd(schedule, momentum=config.momentum or None)
  else:
    base = lambda: optax.adam(schedule)
  factors = sorted(set(jax.tree.leaves(lr_multipliers)))
  if factors == [1.0]:
    return base()
  label = lambda m: f"lr_x{m:g}"
  transforms = {label(m): optax.chain(base(), optax.scale(m)) for m in factors}
  return optax.multi_transform(transforms, jax.tree.map(label, lr_multipliers))


def _loss(params, graphdef, images, labels):
  logits = nnx.merge(graphdef, params)(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, logits


def train_step(state, train_data, *, graphdef, tx, task, batch_size, data_key, mesh):
  """One SGD step on a freshly sampled batch; jitted by :func:`train_and_evaluate`.

  Args:
    state: ``{'step': int32 scalar, 'params': pure dict, 'opt_state': optax state}``.
    train_data: ``task.train_data`` (passed as an argument so it is not baked into the program).
    graphdef: the model's ``nnx`` graph definition.
    tx: the optimizer.
    task: the ``stn_jax.data.Task``.
    batch_size: global batch size.
    data_key: base PRNG key of the data stream; step ``k`` uses ``fold_in(data_key, k)``.
    mesh: the data-parallel mesh.

  Returns:
    ``(new_state, {'loss', 'accuracy', 'grad_norm'})``.
  """
  key = jax.random.fold_in(data_key, state["step"])
  images, labels = task.sample_train(key, batch_size, train_data)
  images = jax.lax.with_sharding_constraint(images, parallel.batch_sharded(mesh))
  labels = jax.lax.with_sharding_constraint(labels, parallel.batch_sharded(mesh))
  grad_fn = jax.value_and_grad(_loss, has_aux=True)
  (loss, logits), grads = grad_fn(state["params"], graphdef, images, labels)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _eval_batch(params, images, labels, mask, *, graphdef):
  logits = nnx.merge(graphdef, params)(images)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, -1) == labels) & mask
  return jnp.sum(correct), jnp.sum(jnp.where(mask, losses, 0.0))


def evaluate(graphdef, params, images, labels, *, batch_size: int, mesh) -> dict[str, float]:
  """Test error (%) and mean loss over a fixed set, in sharded batches (the last one padded and masked).

  Args:
    graphdef: the model's graph definition.
    params: pure-dict parameters (replicated).
    images: ``(N, H, W, C)`` host array.
    labels: ``(N,)`` host array.
    batch_size: evaluation batch size (rounded up to a multiple of the device count).
    mesh: the data-parallel mesh.

  Returns:
    ``{'test_error': percent, 'test_loss': mean cross-entropy}``.
  """
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  n = len(labels)
  devices = mesh.shape[parallel.DATA_AXIS]
  batch_size = -(-min(batch_size, n) // devices) * devices
  correct, loss_sum = 0, 0.0
  for start in range(0, n, batch_size):
    x, y = images[start : start + batch_size], labels[start : start + batch_size]
    mask = np.ones(len(y), bool)
    pad = batch_size - len(y)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
      y, mask = np.concatenate([y, np.zeros(pad, y.dtype)]), np.concatenate([mask, np.zeros(pad, bool)])
    c, s = _eval_batch(params, *(parallel.shard_host_batch(a, mesh) for a in (x, y, mask)), graphdef=graphdef)
    correct, loss_sum = correct + int(c), loss_sum + float(s)
  return {"test_error": 100.0 * (1.0 - correct / n), "test_loss": loss_sum / n}


def _due(step: int, total_steps: int, every: int) -> bool:
  """Whether an action of period ``every`` (0 = never) runs at ``step``; the last step always counts."""
  return bool(every) and (step % every == 0 or step == total_steps)


def _hashable(tree):
  """A ConfigDict / dict / list as nested tuples, usable as a static (cache) key."""
  if hasattr(tree, "items"):
    return tuple(sorted((k, _hashable(v)) for k, v in tree.items()))
  if isinstance(tree, (list, tuple)):
    return tuple(_hashable(v) for v in tree)
  return tree


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init_state(model_items, input_shape, num_classes, key):
  model = models.create_model(
    dict(model_items), input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(key)
  )
  return nnx.state(model)


def _init_model(model_items, input_shape, num_classes, key) -> nnx.Module:
  """Builds and initialises the model in one compiled program (eager init compiles one per layer), cached
  across runs in a process (sweeps, tests)."""
  abstract = nnx.eval_shape(
    lambda: models.create_model(
      dict(model_items), input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(0)
    )
  )
  graphdef, _ = nnx.split(abstract)
  return nnx.merge(graphdef, _init_state(model_items, input_shape, num_classes, key))


class Setup(NamedTuple):
  """Everything a training loop (or a benchmark) needs, built from a config by :func:`create_setup`."""

  task: data.Task
  model: nnx.Module
  graphdef: nnx.GraphDef
  state: dict
  step_fn: Callable
  train_data: object
  total_steps: int
  param_count: int


def create_setup(config, *, mesh) -> Setup:
  """Builds the task, the model, the replicated train state and the jitted train step.

  Args:
    config: the run config.
    mesh: the data-parallel mesh.

  Returns:
    A :class:`Setup`; ``step_fn(state, train_data) -> (state, metrics)``.
  """
  parallel.check_batch_size(config.batch_size, mesh)
  task = data.get_task(config.data)
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  model = _init_model(_hashable(config.model), tuple(task.input_shape), task.num_classes, init_key)
  graphdef, params_state, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise NotImplementedError(
      "models with non-parameter state (e.g. BatchNorm statistics) are not supported."
    )
  params = nnx.to_pure_dict(params_state)
  total_steps = num_steps(config)
  tx = make_optimizer(config, layers.lr_multipliers(model), total_steps)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
  step_fn = jax.jit(
    functools.partial(
      train_step,
      graphdef=graphdef,
      tx=tx,
      task=task,
      batch_size=config.batch_size,
      data_key=data_key,
      mesh=mesh,
    ),
    # No buffer donation: async checkpoint saves may still read the previous state (models here are small).
    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
  )
  return Setup(
    task=task,
    model=model,
    graphdef=graphdef,
    state=parallel.replicate(state, mesh),
    step_fn=step_fn,
    train_data=parallel.replicate(task.train_data, mesh),
    total_steps=total_steps,
    param_count=sum(int(p.size) for p in jax.tree.leaves(params)),
  )


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
  validate_config(config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  is_main = jax.process_index() == 0

  setup = create_setup(config, mesh=mesh)  # checks the data and model fields before anything is written
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
  if is_main and os.path.exists(metrics_path):
    # Drop what a killed process wrote after the checkpoint (this run writes it again), and the records of
    # the final evaluation when it is redone here.
    redo_final = start_step == total_steps
    is_eval = lambda record: any(k.startswith("eval/") for k in record)
    dropped = metrics.truncate(
      metrics_path,
      lambda r: r["step"] < start_step or (r["step"] == start_step and not (redo_final and is_eval(r))),
    )
    if dropped:
      logging.info("Dropped %d records of %s that this run writes again.", dropped, metrics_path)
  writer = metrics.MetricWriter(workdir, purge_step=start_step + 1)
  progress = metrics.Progress(total_steps, start_step)
  test_images, test_labels = (np.asarray(a) for a in task.test_set())
  lr_fn = learning_rate_schedule(config, total_steps)
  wall = lambda: wall_before + time.time() - t_start

  def evaluate_and_log(step: int) -> dict:
    """Evaluates on the test set and writes the result, with the run's wall time when it started."""
    started = wall()
    result = evaluate(
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
