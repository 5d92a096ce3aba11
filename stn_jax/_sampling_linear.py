"""Bilinear / trilinear interpolation core with a hand-written JVP (the hot path of ``grid_sample``).

``interpolate(flat, q, sizes)`` blends the ``2**d`` taps around every point of ``flat (B, N, C)``, an
image flattened over its spatial axes ``sizes`` (row-major, array order), at pixel coordinates
``q (B, P, d)`` (``(x, y[, z])`` order). Per axis the taps are ``floor(q)`` and ``floor(q) + 1`` with
weights ``1 - frac`` and ``frac``; a tap outside the image reads 0 (``zeros`` padding). Taps are read at
indices clamped into the image and then masked, so nothing reads out of bounds and no padded copy of the
image is made (on CPU that copy costs as much as the gathers).

Differentiation: a ``jax.custom_jvp`` whose tangent is linear in the input tangents, so forward mode
(``jvp``, ``jacfwd``, ``linearize``) uses it directly and reverse mode (``grad``, ``vjp``) is JAX's
transpose of it. Each half is written so that its transpose is the fast hand-made backward pass:

* The coordinate tangent is the spatial derivative at the points (differences of the taps the primal
  reads) times ``d_q``. Its transpose, the coordinate gradient, needs gathers only. The products are
  unrolled over small C (:func:`_scaled`) so the transposed channel sum is one element-wise fusion, not a
  dot that materialises every tap array. In 2D the derivative pair is one complex number per point and
  channel, and the cotangent passes :func:`_materialized_in_transpose`: the transpose then computes both
  components in ONE pass (a complex element holds both, so XLA:CPU's element-at-a-time loop reads the
  shared taps once) and materialises them before ``real``/``imag`` split them (MNIST gradient to theta:
  about the forward's cost instead of 5x). In 3D a complex
  (x, y) pass plus a real z pass measured 1.8-2.4x slower (gradient to theta, 8 x 32^3 and 4 x 48^3
  volumes) than the three real components, so 3D keeps those.
* The image tangent gathers ONE ``2**d * C``-wide row per point from a stacked, zero-padded layout of the
  image tangent (:func:`_image_tangent`); its transpose is a single scatter of ``2**d * C``-wide rows,
  not ``2**d`` scatters of C-wide rows (on CPU a scatter costs per index). In 2D the corner weights are one
  broadcast ``where`` over a corner axis (in 3D only for C > 1), so the scatter's update rows come from one
  fusion rather than a concatenate of per-corner products. It is linear in ``d_flat`` alone,
  so when the image gradient is not requested it is never traced (symbolic-zero tangents), and under
  ``jit`` an unused one is dropped.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp


def _corners(d: int):
  return list(itertools.product((0, 1), repeat=d))


def _weight(fracs, corner):
  """Weight of one corner: ``prod_a (f_a if bit_a else 1 - f_a)``."""
  return math.prod(f if bit else 1 - f for f, bit in zip(fracs, corner, strict=True))


def _index_and_mask(lo, corner, sizes):
  """Flat (clamped) index and in-image mask of one corner."""
  strides = [math.prod(sizes[a + 1 :]) for a in range(len(sizes))]
  idx, ok = 0, True
  for i0, bit, n, s in zip(lo, corner, sizes, strides, strict=True):
    i = i0 + bit
    ok = ok & (i >= 0) & (i < n)
    idx = idx + jnp.clip(i, 0, n - 1) * s
  return idx, ok


def gather_rows(flat, idx):
  """``flat (B, N, C)``, in-bounds ``idx (B, P)`` -> ``(B, P, C)``: one C-vector per index.

  One gather from the ``(B * N, C)`` view with the batch folded into the index, without bounds handling
  (the callers clamp): simpler code for XLA than a batched gather (no index concatenation, no layout copy).
  A batched gather where ``B * N`` would overflow the int32 index.
  """
  b, n, c = flat.shape
  if b * n >= 2**31:
    return jax.vmap(lambda f, i: f[i])(flat, idx)
  if b > 1:
    idx = idx + jnp.arange(b, dtype=idx.dtype).reshape((b,) + (1,) * (idx.ndim - 1)) * n
  dims = jax.lax.GatherDimensionNumbers(
    offset_dims=(idx.ndim,), collapsed_slice_dims=(0,), start_index_map=(0,)
  )
  return jax.lax.gather(
    flat.reshape(b * n, c), idx[..., None], dims, (1, c), mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
  )


def _taps(flat, lo, sizes):
  """``{corner: (B, P, C)}``: every corner's values, 0 outside the image."""
  taps = {}
  for corner in _corners(len(lo)):
    idx, ok = _index_and_mask(lo, corner, sizes)
    vals = gather_rows(flat, idx)
    taps[corner] = jnp.where(ok[..., None], vals, jnp.zeros_like(vals))
  return taps


