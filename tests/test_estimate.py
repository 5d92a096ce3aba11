"""Tests for stn_jax.estimate: affine least squares, DLT homographies and TPS fits from correspondences."""

import tracemalloc

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import estimate, transforms

H_TRUE = np.array([[1.1, 0.2, 0.1], [-0.3, 0.9, -0.2], [0.15, -0.2, 1.0]])
SQUARE = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * 0.8


def _apply_h(h, points):
  q = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1) @ np.swapaxes(h, -1, -2)
  return (q[..., :2] / q[..., 2:]).astype(np.float32)


def test_estimate_affine_recovers_known_affine_batched():
  rng = np.random.default_rng(0)
  theta = np.array([[[1.1, 0.2, 0.1], [-0.3, 0.9, -0.2]], [[0.5, -0.5, 0.0], [0.5, 0.5, 0.3]]], np.float32)
  src = rng.normal(size=(2, 10, 2)).astype(np.float32)
  dst = np.einsum("bij,bnj->bni", theta[..., :2], src) + theta[:, None, :, 2]
  np.testing.assert_allclose(estimate.estimate_affine(src, dst), theta, atol=1e-5)
  # Three points determine it exactly.
  np.testing.assert_allclose(estimate.estimate_affine(src[0, :3], dst[0, :3]), theta[0], atol=1e-4)


def test_estimate_affine_is_least_squares():
  rng = np.random.default_rng(1)
  src = rng.normal(size=(20, 2))
  dst = rng.normal(size=(20, 2))
  design = np.concatenate([src, np.ones((20, 1))], 1)
  want = np.linalg.lstsq(design, dst, rcond=None)[0].T
  np.testing.assert_allclose(
    estimate.estimate_affine(src.astype(np.float32), dst.astype(np.float32)), want, atol=1e-5
  )


def test_four_point_homography_maps_the_points_exactly():
  dst = _apply_h(H_TRUE, SQUARE)
  h = estimate.estimate_homography(SQUARE, dst)
  assert float(h[2, 2]) == 1.0
  np.testing.assert_allclose(_apply_h(np.asarray(h, np.float64), SQUARE), dst, atol=1e-5)
  np.testing.assert_allclose(h, H_TRUE, atol=1e-4)


def test_n_point_dlt_recovers_known_homography_batched():
  rng = np.random.default_rng(2)
  src = rng.uniform(-1, 1, size=(3, 12, 2)).astype(np.float32)
  hs = H_TRUE + 0.05 * rng.normal(size=(3, 3, 3))
  hs = hs / hs[:, 2:, 2:]
  dst = _apply_h(hs, src)
  np.testing.assert_allclose(estimate.estimate_homography(src, dst), hs, atol=2e-4)
  jitted = jax.jit(estimate.estimate_homography)(src, dst)
  np.testing.assert_allclose(jitted, hs, atol=2e-4)


def test_homography_grid_round_trip():
  # Estimated from the output corners to perturbed source corners, the grid hits those corners.
  src_corners = SQUARE + np.array([[0.1, 0.0], [-0.1, 0.05], [0.0, -0.1], [0.05, 0.1]], np.float32)
  corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
  h = estimate.estimate_homography(corners, src_corners)
  grid = transforms.projective_grid(h, (5, 5), align_corners=True)
  np.testing.assert_allclose(grid[[0, 0, -1, -1], [0, -1, -1, 0]], src_corners, atol=1e-5)


def test_degenerate_point_sets_raise():
  collinear3 = np.array([[0, 0], [0.5, 0], [1, 0], [0, 1]], np.float32)
  with pytest.raises(ValueError, match="three of the four points"):
    estimate.estimate_homography(collinear3, SQUARE)
  with pytest.raises(ValueError, match="three of the four points"):
    estimate.estimate_homography(SQUARE, collinear3)
  duplicate = SQUARE.copy()
  duplicate[1] = duplicate[0]
  with pytest.raises(ValueError, match="duplicate points 0 and 1"):
    estimate.estimate_homography(duplicate, SQUARE)
  line = np.stack([np.linspace(-1, 1, 6), np.linspace(0, 1, 6)], -1).astype(np.float32)
  with pytest.raises(ValueError, match="collinear"):
    estimate.estimate_homography(line, line)
  with pytest.raises(ValueError, match="collinear"):
    estimate.estimate_affine(line, line)


def test_shape_and_dtype_errors():
  with pytest.raises(ValueError, match="same number of points N"):
    estimate.estimate_affine(np.zeros((4, 2), np.float32), np.zeros((5, 2), np.float32))
  with pytest.raises(ValueError, match="at least 4 points"):
    estimate.estimate_homography(SQUARE[:3], SQUARE[:3])
  with pytest.raises(ValueError, match=r"dst must have shape \(\.\.\., N, 2\)"):
    estimate.estimate_homography(SQUARE, np.zeros((4, 3), np.float32))
  with pytest.raises(TypeError, match="floating dtype"):
    estimate.estimate_affine(np.zeros((4, 2), np.int32), SQUARE)
  with pytest.raises(ValueError, match="do not broadcast"):
    estimate.estimate_affine(np.zeros((2, 4, 2), np.float32), np.zeros((3, 4, 2), np.float32))
  with pytest.raises(ValueError, match="regularization must be >= 0"):
    estimate.fit_tps(SQUARE, SQUARE, regularization=-1.0)
  with pytest.raises(TypeError, match="^regularization must be a number >= 0, got None"):
    estimate.fit_tps(SQUARE, SQUARE, regularization=None)  # was "got nan" (np.asarray(None, float))


