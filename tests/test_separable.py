"""separable_sample: every method equals grid_sample on the separable grid (values and gradients)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import coords, sampling, separable

PADDINGS = ("zeros", "border", "reflection")


def _inputs(seed=0, batch=(2,), size=(6, 9), out=(5, 7)):
  rng = np.random.default_rng(seed)
  image = rng.normal(size=batch + size + (3,)).astype(np.float32)
  xs = rng.uniform(-1.5, 1.5, size=batch + (out[1],)).astype(np.float32)
  ys = rng.uniform(-1.5, 1.5, size=batch + (out[0],)).astype(np.float32)
  xs[..., 0], ys[..., -1] = 20.3, -3.7  # far outside
  return jnp.asarray(image), jnp.asarray(xs), jnp.asarray(ys)


def _grid(xs, ys):
  return jnp.stack(jnp.broadcast_arrays(xs[..., None, :], ys[..., :, None]), axis=-1)


# Bicubic compiles slowly (16 taps): one case by default, the others marked slow.
CASES = list(itertools.product(("bilinear",), PADDINGS, (False, True)))
CASES += [("nearest", p, ac) for p, ac in zip(PADDINGS, (True, False, True), strict=True)]
CASES += [
  pytest.param("nearest", p, ac, marks=pytest.mark.slow) for p, ac in (("zeros", False), ("border", True))
]
CASES += [("bicubic", "zeros", False)]
CASES += [
  pytest.param("bicubic", p, ac, marks=pytest.mark.slow)
  for p, ac in (("border", True), ("reflection", False))
]


@pytest.mark.parametrize("mode,padding,align_corners", CASES)
def test_equals_grid_sample_values_and_gradients(mode, padding, align_corners):
  image, xs, ys = _inputs()
  cot = jnp.asarray(np.random.default_rng(9).normal(size=(2, 5, 7, 3)), jnp.float32)
  kw = dict(mode=mode, padding_mode=padding, align_corners=align_corners)
  methods = ("dense", "banded", "gather") + (("fused",) if mode == "bilinear" else ())

  @jax.jit
  def both(image, xs, ys, cot):
    # One compiled program per case (an eager vjp would compile every backward op separately).
    ref, vjp = jax.vjp(lambda i, g: sampling.grid_sample(i, g, **kw), image, _grid(xs, ys))
    ref_di, ref_dg = vjp(cot)
    results = {"ref": (ref, ref_di, ref_dg[..., 0].sum(-2), ref_dg[..., 1].sum(-1))}
    for method in methods:
      out, vjp = jax.vjp(
        lambda i, x, y, method=method: separable.separable_sample(i, x, y, method=method, **kw), image, xs, ys
      )
      results[method] = (out, *vjp(cot))
    return results

  results = both(image, xs, ys, cot)
  for method in methods:
    for name, got, want, tol in zip(
      ("values", "d image", "d xs", "d ys"),
      results[method],
      results["ref"],
      (1e-5, 1e-5, 1e-4, 1e-4),
      strict=True,
    ):
      np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"{method} {name}")


@pytest.mark.parametrize("method", ["dense", "fused", "banded", "gather"])
def test_identity_is_exact(method):
  image, _, _ = _inputs()
  for ac in (False, True):
    xs = coords.linspace(9, align_corners=ac)
    ys = coords.linspace(6, align_corners=ac)
    out = separable.separable_sample(image, xs, ys, align_corners=ac, method=method)
    np.testing.assert_array_equal(out, image)


def test_nonfinite_coordinates_zero_their_row_or_column_only():
  image, xs, ys = _inputs()
  bad_x, bad_y = xs.at[0, 2].set(jnp.nan), ys.at[1, 1].set(jnp.inf)
  for method in ("dense", "fused", "banded"):
    for padding in PADDINGS:
      f = lambda x, y, p=padding, m=method: separable.separable_sample(image, x, y, padding_mode=p, method=m)
      out, ref = np.asarray(f(bad_x, bad_y)), np.asarray(f(xs, ys))
      np.testing.assert_array_equal(out[0, :, 2], 0.0)
      np.testing.assert_array_equal(out[1, 1], 0.0)
      keep = np.ones(out.shape[:3], bool)
      keep[0, :, 2] = keep[1, 1] = False
      np.testing.assert_array_equal(out[keep], ref[keep])


@pytest.mark.parametrize("method", ["dense", "fused", "banded", "gather"])
def test_broadcasting_and_vmap(method):
  image, xs, ys = _inputs(batch=(3,))
  f = lambda i, x, y: separable.separable_sample(i, x, y, method=method, padding_mode="border")
  loop = jnp.stack([f(image[0], x, y) for x, y in zip(xs, ys, strict=True)])
  np.testing.assert_allclose(f(image[0], xs, ys), loop, rtol=1e-5, atol=1e-5)  # one image, many axes
  loop = jnp.stack([f(i, xs[0], ys[0]) for i in image])
  np.testing.assert_allclose(f(image, xs[0], ys[0]), loop, rtol=1e-5, atol=1e-5)  # many images, one axis pair
  np.testing.assert_allclose(jax.vmap(f)(image, xs, ys), f(image, xs, ys), rtol=1e-5, atol=1e-5)


def test_auto_picks_dense_for_small_and_fused_or_gather_for_large_images():
  assert separable.choose_method((60, 60), (60, 60)) == "dense"
  assert separable.choose_method((448, 448), (224, 224)) == "fused"
  assert separable.choose_method((448, 448), (224, 224), "bicubic") == "gather"


def test_bfloat16_image():
  image, xs, ys = _inputs()
  out = separable.separable_sample(image.astype(jnp.bfloat16), xs, ys)
  assert out.dtype == jnp.bfloat16
  want = separable.separable_sample(image.astype(jnp.bfloat16).astype(jnp.float32), xs, ys)
  np.testing.assert_allclose(out.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
  "args,kwargs,exc,match",
  [
    (((5, 6), (4,), (3,)), {}, ValueError, "image must have shape"),
    (((5, 6, 1), (), (3,)), {}, ValueError, "xs must have shape"),
    (((2, 5, 6, 1), (3, 4), (3,)), {}, ValueError, "leading .batch. dims"),
    (((5, 6, 1), (4,), (3,)), {"mode": "area"}, ValueError, "unknown mode"),
    (((5, 6, 1), (4,), (3,)), {"padding_mode": "wrap"}, ValueError, "unknown padding_mode"),
    (((5, 6, 1), (4,), (3,)), {"method": "fft"}, ValueError, "unknown method"),
    (((5, 6, 1), (4,), (3,)), {"method": "fused", "mode": "nearest"}, ValueError, "bilinear only"),
  ],
)
def test_errors(args, kwargs, exc, match):
  with pytest.raises(exc, match=match):
    separable.separable_sample(*(jnp.zeros(s) for s in args), **kwargs)
  with pytest.raises(TypeError, match="ys must have a floating dtype"):
    separable.separable_sample(jnp.zeros((5, 6, 1)), jnp.zeros(4), jnp.zeros(3, jnp.int32))
