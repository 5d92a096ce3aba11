"""Datasets for the training loops: a :class:`Task` per dataset name, looked up in a plain dict.

``get_task(data_config)`` returns a :class:`Task` that bundles everything a classification loop needs: the
shape of one example, the number of classes, a pure jittable training sampler and the fixed test set. Data
never imports models or training code.

Using ``sample_train`` inside a jitted train step: pass ``task.train_data`` as an argument of the step and
call ``task.sample_train(key, batch_size, data)``. Called without ``data`` it reads the task's own arrays,
which is right outside ``jit`` (it jits itself) but inside a traced function makes XLA embed the whole
training set in the program as a constant (slow to compile).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from stn_jax import _checks

# addition and volume import this package back for Task; they only read it when a task is built.
from stn_jax.data import addition, distortions, mnist, volume


@dataclasses.dataclass(frozen=True)
class Task:
  """A supervised image classification task.

  Attributes:
    name: e.g. ``'mnist_rts'``.
    input_shape: ``(H, W, C)`` of one example.
    num_classes: number of labels.
    sample_train: ``(key, batch_size[, data]) -> (images (B, H, W, C) float32, labels (B,) int32)``; pure in
      ``key``, jittable with ``batch_size`` static. ``data`` defaults to ``train_data``.
    test_set: ``() -> (images (N, H, W, C) float32, labels (N,) int32)``, identical on every call and run.
    train_data: the pytree of arrays ``sample_train`` reads (on the default device); pass it explicitly as a
      jit argument (module docstring).
  """

  name: str
  input_shape: tuple[int, int, int]
  num_classes: int
  sample_train: Callable
  test_set: Callable
  train_data: Any = None


def _get(config, field: str, default=None):
  """Reads ``field`` from a ConfigDict, a dataclass/namespace or a plain mapping."""
  if hasattr(config, "get"):
    return config.get(field, default)
  return getattr(config, field, default)


@functools.partial(jax.jit, static_argnames=("batch_size", "variant"))
def _sample_mnist(key, data, batch_size: int, variant: str):
  images, labels = data
  return distortions.sample_train(key, images, labels, batch_size, variant)


@functools.partial(jax.jit, static_argnames=("batch_size", "variant", "fraction", "shift"))
def _sample_mnist_offcentre(key, data, batch_size: int, variant: str, fraction: float, shift):
  k_batch, k_offcentre = jax.random.split(key)
  images, labels = _sample_mnist(k_batch, data, batch_size, variant)
  return distortions.add_offcentre_class(
    jax.random.split(k_offcentre, batch_size), images, labels, fraction, shift
  )


def _mnist_task(config) -> Task:
  variant = _get(config, "variant")
  if variant not in distortions.VARIANTS:
    raise ValueError(
      f"unknown mnist variant {variant!r}; expected one of {', '.join(map(repr, distortions.VARIANTS))}."
    )
  side = distortions.VARIANTS[variant]
  fraction = float(_get(config, "offcentre_fraction", 0.0) or 0.0)
  shift = _get(config, "offcentre_shift") or distortions.OFFCENTRE_SHIFT
  shift = distortions.check_offcentre(fraction, shift, side)
  images, labels = mnist.load(
    "train", source=_get(config, "source", "auto"), data_dir=_get(config, "data_dir")
  )
  train_data = (jnp.asarray(images), jnp.asarray(labels))
  # Checked now, not when the test set is first built: a bad field should stop the run before training.
  seed = _checks.seed("test_seed", _get(config, "test_seed", 0))
  num = _get(config, "test_size")
  num = None if num is None else distortions.check_test_num(num, "test_size")

  if fraction == 0.0:
    sample = functools.partial(_sample_mnist, variant=variant)
    test_set = functools.partial(distortions.test_set, variant, seed, num=num)
    name, num_classes = f"mnist_{variant}", 10
  else:
    sample = functools.partial(_sample_mnist_offcentre, variant=variant, fraction=fraction, shift=shift)
    test_set = functools.partial(distortions.offcentre_test_set, variant, seed, num, fraction, shift)
    name, num_classes = f"mnist_{variant}_offcentre", distortions.OFFCENTRE_LABEL + 1

  def sample_train(key, batch_size: int, data=None):
    # Checked before the jitted sampler: as a static argument 2.0 or True would hit the cache entry of 2 or 1.
    batch_size = _checks.size("batch_size", batch_size)
    return sample(key, train_data if data is None else data, batch_size)

  return Task(
    name=name,
    input_shape=(side, side, 1),
    num_classes=num_classes,
    sample_train=sample_train,
    test_set=test_set,
    train_data=train_data,
  )


# Appendix tasks are built in their own modules (stn_jax/data/addition.py, volume.py).
_TASKS: dict[str, Callable[[Any], Task]] = {
  "mnist": _mnist_task,
  "addition": addition.task,
  "volume3d": volume.task,
}


def get_task(data_config) -> Task:
  """Builds the task named by ``data_config.name``.

  Args:
    data_config: a ``ml_collections.ConfigDict`` (or any mapping / attribute object) with ``name``
      (``'mnist'``; ``'addition'`` and ``'volume3d'`` take the fields documented in their modules); for
      ``'mnist'`` also ``variant`` (``'r'``, ``'rts'``, ``'p'``, ``'e'``, ``'tc'``), ``source``
      (``'auto'``, ``'idx'``, ``'tfds'``), ``data_dir`` (None for the default), ``test_seed`` (int) and
      ``test_size`` (None = all 10,000 test digits), and optionally ``offcentre_fraction`` (default 0: off;
      else that fraction of the training batches and of the test set is replaced by off-centre copies
      labelled 10, an eleventh class, see ``distortions.add_offcentre_class``) and ``offcentre_shift``
      (``(min, max)`` px, default ``distortions.OFFCENTRE_SHIFT``).

  Returns:
    The :class:`Task`.
  """
  name = _get(data_config, "name")
  if name not in _TASKS:
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(map(repr, _TASKS))}.")
  return _TASKS[name](data_config)
