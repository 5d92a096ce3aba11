"""The compiled pieces of the classification trainer: the train step, the evaluation, and their setup.

:func:`create_setup` builds, from a config, the task, the model, the train state and the jitted
:func:`train_step`; :mod:`stn_jax.train` runs them in its loop, and benchmarks and tests use them alone.

The step samples its own batch on the device (``task.sample_train`` inside ``jit``), from a key derived
from ``(seed, step)`` only: a run restarted from a checkpoint sees exactly the data stream of an
uninterrupted run and ends with the same parameters. The train state is a plain pytree
``{'step', 'params', 'opt_state'}`` (parameters as an ``nnx`` pure dict), replicated over a 1D ``'data'``
mesh while the batch is sharded over it (``stn_jax.parallel``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stn_jax import data, layers, models, parallel, train_config


def _loss(params, graphdef, images, labels):
  logits = nnx.merge(graphdef, params)(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, logits


def train_step(state, train_data, *, graphdef, tx, task, batch_size, data_key, mesh):
  """One SGD step on a freshly sampled batch; jitted by :func:`create_setup`.

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
  total_steps = train_config.num_steps(config)
  tx = train_config.make_optimizer(config, layers.lr_multipliers(model), total_steps)
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
