"""Forward-mode differentiation of grid_sample's bilinear/trilinear kernel (its hand-written JVP).

Forward mode is checked against reverse mode (``jacfwd == jacrev``), against the exact linearity in the
image, under ``jit`` / ``vmap`` / ``linearize``, for bf16 images and to second order (the finite-difference
``check_grads`` in both modes live in test_sampling_grads.py); the structure checks pin down that reverse
mode still builds the image gradient (the only scatter) only when it is requested.
"""

import itertools

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import _sampling_linear, sampling

PADDINGS = ("zeros", "border", "reflection")


def _inputs(seed, d, channels=2):
  """A small random image and grid, the grid reaching past the edges (every padding branch is used)."""
  rng = np.random.default_rng(seed)
  spatial, out = ((4, 5), (3, 2)) if d == 2 else ((3, 4, 5), (2, 2, 2))
  image = jnp.asarray(rng.normal(size=(2,) + spatial + (channels,)), jnp.float32)
  grid = jnp.asarray(rng.uniform(-1.3, 1.3, size=(2,) + out + (d,)), jnp.float32)
  return image, grid


@pytest.mark.parametrize("d,padding,align_corners", itertools.product((2, 3), PADDINGS, (False, True)))
def test_jacfwd_equals_jacrev(d, padding, align_corners):
  image, grid = _inputs(0, d)
  f = lambda i, g: sampling.grid_sample(i, g, padding_mode=padding, align_corners=align_corners)
  fwd = jax.jacfwd(f, argnums=(0, 1))(image, grid)
  rev = jax.jacrev(f, argnums=(0, 1))(image, grid)
  assert float(jnp.max(jnp.abs(fwd[1]))) > 0.1  # the coordinate Jacobian is not trivially zero
  for a, b in zip(fwd, rev, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d", (2, 3))
def test_image_tangent_is_sampling_the_tangent(d):
  # grid_sample is linear in the image: the JVP along the image is the tangent image sampled on the grid.
  image, grid = _inputs(3, d)
  t_image = jnp.asarray(np.random.default_rng(4).normal(size=image.shape), jnp.float32)
  f = lambda i: sampling.grid_sample(i, grid, padding_mode="reflection")
  out, tangent = jax.jvp(f, (image,), (t_image,))
  np.testing.assert_allclose(out, f(image), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(tangent, f(t_image), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("d", (2, 3))
def test_tangent_wrt_image_only_and_grid_only_add_up(d):
  image, grid = _inputs(5, d)
  rng = np.random.default_rng(6)
  t_image = jnp.asarray(rng.normal(size=image.shape), jnp.float32)
  t_grid = jnp.asarray(rng.normal(size=grid.shape), jnp.float32)
  f = lambda i, g: sampling.grid_sample(i, g, padding_mode="zeros", align_corners=True)
  _, both = jax.jvp(f, (image, grid), (t_image, t_grid))
  _, only_image = jax.jvp(lambda i: f(i, grid), (image,), (t_image,))
  _, only_grid = jax.jvp(lambda g: f(image, g), (grid,), (t_grid,))
  np.testing.assert_allclose(both, only_image + only_grid, rtol=1e-5, atol=1e-5)
  # Each one-sided tangent is the Jacobian-vector product of the matching reverse-mode Jacobian.
  jac_grid = jax.jacrev(lambda g: f(image, g))(grid)
  expected = jnp.tensordot(jac_grid, t_grid, axes=grid.ndim)
  np.testing.assert_allclose(only_grid, expected, rtol=1e-4, atol=1e-4)


def test_jvp_under_jit_and_vmap_and_linearize_agree():
  image, grid = _inputs(7, 2)
  rng = np.random.default_rng(8)
  t_image = jnp.asarray(rng.normal(size=image.shape), jnp.float32)
  t_grid = jnp.asarray(rng.normal(size=grid.shape), jnp.float32)
  f = lambda i, g: sampling.grid_sample(i, g, padding_mode="border")
  jvp = lambda i, g, ti, tg: jax.jvp(f, (i, g), (ti, tg))
  out, tangent = jvp(image, grid, t_image, t_grid)
  jit_out, jit_tangent = jax.jit(jvp)(image, grid, t_image, t_grid)
  vmap_out, vmap_tangent = jax.vmap(jvp)(image, grid, t_image, t_grid)  # per example, unbatched inside
  lin_out, lin = jax.linearize(f, image, grid)
  for o, t in ((jit_out, jit_tangent), (vmap_out, vmap_tangent), (lin_out, lin(t_image, t_grid))):
    np.testing.assert_allclose(o, out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(t, tangent, rtol=1e-5, atol=1e-5)


def test_jacfwd_under_vmap_matches_per_example():
  image, grid = _inputs(9, 3)
  f = lambda i, g: sampling.grid_sample(i, g)
  batched = jax.vmap(jax.jacfwd(f, argnums=1))(image, grid)
  for b in range(image.shape[0]):
    np.testing.assert_allclose(batched[b], jax.jacfwd(f, argnums=1)(image[b], grid[b]), rtol=1e-5, atol=1e-5)


def test_bfloat16_image_jvp():
  image, grid = _inputs(10, 2, channels=3)
  t_grid = jnp.asarray(np.random.default_rng(11).normal(size=grid.shape), jnp.float32)
  f = lambda i: lambda g: sampling.grid_sample(i, g)
  out, tangent = jax.jvp(f(image.astype(jnp.bfloat16)), (grid,), (t_grid,))
  assert out.dtype == jnp.bfloat16 and tangent.dtype == jnp.bfloat16
  # Sampled in float32 and rounded once: the bf16 image's own float32 result, rounded.
  ref_out, ref_tangent = jax.jvp(f(image.astype(jnp.bfloat16).astype(jnp.float32)), (grid,), (t_grid,))
  np.testing.assert_array_equal(out, ref_out.astype(jnp.bfloat16))
  np.testing.assert_array_equal(tangent, ref_tangent.astype(jnp.bfloat16))


def test_second_order_forward_over_reverse_equals_reverse_over_reverse():
  image, grid = _inputs(12, 2)
  loss = lambda g: jnp.sum(jnp.sin(sampling.grid_sample(image, g, padding_mode="reflection")))
  fwd_rev = jax.jacfwd(jax.grad(loss))(grid)
  rev_rev = jax.jacrev(jax.grad(loss))(grid)
  np.testing.assert_allclose(fwd_rev, rev_rev, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", (2, 3))
def test_reverse_mode_scatters_only_for_the_image_gradient(d):
  # Symbolic-zero tangents: with the image not differentiated, the image half of the JVP (whose transpose
  # is the scatter) is never traced; with it, exactly the one scatter-add appears.
  image, grid = _inputs(13, d)
  loss = lambda i, g: jnp.sum(sampling.grid_sample(i, g) ** 2)
  grid_only = helpers.primitives(jax.make_jaxpr(jax.grad(loss, argnums=1))(image, grid).jaxpr)
  both = helpers.primitives(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(image, grid).jaxpr)
  assert not any("scatter" in name for name in grid_only)
  assert "scatter-add" in both


@pytest.mark.parametrize("d", (2, 3))
@pytest.mark.parametrize("channels", (1, 3))  # 3D: one channel takes the per-corner form, more the where form
def test_the_transpose_of_the_image_tangent_scatters_each_tap_with_its_weight(d, channels):
  # Reverse mode's image gradient is JAX's transpose of the stacked-layout image tangent; check it against
  # a plain loop that adds w_corner * g at every tap inside the image (taps outside read 0, so add nothing).
  rng = np.random.default_rng(14)
  sizes = (4, 5) if d == 2 else (3, 4, 5)
  flat = jnp.zeros((2, int(np.prod(sizes)), channels), jnp.float32)
  q = jnp.asarray(rng.uniform(-1.0, np.asarray(sizes[::-1], np.float32), size=(2, 7, d)), jnp.float32)
  g = np.asarray(rng.normal(size=(2, 7, channels)), np.float32)
  lo, fracs = _sampling_linear._split(q, sizes)
  tangent = lambda t: _sampling_linear._image_tangent(t, lo, fracs, sizes)
  transposed = jax.linear_transpose(tangent, flat)(jnp.asarray(g))[0]
  expected = np.zeros(flat.shape, np.float64)
  lo, fracs = [np.asarray(i) for i in lo], [np.asarray(f, np.float64) for f in fracs]
  for b, p, corner in itertools.product(range(2), range(7), itertools.product((0, 1), repeat=d)):
    tap = [int(i[b, p]) + bit for i, bit in zip(lo, corner, strict=True)]
    if all(0 <= t < n for t, n in zip(tap, sizes, strict=True)):
      w = np.prod([f[b, p] if bit else 1 - f[b, p] for f, bit in zip(fracs, corner, strict=True)])
      expected[b, np.ravel_multi_index(tap, sizes)] += w * g[b, p]
  np.testing.assert_allclose(transposed, expected, rtol=1e-5, atol=1e-6)
