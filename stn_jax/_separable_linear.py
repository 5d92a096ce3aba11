"""Bilinear separable sampling from per-axis taps with a hand-written VJP (``separable`` method ``'fused'``).

``sample(image, xs, ys, padding_mode, align_corners)`` equals ``grid_sample`` (bilinear) on the separable
grid ``grid[n, i, j] = (xs[n, j], ys[n, i])`` within float rounding: the same pixel conversion, snapping,
padding and taps, computed per axis. Output pixel ``(i, j)`` is

  ``wy0[i] * (wx0[j] * t00 + wx1[j] * t01) + wy1[i] * (wx0[j] * t10 + wx1[j] * t11)``

with ``t`` the four corner taps (``floor(q)`` and ``floor(q) + 1`` per axis, read at clamped indices) and
``w`` the per-axis weights (``1 - frac``, ``frac``), 0 for a tap outside the image. Folding the masks into
the weights assumes a finite image (0 * inf is NaN), as the rest of :mod:`stn_jax.separable` does.

Why this is faster than feeding the separable grid to ``grid_sample`` on a large image (CUB crop, 3x448x448
-> 224x224: see experiments/benchmarks/README.md):

* The coordinate chain (pixel conversion, snapping, padding, non-finite check) runs once per output row and
  column, on ``(N, H')`` and ``(N, W')`` vectors, instead of once per output element and channel;
  :func:`_materialize` keeps XLA from fusing it back into the per-element loop.
* No ``(N, H', W', 2)`` grid and no per-point index arrays exist: the one loop over the output adds a row
  offset to a column index, gathers the 4 taps and blends them.
* Backward, the coordinate gradient is one pass over the pixels that re-gathers the taps and writes both
  per-axis partial derivatives (dotted with the output gradient over channels) as one complex array
  (``_sampling_linear.computed_together``: the taps are gathered once, not once per derivative), then a sum
  over the other axis. The image gradient (``_sampling_linear``'s single scatter) is a separate output,
  dropped under ``jit`` when unused.

Reverse mode only (``jax.grad``/``vjp``), like ``_sampling_linear``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from stn_jax import _sampling_coords as sc
from stn_jax import _sampling_linear, coords


def padded_axis(c, size: int, padding_mode: str, align_corners: bool):
  """Normalised coordinates of one axis -> padded pixel coordinates, -1 where non-finite.

  Element for element what ``grid_sample`` computes on each component of its grid (pixel conversion,
  snapping, padding). A non-finite coordinate becomes -1, whose taps read 0; ``grid_sample`` zeroes the
  whole point, which reads 0 as well.
  """
  p = coords.normalized_to_pixel(c[..., None], (size,), align_corners=align_corners)[..., 0]
  p = sc.snap(p, size)
  q = sc.apply_padding(p, size, padding_mode, align_corners)
  ok = jnp.isfinite(p) & jnp.isfinite(q)
  return jnp.where(ok, q, -jnp.ones_like(q))


def _materialize(v):
  """``v`` itself, computed once as an array rather than inside every consumer.

  XLA:CPU fuses cheap element-wise producers into each consumer, so the per-axis coordinate chain (a few
  dozen operations) would be re-evaluated for every element and channel of the ``(N, H', W', C)`` loops that
  broadcast it (the CUB crop's forward pass took twice as long). A reduction is not fused into a loop
  consumer, so this maximum over a duplicated axis (an identity, NaN included) makes XLA compute ``v`` once.
  (``lax.optimization_barrier`` does not help: the CPU pipeline removes it before fusion.)
  """
  return jnp.max(jnp.broadcast_to(v[..., None], v.shape + (2,)), axis=-1)


def _axis(q, size: int, stride: int):
  """Taps ``floor(q)``, ``floor(q) + 1`` of padded coordinates ``q (N, n)``: ``[(offset, weight, slope)]``.

  ``offset``: the clamped tap index times ``stride``; ``weight``: ``1 - frac`` or ``frac``, 0 for a tap
  outside the image; ``slope``: ``d weight / d q`` (``-1`` / ``+1``; 0 for a tap outside the image and where
  the clamp of ``q`` to ``[-1, size]`` is flat, as ``sc.clamp`` passes the gradient at and inside its ends).
  Clamping ``q`` to ``[-1, size]`` changes no value: for ``zeros`` padding every tap there is outside.
  """
  c = sc.clamp(q, -1.0, float(size))
  f = jnp.floor(c)
  lo = f.astype(jnp.int32)
  frac = c - f
  slope = jnp.where((q >= -1) & (q <= size), jnp.ones_like(q), jnp.zeros_like(q))
  taps = []
  for bit, w, sign in ((0, 1 - frac, -1.0), (1, frac, 1.0)):
    i = lo + bit
    ok = (i >= 0) & (i < size)
    zero = jnp.zeros_like(w)
    offset = jnp.clip(i, 0, size - 1) * stride
    taps.append((offset, jnp.where(ok, w, zero), jnp.where(ok, sign * slope, zero)))
  return taps


def _rows(v):
  return v[:, :, None, None]


def _cols(v):
  return v[:, None, :, None]


def _gather(image, rows, cols):
  """``{(bit_y, bit_x): (N, H', W', C)}``: the four corner taps of every output pixel (clamped indices).

  ``image (Bi, H, W, C)`` with ``Bi`` 1 (shared by all ``N`` rows of ``rows``/``cols``) or ``N``.
  """
  bi, h, w, c = image.shape
  n = rows[0][0].shape[0]
  flat = image.reshape(bi, h * w, c)
  taps = {}
  for by, (r, _, _) in enumerate(rows):
    for bx, (col, _, _) in enumerate(cols):
      idx = (r[:, :, None] + col[:, None, :]).reshape(n, -1)
      if bi == 1:  # one image: every index into its (H * W, C) rows
        vals = _sampling_linear.gather_rows(flat, idx.reshape(1, -1))
      else:
        vals = _sampling_linear.gather_rows(flat, idx)
      taps[(by, bx)] = vals.reshape(r.shape + col.shape[1:] + (c,))
  return taps


def _column_lerps(taps, cols):
  """The column interpolation of the top (``bit_y = 0``) and bottom taps: two ``(N, H', W', C)``."""
  (_, wx0, _), (_, wx1, _) = cols
  top = _cols(wx0) * taps[(0, 0)] + _cols(wx1) * taps[(0, 1)]
  bottom = _cols(wx0) * taps[(1, 0)] + _cols(wx1) * taps[(1, 1)]
  return top, bottom


@jax.custom_vjp
def interpolate(image, qy, qx):
  """Bilinear sampling of ``image (Bi, H, W, C)`` at rows ``qy (N, H')`` x columns ``qx (N, W')``.

  ``Bi`` is 1 (one image for all ``N``) or ``N``; ``qy``/``qx`` are finite padded pixel coordinates (taps
  outside the image read 0). Returns ``(N, H', W', C)``.
  """
  h, w = image.shape[1:3]
  rows, cols = _axis(qy, h, w), _axis(qx, w, 1)
  top, bottom = _column_lerps(_gather(image, rows, cols), cols)
  return _rows(rows[0][1]) * top + _rows(rows[1][1]) * bottom


def _fwd(image, qy, qx):
  return interpolate(image, qy, qx), (image, qy, qx)


def _bwd(res, g):
  image, qy, qx = res
  h, w = image.shape[1:3]
  rows, cols = _axis(qy, h, w), _axis(qx, w, 1)
  taps = _gather(image, rows, cols)
  top, bottom = _column_lerps(taps, cols)
  (_, wy0, sy0), (_, wy1, sy1) = rows
  (_, _, sx0), (_, _, sx1) = cols
  dy = _rows(sy0) * top + _rows(sy1) * bottom  # d out / d qy
  left = _rows(wy0) * taps[(0, 0)] + _rows(wy1) * taps[(1, 0)]
  right = _rows(wy0) * taps[(0, 1)] + _rows(wy1) * taps[(1, 1)]
  dx = _cols(sx0) * left + _cols(sx1) * right  # d out / d qx
  # Both per-pixel partial derivatives in one pass over the pixels (the taps gathered once), then the sums.
  both = _sampling_linear.computed_together(
    _sampling_linear.channel_dot(g, dy), _sampling_linear.channel_dot(g, dx)
  )
  d_qy = jnp.real(jnp.sum(both, axis=2))
  d_qx = jnp.imag(jnp.sum(both, axis=1))
  return _image_grad(image, qy, qx, g), d_qy, d_qx


def _image_grad(image, qy, qx, g):
  """``(Bi, H, W, C)``: ``_sampling_linear``'s single scatter fed the per-pixel taps and fractions."""
  bi, h, w, c = image.shape
  n, hp, wp = g.shape[:3]
  lo, fracs = [], []
  for q, size, expand in ((qy, h, lambda v: v[:, :, None]), (qx, w, lambda v: v[:, None, :])):
    clamped = sc.clamp(q, -1.0, float(size))
    f = jnp.floor(clamped)
    lo.append(jnp.broadcast_to(expand(f.astype(jnp.int32)), (n, hp, wp)).reshape(n, hp * wp))
    fracs.append(jnp.broadcast_to(expand(clamped - f), (n, hp, wp)).reshape(n, hp * wp))
  d_img = _sampling_linear.image_grad((n, h * w, c), image.dtype, lo, fracs, (h, w), g.reshape(n, hp * wp, c))
  d_img = d_img.reshape(n, h, w, c)
  if bi != n:  # one image shared by all N rows of qy/qx
    d_img = jnp.sum(d_img, axis=0, keepdims=True)
  return d_img


interpolate.defvjp(_fwd, _bwd)


@functools.partial(jax.jit, static_argnums=(3, 4))
def sample(image, xs, ys, padding_mode: str, align_corners: bool):
  """``image (Bi, H, W, C)``, normalised ``xs (N, W')``, ``ys (N, H')`` -> ``(N, H', W', C)`` (bilinear).

  ``Bi`` is 1 or ``N``; everything in the image's dtype (the caller picks the compute dtype).
  """
  h, w = image.shape[1:3]
  qy = _materialize(padded_axis(ys, h, padding_mode, align_corners))
  qx = _materialize(padded_axis(xs, w, padding_mode, align_corners))
  return interpolate(image, qy, qx)
