"""Forward-mode differentiation of the fused separable bilinear kernel (``_separable_linear``'s JVP).

The kernel is called directly with ``method='fused'`` on small images: forward mode against reverse mode
(``jacfwd == jacrev``, one image per example and one shared image), one-sided tangents, finite-difference
``check_grads`` in both modes away from the kinks, second order. Then ``jax.jvp`` through
``warp(..., 'attention')`` at a size where ``separable.choose_method`` picks the fused kernel, against the
general path and under ``jit`` / ``vmap`` / ``linearize``. The structure check pins down that reverse mode
builds the image gradient (the only scatter) only when it is requested.
"""

import itertools

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from stn_jax import coords, separable, transforms, warp

PADDINGS = ("zeros", "border", "reflection")


def _inputs(seed, image_batch=(2,), batch=(2,)):
  """Image ``(..., 6, 9, 2)`` and axes ``xs (..., 7)``, ``ys (..., 5)`` reaching past the edges."""
  rng = np.random.default_rng(seed)
  image = jnp.asarray(rng.normal(size=image_batch + (6, 9, 2)), jnp.float32)
  xs = jnp.asarray(rng.uniform(-1.3, 1.3, size=batch + (7,)), jnp.float32)
  ys = jnp.asarray(rng.uniform(-1.3, 1.3, size=batch + (5,)), jnp.float32)
  return image, xs, ys


def _fused(padding="zeros", align_corners=False):
  return lambda i, x, y: separable.separable_sample(
    i, x, y, padding_mode=padding, align_corners=align_corners, method="fused"
  )


