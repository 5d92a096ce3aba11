"""The shared input checks of ``stn_jax._checks`` that own a check for several modules: shapes, size lists,
``(min, max)`` pairs and model input batches (each error names the argument)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import _checks

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
