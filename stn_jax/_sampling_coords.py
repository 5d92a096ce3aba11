"""Per-axis coordinate maths shared by the samplers: padding modes, snapping and interpolation taps.

Everything here works on *pixel* coordinates of one axis (see :mod:`stn_jax.coords`; integer values are pixel
centres 0 .. size-1) and reproduces PyTorch's ``grid_sample`` rules, including which side of a kink the
(sub)gradient takes:

* ``border`` clamps to ``[0, size - 1]``; the clamp's gradient is 0 *at* the borders as well as outside.
* ``reflection`` reflects about the image edges (``align_corners=False``: the outer pixel edges ``-0.5`` and
  ``size - 0.5``; ``True``: the outer pixel centres ``0`` and ``size - 1``), then clamps as ``border`` does.
* ``zeros`` leaves the coordinate alone; taps outside the image read 0.

Clamps are written with ``jnp.where`` rather than ``jnp.clip`` because ``clip`` splits the gradient 50/50 at
a tie, which is not what torch does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")

# Cubic convolution parameter used by PyTorch (and OpenCV) for bicubic sampling.
CUBIC_A = -0.75


def clamp(p, lo, hi):
  """``min(max(p, lo), hi)`` whose gradient is 1 strictly inside and at the ends, 0 outside; NaN passes."""
  return jnp.where(p < lo, lo, jnp.where(p > hi, hi, p))


def _per_axis(size, p):
  """``size`` (an int, or an array of per-axis sizes broadcasting over ``p``'s last axis) as ``p``'s dtype."""
  return np.asarray(size, dtype=p.dtype)


def clip_border(p, size):
  """Torch's ``clip_coordinates``: clamp to ``[0, size - 1]`` with zero gradient at and beyond the ends."""
  hi = _per_axis(size, p) - 1
  zero = jnp.zeros_like(p)
  return jnp.where(p <= 0, zero, jnp.where(p >= hi, hi + zero, p))


def reflect(p, size, align_corners: bool):
  """Torch's ``reflect_coordinates`` (before the final clip) for one axis of ``size`` pixels.

  ``size`` may also be an array of per-axis sizes that broadcasts over ``p``'s last axis (stacked
  coordinates), so that all axes are computed in one element-wise expression.
  """
  size = _per_axis(size, p)
  lo = 0.0 if align_corners else -0.5
  span = size - 1 if align_corners else size
  single = span == 0  # align_corners and a 1-pixel axis: everything reflects onto pixel 0
  span = np.where(single, 1, span).astype(p.dtype)
  q = p - lo
  q = jnp.where(q < 0, -q, q)
  extra = jnp.fmod(q, span)
  flips = jnp.floor(q / span)
  even = jnp.fmod(flips, 2) == 0
  out = jnp.where(even, extra + lo, span - extra + lo)
  if np.any(single):
    out = jnp.where(single, jnp.zeros_like(out), out)
  return out


def apply_padding(p, size, padding_mode: str, align_corners: bool):
  """Maps a pixel coordinate into the image according to ``padding_mode`` (``zeros``: unchanged)."""
  if padding_mode == "border":
    return clip_border(p, size)
  if padding_mode == "reflection":
    return clip_border(reflect(p, size, align_corners), size)
  return p


def snap(p, size):
  """Snaps coordinates within float rounding of a pixel centre onto it (value only; gradient unchanged).

  The normalised -> pixel conversion of an identity grid lands within a few ulps of the integer centres but
  not always on them; snapping makes identity warps return the input bit for bit. The tolerance,
  ``4 * eps * (size + 1)``, bounds that rounding error (it grows with the axis size, not with ``|p|``). The
  snapped coordinate keeps ``p``'s gradient; since ``floor`` then sees the integer, the gradient at a pixel
  centre is the right difference ``v[i + 1] - v[i]``, as torch's is at exact integers.
  """
  tol = 4 * jnp.finfo(p.dtype).eps * (_per_axis(size, p) + 1)
  r = jnp.round(p)
  near = jnp.abs(p - r) <= tol
  return p + jax.lax.stop_gradient(jnp.where(near, r - p, jnp.zeros_like(p)))


def cubic_weights(t):
  """The 4 cubic-convolution weights (A = -0.75) of taps ``floor - 1 .. floor + 2`` at fraction ``t``."""
  a = CUBIC_A

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return (far(t + 1), near(t), near(1 - t), far(2 - t))


def linear_taps(q, size: int):
  """Bilinear taps of one axis at a padded, finite coordinate ``q``: ``(i0, w0, w1)`` for taps ``i0, i0 + 1``.

  ``q`` is clamped to ``[-1, size]`` first, which changes no value (for ``zeros`` padding every tap there
  is outside the image) and keeps ``i0`` inside ``[-1, size]``; callers read out-of-image taps as 0.
  """
  q = clamp(q, -1.0, float(size))
  f = jnp.floor(q)
  w1 = q - f
  return f.astype(jnp.int32), 1 - w1, w1


def nearest_tap(q, size: int):
  """Nearest tap of a padded, finite coordinate (round half to even, like torch's ``nearbyint``)."""
  return clamp(jnp.round(q), -1.0, float(size)).astype(jnp.int32)


def cubic_taps(p, size: int, padding_mode: str, align_corners: bool):
  """Bicubic taps of one axis: ``(indices, weights)``, 4 each; indices padded per tap, in ``[-3, size + 3]``.

  As in torch, the padding acts on each integer tap, not on the sample coordinate. For ``zeros`` the
  coordinate is clamped to ``[-2, size + 1]`` first: beyond that every tap is outside and reads 0.
  """
  if padding_mode == "zeros":
    p = clamp(p, -2.0, float(size + 1))
  f = jnp.floor(p)
  ws = cubic_weights(p - f)
  idx = []
  for k in range(4):
    tap = apply_padding(f + (k - 1), size, padding_mode, align_corners)
    idx.append(jax.lax.stop_gradient(tap).astype(jnp.int32))
  return idx, ws
