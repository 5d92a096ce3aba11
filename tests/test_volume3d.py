"""3D transformers (appendix A.3): rendering known answers, data determinism, models, training steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import volume3d as volume_configs
from stn_jax import models
from stn_jax.data import mnist, volume
from stn_jax.models import volume3d as volume_models


@pytest.fixture(scope="module")
def digits():
  return jnp.asarray(mnist.load("test", source="idx")[0][:2], jnp.float32) / 255.0


def test_upright_card_projects_to_the_centred_digit(digits):
  # At the paper's 60^3 the card is 28 x 28 x 10 voxels, centred, on the voxel lattice: the mean projection
  # times 60 / 10 is the digit padded by 16 pixels, exactly.
  image = 6.0 * volume.project(volume.upright(digits, 60))[..., 0]
  np.testing.assert_allclose(image, jnp.pad(digits, ((0, 0), (16, 16), (16, 16))), atol=1e-6)
  depth_profile = volume.upright(digits, 60).sum(axis=(2, 3, 4))[0]
  assert np.flatnonzero(np.asarray(depth_profile) > 1e-6).tolist() == list(range(25, 35))


def test_quarter_turn_about_z_rotates_the_projection(digits):
  angles = jnp.array([[0.0, 0.0, np.pi / 2]] * 2)
  vol = volume.render_poses(digits, angles, jnp.ones(2), jnp.zeros((2, 3)), 60)
  image = 6.0 * volume.project(vol)[..., 0]
  # y points down, so +90 degrees about z carries +x (right) to +y (down): clockwise on screen.
  expected = np.rot90(np.pad(np.asarray(digits), ((0, 0), (16, 16), (16, 16))), k=-1, axes=(1, 2))
  np.testing.assert_allclose(image, expected, atol=1e-5)


def test_quarter_turn_about_x_shows_the_card_edge_on(digits):
  angles = jnp.array([[np.pi / 2, 0.0, 0.0]] * 2)
  vol = volume.render_poses(digits, angles, jnp.ones(2), jnp.zeros((2, 3)), 60)
  rows = np.flatnonzero(np.asarray(volume.project(vol, "max")[0, :, :, 0]).max(axis=1) > 1e-6)
  assert len(rows) <= 11  # the 10-voxel-thick card seen from its edge: a thin band
  # The mass is conserved by the rotation (up to the sampling at the card's faces).
  np.testing.assert_allclose(vol.sum(), volume.upright(digits, 60).sum(), rtol=1e-3)


def test_test_set_shapes_determinism_and_prefix():
  images, labels = volume.test_set(0, num=6, size=16)
  assert images.shape == (6, 16, 16, 16, 1) and images.dtype == np.float32
  np.testing.assert_array_equal(labels, mnist.load("test", source="idx")[1][:6])
  prefix, _ = volume.test_set(0, num=3, size=16)
  np.testing.assert_array_equal(prefix, images[:3])
  other, _ = volume.test_set(1, num=3, size=16)
  assert not np.array_equal(other, prefix)
  with pytest.raises(ValueError, match="size"):
    volume.render_poses(jnp.zeros((1, 28, 28)), jnp.zeros((1, 3)), jnp.ones(1), jnp.zeros((1, 3)), 2)


def test_training_sampler_is_pure():
  d, y = mnist.load("train", source="idx")
  data = (jnp.asarray(d[:100]), jnp.asarray(y[:100]))
  a = volume.sample_train(jax.random.key(0), *data, 4, 12)
  b = volume.sample_train(jax.random.key(0), *data, 4, 12)
  assert a[0].shape == (4, 12, 12, 12, 1) and a[1].dtype == jnp.int32
  np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize(
  "fields, error, message",
  [
    ({"max_angle": float("nan")}, ValueError, r"PoseRanges.max_angle must be finite and >= 0.0, got nan"),
    ({"max_angle": -10.0}, ValueError, "PoseRanges.max_angle must be finite"),
    ({"max_angle": "45"}, TypeError, "PoseRanges.max_angle must be a real number"),
    ({"max_shift": float("inf")}, ValueError, "PoseRanges.max_shift must be finite"),
    ({"max_shift": -0.1}, ValueError, "PoseRanges.max_shift must be finite and >= 0.0"),
    (
      {"scale_range": (1.2, 0.8)},
      ValueError,
      r"scale_range must be a pair .* with 0 < min <= max, got \(1.2, 0.8\)",
    ),
    ({"scale_range": (0.0, 1.0)}, ValueError, r"scale_range must be a pair \(min, max\) with 0 < min <= max"),
    ({"scale_range": (-1.0, 1.0)}, ValueError, "PoseRanges.scale_range must be finite and >= 0.0"),
    ({"scale_range": (0.8, float("nan"))}, ValueError, "PoseRanges.scale_range must be finite"),
    ({"scale_range": (0.8,)}, ValueError, "scale_range must be a pair"),
    ({"scale_range": 1.0}, TypeError, "scale_range must be a pair"),
    ({"scale_range": "12"}, TypeError, "scale_range must be a pair"),
    ({"thickness": 0}, ValueError, "PoseRanges.thickness must be >= 1, got 0"),
    ({"thickness": 10.7}, TypeError, "PoseRanges.thickness must be an int"),
    ({"thickness": True}, TypeError, "PoseRanges.thickness must be an int"),
  ],
)
def test_pose_ranges_are_checked_at_construction(fields, error, message):
  with pytest.raises(error, match=message):
    volume.PoseRanges(**fields)
  with pytest.raises(error, match=message):  # the config path too, where float()/int() once coerced them
    volume.pose_ranges(fields)


def test_pose_ranges_normalised_and_hashable():
  ranges = volume.PoseRanges(max_angle=np.float32(30), scale_range=[1, 1], max_shift=0, thickness=np.int64(6))
  assert ranges == volume.PoseRanges(30.0, (1.0, 1.0), 0.0, 6)
  assert hash(ranges) == hash(volume.PoseRanges(30.0, (1.0, 1.0), 0.0, 6))  # a static jit argument
  assert isinstance(ranges.scale_range, tuple) and type(ranges.thickness) is int
  # Zero ranges are allowed: the identity pose (up to the fixed scale).
  _, scale, shift = volume.sample_poses(jax.random.key(0), 3, ranges)
  np.testing.assert_array_equal(scale, 1.0)
  np.testing.assert_array_equal(shift, 0.0)


@pytest.mark.parametrize("bad", [2.5, True, "8", np.float32(8.0)])
def test_volume_counts_must_be_ints(bad):
  key, digits = jax.random.key(0), jnp.zeros((2, 28, 28))
  data = (jnp.zeros((3, 28, 28), jnp.uint8), jnp.zeros((3,), jnp.int32))
  for name, call in [
    ("batch", lambda: volume.sample_poses(key, bad)),
    ("batch_size", lambda: volume.sample_train(key, *data, bad, 8)),
    ("size", lambda: volume.sample_train(key, *data, 2, bad)),
    ("size", lambda: volume.render(key, digits, bad)),
    ("size", lambda: volume.upright(digits, bad)),
    ("thickness", lambda: volume.card(digits, bad)),
    ("num", lambda: volume.test_set(0, num=bad, size=8)),
    ("size", lambda: volume.test_set(0, num=2, size=bad)),
    ("seed", lambda: volume.test_set(bad, num=2, size=8)),
    ("size", lambda: volume.task({"name": "volume3d", "source": "idx", "size": bad})),
    ("test_size", lambda: volume.task({"name": "volume3d", "source": "idx", "size": 8, "test_size": bad})),
  ]:
    with pytest.raises(TypeError, match=f"^{name}( \\(the volume side\\))? must be an int"):
      call()
  with pytest.raises(TypeError, match="ranges must be a PoseRanges, got dict"):
    volume.sample_train(key, *data, 2, 8, {"max_angle": 10.0})


@pytest.mark.parametrize(
  "arg,size,count",
  [("cnn", 60, 122_722), ("st_cnn", 60, 117_174), ("cnn,quick", 32, 81_122), ("st_cnn,quick", 32, 84_598)],
)
def test_config_models_have_about_equal_exact_parameter_counts(arg, size, count):
  config = volume_configs.get_config(arg)
  assert config.data.size == size
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  build = models.MODELS[config.model.name]
  abstract = nnx.eval_shape(lambda: build((size,) * 3 + (1,), 10, rngs=nnx.Rngs(0), **kwargs))
  assert models.count_params(abstract) == count


def test_st_model_starts_as_identity_and_trains(digits):
  model = volume_models.MODELS["tiny_vol_st_cnn"]((16, 16, 16, 1), 10, rngs=nnx.Rngs(0))
  x = volume.render(jax.random.key(0), jnp.concatenate([digits] * 4), 16)
  logits, aux = model(x, return_aux=True)
  assert logits.shape == (8, 10) and aux["projection"].shape == (8, 8, 8, 1)
  np.testing.assert_allclose(aux["st"]["theta"], jnp.tile(jnp.eye(3, 4).reshape(1, 12), (8, 1)), atol=1e-6)

  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  y = jnp.array([7, 2] * 4)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(x), y).mean()

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, grads

  state = tx.init(params)
  params, state, loss0, grads = step(params, state)
  assert float(jnp.abs(grads["st"]["regression"]["kernel"]).sum()) > 0  # gradient reaches the 3D ST
  params, state, loss1, _ = step(params, state)
  assert float(loss1) < float(loss0)
