"""The shared input checks of ``stn_jax._checks`` that own a check for several modules: float arrays and
dtypes, shapes, size lists, ``(min, max)`` pairs, TPS regularisation and model input batches (each error
names the argument)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax as S
from stn_jax import _checks, estimate, matrices, transforms, warp

# ------------------------------------------------------------------------------------------- float arrays

_FLOAT8 = [jnp.float8_e4m3fn, jnp.float8_e5m2]


@pytest.mark.parametrize("dtype", _FLOAT8)
def test_float_array_rejects_floats_outside_the_documented_four(dtype):
  msg = r"^x must have one of the floating dtypes float32, bfloat16, float16, float64, got float8"
  with pytest.raises(TypeError, match=msg):
    _checks.float_array("x", jnp.zeros(3, dtype))
  with pytest.raises(TypeError, match=msg):
    _checks.float_array("x", jnp.zeros(3, dtype), allow_int=True)
  with pytest.raises(TypeError, match=r"^dtype must be a floating dtype \(float32, .*\), got float8"):
    _checks.float_dtype("dtype", dtype)
  with pytest.raises(TypeError, match="x must be a floating batch"):
    _checks.float_batch("x", jnp.zeros((2, 3), dtype), (3,))
  for ok in (jnp.float16, jnp.bfloat16, jnp.float32):
    assert _checks.float_array("x", jnp.zeros(3, ok)).dtype == ok and _checks.float_dtype("d", ok) == ok


@pytest.mark.parametrize(
  "call, name",
  [
    (lambda f8: S.grid_sample(jnp.ones((1, 2, 2, 1), f8), jnp.zeros((1, 2, 2, 2), f8)), "image"),
    (lambda f8: transforms.projective_grid(jnp.eye(3, dtype=f8), (2, 2)), "h"),
    (lambda f8: matrices.invert(jnp.eye(3, dtype=f8)), "m"),
    (lambda f8: estimate.estimate_affine(jnp.eye(3, 2, dtype=f8), jnp.eye(3, 2)), "src"),
    (lambda f8: warp.warp(jnp.ones((4, 4, 1)), jnp.zeros(6, f8), "affine", (3, 3)), "params"),
    (lambda f8: S.separable_sample(jnp.ones((4, 4, 1)), S.linspace(3).astype(f8), S.linspace(3)), "xs"),
    (lambda f8: S.linspace(3, dtype=f8), "dtype"),
  ],
)
def test_float8_inputs_are_rejected_at_the_api_naming_the_argument(call, name):
  # Without the check these failed deep inside (TypePromotionError) or gave an all-NaN grid.
  with pytest.raises(TypeError, match=f"^{name} must .*floating dtype.*float64.*got float8_e4m3fn"):
    call(jnp.float8_e4m3fn)


def test_lists_of_bools_are_treated_like_bool_arrays():
  for x in ([True, False], jnp.array([True, False])):
    with pytest.raises(TypeError, match=r"^x must have a floating dtype .* got bool\."):
      _checks.float_array("x", x)
    np.testing.assert_array_equal(_checks.float_array("x", x, allow_int=True), [1.0, 0.0])
  np.testing.assert_array_equal(_checks.float_array("x", [[1, 2.5], [3, 4]]), [[1, 2.5], [3, 4]])


def test_ragged_or_non_numeric_lists_name_the_argument():
  with pytest.raises(ValueError, match=r"^grid must be a rectangular \(non-ragged\) nested list"):
    _checks.float_array("grid", [[1.0, 2.0], [3.0]])
  for bad in (["1.5"], [None, 1.0]):
    with pytest.raises(TypeError, match=r"^grid must be an array or a \(nested\) list of numbers"):
      _checks.float_array("grid", bad)


# ------------------------------------------------------------------------------------------ regularization


@pytest.mark.parametrize(
  "value, shown", [(None, "None"), (True, "True"), (jnp.array(True), "Array"), ("0.1", "'0.1'")]
)
def test_regularization_that_is_not_a_number_is_a_type_error(value, shown):
  with pytest.raises(TypeError, match=f"^regularization must be a number >= 0, got {shown}"):
    _checks.regularization(value)


def test_regularization_accepts_real_scalars():
  for value in (0, 0.5, np.float32(0.5), jnp.bfloat16(0.5), jnp.array(2)):
    assert isinstance(_checks.regularization(value), float)


# ------------------------------------------------------------------------------------------------- shapes


def test_positive_shape_returns_ints_and_names_the_layout():
  assert _checks.positive_shape("input_shape", [np.int64(8), 8, 1], {3: "(H, W, C)"}) == (8, 8, 1)
  with pytest.raises(ValueError, match=r"^input_shape must be \(H, W, C\), got \(8, 8\)\.$"):
    _checks.positive_shape("input_shape", (8, 8), {3: "(H, W, C)"})
  with pytest.raises(ValueError, match=r"^input_shape must contain positive sizes, got \(8, 0, 1\)\.$"):
    _checks.positive_shape("input_shape", (8, 0, 1), {3: "(H, W, C)"})
  with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
    _checks.positive_shape("input_shape", (8, 8.0, 1), {3: "(H, W, C)"})
  with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
    _checks.positive_shape("input_shape", "881", {3: "(H, W, C)"})


def test_non_integer_shapes_name_the_layout_of_their_length():
  with pytest.raises(TypeError, match=r"^out_shape must be a tuple of ints like \(D, H, W\), got \(2\.0, 3"):
    _checks.spatial_shape("out_shape", (2.0, 3.0, 4.0))
  either = r"^out_shape must be a tuple of ints like \(H, W\) or \(D, H, W\), got"
  with pytest.raises(TypeError, match=either):
    _checks.spatial_shape("out_shape", (2.0,))
  with pytest.raises(TypeError, match=r"^image_shape must be a tuple of ints like \(H, W\), got 6\.$"):
    _checks.int_tuple("image_shape", 6)


def test_spatial_shape_goes_through_positive_shape():
  assert _checks.spatial_shape("out_shape", (4, 5, 6)) == (4, 5, 6)
  with pytest.raises(ValueError, match=r"^out_shape must be \(H, W\) or \(D, H, W\), got \(4,\)\.$"):
    _checks.spatial_shape("out_shape", (4,))
  with pytest.raises(ValueError, match=r"^out_shape must be \(D, H, W\), got \(4, 5\)\.$"):
    _checks.spatial_shape("out_shape", (4, 5), ndims=(3,))
  with pytest.raises(ValueError, match="out_shape must contain positive sizes"):
    _checks.spatial_shape("out_shape", (4, -1))


def test_sizes():
  assert _checks.sizes("widths", [np.int32(3), 4]) == (3, 4) and _checks.sizes("widths", ()) == ()
  with pytest.raises(TypeError, match="widths must be a sequence of ints, got '16'"):
    _checks.sizes("widths", "16")
  with pytest.raises(TypeError, match="widths must be a sequence of ints, got 16"):
    _checks.sizes("widths", 16)
  with pytest.raises(ValueError, match=r"widths\[1\] must be >= 1, got 0"):
    _checks.sizes("widths", (4, 0))
  with pytest.raises(TypeError, match=r"widths\[0\] must be an int"):
    _checks.sizes("widths", (2.0,))


# ---------------------------------------------------------------------------------------- (min, max) pairs


def test_ordered_pair_converts_its_entries():
  real = functools.partial(_checks.real, minimum=0.0)
  assert _checks.ordered_pair("r", [1, np.float32(2)], real) == (1.0, 2.0)
  assert _checks.ordered_pair("r", np.array([3, 3]), _checks.size) == (3, 3)
  low, high = _checks.ordered_pair("r", (np.int64(7), 20), _checks.size, below=28)
  assert (low, high) == (7, 20) and type(low) is int and type(high) is int


@pytest.mark.parametrize(
  "value, kw, error, message",
  [
    ("78", {}, TypeError, r"^r must be a pair \(min, max\) with min <= max, got '78'\.$"),
    (7, {}, TypeError, r"^r must be a pair \(min, max\) with min <= max, got 7\.$"),
    (np.ones((2, 2), int), {}, TypeError, r"^r must be a pair \(min, max\)"),
    ((7,), {}, ValueError, r"^r must be a pair \(min, max\) with min <= max, got \(7,\)\.$"),
    ((1, 2, 3), {}, ValueError, r"^r must be a pair \(min, max\)"),
    ((9, 8), {}, ValueError, r"^r must be a pair \(min, max\) with min <= max, got \(9, 8\)\.$"),
    (
      (9, 8),
      {"below": 28},
      ValueError,
      r"^r must be a pair \(min, max\) with min <= max < 28, got \(9, 8\)\.$",
    ),
    (
      (7, 28),
      {"below": 28},
      ValueError,
      r"^r must be a pair \(min, max\) with min <= max < 28, got \(7, 28\)\.$",
    ),
    (
      (1, 2),
      {"above": 1},
      ValueError,
      r"^r must be a pair \(min, max\) with 1 < min <= max, got \(1, 2\)\.$",
    ),
    (
      (2, 5),
      {"above": 1, "below": 5},
      ValueError,
      r"^r must be a pair \(min, max\) with 1 < min <= max < 5, got \(2, 5\)\.$",
    ),
    ((7.5, 20), {}, TypeError, r"^r must be an int, got 7\.5"),  # the entry check names the pair
    ((0, 5), {}, ValueError, r"^r must be >= 1, got 0\.$"),
  ],
)
def test_ordered_pair_errors(value, kw, error, message):
  with pytest.raises(error, match=message):
    _checks.ordered_pair("r", value, _checks.size, **kw)


# ------------------------------------------------------------------------------------------ model inputs


def test_float_batch():
  _checks.float_batch("x", jnp.zeros((2, 8, 8, 1)), (8, 8, 1))
  _checks.float_batch("x", jnp.zeros((0, 8, 8, 1), jnp.bfloat16), [8, 8, 1])  # any batch size and float
  with pytest.raises(TypeError, match=r"^x must be a floating batch .* got uint8\.$"):
    _checks.float_batch("x", jnp.zeros((2, 8, 8, 1), jnp.uint8), (8, 8, 1))
  with pytest.raises(TypeError, match="x must be a floating batch .* got list"):
    _checks.float_batch("x", [[0.0]], (1,))
  with pytest.raises(ValueError, match=r"^x must have shape \(B, 8, 8, 1\), got \(2, 4, 16, 1\)\.$"):
    _checks.float_batch("x", jnp.zeros((2, 4, 16, 1)), (8, 8, 1))
  with pytest.raises(ValueError, match=r"^x must have shape \(B, 8, 8, 1\), got \(8, 8, 1\)\.$"):
    _checks.float_batch("x", jnp.zeros((8, 8, 1)), (8, 8, 1))


def test_float_batch_under_jit_reads_only_static_shapes():
  @jax.jit
  def f(x):
    _checks.float_batch("x", x, (3,))
    return x * 2

  assert f(jnp.ones((2, 3))).shape == (2, 3)
  with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
    f(jnp.ones((2, 4)))


@pytest.mark.parametrize("value", [0, 7, 2**32 - 1, np.int64(3)])
def test_seed_accepts_what_jax_tells_apart(value):
  assert _checks.seed("seed", value) == int(value)


@pytest.mark.parametrize(
  "value, error, message",
  [
    (2**32, ValueError, r"seed must be < 2\*\*32 .* would repeat seed 0\), got 4294967296"),
    (-1, ValueError, "seed must be >= 0, got -1"),
    (2**70, ValueError, "seed must be < 2"),
    (1.0, TypeError, "seed must be an int"),
    (True, TypeError, "seed must be an int"),
  ],
)
def test_seed_refuses_what_jax_would_repeat_or_reject(value, error, message):
  with pytest.raises(error, match=message):
    _checks.seed("seed", value)