def _brute_force_duplicate(p, tol):
  """The all-pairs reference: the closest pair within tol (Chebyshev) of the first batch element with one."""
  d = np.abs(p[:, :, None] - p[:, None]).max(-1) + np.eye(p.shape[1]) * (tol[:, None, None] + 1)
  dup = d.min(axis=(1, 2)) <= tol
  if not dup.any():
    return None
  b = int(np.argmax(dup))
  return (b, *(int(k) for k in np.unravel_index(np.argmin(d[b]), d[b].shape)))


def test_sort_based_duplicate_search_matches_all_pairs():
  rng = np.random.default_rng(4)
  for trial in range(300):
    b, n = rng.integers(1, 4), rng.integers(2, 30)
    p = rng.uniform(-1, 1, (b, n, 2))
    if trial % 3 == 0:  # exact duplicates on a coarse lattice
      p = np.round(p * 2) / 2
    elif trial % 3 == 1:  # near duplicates, some just inside and some just outside the tolerance
      k = rng.integers(0, n, n // 3)
      offset = rng.choice([0.5e-5, 2e-5]) * rng.choice([-1, 1], (b, len(k), 2))
      p[:, k] = p[:, rng.integers(0, n, len(k))] + offset
    tol = 1e-5 * np.abs(p - p.mean(1, keepdims=True)).max(axis=(1, 2))
    assert estimate._closest_duplicate(p, tol) == _brute_force_duplicate(p, tol), trial


def test_duplicate_check_memory_is_linear_in_the_number_of_points():
  # The all-pairs check held (N, N, 2) float64 differences: 144 MB for N = 3000.
  points = np.random.default_rng(5).uniform(-1, 1, (3000, 2))
  points[2999] = points[17]
  tracemalloc.start()
  with pytest.raises(ValueError, match="duplicate points 17 and 2999"):
    estimate.check_points("src", points)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 8e6, peak


def _avals(jaxpr):
  for eqn in jaxpr.eqns:
    yield from (v.aval for v in eqn.outvars)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _avals(sub)


def test_dlt_has_no_quadratic_intermediate_and_many_points_run():
  # A full SVD of the (2N, 9) DLT matrix builds a (2N, 2N) U (16 GB for N = 20000); the reduced one does not.
  n = 1000
  pts = jnp.zeros((n, 2))
  jaxpr = jax.make_jaxpr(estimate.estimate_homography)(pts, pts).jaxpr
  biggest = max(int(np.prod(a.shape)) for a in _avals(jaxpr))
  assert biggest <= 2 * n * 9, biggest
  src = np.random.default_rng(6).uniform(-1, 1, (20000, 2)).astype(np.float32)
  np.testing.assert_allclose(estimate.estimate_homography(src, _apply_h(H_TRUE, src)), H_TRUE, atol=1e-4)


def test_fit_tps_under_jit_and_identity():
  rng = np.random.default_rng(3)
  base = jnp.asarray(rng.uniform(-1, 1, size=(8, 2)), jnp.float32)
  coeffs = jax.jit(estimate.fit_tps)(base, base)
  # The identity is the affine part (1, x, y) -> (x, y) with zero kernel weights.
  np.testing.assert_allclose(coeffs[:8], 0, atol=1e-5)
  np.testing.assert_allclose(coeffs[8:], [[0, 0], [1, 0], [0, 1]], atol=1e-5)


def _np_homography_4pt(src, dst):
  """Reference: solve the 8x8 linear system of the 4 correspondences in float64 (h22 = 1)."""
  a, b = [], []
  for (x, y), (u, v) in zip(src, dst, strict=True):
    a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b += [u, v]
  return np.append(np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64)), 1.0).reshape(3, 3)


def test_closed_form_four_point_homography_matches_a_float64_solve():
  rng = np.random.default_rng(3)
  corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
  src = (corners * 0.7 + rng.normal(0, 0.15, (8, 4, 2))).astype(np.float32)
  dst = (corners * 0.9 + rng.normal(0, 0.2, (8, 4, 2))).astype(np.float32)
  dst[0] = dst[0][[0, 2, 1, 3]]  # a self-intersecting ("bow-tie") target is still a valid projective basis
  h = estimate.estimate_homography(src, dst)
  assert h.shape == (8, 3, 3)
  np.testing.assert_array_equal(h[:, 2, 2], 1.0)
  for i in range(8):
    want = _np_homography_4pt(src[i].astype(np.float64), dst[i].astype(np.float64))
    np.testing.assert_allclose(h[i], want, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(_apply_h(np.asarray(h[i], np.float64), src[i]), dst[i], atol=5e-5)
  # Fused (jit) code may contract a * b + c into one FMA, so jit and eager agree to rounding, not bits.
  np.testing.assert_allclose(jax.jit(estimate.estimate_homography)(src, dst), h, rtol=1e-5, atol=1e-5)