def _blend(taps, fracs):
  out = None
  for corner, t in taps.items():
    term = _weight(fracs, corner)[..., None] * t
    out = term if out is None else out + term
  return out


def _split(q, sizes):
  """Lower taps and fractions per axis (array order) of ``q (B, P, d)`` in ``(x, y[, z])`` order.

  ``q`` must lie in ``[-1, size]`` per axis (``_sampling_kernels`` clamps it there, which changes no value:
  for ``zeros`` padding every tap beyond is outside the image), so the taps lie in ``[-1, size]``.
  """
  d = len(sizes)
  lo, fracs = [], []
  for a in range(len(sizes)):
    c = q[..., d - 1 - a]
    f = jnp.floor(c)
    lo.append(f.astype(jnp.int32))
    fracs.append(c - f)
  return lo, fracs


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def interpolate(flat, q, sizes):
  """Multilinear interpolation of ``flat (B, N, C)``; see the module docstring.

  Differentiable in forward and reverse mode (first and higher order) with respect to both arguments.

  Args:
    flat: image flattened over its spatial axes, ``(B, N, C)``, ``N = prod(sizes)``.
    q: ``(B, P, d)`` pixel coordinates in ``(x, y[, z])`` order, padding already applied and clamped to
      ``[-1, size]`` per axis (see ``_sampling_kernels``); taps outside the image read 0.
    sizes: tuple of ``d`` static ints, the spatial shape (array order).

  Returns:
    ``(B, P, C)``.
  """
  lo, fracs = _split(q, sizes)
  return _blend(_taps(flat, lo, sizes), fracs)


def _jvp(sizes, primals, tangents):
  flat, q = primals
  d_flat, d_q = tangents
  lo, fracs = _split(q, sizes)
  taps = _taps(flat, lo, sizes)
  out = _blend(taps, fracs)
  # Symbolic zeros: the half of an input that is not differentiated (e.g. the image under a gradient to
  # theta) is never traced, so there is no scatter to drop.
  tangent = None
  if not isinstance(d_q, jax.custom_derivatives.SymbolicZero):
    # The derivative re-gathers its taps at coordinates XLA cannot identify with the primal's: shared
    # gathers with two consumers (primal and tangent) make XLA materialise every tap array (MNIST jvp to
    # theta ~2.5x slower). Free in reverse mode: no primal consumer there, and q is materialised anyway.
    lo_d, fracs_d = _split(jax.lax.optimization_barrier(q), sizes)
    tangent = _coordinate_tangent(_taps(flat, lo_d, sizes), fracs_d, d_q)
  if not isinstance(d_flat, jax.custom_derivatives.SymbolicZero):
    image_part = _image_tangent(d_flat, lo, fracs, sizes)
    tangent = image_part if tangent is None else tangent + image_part
  return out, jnp.zeros_like(out) if tangent is None else tangent


interpolate.defjvp(_jvp, symbolic_zeros=True)


def _axis_derivative(taps, fracs, a):
  """``d out / d f_a`` for array axis ``a``: ``sum`` over corners of ``+-prod_{b != a} w_b * tap``."""
  others = [f for b, f in enumerate(fracs) if b != a]
  acc = None
  for rest in _corners(len(fracs) - 1):
    hi = rest[:a] + (1,) + rest[a:]
    low = rest[:a] + (0,) + rest[a:]
    term = _weight(others, rest)[..., None] * (taps[hi] - taps[low])
    acc = term if acc is None else acc + term
  return acc


