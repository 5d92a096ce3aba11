"""Bilinear / trilinear interpolation core with a hand-written VJP (the hot path of ``grid_sample``).

``interpolate(flat, q, sizes)`` blends the ``2**d`` taps around every point of ``flat (B, N, C)``, an
image flattened over its spatial axes ``sizes`` (row-major, array order), at pixel coordinates
``q (B, P, d)`` (``(x, y[, z])`` order). Per axis the taps are ``floor(q)`` and ``floor(q) + 1`` with
weights ``1 - frac`` and ``frac``; a tap outside the image reads 0 (``zeros`` padding). Taps are read at
indices clamped into the image and then masked, so nothing reads out of bounds and no padded copy of the
image is made (on CPU that copy costs as much as the gathers).

Why a custom VJP rather than autodiff:

* The coordinate gradient needs only the taps, which the backward pass re-gathers (gathers only, no
  scatter), and its per-pixel channel sums are unrolled into one element-wise fusion for small C instead of
  ``2**d`` separate reductions over a length-C axis.
* The coordinates come in, and their gradient goes out, as ONE stacked ``(B, P, d)`` array. With one array
  per axis XLA materialised every tap array for the separate per-axis consumers, each re-deriving the
  coordinates (MNIST gradient to theta: ~4x the forward's time).
* In 2D both components of that gradient are computed in one pass as a complex array
  (:func:`computed_together`): XLA:CPU evaluates a fused loop one output element at a time, so even the
  single fusion of a stacked ``(B, P, 2)`` array gathered every tap twice, once per component. With the
  complex pass the MNIST gradient to theta costs about the forward pass, not 5x it.
* The image gradient is one scatter of ``2**d * C``-wide rows (see :func:`image_grad`), a separate output
  of the backward pass, so under ``jit`` XLA drops it when the image gradient is not used.
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


def channel_dot(a, b):
  """``sum_c a[..., c] * b[..., c]``; unrolled for small C so XLA emits one loop fusion, not a reduce."""
  c = a.shape[-1]
  if c > 8:
    return jnp.sum(a * b, axis=-1)
  return sum(a[..., k] * b[..., k] for k in range(c))


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def interpolate(flat, q, sizes):
  """Multilinear interpolation of ``flat (B, N, C)``; see the module docstring.

  Reverse-mode differentiable only (``jax.grad``/``vjp``; ``jax.jvp``/``jacfwd`` raise).

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


def _fwd(flat, q, sizes):
  # Residuals are the inputs only: re-gathering the taps in the backward pass is cheaper on CPU than writing
  # 2**d tap arrays of the output's size to memory and reading them back.
  return interpolate(flat, q, sizes), (flat, q)


def _bwd(sizes, res, g):
  flat, q = res
  d = len(sizes)
  lo, fracs = _split(q, sizes)
  taps = _taps(flat, lo, sizes)
  d_q = []
  for k in range(d):  # (x, y[, z]) order, as q
    a = d - 1 - k
    # d out / d f_a = sum over corners of (+-1) * prod_{b != a} w_b * tap, dotted with g over channels.
    others = [f for b, f in enumerate(fracs) if b != a]
    acc = None
    for rest in _corners(d - 1):
      hi = rest[:a] + (1,) + rest[a:]
      low = rest[:a] + (0,) + rest[a:]
      term = _weight(others, rest)[..., None] * (taps[hi] - taps[low])
      acc = term if acc is None else acc + term
    d_q.append(channel_dot(g, acc))
  # The image gradient is the only scatter; jit drops it when the image gradient is unused.
  d_flat = image_grad(flat.shape, flat.dtype, lo, fracs, sizes, g)
  # One stacked coordinate gradient (separate per-axis consumers made XLA materialise every tap array), in
  # 2D computed in one pass per point as a complex array (see computed_together).
  if d == 2:
    z = computed_together(d_q[0], d_q[1])
    return d_flat, jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)
  return d_flat, jnp.stack(d_q, axis=-1)


def computed_together(a, b):
  """``a + 1j * b`` as a complex array that XLA computes in ONE pass, sharing the work behind ``a`` and ``b``.

  XLA:CPU emits a fused loop one output element at a time, so ``jnp.stack([a, b], -1)`` evaluates every
  gather behind ``a`` for the elements of ``a`` and again, separately, for those of ``b``. A complex element
  holds both values, so its loop body evaluates the shared taps once. Summing it with zeros (the value
  unchanged but for the sign of a zero) makes XLA materialise it, so consumers that take ``real`` and
  ``imag`` read it instead of fusing (and so splitting) the computation again. Measured in one process
  against the previous stacked version: MNIST (256, 60x60) gradient to theta ~5x faster, CUB (64,
  448x448 -> 224x224) ~1.5x faster (experiments/benchmarks/README.md).
  """
  z = jax.lax.complex(a, b)
  return jnp.sum(jnp.stack([z, jnp.zeros_like(z)]), axis=0)


def image_grad(shape, dtype, lo, fracs, sizes, g):
  """Transpose of the gather: ``shape`` ``(B, N, C)``, by ONE scatter of every point's ``2**d * C`` updates.

  Each point adds the row ``[w_corner * g for every corner]`` at its lower tap in a layout padded by one
  pixel before and after every axis (lower taps lie in ``[-1, size]``); shifted slices of that stacked
  layout, one per corner, then add up to the image gradient. On CPU the scatter's cost is per index, so one
  scatter of 2**d-wide rows beats 2**d scatters of C-wide ones; taps outside the image land in the padding
  and are cut off, so no masks are needed.
  """
  d = len(sizes)
  b, _, c = shape
  corners = _corners(d)
  padded = tuple(n + 2 for n in sizes)
  idx = 0
  for a, i0 in enumerate(lo):
    idx = idx + (i0 + 1) * math.prod(padded[a + 1 :])
  upd = jnp.concatenate([_weight(fracs, corner)[..., None] * g for corner in corners], axis=-1)
  zeros = jnp.zeros((b, math.prod(padded), len(corners) * c), dtype)
  stacked = jax.vmap(lambda z, i, u: z.at[i].add(u))(zeros, idx, upd)
  stacked = stacked.reshape((b,) + padded + (len(corners), c))
  out = None
  for k, corner in enumerate(corners):
    # Tap ``lo + bit`` of a point stored at padded position ``lo + 1`` is image pixel ``lo + bit``.
    window = tuple(slice(1 - bit, 1 - bit + n) for bit, n in zip(corner, sizes, strict=True))
    term = stacked[(slice(None),) + window + (k,)]
    out = term if out is None else out + term
  return out.reshape(shape)


interpolate.defvjp(_fwd, _bwd)
