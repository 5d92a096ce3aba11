"""grid_sample: identity, closed forms, map_coordinates agreement, transforms (jit/vmap), batching, dtypes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import coords, sampling

MODES_2D = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("mode,padding,align_corners", itertools.product(MODES_2D, PADDINGS, (False, True)))
def test_identity_2d_is_exact(mode, padding, align_corners):
  image = _image((2, 7, 9, 3))
  grid = coords.base_grid((7, 9), align_corners=align_corners)
  out = sampling.grid_sample(image, grid[None], mode=mode, padding_mode=padding, align_corners=align_corners)
  np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
  "mode,padding,align_corners", itertools.product(MODES_2D[:2], PADDINGS, (False, True))
)
def test_identity_3d_is_exact(mode, padding, align_corners):
  image = _image((4, 5, 6, 2))
  grid = coords.base_grid((4, 5, 6), align_corners=align_corners)
  out = sampling.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=align_corners)
  np.testing.assert_array_equal(out, image)


def test_identity_exact_at_large_sizes():
  # Rounding of the normalised -> pixel conversion grows with the axis size; snapping must cover it.
  for size in (61, 224, 448, 1000):
    image = _image((1, size, 1))
    for ac in (False, True):
      grid = coords.base_grid((1, size), align_corners=ac)
      np.testing.assert_array_equal(sampling.grid_sample(image, grid, align_corners=ac), image)


@pytest.mark.parametrize("mode", MODES_2D)
def test_rotations_by_90_degrees_and_flips(mode):
  image = _image((6, 6, 2))
  base = coords.base_grid((6, 6))
  x, y = base[..., 0], base[..., 1]
  cases = {
    "rot_cw": (jnp.stack([y, -x], -1), np.rot90(image, k=-1)),
    "rot_ccw": (jnp.stack([-y, x], -1), np.rot90(image, k=1)),
    "flip_lr": (jnp.stack([-x, y], -1), image[:, ::-1]),
    "flip_ud": (jnp.stack([x, -y], -1), image[::-1]),
  }
  for name, (grid, want) in cases.items():
    out = sampling.grid_sample(image, grid, mode=mode)
    np.testing.assert_array_equal(out, want, err_msg=name)


@pytest.mark.parametrize("align_corners", [False, True])
def test_integer_shift_zero_and_border_padding(align_corners):
  image = _image((5, 8, 1))
  pix = coords.normalized_to_pixel(
    coords.base_grid((5, 8), align_corners=align_corners), (5, 8), align_corners=align_corners
  )
  grid = coords.pixel_to_normalized(pix + jnp.asarray([3.0, -1.0]), (5, 8), align_corners=align_corners)
  shifted = np.zeros_like(image)
  shifted[1:, :5] = image[:4, 3:]
  out = sampling.grid_sample(image, grid, align_corners=align_corners)
  np.testing.assert_allclose(out, shifted, atol=1e-6)
  border = np.asarray(image)[np.clip(np.arange(5) - 1, 0, 4)][:, np.clip(np.arange(8) + 3, 0, 7)]
  out = sampling.grid_sample(image, grid, padding_mode="border", align_corners=align_corners)
  np.testing.assert_allclose(out, border, atol=1e-6)


@pytest.mark.parametrize(
  "order,padding,jmode",
  [(1, "zeros", "constant"), (1, "border", "nearest"), (0, "zeros", "constant"), (0, "border", "nearest")],
)
def test_agrees_with_map_coordinates(order, padding, jmode):
  image = _image((9, 11))
  rng = np.random.default_rng(3)
  pix = rng.uniform(-2.5, 12.5, size=(40, 2)).astype(np.float32)
  pix = np.where(np.abs(pix - np.round(pix)) > 0.45, pix + 0.2, pix)  # keep nearest away from .5 ties
  want = jax.scipy.ndimage.map_coordinates(image, [pix[:, 1], pix[:, 0]], order=order, mode=jmode)
  grid = coords.pixel_to_normalized(jnp.asarray(pix), (9, 11), align_corners=True)
  mode = "bilinear" if order == 1 else "nearest"
  out = sampling.grid_sample(
    image[..., None], grid[None], mode=mode, padding_mode=padding, align_corners=True
  )
  np.testing.assert_allclose(out[0, :, 0], want, atol=1e-5)


def _random_grid(shape, seed=1, lim=1.4):
  return jnp.asarray(np.random.default_rng(seed).uniform(-lim, lim, size=shape), jnp.float32)


@pytest.mark.parametrize("mode", MODES_2D)
def test_jit_equals_eager(mode):
  image, grid = _image((2, 6, 7, 3)), _random_grid((2, 4, 5, 2))
  f = lambda i, g: sampling.grid_sample(i, g, mode=mode, padding_mode="reflection")
  np.testing.assert_allclose(jax.jit(f)(image, grid), f(image, grid), rtol=1e-5, atol=1e-5)


def test_vmap_equals_loop_2d_and_3d():
  for image, grid in [
    (_image((3, 6, 7, 2)), _random_grid((3, 4, 5, 2))),
    (_image((3, 4, 5, 6, 2)), _random_grid((3, 2, 3, 4, 3))),
  ]:
    f = lambda i, g: sampling.grid_sample(i, g, padding_mode="border")
    loop = jnp.stack([f(i, g) for i, g in zip(image, grid, strict=True)])
    np.testing.assert_allclose(jax.vmap(f)(image, grid), loop, atol=1e-6)
    np.testing.assert_allclose(f(image, grid), loop, atol=1e-6)


@pytest.mark.parametrize("mode", MODES_2D)
def test_broadcasting_one_image_many_grids_and_many_images_one_grid(mode):
  images, grids = _image((3, 6, 7, 2)), _random_grid((4, 5, 3, 2))
  f = lambda i, g: sampling.grid_sample(i, g, mode=mode)
  out = f(images[0], grids)
  assert out.shape == (4, 5, 3, 2)
  np.testing.assert_allclose(out, jnp.stack([f(images[0], g) for g in grids]), atol=1e-6)
  out = f(images, grids[0])
  assert out.shape == (3, 5, 3, 2)
  np.testing.assert_allclose(out, jnp.stack([f(i, grids[0]) for i in images]), atol=1e-6)
  out = f(images[:, None], grids[None, :2])  # (3, 1) x (1, 2) -> (3, 2)
  assert out.shape == (3, 2, 5, 3, 2)
  np.testing.assert_allclose(out[2, 1], f(images[2], grids[1]), atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_image_is_close_to_float32(dtype):
  image, grid = _image((2, 8, 9, 3)), _random_grid((2, 5, 6, 2))
  out = sampling.grid_sample(image.astype(dtype), grid)
  assert out.dtype == dtype
  want = sampling.grid_sample(image.astype(dtype).astype(jnp.float32), grid)
  # One rounding of an f32-accumulated result: within half an ulp of the low-precision type.
  np.testing.assert_allclose(out.astype(jnp.float32), want, rtol=float(jnp.finfo(dtype).eps), atol=1e-3)


NONFINITE_CASES = [("bilinear", p) for p in PADDINGS] + [("nearest", "border"), ("bicubic", "reflection")]
NONFINITE_CASES += [
  pytest.param(m, p, marks=pytest.mark.slow)
  for m, p in itertools.product(("nearest", "bicubic"), PADDINGS)
  if (m, p) not in NONFINITE_CASES
]


@pytest.mark.parametrize("mode,padding", NONFINITE_CASES)
def test_nonfinite_and_huge_coordinates(mode, padding):
  image, grid = _image((6, 7, 2)), _random_grid((4, 5, 2))
  bad = grid.at[1, 2].set(jnp.asarray([jnp.nan, 0.1])).at[2, 3].set(jnp.asarray([0.2, jnp.inf]))
  bad = bad.at[3, 0].set(jnp.asarray([-jnp.inf, -jnp.inf])).at[0, 4].set(jnp.asarray([1e30, -1e30]))
  bad = bad.at[0, 0].set(jnp.asarray([3e38, 0.0]))
  f = lambda i, g: sampling.grid_sample(i, g, mode=mode, padding_mode=padding)
  out, ref = f(image, bad), f(image, grid)
  assert np.all(np.isfinite(out))
  for i, j in [(1, 2), (2, 3), (3, 0)]:
    np.testing.assert_array_equal(out[i, j], 0.0)
  untouched = np.ones((4, 5), bool)
  untouched[1, 2] = untouched[2, 3] = untouched[3, 0] = untouched[0, 4] = untouched[0, 0] = False
  np.testing.assert_array_equal(np.asarray(out)[untouched], np.asarray(ref)[untouched])
  if padding == "zeros":
    np.testing.assert_array_equal(out[0, 4], 0.0)
  if padding == "border":  # x far right, y far up: the top-right corner pixel
    np.testing.assert_allclose(out[0, 4], image[0, -1], atol=1e-6)
  gi, gg = jax.grad(lambda i, g: jnp.sum(f(i, g) ** 2), argnums=(0, 1))(image, bad)
  assert np.all(np.isfinite(gi)) and np.all(np.isfinite(gg))
  np.testing.assert_array_equal(gg[1, 2], 0.0)
  np.testing.assert_array_equal(gg[3, 0], 0.0)


def test_nonfinite_coordinates_3d():
  image, grid = _image((3, 4, 5, 2)), _random_grid((2, 3, 4, 3))
  bad = grid.at[1, 1, 1, 2].set(jnp.nan)
  for padding in PADDINGS:
    out = sampling.grid_sample(image, bad, padding_mode=padding)
    ref = sampling.grid_sample(image, grid, padding_mode=padding)
    np.testing.assert_array_equal(out[1, 1, 1], 0.0)
    np.testing.assert_array_equal(out.at[1, 1, 1].set(0.0), ref.at[1, 1, 1].set(0.0))


@pytest.mark.parametrize(
  "image_shape,grid_shape,kwargs,exc,match",
  [
    ((5, 6), (3, 4, 2), {}, ValueError, "image must have shape"),
    ((5, 6, 1), (4, 2), {}, ValueError, "grid must have shape"),
    ((5, 6, 1), (3, 4, 4), {}, ValueError, "grid must have shape"),
    ((2, 5, 6, 1), (3, 3, 4, 2), {}, ValueError, "leading .batch. dims of image"),
    ((4, 5, 6, 1), (2, 3, 4, 3), {"mode": "bicubic"}, ValueError, "bicubic"),
    ((5, 6, 1), (3, 4, 2), {"mode": "linear"}, ValueError, "unknown mode"),
    ((5, 6, 1), (3, 4, 2), {"padding_mode": "wrap"}, ValueError, "unknown padding_mode"),
  ],
)
def test_errors(image_shape, grid_shape, kwargs, exc, match):
  with pytest.raises(exc, match=match):
    sampling.grid_sample(jnp.zeros(image_shape), jnp.zeros(grid_shape), **kwargs)


def test_non_float_inputs_are_rejected():
  with pytest.raises(TypeError, match="image must have a floating dtype"):
    sampling.grid_sample(jnp.zeros((5, 6, 1), jnp.uint8), jnp.zeros((3, 4, 2)))
  with pytest.raises(TypeError, match="grid must have a floating dtype"):
    sampling.grid_sample(jnp.zeros((5, 6, 1)), jnp.zeros((3, 4, 2), jnp.int32))
