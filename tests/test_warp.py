"""Tests for stn_jax.warp: the separable fast path and the general path agree; dispatch and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import sampling, separable, transforms, warp

AXIS_ALIGNED = ["attention", "translation", "scale"]


def _image(shape=(2, 9, 11, 3), seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _params(name, batch=(2,), seed=1, scale=0.3):
  family = transforms.get_family(name)
  ident = np.asarray(family.identity_params())
  return jnp.asarray(
    ident + scale * np.random.default_rng(seed).normal(size=batch + ident.shape), jnp.float32
  )


@pytest.mark.parametrize(
  "name, mode, padding_mode",
  [
    ("scale", "bicubic", "reflection"),
    ("attention", "bilinear", "zeros"),
    ("translation", "nearest", "border"),
  ],
)
def test_fast_path_equals_general_path(name, mode, padding_mode):
  image, params = _image(), _params(name)
  for align_corners in (False, True):
    kwargs = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    fast = warp.warp(image, params, name, (6, 8), fast_path=True, **kwargs)
    general = warp.warp(image, params, name, (6, 8), fast_path=False, **kwargs)
    assert fast.shape == (2, 6, 8, 3)
    np.testing.assert_allclose(fast, general, atol=1e-5)


@pytest.mark.parametrize("name", ["attention", "scale"])
def test_fast_path_gradients_equal_general_path(name):
  image, params = _image(), _params(name)
  weights = _image((2, 7, 5, 3), seed=2)

  def loss(img, p, fast_path):
    return jnp.sum(warp.warp(img, p, name, (7, 5), fast_path=fast_path) * weights)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
  fast, general = grad(image, params, True), grad(image, params, False)
  for f, g in zip(fast, general, strict=True):
    np.testing.assert_allclose(f, g, atol=1e-4, rtol=1e-4)
  assert float(jnp.abs(fast[1]).min()) > 0


def test_large_image_fast_path_is_fused_and_equals_general_path():
  # Large enough for separable.choose_method to pick the 'fused' kernel (the CUB crop's path).
  image, params = _image((2, 200, 200, 2)), _params("attention", scale=0.2)
  assert separable.choose_method((200, 200), (100, 100)) == "fused"
  weights = _image((2, 100, 100, 2), seed=2)

  def loss(img, p, fast_path):
    return jnp.sum(warp.warp(img, p, "attention", (100, 100), fast_path=fast_path) * weights)

  value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
  fast_loss, fast = value_and_grad(image, params, True)
  general_loss, general = value_and_grad(image, params, False)
  np.testing.assert_allclose(fast_loss, general_loss, rtol=1e-5)
  # Image gradient: the two paths round the pixel coordinates (~1e-5 px at this size) differently.
  np.testing.assert_allclose(fast[0], general[0], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(fast[1], general[1], rtol=1e-4)
  assert float(jnp.abs(fast[1]).min()) > 0


def test_auto_picks_the_fast_path_only_where_it_applies():
  assert warp.uses_fast_path("attention") and warp.uses_fast_path("scale", "bicubic")
  assert not warp.uses_fast_path("attention", fast_path=False)
  for name in ("similarity", "affine", "projective", "affine3d", "tps", "piecewise_affine"):
    assert not warp.uses_fast_path(name)
  with pytest.raises(ValueError, match="fast_path=True needs an axis-aligned"):
    warp.warp(_image(), _params("affine"), "affine", (4, 4), fast_path=True)
  with pytest.raises(ValueError, match="fast_path must be"):
    warp.warp(_image(), _params("attention"), "attention", (4, 4), fast_path="yes")


@pytest.mark.parametrize("name", list(transforms.FAMILIES) + ["tps", "piecewise_affine"])
def test_identity_params_return_the_image(name):
  family = transforms.get_family(name)
  image = _image((2, 4, 6, 5, 3) if family.ndim == 3 else (2, 6, 5, 3))
  out = warp.warp(image, family.identity_params(), family, image.shape[1:-1])
  np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
  "name", ["similarity", "affine", "projective", "tps", "piecewise_affine", "affine3d"]
)
def test_general_path_is_grid_sample_of_the_family_grid(name):
  family = transforms.get_family(name)
  image = _image((2, 5, 6, 7, 2) if family.ndim == 3 else (2, 6, 7, 2))
  out_shape = (4, 5, 3) if family.ndim == 3 else (5, 3)
  params = _params(name, scale=0.1)
  want = sampling.grid_sample(image, family.grid(params, out_shape), padding_mode="border")
  got = warp.warp(image, params, family, out_shape, padding_mode="border")
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_broadcasting_one_theta_many_images_and_vmap():
  image = _image((3, 8, 8, 1))
  params = jnp.array([0.5, 0.2, -0.1])
  batched = warp.warp(image, params, "attention", (4, 4))
  looped = jnp.stack([warp.warp(image[i], params, "attention", (4, 4)) for i in range(3)])
  np.testing.assert_allclose(batched, looped, atol=1e-6)
  many = _params("attention", batch=(3,))
  np.testing.assert_allclose(
    warp.warp(image, many, "attention", (4, 4)),
    jax.vmap(lambda i, p: warp.warp(i, p, "attention", (4, 4)))(image, many),
    atol=1e-6,
  )


def test_errors():
  with pytest.raises(ValueError, match="unknown mode 'cubic'"):
    warp.warp(_image(), _params("attention"), "attention", (4, 4), mode="cubic")
  with pytest.raises(ValueError, match="unknown padding_mode"):
    warp.warp(_image(), _params("attention"), "attention", (4, 4), padding_mode="wrap")
  with pytest.raises(ValueError, match="unknown transform family"):
    warp.warp(_image(), _params("attention"), "crop", (4, 4))
  with pytest.raises(ValueError, match="out_shape"):
    warp.warp(_image(), _params("attention"), "attention", (4, 4, 4))
