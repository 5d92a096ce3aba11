"""Tests of the task registry (``stn_jax.data.get_task``) and the on-device training sampler."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stn_jax import data
from stn_jax.data import distortions


def _config(**overrides):
  cfg = ml_collections.ConfigDict(
    {"name": "mnist", "variant": "rts", "source": "idx", "data_dir": None, "test_seed": 0, "test_size": 16}
  )
  cfg.update(overrides)
  return cfg


@pytest.fixture(scope="module")
def rts_task():
  return data.get_task(_config())


def test_mnist_task_fields(rts_task):
  assert rts_task.name == "mnist_rts"
  assert rts_task.input_shape == (42, 42, 1) and rts_task.num_classes == 10
  images, labels = rts_task.train_data
  assert images.shape == (60_000, 28, 28) and images.dtype == jnp.uint8 and labels.dtype == jnp.int32


def test_sample_train_pure_and_shaped(rts_task):
  x1, y1 = rts_task.sample_train(jax.random.key(3), 8)
  x2, y2 = rts_task.sample_train(jax.random.key(3), 8)
  x3, _ = rts_task.sample_train(jax.random.key(4), 8)
  assert x1.shape == (8, 42, 42, 1) and x1.dtype == jnp.float32
  assert y1.shape == (8,) and y1.dtype == jnp.int32 and 0 <= y1.min() and y1.max() <= 9
  np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))
  np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
  assert not np.array_equal(np.asarray(x1), np.asarray(x3))
  assert 0.0 <= float(x1.min()) and float(x1.max()) <= 1.0


def test_sample_train_inside_jit_with_data_argument(rts_task):
  @jax.jit
  def step(key, data_arrays):
    images, labels = rts_task.sample_train(key, 8, data_arrays)
    return images.mean(), labels

  mean, labels = step(jax.random.key(3), rts_task.train_data)
  ref_images, ref_labels = rts_task.sample_train(jax.random.key(3), 8)
  np.testing.assert_allclose(float(mean), float(ref_images.mean()), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref_labels))


def test_test_set_is_fixed(rts_task):
  images, labels = rts_task.test_set()
  assert images.shape == (16, 42, 42, 1) and images.dtype == np.float32 and labels.dtype == np.int32
  np.testing.assert_array_equal(images, distortions.test_set("rts", 0, num=16)[0])
  assert labels[0] == 7  # The first MNIST test digit.


def test_labels_follow_their_digits():
  # Digit k is a centred 4x4 block of brightness 20 k: its label must be k. The R canvas's central pixels
  # stay inside the block at any rotation.
  labels = jnp.arange(10, dtype=jnp.int32)
  images = (
    jnp.zeros((10, 28, 28), jnp.uint8).at[:, 12:16, 12:16].set((20 * labels)[:, None, None].astype(jnp.uint8))
  )
  x, y = jax.jit(distortions.sample_train, static_argnums=(3, 4))(jax.random.key(0), images, labels, 64, "r")
  np.testing.assert_allclose(np.asarray(x[:, 20, 20, 0]), 20 * np.asarray(y) / 255, atol=1e-5)
  assert len(set(np.asarray(y).tolist())) > 5


@pytest.mark.parametrize("variant", sorted(distortions.VARIANTS))
def test_every_variant_task(variant):
  # Sampling every variant is covered by test_distortions; here: the task's metadata and data wiring.
  task = data.get_task(_config(variant=variant, test_size=2))
  side = distortions.VARIANTS[variant]
  assert task.name == f"mnist_{variant}" and task.input_shape == (side, side, 1) and task.num_classes == 10
  assert task.train_data[0].shape == (60_000, 28, 28)


def test_plain_mapping_and_namespace_configs():
  as_dict = {
    "name": "mnist",
    "variant": "p",
    "source": "idx",
    "data_dir": None,
    "test_seed": 1,
    "test_size": 4,
  }
  assert data.get_task(as_dict).input_shape == (28, 28, 1)
  assert data.get_task(types.SimpleNamespace(**as_dict)).name == "mnist_p"


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="unknown task 'svhn'.*'mnist'"):
    data.get_task(_config(name="svhn"))
  with pytest.raises(ValueError, match="unknown mnist variant 'x'.*'rts'.*'tc'"):
    data.get_task(_config(variant="x"))


def test_mnist_task_with_offcentre_class():
  task = data.get_task(_config(variant="e", offcentre_fraction=0.4, test_size=300))
  assert task.name == "mnist_e_offcentre" and task.num_classes == 11 and task.input_shape == (28, 28, 1)
  x1, y1 = task.sample_train(jax.random.key(3), 64)
  x2, y2 = task.sample_train(jax.random.key(3), 64)
  np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))
  np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
  assert 5 < int(jnp.sum(y1 == 10)) < 45 and int(y1.max()) == 10

  @jax.jit
  def in_jit(key, arrays):
    return task.sample_train(key, 64, arrays)

  xj, yj = in_jit(jax.random.key(3), task.train_data)
  # Inlined into another program XLA may fuse the float arithmetic differently: equal to float tolerance.
  np.testing.assert_allclose(np.asarray(xj), np.asarray(x1), rtol=0, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(yj), np.asarray(y1))
  # The test set: a fixed prefix-stable set; the kept examples are the plain test set's.
  images, labels = task.test_set()
  prefix_images, prefix_labels = data.get_task(
    _config(variant="e", offcentre_fraction=0.4, test_size=100)
  ).test_set()
  np.testing.assert_array_equal(images[:100], prefix_images)
  np.testing.assert_array_equal(labels[:100], prefix_labels)
  plain_images, plain_labels = data.get_task(_config(variant="e", test_size=300)).test_set()
  kept = labels != 10
  assert 0.25 < 1 - kept.mean() < 0.55
  np.testing.assert_array_equal(images[kept], plain_images[kept])
  np.testing.assert_array_equal(labels[kept], plain_labels[kept])


def test_mnist_task_rejects_bad_offcentre_settings():
  with pytest.raises(ValueError, match="offcentre_fraction"):
    data.get_task(_config(offcentre_fraction=1.5))
  with pytest.raises(ValueError, match="offcentre_shift"):
    data.get_task(_config(variant="e", offcentre_fraction=0.3, offcentre_shift=(10, 30)))


@pytest.mark.parametrize("bad", [2.5, True, "16"])
def test_mnist_task_counts_and_seed_must_be_ints(bad):
  for field in ("test_size", "test_seed"):
    with pytest.raises(TypeError, match=f"^{field} must be an int"):
      data.get_task({**_config().to_dict(), field: bad})
  with pytest.raises(TypeError, match="^offcentre_shift must be an int"):
    data.get_task({**_config().to_dict(), "offcentre_fraction": 0.3, "offcentre_shift": (7, bad)})


def test_mnist_task_sampler_checks_batch_size(rts_task):
  rts_task.sample_train(jax.random.key(0), 2)
  # As a static jit argument 2.0 (== 2, same hash) would reuse the compiled batch of 2; it is refused instead.
  with pytest.raises(TypeError, match="^batch_size must be an int, got 2.0"):
    rts_task.sample_train(jax.random.key(0), 2.0)
  with pytest.raises(ValueError, match="test_size must be in \\[1, 10000\\], got 10001"):
    data.get_task(_config(test_size=10_001))
