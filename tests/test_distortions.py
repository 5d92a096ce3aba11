"""Tests of the distorted-MNIST generators against independent numpy/scipy references and known answers.

The fixed test sets are tested in test_distortions_test_set.py, the off-centre class in
test_distortions_offcentre.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from stn_jax.data import _distortion_variants, _draws, distortions, mnist

B = 6


@functools.cache
def _digits():
  return mnist.load("test", source="idx")[0][:B]


@functools.cache
def _clutter():
  return jnp.asarray(mnist.load("train", source="idx")[0][:1000])


@functools.cache
def _jitted_apply(variant):
  return jax.jit(functools.partial(distortions.apply_params, variant=variant))


N_PARAMS = 1024


@functools.cache
def _sampler(variant):
  clutter_size = 1000 if variant == "tc" else None
  return jax.jit(lambda k: distortions.sample_params(k, variant, N_PARAMS, clutter_size=clutter_size))


@functools.cache
def _params(variant, seed=0):
  """N_PARAMS parameter draws (one compiled sampler per variant); the tests render the first B of them."""
  return _sampler(variant)(jax.random.key(seed))


def _first(params, n=B):
  return jax.tree.map(lambda x: x[:n], params)


def _render(variant, params):
  clutter = _clutter() if variant == "tc" else None
  return np.asarray(_jitted_apply(variant)(_digits(), params, clutter_source=clutter))


def _bilinear(image, xs, ys):
  """Zero-padded bilinear sampling at pixel coordinates (scipy, independent of stn_jax)."""
  return ndimage.map_coordinates(image.astype(np.float64), [ys, xs], order=1, mode="grid-constant", cval=0.0)


def _centred_canvas_coords(side):
  i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
  return j - (side - 1) / 2, i - (side - 1) / 2


def _padded(digit, side):
  pad = (side - 28) // 2
  return np.pad(digit / 255.0, pad)


@pytest.mark.parametrize("variant", ["r", "rts", "p", "e", "tc"])
def test_identity_params_give_the_centred_digit(variant):
  side = distortions.VARIANTS[variant]
  out = _render(variant, distortions.identity_params(variant, B))
  assert out.shape == (B, side, side, 1)
  expected = np.stack([_padded(d, side) for d in _digits()])
  # TC copies pixels; the others resample exactly on pixel centres (float round-off only).
  np.testing.assert_allclose(out[..., 0], expected, atol=0 if variant == "tc" else 2e-5)


@pytest.mark.parametrize("variant", ["r", "rts"])
def test_quarter_turn_is_rot90(variant):
  params = distortions.identity_params(variant, B)
  params["angle"] = jnp.full((B,), 90.0)
  out = _render(variant, params)[..., 0]
  # Positive angles turn the digit counter-clockwise as displayed, like np.rot90.
  expected = np.stack([np.rot90(_padded(d, 42)) for d in _digits()])
  np.testing.assert_allclose(out, expected, atol=2e-5)


def test_rts_integer_shift_moves_the_digit():
  params = distortions.identity_params("rts", B)
  params["shift"] = jnp.tile(jnp.asarray([[5.0, -3.0]]), (B, 1))
  out = _render("rts", params)[..., 0]
  expected = np.stack([np.roll(_padded(d, 42), (-3, 5), axis=(0, 1)) for d in _digits()])
  np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("variant", ["r", "rts"])
def test_similarity_matches_scipy_reference(variant):
  params = _first(_params(variant))
  out = _render(variant, params)[..., 0]
  xc, yc = _centred_canvas_coords(42)
  for b, digit in enumerate(_digits()):
    a = np.deg2rad(float(params["angle"][b]))
    s = float(params["scale"][b]) if variant == "rts" else 1.0
    tx, ty = np.asarray(params["shift"][b], np.float64) if variant == "rts" else (0.0, 0.0)
    # Pull map in pixels: the canvas point reads the digit at R(a) (p - t) / s around the digit centre 13.5.
    xs = (np.cos(a) * (xc - tx) - np.sin(a) * (yc - ty)) / s + 13.5
    ys = (np.sin(a) * (xc - tx) + np.cos(a) * (yc - ty)) / s + 13.5
    np.testing.assert_allclose(out[b], _bilinear(digit / 255.0, xs, ys), atol=2e-4)


def _homography(src, dst):
  """numpy DLT with h33 = 1 from four correspondences (float64)."""
  rows, rhs = [], []
  for (x, y), (u, v) in zip(src, dst, strict=True):
    rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
    rhs += [u, v]
  return np.append(np.linalg.solve(np.asarray(rows), np.asarray(rhs)), 1.0).reshape(3, 3)


def test_projective_matches_numpy_reference():
  params = _first(_params("p"))
  out = _render("p", params)[..., 0]
  corners = np.asarray([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64)
  i, j = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
  for b, digit in enumerate(_digits()):
    s = float(params["scale"][b])
    # In pixels: the digit's box corners (edges at -0.5 and 27.5) are scaled about 13.5 then perturbed.
    target = 13.5 + 14 * s * corners + np.asarray(params["corner_noise"][b], np.float64)
    h = _homography(target, 13.5 + 14 * corners)
    xyw = np.einsum("ij,jhw->ihw", h, np.stack([j, i, np.ones_like(i)]).astype(np.float64))
    xs, ys = xyw[0] / xyw[2], xyw[1] / xyw[2]
    np.testing.assert_allclose(out[b], _bilinear(digit / 255.0, xs, ys), atol=1e-3)


def _tps_numpy(control, values, points):
  """Thin plate spline through (control -> values), evaluated at points; float64, independent of stn_jax."""

  def kernel(a, c):
    d2 = ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    return np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-300)), 0.0)

  k = len(control)
  p = np.concatenate([np.ones((k, 1)), control], axis=1)
  system = np.block([[kernel(control, control), p], [p.T, np.zeros((3, 3))]])
  coef = np.linalg.solve(system, np.concatenate([values, np.zeros((3, 2))]))
  q = np.concatenate([np.ones((len(points), 1)), points], axis=1)
  return kernel(points, control) @ coef[:k] + q @ coef[k:]


def test_elastic_matches_numpy_tps_reference():
  params = _first(_params("e"))
  out = _render("e", params)[..., 0]
  t = np.linspace(-1, 1, 4)
  gy, gx = np.meshgrid(t, t, indexing="ij")
  control = np.stack([gx.ravel(), gy.ravel()], axis=1)
  centres = (2 * np.arange(28) + 1) / 28 - 1
  py, px = np.meshgrid(centres, centres, indexing="ij")
  points = np.stack([px.ravel(), py.ravel()], axis=1)
  for b, digit in enumerate(_digits()):
    s = float(params["scale"][b])
    source = (control + np.asarray(params["control_noise"][b], np.float64) * 2 / 28) / s
    src = _tps_numpy(control, source, points)
    pix = ((src + 1) * 28 - 1) / 2  # normalised -> pixel, align_corners=False
    np.testing.assert_allclose(out[b].ravel(), _bilinear(digit / 255.0, pix[:, 0], pix[:, 1]), atol=1e-3)


def test_clutter_digit_is_copied_exactly_and_patches_come_from_the_source():
  params = _first(_params("tc"))
  # Float inputs, so that the check is exact (no uint8 -> float conversion on either side).
  digits = (_digits() / 255.0).astype(np.float32)
  clutter = (np.asarray(_clutter()) / 255.0).astype(np.float32)
  out = np.asarray(_jitted_apply("tc")(digits, params, clutter_source=clutter))[..., 0]
  for b, digit in enumerate(digits):
    x, y = np.asarray(params["offset"][b])
    expected = np.zeros((60, 60), np.float32)
    expected[y : y + 28, x : x + 28] = digit
    for idx, (sx, sy), (dx, dy) in zip(
      *(np.asarray(params[k][b]) for k in ("patch_index", "patch_src", "patch_dst")), strict=True
    ):
      region = expected[dy : dy + 6, dx : dx + 6]
      expected[dy : dy + 6, dx : dx + 6] = np.maximum(region, clutter[idx, sy : sy + 6, sx : sx + 6])
    np.testing.assert_array_equal(out[b], expected)
    # Max compositing: the digit is never darkened.
    assert np.all(out[b, y : y + 28, x : x + 28] >= digit)


def test_parameter_distributions():
  n = N_PARAMS
  r = _params("r")
  assert -90 <= r["angle"].min() < -88 and 88 < r["angle"].max() <= 90
  assert abs(float(r["angle"].mean())) < 3 * 52 / np.sqrt(n)  # std of U[-90, 90] is 52.
  rts = _params("rts")
  assert -45 <= rts["angle"].min() < -44 and 44 < rts["angle"].max() <= 45
  assert 0.7 <= rts["scale"].min() < 0.71 and 1.19 < rts["scale"].max() <= 1.2
  room = (42 - 28 * rts["scale"]) / 2
  assert bool(jnp.all(jnp.abs(rts["shift"]) <= room[:, None] + 1e-5))
  assert float(jnp.max(jnp.abs(rts["shift"]) / room[:, None])) > 0.99
  p = _params("p")
  assert 0.75 <= p["scale"].min() and p["scale"].max() <= 1.0
  # Conditioning on convexity trims only the rare extreme draws: the std stays close to 5 px.
  assert 4.7 < float(jnp.std(p["corner_noise"])) < 5.2 and abs(float(jnp.mean(p["corner_noise"]))) < 0.25
  quads = 14 * p["scale"][:, None, None] * jnp.asarray(_distortion_variants._CORNERS) + p["corner_noise"]
  assert bool(jnp.all(jax.vmap(_distortion_variants._convex)(quads)))
  e = _params("e")
  assert 1.43 < float(jnp.std(e["control_noise"])) < 1.57 and e["control_noise"].shape == (n, 16, 2)
  assert abs(float(jnp.mean(e["control_noise"]))) < 0.05
  tc = _params("tc")
  for name, high in (("offset", 32), ("patch_index", 999), ("patch_src", 22), ("patch_dst", 54)):
    assert int(tc[name].min()) == 0 and int(tc[name].max()) == high, name


@pytest.mark.parametrize("variant", sorted(distortions.VARIANTS))
def test_shapes_range_and_determinism(variant):
  side = distortions.VARIANTS[variant]
  a = _render(variant, _first(_params(variant)))
  b = _render(variant, _first(_params.__wrapped__(variant)))  # Sampled again from the same key.
  c = _render(variant, _first(_params(variant, seed=1)))
  assert a.shape == (B, side, side, 1) and a.dtype == np.float32
  assert np.all(np.isfinite(a)) and a.min() >= 0 and a.max() <= 1
  assert a.max() > 0.9  # Every variant keeps most of the digit visible.
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_float_digits_match_uint8():
  fn = jax.jit(functools.partial(distortions.apply_params, variant="r"))
  params = _first(_params("r"))
  np.testing.assert_allclose(fn(_digits() / 255.0, params), _render("r", params), atol=1e-6)


def test_jit_equals_eager():
  key, digits = jax.random.key(2), _digits()[:2]
  eager, params = distortions.distort(key, digits, "rts", return_params=True)
  jitted, jit_params = jax.jit(distortions.distort, static_argnums=2, static_argnames="return_params")(
    key, digits, "rts", return_params=True
  )
  # Equal to float tolerance, not bit for bit: XLA reassociates float arithmetic differently under jit.
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), params, jit_params)
  np.testing.assert_allclose(eager, jitted, atol=1e-5)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="unknown variant 'x'"):
    distortions.distort(jax.random.key(0), _digits(), "x")
  with pytest.raises(ValueError, match="clutter_source"):
    distortions.distort(jax.random.key(0), _digits(), "tc")
  with pytest.raises(ValueError, match=r"\(B, 28, 28\)"):
    distortions.distort(jax.random.key(0), _digits()[0], "r")
  with pytest.raises(TypeError, match="uint8"):
    distortions.distort(jax.random.key(0), _digits().astype(np.int32), "r")
  with pytest.raises(ValueError, match="num"):
    distortions.test_set("r", num=0)
  with pytest.raises(ValueError, match="more than the 3 random numbers"):
    _draws.Draws(jax.random.key(0), 3).uniform(0.0, 1.0, (4,))


def test_sample_train_jit_matches_eager_to_float_tolerance():
  # Same digits, labels and parameters; the images agree to float tolerance only (not bit for bit): XLA fuses
  # and reorders float arithmetic differently in the jitted and the eager program (differences ~1e-6).
  digits, labels = (jnp.asarray(a[:200]) for a in mnist.load("test", source="idx"))
  key = jax.random.key(5)
  eager = distortions.sample_train(key, digits, labels, 4, "rts")
  jitted = jax.jit(distortions.sample_train, static_argnums=(3, 4))(key, digits, labels, 4, "rts")
  np.testing.assert_array_equal(np.asarray(eager[1]), np.asarray(jitted[1]))
  np.testing.assert_allclose(np.asarray(eager[0]), np.asarray(jitted[0]), rtol=0, atol=1e-5)


# Each would once be truncated by int() (2.5 -> 2, True -> 1) or fail deep inside JAX.
_NOT_INTS = [2.5, 2.0, True, np.float32(3.0), "8", None]


@pytest.mark.parametrize("bad", _NOT_INTS)
def test_counts_and_seeds_must_be_ints(bad):
  key = jax.random.key(0)
  digits, labels = jnp.zeros((10, 28, 28), jnp.uint8), jnp.zeros((10,), jnp.int32)
  calls = {
    "batch_size": [
      lambda: distortions.sample_params(key, "r", bad),
      lambda: distortions.identity_params("r", bad),
      lambda: distortions.sample_train(key, digits, labels, bad, "r"),
    ],
    "clutter_size": [lambda: distortions.sample_params(key, "tc", 2, clutter_size=bad)],
    "num": [lambda: distortions.test_set("r", num=bad), lambda: distortions.test_set_params("r", num=bad)],
    "seed": [lambda: distortions.test_set("r", bad, num=2), lambda: distortions.test_set_params("r", bad)],
  }
  for name, fns in calls.items():
    if bad is None and name in ("num", "clutter_size"):
      continue  # None means the default there.
    for fn in fns:
      with pytest.raises(TypeError, match=f"^{name} must be an int, got"):
        fn()


def test_counts_out_of_range_and_numpy_ints():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
    distortions.sample_params(key, "r", 0)
  with pytest.raises(ValueError, match="clutter_size must be >= 1, got 0"):
    distortions.sample_params(key, "tc", 2, clutter_size=0)
  with pytest.raises(ValueError, match=r"num must be in \[1, 10000\], got 10001"):
    distortions.test_set("r", num=10_001)
  with pytest.raises(TypeError, match="offcentre_shift must be an int, got 7.5"):
    distortions.check_offcentre(0.3, (7.5, 20), 28)
  with pytest.raises(TypeError, match="offcentre_shift must be"):
    distortions.check_offcentre(0.3, 7, 28)
  # numpy integers are ints: the same cached set as the Python ints.
  assert distortions.test_set("r", np.int64(0), num=np.int32(3))[0] is distortions.test_set("r", 0, num=3)[0]
  assert distortions.sample_params(key, "r", np.int64(3))["angle"].shape == (3,)
