"""The fixed distorted-MNIST test sets: bit-for-bit fingerprints, moments, prefixes and their parameters."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax.data import distortions, mnist


def _digest(x):
  return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


# sha256 of test_set(variant, seed=0, num=512) images. They change only when the generator or the library's
# transforms change numerically (then look at the figure of experiments/mnist before updating them):
#   python -c "import hashlib; from stn_jax.data import distortions as d;
#              x = d.test_set('rts', 0, num=512)[0];
#              print(hashlib.sha256(x.tobytes()).hexdigest()[:16])"
_TEST_SET_DIGESTS = {
  "r": "4b99e932680c67b0",
  "rts": "6f08d00d28cac822",
  "p": "0ffdba69e8f6c76f",
  "e": "8f8796f623c0e3af",
  "tc": "b07e8ebb86444def",
}
# R, RTS and TC reproduced these bits on two CPU generations (AVX2 and AVX-512 machines). P and E were made
# machine-independent later (closed-form homography, TPS sums in a fixed order) and are checked bit for bit in
# the slow tests; the default run checks their moments, which a real change of the generator moves by far
# more than the tolerance while a last-bit difference cannot.
_BIT_CHECKED_BY_DEFAULT = ("r", "rts", "tc")
# float64 sum, sum of squares and a position-weighted sum (weights index % 7) of the 512 images.
_TEST_SET_MOMENTS = {
  "r": (48425.593600743814, 36868.03811980918, 143866.61076806218),
  "rts": (44244.353066787386, 33542.68907811523, 132637.44768400304),
  "p": (31638.13370140503, 24009.186806224476, 94645.19769850973),
  "e": (37046.992594075826, 28117.16227001864, 109497.23122473259),
  "tc": (68566.36469649011, 58644.7160021503, 205597.30193195213),
}


@pytest.mark.parametrize(
  "variant",
  [v if v in _BIT_CHECKED_BY_DEFAULT else pytest.param(v, marks=pytest.mark.slow) for v in _TEST_SET_DIGESTS],
)
def test_test_set_fixed_bit_for_bit(variant):
  images, labels = distortions.test_set(variant, 0, num=512)
  distortions._test_set.cache_clear()
  again, _ = distortions.test_set(variant, 0, num=512)
  assert images is not again
  np.testing.assert_array_equal(images, again)
  np.testing.assert_array_equal(labels, mnist.load("test", source="idx")[1][:512])
  # A smaller num is a prefix of the larger set; another seed gives another set.
  np.testing.assert_array_equal(distortions.test_set(variant, 0, num=100)[0], images[:100])
  assert not np.array_equal(distortions.test_set(variant, 1, num=100)[0], images[:100])
  assert _digest(images) == _TEST_SET_DIGESTS[variant]


@pytest.mark.parametrize("variant", ["rts", "tc"])
def test_test_set_params_render_the_test_set(variant):
  num = 64
  params = distortions.test_set_params(variant, 0, num=num)
  assert all(v.shape[0] == num and not v.flags.writeable for v in params.values())
  digits = mnist.load("test", source="idx")[0][:num]
  clutter = jnp.asarray(mnist.load("train", source="idx")[0]) if variant == "tc" else None
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    rendered = distortions.apply_params(jnp.asarray(digits), params, variant, clutter_source=clutter)
  expected = distortions.test_set(variant, 0, num=num)[0]
  if variant == "tc":  # exact copies, no resampling: bit for bit
    np.testing.assert_array_equal(np.asarray(rendered), expected)
    # The digit box really is at the offset: the clean digit's ink is inside it.
    x, y = params["offset"][0]
    box = expected[0, y : y + distortions.DIGIT_SIDE, x : x + distortions.DIGIT_SIDE, 0]
    np.testing.assert_array_less(digits[0] / 255.0 - 1e-6, box)
  else:  # another batch size may round differently in the last bits
    np.testing.assert_allclose(np.asarray(rendered), expected, atol=1e-5)
  # A prefix, like the images; another seed draws other parameters.
  np.testing.assert_array_equal(
    distortions.test_set_params(variant, 0, num=8)["offset" if variant == "tc" else "angle"],
    params["offset" if variant == "tc" else "angle"][:8],
  )
  with pytest.raises(ValueError, match="num"):
    distortions.test_set_params(variant, 0, num=10_001)


@pytest.mark.parametrize("variant", sorted(_TEST_SET_MOMENTS))
def test_test_set_moments(variant):
  images = distortions.test_set(variant, 0, num=512)[0].astype(np.float64)
  weights = np.arange(images.size, dtype=np.float64).reshape(images.shape) % 7
  got = (images.sum(), (images**2).sum(), (images * weights).sum())
  np.testing.assert_allclose(got, _TEST_SET_MOMENTS[variant], rtol=1e-6)


# sha256 of the full 10,000-digit test sets (seed 0), built on the CPU backend: the numbers every run and
# machine must reproduce.
_FULL_TEST_SET_DIGESTS = {
  "r": "2e2b4611ad34a638",
  "rts": "0085f3d9446cc09a",
  "p": "fd0e0706911ed6f0",
  "e": "eab8c600114f7180",
  "tc": "53e0c11d650cb53f",
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(_FULL_TEST_SET_DIGESTS))
def test_full_test_set_digest(variant):
  images, labels = distortions.test_set(variant, 0)
  assert images.shape == (10_000, *(distortions.VARIANTS[variant],) * 2, 1)
  assert _digest(images) == _FULL_TEST_SET_DIGESTS[variant]
  np.testing.assert_array_equal(images[:512], distortions.test_set(variant, 0, num=512)[0])
