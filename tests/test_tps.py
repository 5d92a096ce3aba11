"""Tests for stn_jax.tps: thin plate spline and piecewise-affine grids and families."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from stn_jax import coords, estimate, tps, transforms


def _perturbed(rng, points, scale=0.1):
  return jnp.asarray(np.asarray(points) + scale * rng.normal(size=points.shape), jnp.float32)


def test_default_control_points():
  c = np.asarray(tps.default_control_points(4))
  assert c.shape == (16, 2)
  np.testing.assert_allclose(c[:4], [[-1, -1], [-1 / 3, -1], [1 / 3, -1], [1, -1]], atol=1e-7)
  np.testing.assert_allclose(c[-1], [1, 1])
  # An aligned 4x4 output grid puts its pixel centres exactly on the control points.
  np.testing.assert_allclose(coords.base_grid((4, 4), align_corners=True).reshape(-1, 2), c, atol=1e-7)


@pytest.mark.parametrize("grid_fn", [tps.tps_grid, tps.piecewise_affine_grid])
def test_interpolates_control_points(grid_fn):
  c = tps.default_control_points(4)
  source = _perturbed(np.random.default_rng(0), c)
  grid = grid_fn(source, (4, 4), align_corners=True)
  np.testing.assert_allclose(grid.reshape(-1, 2), source, atol=1e-6)


def test_tps_interpolates_an_arbitrary_base():
  rng = np.random.default_rng(1)
  base = jnp.asarray(rng.uniform(-1, 1, size=(9, 2)), jnp.float32)
  source = _perturbed(rng, base)
  coeffs = estimate.fit_tps(base, source)
  np.testing.assert_allclose(estimate.tps_features(base, base) @ coeffs, source, atol=1e-5)


@pytest.mark.parametrize("grid_fn", [tps.tps_grid, tps.piecewise_affine_grid])
def test_affine_source_points_give_the_affine_grid(grid_fn):
  theta = jnp.array([[0.8, 0.3, 0.1], [-0.2, 1.1, -0.05]])
  c = tps.default_control_points(4)
  source = c @ theta[:, :2].T + theta[:, 2]
  np.testing.assert_allclose(
    grid_fn(source, (7, 9)), transforms.affine_grid(theta, (7, 9)), atol=2e-6, err_msg=grid_fn.__name__
  )


def test_tps_strong_regularisation_tends_to_least_squares_affine():
  c = tps.default_control_points(4)
  source = _perturbed(np.random.default_rng(2), c, 0.2)
  grid = tps.tps_grid(source, (6, 6), regularization=1e6)
  want = transforms.affine_grid(estimate.estimate_affine(c, source), (6, 6))
  np.testing.assert_allclose(grid, want, atol=1e-3)
  assert (
    float(
      jnp.abs(
        tps.tps_grid(source, (4, 4), regularization=1.0, align_corners=True).reshape(-1, 2) - source
      ).max()
    )
    > 1e-3
  )


def test_tps_traced_base_equals_fixed_base_and_is_differentiable():
  rng = np.random.default_rng(3)
  c = tps.default_control_points(4)
  source = _perturbed(rng, c)
  fixed = tps.tps_grid(source, (5, 6))
  traced = jax.jit(lambda base: tps.tps_grid(source, (5, 6), control_points=base))(c)
  np.testing.assert_allclose(traced, fixed, atol=2e-5)
  # A shared traced base with a batch of source sets (one solve, many right-hand sides) == per example.
  sources = _perturbed(rng, jnp.broadcast_to(c, (3, 16, 2)))
  batched = jax.jit(lambda base: tps.tps_grid(sources, (5, 6), control_points=base))(c)
  np.testing.assert_allclose(batched, tps.tps_grid(sources, (5, 6)), atol=2e-5)


def test_tps_kernel_zero_log_zero_gradient():
  # Output points coincide with control points: U(0) = 0 and its gradient 0, checked numerically.
  c = tps.default_control_points(3)
  points = jnp.concatenate([c[:4], jnp.array([[0.3, -0.2]])])
  assert float(estimate.tps_kernel(c[:1], c[:1])[0, 0]) == 0.0
  test_util.check_grads(
    jax.jit(lambda q: estimate.tps_kernel(points, q)), (c,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2
  )
  grad = jax.jit(jax.grad(lambda p: estimate.tps_kernel(p, c).sum()))(c)
  assert bool(jnp.isfinite(grad).all())


def test_tps_learnable_base_check_grads():
  c = tps.default_control_points(3)
  source = _perturbed(np.random.default_rng(4), c)
  test_util.check_grads(
    jax.jit(lambda base: tps.tps_grid(source, (3, 3), control_points=base, align_corners=True)),
    (c,),
    order=1,
    modes=("rev",),
    atol=5e-2,
    rtol=5e-2,
  )


@pytest.mark.parametrize("grid_fn", [tps.tps_grid, tps.piecewise_affine_grid])
def test_batched_equals_vmap_and_jit(grid_fn):
  c = tps.default_control_points(4)
  source = _perturbed(np.random.default_rng(5), jnp.broadcast_to(c, (3, 16, 2)))
  batched = grid_fn(source, (5, 7))
  np.testing.assert_allclose(batched, jax.vmap(lambda s: grid_fn(s, (5, 7)))(source), atol=1e-6)
  np.testing.assert_allclose(batched, jax.jit(lambda s: grid_fn(s, (5, 7)))(source), atol=1e-6)


def test_piecewise_affine_moves_only_the_triangles_of_a_vertex():
  g = 4
  c = tps.default_control_points(g)
  vertex = 5  # (i, j) = (1, 1): an interior vertex at (-1/3, -1/3)
  source = c.at[vertex].add(jnp.array([0.1, -0.05]))
  grid = tps.piecewise_affine_grid(source, (31, 31), align_corners=True)
  base = coords.base_grid((31, 31), align_corners=True)
  moved = jnp.abs(grid - base).max(-1) > 0
  # Its star: the six triangles around it lie within one cell of the vertex; nothing else moves.
  x, y = base[..., 0], base[..., 1]
  near = (jnp.abs(x + 1 / 3) < 2 / 3 - 1e-6) & (jnp.abs(y + 1 / 3) < 2 / 3 - 1e-6)
  assert not bool((moved & ~near).any())
  # The vertex itself moves by exactly the displacement; the midpoint of an edge to it by half of it.
  np.testing.assert_allclose(grid[10, 10] - base[10, 10], [0.1, -0.05], atol=1e-6)
  np.testing.assert_allclose(grid[10, 15] - base[10, 15], [0.05, -0.025], atol=1e-6)


@pytest.mark.parametrize("family_fn", [tps.tps_family, tps.piecewise_affine_family])
def test_family_round_trip(family_fn):
  family = family_fn()
  assert family.num_params == 32 and family.matrix is None and not family.axis_aligned
  ident = family.identity_params()
  np.testing.assert_array_equal(ident.reshape(16, 2), tps.default_control_points(4))
  assert bool((family.grid(ident, (6, 5)) == coords.base_grid((6, 5))).all())
  custom = transforms.get_family(
    family.name,
    **(
      {"grid_size": 3}
      if family.name == "piecewise_affine"
      else {"control_points": tps.default_control_points(3)}
    ),
  )
  assert custom.num_params == 18


def test_singular_bases_raise():
  c = tps.default_control_points(4)
  with pytest.raises(ValueError, match="duplicate points 0 and 1"):
    tps.tps_grid(c, (4, 4), control_points=c.at[1].set(c[0]))
  collinear = jnp.stack([jnp.linspace(-1, 1, 16), jnp.linspace(-1, 1, 16)], -1)
  with pytest.raises(ValueError, match="collinear"):
    tps.tps_grid(c, (4, 4), control_points=collinear)
  with pytest.raises(ValueError, match="collinear"):
    tps.tps_family(control_points=collinear)
  # With regularisation duplicates are a well-posed smoothing problem.
  assert bool(
    jnp.isfinite(tps.tps_grid(c, (4, 4), control_points=c.at[1].set(c[0]), regularization=0.1)).all()
  )


def test_family_errors_name_the_arguments_the_caller_passed():
  collinear = jnp.stack([jnp.linspace(-1, 1, 5), jnp.linspace(-1, 1, 5)], -1)
  with pytest.raises(ValueError, match="^control_points is degenerate"):
    transforms.get_family("tps", control_points=collinear)
  with pytest.raises(ValueError, match="^control_points has duplicate points 0 and 1"):
    tps.tps_family(control_points=tps.default_control_points(3).at[1].set(-1.0))
  with pytest.raises(ValueError, match=r"^control_points must have at least 3 points"):
    tps.tps_family(control_points=collinear[:2])
  with pytest.raises(TypeError, match="^regularization must be a number >= 0, got None"):
    tps.tps_family(regularization=None)
  for name in ("tps", "piecewise_affine"):
    family = transforms.get_family(name)
    params = jnp.stack([family.identity_params()] * 2).at[1, 5].set(jnp.nan)
    pattern = rf"^params of the '{name}' family contains non-finite values .* first at index \(1, 5\)\.$"
    with pytest.raises(ValueError, match=pattern):
      family.grid(params, (3, 4))


def test_shape_errors():
  c = tps.default_control_points(4)
  with pytest.raises(ValueError, match="same number of points K"):
    tps.tps_grid(c[:9], (4, 4))
  with pytest.raises(ValueError, match=r"source_points must have shape \(\.\.\., K, 2\)"):
    tps.tps_grid(jnp.zeros((16, 3)), (4, 4))
  with pytest.raises(ValueError, match=r"\(\.\.\., 9, 2\) for grid_size=3"):
    tps.piecewise_affine_grid(c, (4, 4), grid_size=3)
  with pytest.raises(ValueError, match=r"'tps' family must have shape \(\.\.\., 32\)"):
    tps.tps_family().grid(jnp.zeros(30), (4, 4))
  with pytest.raises(TypeError, match="floating dtype"):
    tps.tps_grid(jnp.zeros((16, 2), jnp.int32), (4, 4))
  with pytest.raises(ValueError, match="grid_size must be >= 2"):
    tps.default_control_points(1)


@pytest.mark.parametrize("make_family", [tps.tps_family, tps.piecewise_affine_family])
def test_first_call_inside_jit(make_family):
  # A shape never evaluated eagerly: the cached constant matrix must be built while tracing.
  fam = make_family()
  params = fam.identity_params()
  grid = jax.jit(lambda p: fam.grid(p, (11, 19)))(params)
  np.testing.assert_array_equal(grid, coords.base_grid((11, 19)))
