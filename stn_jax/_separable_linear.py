"""Bilinear separable sampling from per-axis taps with a hand-written JVP (``separable`` method ``'fused'``).

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

Differentiation: a ``jax.custom_jvp``, as in ``_sampling_linear``: forward mode (``jvp``, ``jacfwd``,
``linearize``) uses its tangent rule, and reverse mode is JAX's transpose of that rule, each half written so
that the transpose is the hand-written backward pass this module had before (measured against it on the CUB
crop: gradient to theta in ~0.55x its time, to image and theta the same; a JVP to the crop parameters costs
~3x the forward pass):

* Coordinates (:func:`_coordinate_tangent`): transposed, one pass over the pixels re-gathers the taps and
  writes both per-axis partial derivatives, dotted with the output gradient over channels, as one complex
  array (the taps gathered once, not once per derivative), then a sum over the other axis.
* Image (:func:`_image_tangent`): transposed, ``_sampling_linear``'s single scatter of 4C-wide rows. With
  symbolic-zero tangents it is not traced at all unless the image is differentiated.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from stn_jax import _sampling_coords as sc
from stn_jax import _sampling_linear, coords

_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (bit_y, bit_x)


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


def _sample(image, qy, qx):
  h, w = image.shape[1:3]
  rows, cols = _axis(qy, h, w), _axis(qx, w, 1)
  top, bottom = _column_lerps(_gather(image, rows, cols), cols)
  return _rows(rows[0][1]) * top + _rows(rows[1][1]) * bottom


@jax.custom_jvp
def interpolate(image, qy, qx):
  """Bilinear sampling of ``image (Bi, H, W, C)`` at rows ``qy (N, H')`` x columns ``qx (N, W')``.

  ``Bi`` is 1 (one image for all ``N``) or ``N``; ``qy``/``qx`` are finite padded pixel coordinates (taps
  outside the image read 0). Returns ``(N, H', W', C)``. Differentiable in forward and reverse mode with
  respect to all three arguments.
  """
  return _sample(image, qy, qx)


def _instantiate(t):
  """A symbolic-zero tangent as an array of zeros (one coordinate differentiated, the other not)."""
  if isinstance(t, jax.custom_derivatives.SymbolicZero):
    return jnp.zeros(t.shape, t.dtype)
  return t


def _materialize_linear(v):
  """``v`` itself, computed once as an array: :func:`_materialize` for tangents (linear, so transposable).

  In forward mode the coordinate tangents are the per-axis chain's derivative, which XLA would otherwise
  re-evaluate for every element and channel of the tangent's loop. A sum over a zero-padded new axis is a
  reduction, so it is not fused into that loop; its transpose (a slice of a broadcast) is free.
  """
  return jnp.sum(jnp.pad(v[None], ((0, 1),) + ((0, 0),) * v.ndim), axis=0)


def _jvp(primals, tangents):
  image, qy, qx = primals
  d_image, d_qy, d_qx = tangents
  out = _sample(image, qy, qx)
  zero = lambda t: isinstance(t, jax.custom_derivatives.SymbolicZero)
  # Symbolic zeros: the image half (whose transpose is the scatter) is never traced unless its tangent is.
  tangent = None
  if not (zero(d_qy) and zero(d_qx)):
    d_qy, d_qx = (_materialize_linear(_instantiate(t)) for t in (d_qy, d_qx))
    # As in _sampling_linear: taps re-gathered at coordinates XLA cannot identify with the primal's, or the
    # gathers shared by the primal and the tangent are written out as four tap arrays.
    tangent = _coordinate_tangent(image, *jax.lax.optimization_barrier((qy, qx)), d_qy, d_qx)
  if not zero(d_image):
    image_part = _image_tangent(d_image, qy, qx)
    tangent = image_part if tangent is None else tangent + image_part
  return out, jnp.zeros_like(out) if tangent is None else tangent


interpolate.defjvp(_jvp, symbolic_zeros=True)


def _coordinate_tangent(image, qy, qx, d_qy, d_qx):
  """``(d out / d qy) * d_qy + (d out / d qx) * d_qx``, ``(N, H', W', C)``, from the re-gathered taps.

  The two partial derivatives are one complex number per pixel and channel, multiplied by
  ``d_qy - i d_qx``: ``Re((a + ib)(u - iv)) = a u + b v``. Written so that the transpose does what the
  former hand-written backward pass did, one pass over the pixels and then per-axis sums:

  * ``d_qy`` and ``-i d_qx`` are made complex before they are broadcast over columns / rows, so the sums
    over the other axis (their transposes) read the complex per-pixel cotangent directly.
  * The per-pixel pair then passes ``_sampling_linear._materialized_in_transpose``: without it XLA merges
    the channel sum into those per-axis sums and writes out every channel's products.
  * Its broadcast over channels transposes into a sum over channels of complex products: one reduction
    that gathers the taps once per pixel for both derivatives.

  Gradient to theta on the CUB crop, against the former hand-written backward pass in the same process:
  this form 0.55x its time; without the materialisation 1.5x; with per-channel products (as
  ``_sampling_linear._scaled`` writes them) 1.04x, and forward mode 2.4x this form's.
  """
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
  zero_y, zero_x = jnp.zeros_like(d_qy), jnp.zeros_like(d_qx)
  d_pair = jax.lax.complex(d_qy, zero_y)[:, :, None] + jax.lax.complex(zero_x, -d_qx)[:, None, :]
  d_pair = _sampling_linear._materialized_in_transpose(d_pair)
  return jnp.real(jax.lax.complex(dy, dx) * d_pair[..., None])


def _image_tangent(d_image, qy, qx):
  """``(N, H', W', C)``: ``d_image`` sampled at the points by ONE gather of 4C-wide rows.

  The layout of ``_sampling_linear._image_tangent``: padded by one pixel on every side, row ``p`` holds the
  four corners' pixels ``p - 1 + (bit_y, bit_x)``, 0 outside the image, and a point reads the row at its
  lower taps ``+ 1``. The corners are blended by a product with the ``(..., 4, 1)`` weights and a sum over
  that axis, whose transpose writes the scatter's 4C-wide updates in one element-wise pass (slices of the
  gathered row would transpose into four padded copies added up). The transpose, the image gradient, is
  thus ONE scatter-add of 4C-wide rows (on CPU a scatter costs per index), into the one image when
  ``Bi = 1``, then four shifted slices added up.
  """
  bi, h, w, c = d_image.shape
  n, hp, wp = qy.shape[0], qy.shape[1], qx.shape[1]
  shifted = [jnp.pad(d_image, ((0, 0), (1 - by, 1 + by), (1 - bx, 1 + bx), (0, 0))) for by, bx in _CORNERS]
  stacked = jnp.concatenate(shifted, axis=-1).reshape(bi, (h + 2) * (w + 2), 4 * c)
  (iy, wy), (ix, wx) = _lower_tap(qy, h), _lower_tap(qx, w)
  idx = ((iy + 1)[:, :, None] * (w + 2) + (ix + 1)[:, None, :]).reshape(n, hp * wp)
  rows = _sampling_linear.gather_rows(stacked, idx).reshape(n, hp, wp, 4, c)
  weights = jnp.stack([wy[by][:, :, None] * wx[bx][:, None, :] for by, bx in _CORNERS], axis=-1)
  return jnp.sum(rows * weights[..., None], axis=-2)


def _lower_tap(q, size: int):
  """Lower tap ``floor(q)`` (in ``[-1, size]``) and weights ``(1 - frac, frac)`` of padded ``q``, unmasked."""
  clamped = sc.clamp(q, -1.0, float(size))
  f = jnp.floor(clamped)
  frac = clamped - f
  return f.astype(jnp.int32), (1 - frac, frac)


@functools.partial(jax.jit, static_argnums=(3, 4))
def sample(image, xs, ys, padding_mode: str, align_corners: bool):
  """``image (Bi, H, W, C)``, normalised ``xs (N, W')``, ``ys (N, H')`` -> ``(N, H', W', C)`` (bilinear).

  ``Bi`` is 1 or ``N``; everything in the image's dtype (the caller picks the compute dtype).
  """
  h, w = image.shape[1:3]
  qy = _materialize(padded_axis(ys, h, padding_mode, align_corners))
  qx = _materialize(padded_axis(xs, w, padding_mode, align_corners))
  return interpolate(image, qy, qx)
