"""MNIST addition (paper appendix A.1): two RTS-distorted digits in two channels; the label is their sum.

Each example is a ``42 x 42 x 2`` image. Channel 0 holds one MNIST digit and channel 1 another, drawn
independently, each distorted independently by the RTS generator of :mod:`stn_jax.data.distortions`
(rotation, scale and translation in a 42 x 42 canvas). The label is the sum of the two digit labels,
0..18 (19 classes). A model has to find, straighten and read *both* digits, which is what lets two parallel
spatial transformers specialise, one per channel.

Training pairs are drawn afresh on every call of the sampler (pure in its key, jittable), the two digits
independently and uniformly from the training split. The test set pairs test digit ``i`` with test digit
``perm[i]`` for a permutation drawn from the seed, distorted with keys from the same seed, so it is identical
on every run and machine. :func:`task` bundles both as the ``'addition'`` :class:`stn_jax.data.Task`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks
from stn_jax import data as data_lib  # the Task record (stn_jax.data imports this module too)
from stn_jax.data import distortions, mnist

NUM_CLASSES = 19
SIDE = distortions.VARIANTS["rts"]  # 42
INPUT_SHAPE = (SIDE, SIDE, 2)


def pair(key, first, second):
  """Stacks two batches of digits ``(B, 28, 28)``, each RTS-distorted afresh, as ``(B, 42, 42, 2)``."""
  k_a, k_b = jax.random.split(key)
  a = distortions.distort(k_a, first, "rts")
  b = distortions.distort(k_b, second, "rts")
  return jnp.concatenate([a, b], axis=-1)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _sample(key, data, batch_size: int):
  digits, labels = data
  if labels.shape != (digits.shape[0],):
    raise ValueError(
      f"labels must have shape ({digits.shape[0]},), one per digit; got {tuple(labels.shape)}."
    )
  k_idx, k_img = jax.random.split(key)
  idx = jax.random.randint(k_idx, (2, batch_size), 0, digits.shape[0])
  images = pair(k_img, jnp.take(digits, idx[0], axis=0), jnp.take(digits, idx[1], axis=0))
  return images, (jnp.take(labels, idx[0]) + jnp.take(labels, idx[1])).astype(jnp.int32)


def sample_train(key, digits, labels, batch_size: int):
  """A fresh training batch: two digits per example drawn uniformly with replacement, each distorted afresh.

  Args:
    key: a ``jax.random.key``; the batch is a pure function of it.
    digits: ``(N, 28, 28)`` uint8 training digits (pass them as jit arguments, not closed-over constants).
    labels: ``(N,)`` integer labels.
    batch_size: B (static).

  Returns:
    ``(images (B, 42, 42, 2) float32 in [0, 1], labels (B,) int32 in 0..18)``.
  """
  # Checked before the jitted sampler: as a static argument 2.0 or True would hit the cache entry of 2 or 1.
  return _sample(key, (digits, labels), _checks.size("batch_size", batch_size))


# Fixed-size chunks: example i is computed by the same XLA program whatever ``num`` is, so a smaller test set
# is a prefix of the full one, bit for bit.
_TEST_CHUNK = 500


@jax.jit
def _render(keys, first, second):
  return jax.vmap(lambda k, a, b: pair(k, a[None], b[None])[0])(keys, first, second)


@functools.cache
def _test_set(seed: int, num: int):
  digits, labels = mnist.load("test", source="idx")
  total = digits.shape[0]
  # Always on the CPU: the same XLA CPU program on every machine, whatever accelerator it has.
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    k_perm, k_img = jax.random.split(jax.random.key(seed))
    partner = np.asarray(jax.random.permutation(k_perm, total))
    keys = jax.random.split(k_img, total)
    chunks = []
    for start in range(0, num, _TEST_CHUNK):
      stop = start + _TEST_CHUNK
      first, second = digits[start:stop], digits[partner[start:stop]]
      chunks.append(np.asarray(_render(keys[start:stop], jnp.asarray(first), jnp.asarray(second))))
  images = np.concatenate(chunks)[:num]
  sums = (labels.astype(np.int32) + labels[partner].astype(np.int32))[:num]
  images.setflags(write=False)
  sums.setflags(write=False)
  return images, sums


def test_set(seed: int = 0, *, num: int | None = None):
  """The addition test set, fixed by ``seed``: test digit ``i`` paired with digit ``perm[i]`` (cached).

  Built from the shipped IDX copy of the MNIST test split, on the CPU backend, so it is identical on every
  machine. Example ``i`` uses key ``jax.random.split(k, 10000)[i]``; a smaller ``num`` gives a prefix.

  Args:
    seed: fixes the pairing and the distortions.
    num: number of pairs (default 10,000).

  Returns:
    ``(images float32 (num, 42, 42, 2), labels int32 (num,))`` read-only numpy arrays.
  """
  return _test_set(_checks.seed("seed", seed), distortions.check_test_num(num))


def task(config):
  """The ``'addition'`` :class:`stn_jax.data.Task`.

  Args:
    config: the data config: ``name='addition'``, optional ``source`` and ``data_dir`` (of the training
      digits, see :func:`stn_jax.data.mnist.load`), ``test_seed`` (default 0), ``test_size`` (None = 10,000).

  Returns:
    The task.
  """
  get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
  digits, labels = mnist.load("train", source=get("source", "auto"), data_dir=get("data_dir"))
  train_data = (jnp.asarray(digits), jnp.asarray(labels, jnp.int32))

  seed = _checks.seed("test_seed", get("test_seed", 0))
  num = get("test_size")
  num = None if num is None else distortions.check_test_num(num, "test_size")

  def sample(key, batch_size: int, data=None):
    return _sample(key, train_data if data is None else data, _checks.size("batch_size", batch_size))

  return data_lib.Task(
    name="addition",
    input_shape=INPUT_SHAPE,
    num_classes=NUM_CLASSES,
    sample_train=sample,
    test_set=functools.partial(test_set, seed, num=num),
    train_data=train_data,
  )
