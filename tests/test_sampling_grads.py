"""grid_sample gradients: numerical checks away from kinks, the translation gradient at identity, 3D."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from stn_jax import coords, sampling

PADDINGS = ("zeros", "border", "reflection")


def _away_from_kinks(rng, shape, size_xy, align_corners, lo=-0.5, hi=None):
  """Normalised coordinates whose pixel values sit >= 0.2 px from integers, half-integers and the edges."""
  sizes = np.asarray(size_xy, np.float64)
  hi = sizes - 0.5 if hi is None else hi
  pix = rng.uniform(lo, hi, size=shape + (len(size_xy),))
  pix = np.floor(pix) + rng.uniform(0.2, 0.3, size=pix.shape) + 0.5 * rng.integers(0, 2, size=pix.shape)
  return coords.pixel_to_normalized(
    jnp.asarray(pix, jnp.float32), tuple(size_xy[::-1]), align_corners=align_corners
  )


@pytest.mark.parametrize("mode,padding", [("bilinear", p) for p in PADDINGS] + [("bicubic", "zeros")])
def test_check_grads_image_and_coordinates(mode, padding):
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.normal(size=(2, 5, 6, 2)), jnp.float32)
  # Interior points, plus (for zeros) points in the outer half-pixel ring where one tap reads padding.
  grid = _away_from_kinks(
    rng,
    (2, 3, 4),
    (6, 5),
    False,
    lo=-0.9 if padding == "zeros" else 0.0,
    hi=np.asarray([5.9, 4.9]) if padding == "zeros" else np.asarray([5.0, 4.0]),
  )
  f = lambda i, g: sampling.grid_sample(i, g, mode=mode, padding_mode=padding)
  # Bilinear through its hand-written JVP (reverse mode is its transpose); bicubic is plain autodiff.
  test_util.check_grads(f, (image, grid), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("padding", PADDINGS)
def test_check_grads_trilinear(padding):
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.normal(size=(3, 4, 5, 2)), jnp.float32)
  grid = _away_from_kinks(rng, (2, 2, 3), (5, 4, 3), True, lo=0.0, hi=np.asarray([4.0, 3.0, 2.0]))
  f = lambda i, g: sampling.grid_sample(i, g, padding_mode=padding, align_corners=True)
  test_util.check_grads(f, (image, grid), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2, rtol=2e-2)


def test_nearest_has_zero_coordinate_gradient_and_routes_image_gradient():
  image = jnp.arange(12.0).reshape(3, 4, 1)
  grid = _away_from_kinks(np.random.default_rng(2), (2, 2), (4, 3), False, lo=0.0, hi=np.asarray([3.0, 2.0]))
  f = lambda i, g: jnp.sum(sampling.grid_sample(i, g, mode="nearest"))
  gi, gg = jax.grad(f, argnums=(0, 1))(image, grid)
  np.testing.assert_array_equal(gg, 0.0)
  assert float(gi.sum()) == 4.0  # each of the 4 outputs copies exactly one pixel


@pytest.mark.parametrize(
  "mode,padding,align_corners", itertools.product(("bilinear", "bicubic"), PADDINGS, (False, True))
)
def test_translation_gradient_at_identity_is_nonzero(mode, padding, align_corners):
  # A ramp image: shifting the sampling grid right raises every interior output, so d loss / d tx > 0 for the
  # interior sum (the full sum telescopes to 0 with zero padding). With ceil taps
  # (instead of floor and floor + 1) this gradient is 0 at the identity and an ST never learns translation.
  image = jnp.tile(jnp.arange(8.0)[None, :, None], (6, 1, 1))
  base = coords.base_grid((6, 8), align_corners=align_corners)

  def loss(tx):
    grid = base + jnp.stack([tx, 0.0])
    out = sampling.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=align_corners)
    return jnp.sum(out[:, 1:-1])

  assert float(jax.grad(loss)(0.0)) > 0.0


def test_gradients_of_jit_and_vmap_agree():
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.normal(size=(3, 6, 7, 2)), jnp.float32)
  grid = jnp.asarray(rng.uniform(-1.2, 1.2, size=(3, 4, 5, 2)), jnp.float32)
  loss = lambda i, g: jnp.sum(jnp.sin(sampling.grid_sample(i, g, padding_mode="reflection")))
  grads = jax.grad(loss, argnums=(0, 1))(image, grid)
  vgrads = jax.vmap(jax.grad(loss, argnums=(0, 1)))(image, grid)
  for a, b in zip(grads, vgrads, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
