"""Tests of the coordinate conventions: pixel <-> normalised helpers and base grids."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import coords


@pytest.mark.parametrize("align_corners", [False, True])
def test_linspace_known_values(align_corners):
  got = np.asarray(coords.linspace(4, align_corners=align_corners))
  want = [-1, -1 / 3, 1 / 3, 1] if align_corners else [-0.75, -0.25, 0.25, 0.75]
  np.testing.assert_allclose(got, want, atol=1e-7)


def test_linspace_single_pixel_is_centre():
  for ac in (False, True):
    np.testing.assert_array_equal(coords.linspace(1, align_corners=ac), [0.0])


@pytest.mark.parametrize("align_corners", [False, True])
def test_pixel_centres_map_to_integers(align_corners):
  grid = coords.base_grid((3, 5), align_corners=align_corners)
  pix = np.asarray(coords.normalized_to_pixel(grid, (3, 5), align_corners=align_corners))
  ys, xs = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
  np.testing.assert_allclose(pix[..., 0], xs, atol=1e-5)
  np.testing.assert_allclose(pix[..., 1], ys, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_round_trip_3d(align_corners):
  pts = jax.random.uniform(jax.random.key(0), (7, 3), minval=-1.5, maxval=1.5)
  pix = coords.normalized_to_pixel(pts, (4, 6, 8), align_corners=align_corners)
  back = coords.pixel_to_normalized(pix, (4, 6, 8), align_corners=align_corners)
  np.testing.assert_allclose(back, pts, atol=1e-6)


def test_edges_without_align_corners():
  # -1 and +1 are the outer edges: pixel coordinates -0.5 and n - 0.5.
  pix = coords.normalized_to_pixel(jnp.array([[-1.0, 1.0]]), (10, 4), align_corners=False)
  np.testing.assert_allclose(pix, [[-0.5, 9.5]])


def test_base_grid_layout_and_order():
  grid = coords.base_grid((2, 3, 4))
  assert grid.shape == (2, 3, 4, 3)
  # x varies along the last spatial axis, z along the first.
  np.testing.assert_allclose(grid[0, 0, :, 0], coords.linspace(4))
  np.testing.assert_allclose(grid[:, 0, 0, 2], coords.linspace(2))


def test_errors():
  with pytest.raises(TypeError, match="floating dtype"):
    coords.normalized_to_pixel(jnp.zeros((3, 2), jnp.int32), (4, 4))
  with pytest.raises(ValueError, match="spatial_shape"):
    coords.normalized_to_pixel(jnp.zeros((3, 2)), (4, 4, 4))
  with pytest.raises(ValueError, match="out_shape"):
    coords.base_grid((4,))
  with pytest.raises(ValueError, match="positive"):
    coords.base_grid((0, 4))


def test_homogeneous():
  out = coords.homogeneous(jnp.ones((2, 5, 2)))
  assert out.shape == (2, 5, 3)
  np.testing.assert_array_equal(out[..., 2], 1.0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_single_pixel_axis_sits_at_zero_both_ways(align_corners):
  # linspace, base_grid and torch's affine_grid put the only pixel of a size-1 axis at 0; the pixel
  # helpers must agree, both ways, with finite gradients.
  for shape in [(1, 1), (4, 1), (3, 1, 2)]:
    grid = coords.base_grid(shape, align_corners=align_corners)
    pix = coords.normalized_to_pixel(grid, shape, align_corners=align_corners)
    np.testing.assert_allclose(coords.pixel_to_normalized(pix, shape, align_corners=align_corners), grid)
  np.testing.assert_array_equal(
    coords.pixel_to_normalized(jnp.zeros((1, 2)), (1, 1), align_corners=align_corners), [[0.0, 0.0]]
  )
  for f in (coords.pixel_to_normalized, coords.normalized_to_pixel):
    g = jax.grad(lambda p, f=f: f(p, (1, 3), align_corners=align_corners).sum())(jnp.zeros((2, 2)))
    assert np.isfinite(np.asarray(g)).all()


def test_non_integer_shape_error_names_the_expected_layout():
  with pytest.raises(TypeError, match=r"^spatial_shape must be a tuple of ints like \(D, H, W\), got"):
    coords.normalized_to_pixel(jnp.zeros(3), (2.0, 3.0, 4.0))
  with pytest.raises(TypeError, match=r"^out_shape must be a tuple of ints like \(D, H, W\), got"):
    coords.base_grid((2.0, 3.0, 4.0))
  with pytest.raises(TypeError, match=r"^out_shape must be a tuple of ints like \(H, W\), got"):
    coords.base_grid((2.0, 3.0))
