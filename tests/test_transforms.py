"""Tests for stn_jax.transforms: affine_grid, the transform families, matrices, compose/invert, projective."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from stn_jax import coords, transforms

FAMILY_NAMES = list(transforms.FAMILIES) + ["tps", "piecewise_affine"]


def _out_shape(family):
  return (3, 5, 4) if family.ndim == 3 else (5, 7)


def _random_params(family, rng, batch=(), scale=0.1):
  ident = np.asarray(family.identity_params())
  return jnp.asarray(ident + scale * rng.normal(size=batch + ident.shape), jnp.float32)


# ------------------------------------------------------------------------------------------- affine_grid


@pytest.mark.torch
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("ndim", [2, 3])
def test_affine_grid_matches_torch(ndim, align_corners):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  theta = rng.normal(size=(3, ndim, ndim + 1)).astype(np.float32)
  out_shape = (4, 6, 5) if ndim == 3 else (6, 5)
  want = torch.nn.functional.affine_grid(torch.tensor(theta), (3, 1) + out_shape, align_corners=align_corners)
  got = transforms.affine_grid(theta, out_shape, align_corners=align_corners)
  np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("out_shape", [(5, 7), (1, 3), (2, 3, 4)])
def test_affine_grid_identity_is_base_grid(out_shape, align_corners):
  n = len(out_shape)
  theta = jnp.eye(n, n + 1)
  got = transforms.affine_grid(theta, out_shape, align_corners=align_corners)
  assert bool((got == coords.base_grid(out_shape, align_corners=align_corners)).all())


def test_affine_grid_translation_shifts_every_point():
  base = coords.base_grid((4, 6))
  got = transforms.affine_grid(jnp.array([[1.0, 0, 0.25], [0, 1, -0.5]]), (4, 6))
  np.testing.assert_allclose(got, base + jnp.array([0.25, -0.5]), atol=1e-7)


def test_affine_grid_quarter_turn_permutes_coordinates():
  # theta = [[0, -1], [1, 0]]: grid[i, j] = (-y_i, x_j) = base[j, n - 1 - i] on a square symmetric grid.
  n = 6
  base = np.asarray(coords.base_grid((n, n)))
  got = np.asarray(transforms.affine_grid(jnp.array([[0.0, -1, 0], [1, 0, 0]]), (n, n)))
  want = np.transpose(base, (1, 0, 2))[::-1]
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(2, 2, 3), (3, 4)])
def test_affine_grid_check_grads(shape):
  # Covers the custom JVP (a contraction with the base grid) in forward and reverse mode, to second order.
  theta = jnp.asarray(np.random.default_rng(7).normal(size=shape), jnp.float32)
  out_shape = (4, 5) if shape[-1] == 3 else (2, 3, 4)
  jax.test_util.check_grads(
    jax.jit(lambda t: transforms.affine_grid(t, out_shape)),
    (theta,),
    order=2,
    modes=("fwd", "rev"),
    atol=1e-2,
    rtol=1e-2,
  )


def test_projective_grid_check_grads():
  h = jnp.eye(3) + 0.1 * jnp.asarray(np.random.default_rng(8).normal(size=(3, 3)), jnp.float32)
  jax.test_util.check_grads(
    jax.jit(lambda m: transforms.projective_grid(m, (3, 4))),
    (h,),
    order=1,
    modes=("fwd", "rev"),
    atol=1e-2,
    rtol=1e-2,
  )


def test_rotation_direction_is_counter_clockwise_on_screen():
  # 5x5 output, align_corners=True: pixel (row 0, col 2) is the top centre, (x, y) = (0, -1).
  grid = transforms.affine_grid(transforms.rotation_matrix(jnp.pi / 2), (5, 5), align_corners=True)
  # It reads the source's right centre (1, 0): content on the right moves to the top = counter-clockwise.
  np.testing.assert_allclose(grid[0, 2], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(
    transforms.similarity_matrix(1.0, 0.3, 0.0, 0.0), transforms.rotation_matrix(0.3), atol=1e-7
  )


def test_similarity_matrix_batches_and_matches_family():
  scale, angle = jnp.array([0.5, 2.0]), jnp.array([0.1, -1.0])
  m = transforms.similarity_matrix(scale, angle, 0.2, -0.3)
  assert m.shape == (2, 2, 3)
  params = jnp.stack(
    [scale * jnp.cos(angle), scale * jnp.sin(angle), jnp.full(2, 0.2), jnp.full(2, -0.3)], -1
  )
  np.testing.assert_allclose(transforms.FAMILIES["similarity"].matrix(params)[:, :2], m, atol=1e-6)


# ---------------------------------------------------------------------------------------------- families


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_identity_is_exact_and_counts_match(name):
  family = transforms.get_family(name)
  ident = family.identity_params()
  assert ident.shape == (family.num_params,) and ident.dtype == jnp.float32
  assert len(family.param_names) == family.num_params
  for align_corners in (False, True):
    out_shape = _out_shape(family)
    got = family.grid(ident, out_shape, align_corners=align_corners)
    assert bool((got == coords.base_grid(out_shape, align_corners=align_corners)).all()), align_corners


def test_family_parameter_counts():
  counts = {name: transforms.get_family(name).num_params for name in FAMILY_NAMES}
  assert counts == {
    "attention": 3,
    "translation": 2,
    "scale": 4,
    "similarity": 4,
    "affine": 6,
    "projective": 8,
    "affine3d": 12,
    "tps": 32,
    "piecewise_affine": 32,
  }


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_batched_equals_vmap_and_jit_equals_eager(name):
  family = transforms.get_family(name)
  params = _random_params(family, np.random.default_rng(1), batch=(2, 3))
  out_shape = _out_shape(family)
  batched = family.grid(params, out_shape)
  assert batched.shape == (2, 3) + out_shape + (family.ndim,)
  mapped = jax.vmap(jax.vmap(lambda p: family.grid(p, out_shape)))(params)
  np.testing.assert_allclose(batched, mapped, atol=1e-6)
  jitted = jax.jit(lambda p: family.grid(p, out_shape))(params)
  np.testing.assert_allclose(batched, jitted, atol=1e-6)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_gradients_are_finite_and_nonzero(name):
  family = transforms.get_family(name)
  params = _random_params(family, np.random.default_rng(2))
  target = jnp.asarray(np.random.default_rng(3).normal(size=_out_shape(family) + (family.ndim,)), jnp.float32)
  grad = jax.jit(jax.grad(lambda p: jnp.sum(family.grid(p, _out_shape(family)) * target)))(params)
  assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).max()) > 0


@pytest.mark.parametrize("name", [n for n in FAMILY_NAMES if transforms.get_family(n).matrix is not None])
def test_family_matrix_agrees_with_grid(name):
  family = transforms.get_family(name)
  params = _random_params(family, np.random.default_rng(4), batch=(2,))
  m = family.matrix(params)
  n = family.ndim
  assert m.shape == (2, n + 1, n + 1)
  out_shape = _out_shape(family)
  if name == "projective":
    want = transforms.projective_grid(m, out_shape)
  else:
    np.testing.assert_array_equal(m[:, n], jnp.broadcast_to(jnp.eye(n + 1)[n], (2, n + 1)))
    want = transforms.affine_grid(m[:, :n], out_shape)
  np.testing.assert_allclose(family.grid(params, out_shape), want, atol=1e-6)


@pytest.mark.parametrize("name", ["attention", "translation", "scale"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_axis_aligned_axes_match_grid(name, align_corners):
  family = transforms.FAMILIES[name]
  assert family.axis_aligned
  params = _random_params(family, np.random.default_rng(5), batch=(3,))
  xs, ys = family.axes(params, (5, 7), align_corners=align_corners)
  assert xs.shape == (3, 7) and ys.shape == (3, 5)
  grid = family.grid(params, (5, 7), align_corners=align_corners)
  np.testing.assert_array_equal(grid[..., 0], jnp.broadcast_to(xs[:, None, :], (3, 5, 7)))
  np.testing.assert_array_equal(grid[..., 1], jnp.broadcast_to(ys[:, :, None], (3, 5, 7)))


def test_non_axis_aligned_families_have_no_axes():
  for name in ("similarity", "affine", "projective", "affine3d"):
    assert not transforms.FAMILIES[name].axis_aligned and transforms.FAMILIES[name].axes is None


# ------------------------------------------------------------------------------------------ compose/invert


@pytest.mark.parametrize("shape", [(2, 3), (3, 3), (3, 4), (4, 4)])
def test_invert_round_trip(shape):
  rng = np.random.default_rng(6)
  n = shape[1] - 1
  m = np.concatenate([np.eye(n) + 0.2 * rng.normal(size=(4, n, n)), rng.normal(size=(4, n, 1))], -1)
  if shape[0] == shape[1]:
    last = np.concatenate([0.1 * rng.normal(size=(4, 1, n)), np.ones((4, 1, 1))], -1)
    m = np.concatenate([m, last], -2)
  m = jnp.asarray(m, jnp.float32)
  inv = transforms.invert(m)
  assert inv.shape == m.shape
  eye = jnp.broadcast_to(jnp.eye(n + 1)[: shape[0]], m.shape)
  np.testing.assert_allclose(transforms.compose(m, inv), eye, atol=1e-5)
  np.testing.assert_allclose(transforms.compose(inv, m), eye, atol=1e-5)


def test_compose_applies_b_then_a():
  a = transforms.similarity_matrix(1.5, 0.4, 0.1, -0.2)
  b = jnp.array([[0.9, 0.1, 0.3], [-0.2, 1.1, 0.0]])
  grid_b = transforms.affine_grid(b, (4, 5))
  want = jnp.einsum("ij,hwj->hwi", a[:, :2], grid_b) + a[:, 2]
  np.testing.assert_allclose(transforms.affine_grid(transforms.compose(a, b), (4, 5)), want, atol=1e-6)
  assert transforms.compose(a, transforms.to_homogeneous(b)).shape == (3, 3)


def test_invert_singular_raises_when_concrete():
  with pytest.raises(ValueError, match="singular"):
    transforms.invert(jnp.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))


@pytest.mark.parametrize("dtype, diag", [(jnp.bfloat16, (0.005, 0.005, 1.0)), (jnp.float16, (6e4, 6e4, 1.0))])
def test_half_precision_singularity_uses_the_eps_of_the_float32_solve(dtype, diag):
  # Condition numbers 200 and 6e4 exceed 1 / eps of bfloat16 / float16, but the linear algebra runs in
  # float32, where these matrices are well conditioned.
  h = jnp.diag(jnp.array(diag)).astype(dtype)
  assert transforms.projective_grid(h, (3, 3)).dtype == dtype
  inv = np.asarray(transforms.invert(h), np.float32)
  np.testing.assert_allclose(inv, np.diag(1 / np.array(diag)), rtol=1e-2)
  with pytest.raises(ValueError, match="singular"):
    transforms.invert(jnp.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]], dtype))


# -------------------------------------------------------------------------------------------- projective


def test_projective_horizon_is_finite_and_outside():
  # w = 1 + 2 x: the left quarter of the output (x < -0.5) is behind the horizon.
  h = jnp.array([[1.0, 0, 0], [0, 1, 0], [2, 0, 1]])
  grid = transforms.projective_grid(h, (8, 8))
  x_t = coords.base_grid((8, 8))[..., 0]
  assert bool(jnp.isfinite(grid).all())
  behind = x_t < -0.5
  assert bool((jnp.abs(grid[behind]) > 1).all())
  assert bool((grid[behind] == transforms.FAR).all())
  np.testing.assert_allclose(
    grid[~behind], (coords.base_grid((8, 8)) / (1 + 2 * x_t)[..., None])[~behind], rtol=1e-6
  )
  # h, -h and 1e-7 h are the same homography.
  np.testing.assert_array_equal(transforms.projective_grid(-h, (8, 8)), grid)
  np.testing.assert_allclose(transforms.projective_grid(1e-7 * h, (8, 8)), grid, rtol=1e-6)


def test_projective_near_horizon_gradients_are_finite():
  family = transforms.FAMILIES["projective"]

  def loss(p):
    return jnp.sum(family.grid(p, (9, 9)) ** 2)

  # w = 1 + 1.25 x - ... hits ~0 at output points: huge but finite values are clipped.
  grid_fn, grad_fn = jax.jit(lambda p: family.grid(p, (9, 9))), jax.jit(jax.grad(loss))
  for p6 in (1.0, 1.25, 3.0, -4.0):
    params = jnp.array([1.0, 0, 0, 0, 1, 0, p6, 0])
    assert bool(jnp.isfinite(grid_fn(params)).all())
    assert bool(jnp.isfinite(grad_fn(params)).all())


def test_projective_singular_raises_when_concrete_not_under_jit():
  h = jnp.array([[1.0, 2, 0], [2, 4, 0], [0, 0, 1]])
  with pytest.raises(ValueError, match="singular"):
    transforms.projective_grid(h, (4, 4))
  assert bool(jnp.isfinite(jax.jit(lambda m: transforms.projective_grid(m, (4, 4)))(h)).all())


# ------------------------------------------------------------------------------------------------ errors


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 2, 3\)"):
    transforms.affine_grid(jnp.zeros((2, 2)), (4, 4))
  with pytest.raises(ValueError, match="out_shape"):
    transforms.affine_grid(jnp.zeros((2, 3)), (4, 4, 4))
  with pytest.raises(TypeError, match="floating dtype"):
    transforms.affine_grid(jnp.zeros((2, 3), jnp.int32), (4, 4))
  with pytest.raises(ValueError, match=r"'affine' family must have shape \(\.\.\., 6\)"):
    transforms.FAMILIES["affine"].grid(jnp.zeros(5), (4, 4))
  with pytest.raises(ValueError, match="unknown transform family 'afine'"):
    transforms.get_family("afine")
  with pytest.raises(TypeError, match="takes no options"):
    transforms.get_family("affine", grid_size=3)
  # The message states what is accepted: only (..., 3, 3), not the (4, 4) of 3D transforms.
  for bad in (jnp.ones(8), jnp.eye(4), jnp.eye(2, 3)):
    with pytest.raises(ValueError, match=r"^h must have shape \(\.\.\., 3, 3\) \(a 2D homography\), got"):
      transforms.projective_grid(bad, (4, 4))
  with pytest.raises(ValueError, match="both be 2D or both be 3D"):
    transforms.compose(jnp.eye(2, 3), jnp.eye(3, 4))
