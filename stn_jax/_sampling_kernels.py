"""Gather kernels behind :func:`stn_jax.sampling.grid_sample`: one batch axis, points flattened.

Every kernel takes ``image (B, *S, C)`` (S = (H, W) or (D, H, W), compute dtype) and pixel coordinates
``pix (B, P, d)`` in ``(x, y[, z])`` order and returns ``(B, P, C)``.

Out-of-bounds reads are impossible by construction: the bilinear kernel clamps every tap index into the
image and masks taps outside it (see ``_sampling_linear``); nearest and bicubic read a zero-padded copy with
indices clamped into it, so ``zeros`` padding needs no masks there. A point whose coordinate is NaN or +-inf
(or overflows to inf when converted to pixels) reads 0 and passes no gradient; see ``grid_sample``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _sampling_coords as sc
from stn_jax import _sampling_linear


def pad_flat(image, before: int, after: int):
  """Zero-pads every spatial axis and flattens them: ``(B, *S, C) -> (B, N, C)``; also the strides."""
  d = image.ndim - 2
  padded = jnp.pad(image, [(0, 0)] + [(before, after)] * d + [(0, 0)])
  psizes = padded.shape[1:-1]
  strides = [int(np.prod(psizes[a + 1 :], dtype=np.int64)) for a in range(d)]
  return padded.reshape(image.shape[0], -1, image.shape[-1]), strides


def gather(flat, idx):
  """``flat (B, N, C)``, ``idx (B, P)`` int -> ``(B, P, C)``: one contiguous C-vector per index."""
  return jax.vmap(lambda f, i: f[i])(flat, idx)


def _finite_padded(pix, sizes, padding_mode, align_corners):
  """Pads ``pix (B, P, d)``, replaces every non-finite coordinate by -1 and clamps to ``[-1, size]``.

  -1 lies in the zero padding: on that axis one tap is outside the image and the other has weight 0, so a
  point with any non-finite component reads 0 (for a finite image) and passes no gradient, whatever the
  padding mode. Each component is tested on its own, so every output element depends on one input element:
  XLA then fuses the grid computation (e.g. ``affine_grid``'s stack) into this pass instead of
  materialising the grid first. All axes are one element-wise expression (``sizes`` broadcasts over the
  last axis), so the coordinate gradient stays one stacked array (see ``_sampling_linear``).
  """
  q = sc.apply_padding(pix, np.asarray(sizes), padding_mode, align_corners)
  ok = jnp.isfinite(pix) & jnp.isfinite(q)
  q = jnp.where(ok, q, -jnp.ones_like(q))
  # Beyond [-1, size] every tap is outside the image: clamping changes no sample, keeps the integer taps in
  # range and (sc.clamp) passes no gradient outside. Done here, in the pass that XLA materialises, rather
  # than once per element and channel in the kernel's loop.
  return sc.clamp(q, -1.0, np.asarray(sizes, dtype=q.dtype))


def linear(image, pix, padding_mode: str, align_corners: bool):
  """Bilinear (2D) / trilinear (3D) sampling; taps ``floor`` and ``floor + 1`` on every axis.

  Differentiable in forward and reverse mode through a hand-written JVP (see ``_sampling_linear``).
  """
  shape = image.shape[1:-1]  # array order (y, x) / (z, y, x)
  sizes = shape[::-1]  # (x, y[, z]) order, like pix
  q = _finite_padded(pix, sizes, padding_mode, align_corners)
  flat = image.reshape(image.shape[0], -1, image.shape[-1])
  return _sampling_linear.interpolate(flat, q, tuple(shape))


def nearest(image, pix, padding_mode: str, align_corners: bool):
  """Nearest-neighbour sampling (round half to even); zero gradient to the coordinates."""
  sizes = image.shape[1:-1][::-1]
  flat, strides = pad_flat(image, 1, 1)
  q = _finite_padded(pix, sizes, padding_mode, align_corners)
  strides = strides[::-1]
  idx = sum((sc.nearest_tap(q[..., a], n) + 1) * strides[a] for a, n in enumerate(sizes))
  return gather(flat, idx)


def bicubic(image, pix, padding_mode: str, align_corners: bool):
  """2D bicubic sampling (cubic convolution, A = -0.75) over the 4x4 taps around each point."""
  h, w = image.shape[1:-1]
  flat, (stride_y, _) = pad_flat(image, 3, 4)
  ok = jnp.all(jnp.isfinite(pix), axis=-1)
  px = jnp.where(ok, pix[..., 0], jnp.zeros_like(pix[..., 0]))
  py = jnp.where(ok, pix[..., 1], jnp.zeros_like(pix[..., 1]))
  ix, wx = sc.cubic_taps(px, w, padding_mode, align_corners)
  iy, wy = sc.cubic_taps(py, h, padding_mode, align_corners)
  out = None
  for ky in range(4):
    row = None
    for kx in range(4):
      term = wx[kx][..., None] * gather(flat, (iy[ky] + 3) * stride_y + ix[kx] + 3)
      row = term if row is None else row + term
    term = wy[ky][..., None] * row
    out = term if out is None else out + term
  return jnp.where(ok[..., None], out, jnp.zeros_like(out))


KERNELS = {"bilinear": linear, "nearest": nearest, "bicubic": bicubic}
