"""Edge-case and bad input across the library core: empty batches, option types, non-integer sizes,
non-finite parameters, low-precision linear algebra and argument names in error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax as S
from stn_jax import estimate, matrices, separable, tps, transforms, viz, warp

GRID = S.base_grid((3, 4))
TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.6]], np.float32)


# ------------------------------------------------------------------------------------------ empty inputs


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("shape", [(0, 5, 6, 2), (5, 6, 0), (2, 5, 6, 0)])
def test_empty_batch_or_channels_give_empty_output(mode, shape):
  out = S.grid_sample(jnp.zeros(shape), GRID, mode=mode)
  assert out.shape == shape[:-3] + (3, 4, shape[-1])


def test_empty_batch_in_3d_warp_separable_and_gradient():
  assert S.grid_sample(jnp.zeros((0, 4, 4, 4, 2)), S.base_grid((3, 3, 3))).shape == (0, 3, 3, 3, 2)
  assert warp.warp(jnp.zeros((0, 5, 5, 1)), jnp.zeros((0, 6)), "affine", (3, 4)).shape == (0, 3, 4, 1)
  for method in separable.METHODS[1:]:
    out = S.separable_sample(jnp.zeros((0, 5, 5, 1)), S.linspace(4), S.linspace(3), method=method)
    assert out.shape == (0, 3, 4, 1), method
  grad = jax.grad(lambda im: S.grid_sample(im, GRID).sum())(jnp.zeros((0, 5, 5, 1)))
  assert grad.shape == (0, 5, 5, 1)


def test_empty_image_extent_is_an_error_naming_the_image():
  with pytest.raises(ValueError, match="image must have positive spatial sizes"):
    S.grid_sample(jnp.zeros((0, 5, 1)), GRID)
  with pytest.raises(ValueError, match="image must have positive spatial sizes"):
    S.separable_sample(jnp.zeros((4, 0, 1)), S.linspace(4), S.linspace(3))


# ------------------------------------------------------------------------------------------ option types


@pytest.mark.parametrize(
  "call",
  [
    lambda v: S.grid_sample(jnp.ones((5, 5, 1)), GRID, align_corners=v),
    lambda v: S.separable_sample(jnp.ones((5, 5, 1)), S.linspace(4), S.linspace(3), align_corners=v),
    lambda v: S.affine_grid(jnp.eye(2, 3), (3, 4), align_corners=v),
    lambda v: S.base_grid((2, 2), align_corners=v),
    lambda v: S.linspace(3, align_corners=v),
    lambda v: S.normalized_to_pixel(jnp.zeros(2), (5, 5), align_corners=v),
    lambda v: warp.warp(jnp.ones((5, 5, 1)), jnp.zeros(6), "affine", (3, 4), align_corners=v),
    lambda v: tps.tps_grid(tps.default_control_points(), (3, 4), align_corners=v),
  ],
)
@pytest.mark.parametrize("value", ["False", 1, None])
def test_align_corners_must_be_a_bool(call, value):
  with pytest.raises(TypeError, match="align_corners must be True or False"):
    call(value)


def test_align_corners_accepts_numpy_bools_and_names_itself_under_jit():
  a = S.affine_grid(jnp.eye(2, 3), (3, 4), align_corners=np.bool_(True))
  np.testing.assert_array_equal(a, S.affine_grid(jnp.eye(2, 3), (3, 4), align_corners=True))
  with pytest.raises(TypeError, match="align_corners must be a Python bool, got a traced value"):
    jax.jit(lambda f: S.grid_sample(jnp.ones((5, 5, 1)), GRID, align_corners=f))(True)


@pytest.mark.parametrize(
  "call",
  [
    lambda: S.affine_grid(jnp.eye(2, 3), (3.5, 4)),
    lambda: S.affine_grid(jnp.eye(2, 3), "34"),
    lambda: S.affine_grid(jnp.eye(2, 3), (True, 4)),
    lambda: warp.warp(jnp.ones((5, 5, 1)), jnp.zeros(6), "affine", (3.7, 4)),
    lambda: S.normalized_to_pixel(jnp.zeros(2), (5.0, 7)),
    lambda: S.normalized_to_pixel(jnp.zeros(2), None),
  ],
)
def test_sizes_must_be_ints(call):
  with pytest.raises(TypeError, match="must be a tuple of ints"):
    call()


@pytest.mark.parametrize(
  "call, name",
  [
    (lambda: S.linspace(2.5), "size"),
    (lambda: S.linspace("3"), "size"),
    (lambda: tps.default_control_points(2.9), "grid_size"),
    (lambda: tps.piecewise_affine_grid(jnp.zeros((9, 2)), (3, 4), grid_size=2.7), "grid_size"),
  ],
)
def test_scalar_sizes_must_be_ints(call, name):
  with pytest.raises(TypeError, match=f"{name} must be an int"):
    call()


def test_numpy_and_jax_integer_sizes_are_accepted():
  want = S.affine_grid(jnp.eye(2, 3), (3, 4))
  np.testing.assert_array_equal(S.affine_grid(jnp.eye(2, 3), (np.int64(3), jnp.int32(4))), want)
  np.testing.assert_array_equal(S.affine_grid(jnp.eye(2, 3), np.array([3, 4])), want)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.complex64, jnp.bool_])
def test_coordinate_helpers_need_a_float_dtype(dtype):
  with pytest.raises(TypeError, match="dtype must be a floating dtype"):
    S.linspace(3, dtype=dtype)
  with pytest.raises(TypeError, match="dtype must be a floating dtype"):
    S.base_grid((2, 2), dtype=dtype)


# ----------------------------------------------------------------------------------- non-finite values


NAN_THETA = jnp.eye(2, 3).at[0, 0].set(jnp.nan)


@pytest.mark.parametrize(
  "call, name",
  [
    (lambda: S.affine_grid(NAN_THETA, (2, 2)), "theta"),
    (lambda: matrices.invert(NAN_THETA), "m"),
    (lambda: matrices.invert(jnp.eye(2, 3).at[0, 1].set(jnp.inf)), "m"),
    (lambda: S.projective_grid(jnp.eye(3).at[0, 0].set(jnp.nan), (3, 4)), "h"),
    (lambda: warp.warp(jnp.ones((5, 5, 1)), jnp.full(8, jnp.nan), "projective", (3, 4)), "params"),
    (lambda: warp.warp(jnp.ones((5, 5, 1)), jnp.full(6, jnp.nan), "affine", (3, 4)), "params"),
    (lambda: warp.warp(jnp.ones((5, 5, 1)), jnp.array([jnp.inf, 0.0]), "translation", (3, 4)), "params"),
    (lambda: estimate.estimate_affine(TRIANGLE, TRIANGLE * np.nan), "dst"),
    (lambda: estimate.fit_tps(TRIANGLE, TRIANGLE * np.nan), "source_points"),
    (lambda: tps.tps_grid(tps.default_control_points() * np.nan, (3, 4)), "source_points"),
    (lambda: tps.piecewise_affine_grid(tps.default_control_points() * np.nan, (3, 4)), "source_points"),
  ],
)
def test_non_finite_parameters_are_named(call, name):
  with pytest.raises(ValueError, match=f"{name}.*non-finite"):
    call()


def test_non_finite_parameters_propagate_under_jit_as_documented():
  grid = jax.jit(lambda t: S.affine_grid(t, (2, 2)))(NAN_THETA)
  assert np.isnan(np.asarray(grid)).any()


# ------------------------------------------------------------------------------------- TPS regularisation


CP = tps.default_control_points(3)


@pytest.mark.parametrize("value", [np.float32(-1), jnp.array(-1.0), -1.0, float("nan"), float("inf")])
def test_regularization_must_be_finite_and_non_negative(value):
  with pytest.raises(ValueError, match="regularization must be >= 0"):
    estimate.fit_tps(CP, CP, regularization=value)
  with pytest.raises(ValueError, match="regularization must be >= 0"):
    tps.tps_grid(CP, (3, 4), control_points=CP, regularization=value)


def test_regularization_must_be_a_number_and_a_scalar():
  with pytest.raises(TypeError, match="regularization must be a number"):
    estimate.fit_tps(CP, CP, regularization="0.1")
  with pytest.raises(ValueError, match="regularization must be a scalar"):
    estimate.fit_tps(CP, CP, regularization=jnp.array([0.1, 0.2]))


def test_a_zero_regularization_array_still_rejects_duplicate_points():
  dup = CP.at[1].set(CP[0])
  with pytest.raises(ValueError, match="duplicate points"):
    estimate.fit_tps(dup, CP, regularization=jnp.array(0.0))
  estimate.fit_tps(dup, CP, regularization=jnp.array(0.1))  # smoothing makes duplicates solvable


def test_concrete_array_regularization_equals_the_float():
  src = CP + 0.05 * jnp.asarray(np.random.default_rng(0).normal(size=CP.shape), jnp.float32)
  a = tps.tps_grid(src, (5, 6), control_points=CP, regularization=jnp.array(0.1))
  b = tps.tps_grid(src, (5, 6), control_points=CP, regularization=0.1)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_traced_regularization_is_differentiable():
  src = CP + 0.05
  g = jax.grad(lambda r: tps.tps_grid(src * 1.1, (4, 4), control_points=CP, regularization=r).sum())(0.5)
  assert np.isfinite(g)


# ------------------------------------------------------------------------------ low-precision linear algebra


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_linear_algebra_runs_in_float32_for_half_inputs(dtype):
  pts = jnp.asarray(TRIANGLE, dtype)
  five = jnp.concatenate([pts, jnp.asarray([[0.2, 0.9]], dtype)])
  tol = dict(atol=2e-2 if dtype == jnp.bfloat16 else 2e-3)
  cases = [
    (estimate.estimate_affine(pts, pts + 0.1), estimate.estimate_affine(TRIANGLE, TRIANGLE + 0.1)),
    (
      estimate.estimate_homography(five, five * 1.1),
      estimate.estimate_homography(five.astype(jnp.float32), five.astype(jnp.float32) * 1.1),
    ),
    (estimate.fit_tps(pts, pts + 0.1), estimate.fit_tps(TRIANGLE, TRIANGLE + 0.1)),
    (matrices.invert(jnp.eye(2, 3, dtype=dtype) * 2), matrices.invert(jnp.eye(2, 3) * 2)),
  ]
  for got, want in cases:
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, **tol)
  traced = jax.jit(lambda c: tps.tps_grid(c + 0.01, (3, 3), control_points=c))(jnp.asarray(CP, dtype))
  assert traced.dtype == dtype and np.isfinite(np.asarray(traced, np.float32)).all()


# ---------------------------------------------------------------------------------- argument names in errors


@pytest.mark.parametrize(
  "call, pattern",
  [
    (
      lambda: warp.warp(jnp.ones((3, 5, 5, 1)), jnp.zeros((2, 6)), "affine", (3, 4)),
      r"image \(3,\) and params \(2,\)",
    ),
    (
      lambda: warp.warp(jnp.ones((3, 5, 5, 1)), jnp.zeros((2, 2)), "translation", (3, 4)),
      r"image \(3,\) and params \(2,\)",
    ),
    (lambda: matrices.similarity_matrix(jnp.ones(2), jnp.zeros(3), 0.0, 0.0), r"scale \(2,\), angle \(3,\)"),
    (
      lambda: tps.tps_grid(jnp.zeros((2, 9, 2)), (3, 4), control_points=jnp.zeros((3, 9, 2))),
      r"source_points \(2,\) and control_points \(3,\)",
    ),
    (lambda: S.normalized_to_pixel(0.0, (5, 7)), r"coords must have shape"),
    (lambda: S.homogeneous(1.0), r"points must have shape"),
  ],
)
def test_errors_name_the_arguments(call, pattern):
  with pytest.raises(ValueError, match=pattern):
    call()


# --------------------------------------------------------------------------------------------- drawing


def _axes():
  from matplotlib.figure import Figure

  return Figure().subplots()


def test_draw_grid_checks_step_shape_and_grid():
  g = np.asarray(S.base_grid((4, 5)))
  with pytest.raises(ValueError, match="step must be >= 1"):
    viz.draw_grid(_axes(), g, (6, 7), step=0)
  with pytest.raises(ValueError, match="step must be >= 1"):
    viz.draw_grid(_axes(), g, (6, 7), step=-1)
  with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(H, W, C\)"):
    viz.draw_grid(_axes(), g, (6,))
  with pytest.raises(ValueError, match="H', W' >= 1"):
    viz.draw_grid(_axes(), np.zeros((0, 5, 2)), (6, 7))


def test_plot_transforms_needs_one_entry_per_example():
  images, grids, outs = np.ones((3, 6, 7, 1)), np.asarray(S.base_grid((4, 4)))[None], np.ones((1, 4, 4, 1))
  with pytest.raises(ValueError, match="one entry per example"):
    viz.plot_transforms(images, np.repeat(grids, 3, 0), outs)
  with pytest.raises(ValueError, match="one entry per example"):
    viz.plot_transforms(images[:1], grids, outs, labels=[1, 2])


def test_transforms_module_sizes_stay_exact():
  # A regression guard for the shared size check: the families' grids keep their shapes.
  for name in ("attention", "affine", "projective", "tps"):
    family = transforms.get_family(name)
    assert family.grid(family.identity_params(), (5, 6)).shape == (5, 6, 2)


# Not TPS: its identity parameters are the control points (+-1/3 among them), which half precision cannot
# hold, so cast to bfloat16 they are no longer the identity.
@pytest.mark.parametrize("family", ["affine", "attention", "projective", "scale", "translation"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_identity_is_exact_with_half_precision_parameters(family, dtype):
  image = jnp.arange(35.0).reshape(5, 7, 1).astype(dtype)
  params = transforms.get_family(family).identity_params().astype(dtype)
  out = warp.warp(image, params, family, (5, 7))
  assert out.dtype == dtype
  np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(image, np.float32))


def test_training_samplers_need_one_label_per_digit():
  from stn_jax.data import addition, distortions, volume

  digits, labels, key = jnp.zeros((10, 28, 28), jnp.uint8), jnp.arange(3), jax.random.key(0)
  for call in (
    lambda: distortions.sample_train(key, digits, labels, 4, "r"),
    lambda: addition.sample_train(key, digits, labels, 4),
    lambda: volume.sample_train(key, digits, labels, 4, 8),
  ):
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
      call()