def _scaled(deriv, dq):
  """``deriv (B, P, C) * dq (B, P)[..., None]``, unrolled over small C.

  The transpose of a broadcast over C is a reduction, which XLA:CPU turns into a dot that materialises its
  operands (every tap array); per-channel products transpose into one element-wise sum instead.
  """
  c = deriv.shape[-1]
  if c > 8:
    return deriv * dq[..., None]
  return jnp.stack([deriv[..., k] * dq for k in range(c)], axis=-1)


def _materialized_in_transpose(z):
  """The identity on ``z``, whose transpose is a materialising sum.

  ``broadcast_to`` transposes into a sum over the new axis, of ``[ct, 0]`` here: the coordinate
  cotangent is then computed in one pass and written out before ``real``/``imag`` split it.
  """
  return jnp.broadcast_to(z, (2,) + z.shape)[0]


def _coordinate_tangent(taps, fracs, d_q):
  """``sum_k (d out / d q_k) * d_q[..., k]``, ``(B, P, C)``, from the taps at the points (gathers only)."""
  d = len(fracs)
  derivs = [_axis_derivative(taps, fracs, d - 1 - k) for k in range(d)]  # (x, y[, z]) order, as q
  if d == 2:
    # Re((a + ib)(u - iv)) = a u + b v; transposed, the pair of gradients is one complex pass.
    pair = jax.lax.complex(derivs[0], derivs[1])
    d_pair = _materialized_in_transpose(jax.lax.complex(d_q[..., 0], -d_q[..., 1]))
    return jnp.real(_scaled(pair, d_pair))
  out = None
  for k in range(d):
    term = _scaled(derivs[k], d_q[..., k])
    out = term if out is None else out + term
  return out


def _image_tangent(d_flat, lo, fracs, sizes):
  """``d_flat`` sampled at the taps and weights of the points, by ONE gather of ``2**d * C``-wide rows.

  Row ``p`` of the stacked layout (every axis padded by one pixel before and after) holds, for every
  corner, the value of image pixel ``p - 1 + corner``, 0 outside the image; a point reads the row at its
  lower tap ``lo + 1``. Its transpose (the image gradient) is one scatter-add of ``2**d * C``-wide rows
  into that layout, then a sum of shifted slices; tests check it against a per-tap loop.
  """
  b, _, c = d_flat.shape
  corners = _corners(len(sizes))
  image = d_flat.reshape((b,) + tuple(sizes) + (c,))
  # Corner ``bit`` shifted so that padded position p holds pixel p - 1 + bit.
  pads = [[(0, 0)] + [(1 - bit, 1 + bit) for bit in corner] + [(0, 0)] for corner in corners]
  shifted = [jnp.pad(image, pad) for pad in pads]
  padded = tuple(n + 2 for n in sizes)
  stacked = jnp.concatenate(shifted, axis=-1).reshape(b, math.prod(padded), len(corners) * c)
  rows = gather_rows(stacked, _padded_index(lo, padded))
  if len(sizes) == 2 or c > 1:
    # Corner weights as one broadcast ``where`` over a corner axis: transposed, the scatter's update rows
    # are one fusion of (rows x weights), not a concatenate of per-corner products that re-derives the
    # coordinates for every corner (backward to image and theta: MNIST 0.86x, CUB 0.64x the time of the
    # per-corner form). In 3D it measured 0.82x for 3 channels but 1.07-1.26x for one (8 x 32^3 and 4 x 48^3
    # volumes), so single-channel volumes keep the per-corner loop below.
    bits = jnp.asarray(corners, bool)  # (2**d, d)
    weights = math.prod(jnp.where(bits[:, a], f[..., None], 1 - f[..., None]) for a, f in enumerate(fracs))
    rows = rows.reshape(rows.shape[:-1] + (len(corners), c))
    return jnp.sum(weights[..., None] * rows, axis=-2)
  out = None
  for k, corner in enumerate(corners):
    term = _weight(fracs, corner)[..., None] * rows[..., k * c : (k + 1) * c]
    out = term if out is None else out + term
  return out


def _padded_index(lo, padded):
  """Flat index of position ``lo + 1`` in a layout of spatial shape ``padded`` (``lo`` in ``[-1, size]``)."""
  idx = 0
  for a, i0 in enumerate(lo):
    idx = idx + (i0 + 1) * math.prod(padded[a + 1 :])
  return idx
