"""The off-centre class of the distorted-MNIST data: exact whole-pixel shifts, relabelling, settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax.data import distortions, mnist


def _zero_filled_shift(image, dx, dy):
  """``image`` moved right by dx and down by dy whole pixels, zeros shifted in (a numpy reference)."""
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
    max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
  ]
  return out


def test_offcentre_class_shifts_exactly_and_relabels():
  digits, labels = mnist.load("test", source="idx")
  images = distortions.apply_params(digits[:64], distortions.identity_params("e", 64), "e")
  keys = jax.random.split(jax.random.key(5), 64)
  out, new_labels = (np.asarray(a) for a in distortions.add_offcentre_class(keys, images, labels[:64], 0.5))
  images = np.asarray(images)
  replaced = new_labels == distortions.OFFCENTRE_LABEL
  assert 10 < replaced.sum() < 54 and new_labels.dtype == np.int32
  np.testing.assert_array_equal(new_labels[~replaced], labels[:64][~replaced])
  np.testing.assert_array_equal(out[~replaced], images[~replaced])
  lo, hi = distortions.OFFCENTRE_SHIFT
  for i in np.flatnonzero(replaced):  # each replaced image is one allowed whole-pixel shift of its digit
    matches = [
      (dx, dy)
      for dx in range(-hi, hi + 1)
      for dy in range(-hi, hi + 1)
      if np.array_equal(out[i], _zero_filled_shift(images[i], dx, dy))
    ]
    assert matches and all(lo <= max(abs(dx), abs(dy)) <= hi for dx, dy in matches), (i, matches)


def test_offcentre_fraction_and_determinism():
  images = jnp.ones((2000, 28, 28, 1), jnp.float32)
  labels = jnp.zeros((2000,), jnp.int32)
  keys = jax.random.split(jax.random.key(0), 2000)
  _, y = distortions.add_offcentre_class(keys, images, labels, 0.3)
  assert abs(float(jnp.mean(y == distortions.OFFCENTRE_LABEL)) - 0.3) < 0.04  # 4 standard errors
  _, y_again = distortions.add_offcentre_class(keys, images, labels, 0.3)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_again))
  x0, y0 = distortions.add_offcentre_class(keys, images, labels, 0.0)
  np.testing.assert_array_equal(np.asarray(x0), np.asarray(images))
  assert int(y0.max()) == 0


@pytest.mark.parametrize(
  "fraction, shift, message",
  [
    (1.0, (7, 20), "offcentre_fraction"),
    (-0.1, (7, 20), "offcentre_fraction"),
    (0.3, (0, 5), "offcentre_shift"),
    (0.3, (9, 8), "offcentre_shift"),
    (0.3, (7, 28), "offcentre_shift"),
    (0.3, (7,), "offcentre_shift"),
  ],
)
def test_offcentre_bad_settings_raise(fraction, shift, message):
  images = jnp.zeros((2, 28, 28, 1))
  with pytest.raises(ValueError, match=message):
    distortions.add_offcentre_class(
      jax.random.split(jax.random.key(0), 2), images, jnp.zeros(2), fraction, shift
    )


def test_offcentre_shifts_every_channel_alike_and_checks_shapes():
  digits, labels = mnist.load("test", source="idx")
  one = distortions.apply_params(digits[:16], distortions.identity_params("e", 16), "e")
  two = jnp.concatenate([one, 1.0 - one], axis=-1)  # channel 1 differs from channel 0 everywhere
  keys = jax.random.split(jax.random.key(2), 16)
  out_one, y_one = distortions.add_offcentre_class(keys, one, labels[:16], 0.5)
  out_two, y_two = distortions.add_offcentre_class(keys, two, labels[:16], 0.5)
  np.testing.assert_array_equal(np.asarray(y_one), np.asarray(y_two))
  np.testing.assert_array_equal(np.asarray(out_two[..., :1]), np.asarray(out_one))
  replaced = np.asarray(y_two) == distortions.OFFCENTRE_LABEL
  assert replaced.any()
  # Channel 1 moves with channel 0: where channel 0's shifted digit lies, channel 1 holds 1 - digit.
  inside = np.asarray(out_two[replaced, ..., 0]) > 0
  np.testing.assert_allclose(
    np.asarray(out_two[replaced, ..., 1])[inside], 1 - np.asarray(out_two[replaced, ..., 0])[inside]
  )
  with pytest.raises(ValueError, match="images must be"):
    distortions.add_offcentre_class(keys, one[..., 0], labels[:16], 0.5)
  with pytest.raises(ValueError, match="batch size"):
    distortions.add_offcentre_class(keys[:8], one, labels[:16], 0.5)


def test_check_offcentre_returns_whole_pixels_and_names_the_field():
  assert distortions.check_offcentre(0.0, [7, 20], 28) == (7, 20)
  low, high = distortions.check_offcentre(np.float32(0.5), np.array([3, 27]), 28)
  assert (low, high) == (3, 27) and type(low) is int and type(high) is int
  with pytest.raises(ValueError, match=r"^offcentre_fraction must be in \[0, 1\), got 1\.0\.$"):
    distortions.check_offcentre(1.0, (7, 20), 28)
  with pytest.raises(
    ValueError,
    match=r"^offcentre_shift must be a pair \(min, max\) with 0 < min <= max < 28, got \(9, 8\)\.$",
  ):
    distortions.check_offcentre(0.3, (9, 8), 28)
  with pytest.raises(
    ValueError,
    match=r"^offcentre_shift must be a pair \(min, max\) with 0 < min <= max < 60, got \(7, 60\)\.$",
  ):
    distortions.check_offcentre(0.3, (7, 60), 60)
  with pytest.raises(ValueError, match=r"^offcentre_shift must be >= 1, got 0\.$"):
    distortions.check_offcentre(0.3, (0, 5), 28)
  with pytest.raises(
    TypeError, match=r"^offcentre_shift must be a pair \(min, max\) with 0 < min <= max < 28, got '7'\.$"
  ):
    distortions.check_offcentre(0.3, "7", 28)