@pytest.mark.parametrize("padding,align_corners", itertools.product(PADDINGS, (False, True)))
def test_jacfwd_equals_jacrev(padding, align_corners):
  image, xs, ys = _inputs(0)
  jac = lambda jacobian: jax.jit(jacobian(_fused(padding, align_corners), argnums=(0, 1, 2)))
  fwd = jac(jax.jacfwd)(image, xs, ys)
  rev = jac(jax.jacrev)(image, xs, ys)
  for a, b in zip(fwd, rev, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert min(float(jnp.max(jnp.abs(j))) for j in fwd[1:]) > 0.1  # coordinate Jacobians not trivially zero


def test_jacfwd_equals_jacrev_with_one_image_for_all_examples():
  # Bi = 1: every example reads the one image; its gradient adds up the examples' contributions.
  image, xs, ys = _inputs(1, image_batch=(), batch=(3,))
  f = jax.jit(lambda i, x, y: _fused("border")(i, x, y))
  fwd = jax.jacfwd(f, argnums=(0, 1, 2))(image, xs, ys)
  rev = jax.jacrev(f, argnums=(0, 1, 2))(image, xs, ys)
  for a, b in zip(fwd, rev, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_one_sided_tangents_add_up_and_match_reverse_mode():
  # A tangent on xs alone (ys and the image symbolic zeros) and the other two alone sum to the full JVP.
  image, xs, ys = _inputs(2)
  rng = np.random.default_rng(3)
  t_image, t_xs, t_ys = (jnp.asarray(rng.normal(size=a.shape), jnp.float32) for a in (image, xs, ys))
  f = _fused("reflection", True)
  _, full = jax.jvp(f, (image, xs, ys), (t_image, t_xs, t_ys))
  _, only_xs = jax.jvp(lambda x: f(image, x, ys), (xs,), (t_xs,))
  _, only_ys = jax.jvp(lambda y: f(image, xs, y), (ys,), (t_ys,))
  _, only_image = jax.jvp(lambda i: f(i, xs, ys), (image,), (t_image,))
  np.testing.assert_allclose(full, only_xs + only_ys + only_image, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(only_image, f(t_image, xs, ys), rtol=1e-5, atol=1e-6)  # linear in the image
  jac_xs = jax.jacrev(lambda x: f(image, x, ys))(xs)
  np.testing.assert_allclose(only_xs, jnp.tensordot(jac_xs, t_xs, axes=xs.ndim), rtol=1e-4, atol=1e-4)


def _away_from_kinks(rng, batch, n, size, align_corners, lo, hi):
  """Normalised coordinates of one axis whose pixel values sit >= 0.2 px from integers and half-integers."""
  pix = rng.uniform(lo, hi, size=batch + (n,))
  pix = np.floor(pix) + rng.uniform(0.2, 0.3, size=pix.shape) + 0.5 * rng.integers(0, 2, size=pix.shape)
  return coords.pixel_to_normalized(
    jnp.asarray(pix[..., None], jnp.float32), (size,), align_corners=align_corners
  )[..., 0]


@pytest.mark.parametrize("padding", PADDINGS)
def test_check_grads_forward_and_reverse(padding):
  rng = np.random.default_rng(4)
  image = jnp.asarray(rng.normal(size=(2, 5, 6, 2)), jnp.float32)
  # Interior points, plus (for zeros) points in the outer ring where one tap reads padding.
  lo = -0.9 if padding == "zeros" else 0.0
  xs = _away_from_kinks(rng, (2,), 4, 6, False, lo, 5.9 if padding == "zeros" else 5.0)
  ys = _away_from_kinks(rng, (2,), 3, 5, False, lo, 4.9 if padding == "zeros" else 4.0)
  f = _fused(padding)
  test_util.check_grads(f, (image, xs, ys), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2, rtol=2e-2)


def test_second_order_forward_over_reverse_equals_reverse_over_reverse():
  image, xs, ys = _inputs(5)
  loss = lambda x, y: jnp.sum(jnp.sin(_fused("border")(image, x, y)))
  fwd_rev = jax.jacfwd(jax.grad(loss, argnums=(0, 1)), argnums=(0, 1))(xs, ys)
  rev_rev = jax.jacrev(jax.grad(loss, argnums=(0, 1)), argnums=(0, 1))(xs, ys)
  for a, b in zip(jax.tree_util.tree_leaves(fwd_rev), jax.tree_util.tree_leaves(rev_rev), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# Large enough for separable.choose_method to pick the fused kernel (the CUB crop's path), still cheap.
_SIZE, _OUT = (160, 160), (4, 4)


def _crop_inputs(seed):
  rng = np.random.default_rng(seed)
  image = jnp.asarray(rng.normal(size=(2,) + _SIZE + (1,)), jnp.float32)
  params = np.asarray(transforms.get_family("attention").identity_params())
  params = jnp.asarray(params * 0.3 + rng.uniform(-0.2, 0.2, size=(2, 3)), jnp.float32)
  t_image = jnp.asarray(rng.normal(size=image.shape), jnp.float32)
  t_params = jnp.asarray(rng.normal(size=params.shape), jnp.float32)
  return image, params, t_image, t_params


def _crop(image, params, fast_path="auto"):
  return warp.warp(image, params, "attention", _OUT, fast_path=fast_path)


def test_jvp_through_attention_crop_on_the_fused_kernel_equals_the_general_path():
  assert separable.choose_method(_SIZE, _OUT) == "fused"
  image, params, t_image, t_params = _crop_inputs(6)
  out, tangent = jax.jvp(_crop, (image, params), (t_image, t_params))
  ref_out, ref_tangent = jax.jvp(lambda i, p: _crop(i, p, False), (image, params), (t_image, t_params))
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(tangent, ref_tangent, rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(tangent))) > 0.1


def test_jvp_through_attention_crop_under_jit_vmap_and_linearize():
  image, params, t_image, t_params = _crop_inputs(7)
  jvp = lambda i, p, ti, tp: jax.jvp(_crop, (i, p), (ti, tp))
  out, tangent = jvp(image, params, t_image, t_params)
  jit_out, jit_tangent = jax.jit(jvp)(image, params, t_image, t_params)
  vmap_out, vmap_tangent = jax.vmap(jvp)(image, params, t_image, t_params)  # per example, unbatched inside
  lin_out, lin = jax.linearize(_crop, image, params)
  # Eager and jit round the pixel coordinates differently (~1e-5 px at this size; tangents reach ~500).
  scale = float(jnp.max(jnp.abs(tangent)))
  for o, t in ((jit_out, jit_tangent), (vmap_out, vmap_tangent), (lin_out, lin(t_image, t_params))):
    np.testing.assert_allclose(o, out, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t, tangent, rtol=1e-5, atol=1e-5 * scale)
  # jacfwd to the parameters, batched by vmap, equals reverse mode.
  fwd = jax.jit(jax.vmap(jax.jacfwd(_crop, argnums=1)))(image, params)
  rev = jax.jit(jax.vmap(jax.jacrev(_crop, argnums=1)))(image, params)
  np.testing.assert_allclose(fwd, rev, rtol=1e-4, atol=1e-4)


def test_reverse_mode_scatters_only_for_the_image_gradient():
  image, xs, ys = _inputs(8)
  loss = lambda i, x, y: jnp.sum(_fused()(i, x, y) ** 2)
  coords_only = helpers.primitives(jax.make_jaxpr(jax.grad(loss, argnums=(1, 2)))(image, xs, ys).jaxpr)
  everything = helpers.primitives(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(image, xs, ys).jaxpr)
  assert not any("scatter" in name for name in coords_only)
  assert "scatter-add" in everything
