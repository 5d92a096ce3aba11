"""Separable (axis-aligned) fast path of :func:`stn_jax.sampling.grid_sample`.

When every output row ``i`` reads source row coordinate ``ys[i]`` and every output column ``j`` reads source
column coordinate ``xs[j]`` (attention = crop with isotropic scale, translation, axis scale), the 2D
sampling factorises into one 1D interpolation per axis:

  ``out[i, j] = sum_{h, w} Wy[i, h] Wx[j, w] image[h, w]``

with ``Wy``/``Wx`` holding each axis' interpolation taps (2 for bilinear, 1 for nearest, 4 for bicubic,
padding folded into the taps exactly as in ``grid_sample``). Four implementations, equal within float
tolerance; ``method='auto'`` picks ``dense`` for small images and, for large ones, ``fused`` (bilinear) or
``gather`` (nearest, bicubic):

* ``dense``: ``Wy``/``Wx`` as dense ``(H', H)``/``(W', W)`` matrices and two matmuls (plus their transposes
  in the backward pass). No gather or scatter at all; the fastest for small images (MNIST-sized: ~1.7x
  faster than torch on the crop, forward + backward).
* ``fused`` (bilinear only; ``stn_jax._separable_linear``): per-axis taps and weights computed once per
  output row/column, then one gather-and-blend pass over the output (custom JVP: the coordinate gradient
  is one gather pass plus per-axis sums). On the CUB crop ~1.8x faster than ``gather`` forward and 2-3x
  forward + backward to the coordinates (experiments/benchmarks/README.md). For large images a dense
  ``(H', H)`` matmul would do ~H/2 times more work than needed.
* ``gather``: the separable grid fed to ``grid_sample``'s kernels (every mode).
* ``banded``: each output row reads its taps' source rows as contiguous slabs (one gather index per output
  row), then each output column its taps from those rows; coordinate gradients from the gathered taps.
  Designed for accelerators; on the 2-core CPU it measured ~1.4x slower than ``gather`` on the CUB crop
  (experiments/benchmarks/README.md), so ``auto`` does not pick it there.

The image is assumed finite here (a zero tap weight times an inf pixel is NaN); non-finite ``xs``/``ys``
entries give 0 in their output row/column, as in ``grid_sample``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from stn_jax import _checks, _separable_linear, coords, sampling
from stn_jax import _sampling_coords as sc

METHODS = ("auto", "dense", "fused", "banded", "gather")


def axis_taps(c, size: int, mode: str, padding_mode: str, align_corners: bool):
  """Interpolation taps of one axis: ``(indices, weights)``, lists of ``(..., n_out)`` arrays.

  ``c`` holds normalised coordinates. Taps outside the image get weight 0 and an index clamped into
  ``[0, size - 1]``, so every read is in bounds.
  """
  if mode == "bicubic":
    p = coords.normalized_to_pixel(c[..., None], (size,), align_corners=align_corners)[..., 0]
    p = sc.snap(p, size)
    ok = jnp.isfinite(p)
    idx, ws = sc.cubic_taps(jnp.where(ok, p, jnp.zeros_like(p)), size, padding_mode, align_corners)
  else:
    # Non-finite coordinates come back as -1, whose nearest and linear taps all get weight 0 below.
    q = _separable_linear.padded_axis(c, size, padding_mode, align_corners)
    ok = True
    if mode == "nearest":
      i = sc.nearest_tap(q, size)
      idx, ws = [i], [jnp.ones_like(q)]
    else:
      i0, w0, w1 = sc.linear_taps(q, size)
      idx, ws = [i0, i0 + 1], [w0, w1]
  out_idx, out_ws = [], []
  for i, w in zip(idx, ws, strict=True):
    valid = ok & (i >= 0) & (i < size)
    out_idx.append(jnp.clip(i, 0, size - 1))
    out_ws.append(jnp.where(valid, w, jnp.zeros_like(w)))
  return out_idx, out_ws


def _matrix(idx, ws, size: int):
  """Dense interpolation matrix ``(n_out, size)`` from taps, built by comparisons (no scatter)."""
  cols = jnp.arange(size, dtype=jnp.int32)
  return sum(jnp.where(i[:, None] == cols, w[:, None], 0.0) for i, w in zip(idx, ws, strict=True))


def _dense_one(image, yt, xt):
  """One example, dense: ``image (H, W, C)``, taps per axis -> ``(H', W', C)`` by two matmuls."""
  h, w, c = image.shape
  wy, wx = _matrix(*yt, h), _matrix(*xt, w)
  hp, wp = wy.shape[0], wx.shape[0]
  hi = jax.lax.Precision.HIGHEST
  if hp * h * w + hp * wp * w <= h * wp * w + hp * wp * h:
    rows = jnp.einsum("ih,hwc->iwc", wy, image, precision=hi)
    return jnp.einsum("jw,iwc->ijc", wx, rows, precision=hi)
  cols = jnp.einsum("jw,hwc->hjc", wx, image, precision=hi)
  return jnp.einsum("ih,hjc->ijc", wy, cols, precision=hi)


def _banded_one(image, yt, xt):
  """One example, banded: gather each output row's source rows, then each output column's taps."""
  (iy, wy), (ix, wx) = yt, xt
  out = None
  for i_row, w_row in zip(iy, wy, strict=True):
    rows = image[i_row]  # (H', W, C): one contiguous (W, C) slab per output row
    acc = None
    for i_col, w_col in zip(ix, wx, strict=True):
      term = w_col[None, :, None] * rows[:, i_col]
      acc = term if acc is None else acc + term
    term = w_row[:, None, None] * acc
    out = term if out is None else out + term
  return out


def _flat_batch(x, batch, core_ndim: int):
  """Flattens ``x``'s leading dims to one batch axis; returns ``(x, vmap_axis)`` with None if unbatched."""
  n = math.prod(batch)
  xb = x.shape[: x.ndim - core_ndim]
  core = x.shape[x.ndim - core_ndim :]
  if math.prod(xb) == 1:
    return x.reshape(core), None
  return jnp.broadcast_to(x, batch + core).reshape((n,) + core), 0


def choose_method(in_shape, out_shape, mode: str = "bilinear") -> str:
  """``'dense'`` when the dense matmuls are cheap enough, else ``'fused'`` for bilinear and ``'gather'``."""
  (h, w), (hp, wp) = in_shape, out_shape
  dense_macs = min(hp * h * w + hp * wp * w, h * wp * w + hp * wp * h)
  banded_moves = 2 * hp * w + 4 * hp * wp
  if dense_macs <= 64 * banded_moves:
    return "dense"
  return "fused" if mode == "bilinear" else "gather"


def separable_sample(
  image, xs, ys, *, mode="bilinear", padding_mode="zeros", align_corners=False, method="auto"
):
  """Samples ``image`` on the separable grid ``grid[..., i, j, :] = (xs[..., j], ys[..., i])``.

  Args:
    image: float array ``(..., H, W, C)``, channels-last.
    xs: float array ``(..., W')``: normalised source x of each output column.
    ys: float array ``(..., H')``: normalised source y of each output row.
    mode: ``'bilinear'``, ``'nearest'`` or ``'bicubic'`` (as :func:`stn_jax.sampling.grid_sample`).
    padding_mode: ``'zeros'``, ``'border'`` or ``'reflection'``.
    align_corners: see :mod:`stn_jax.coords`.
    method: ``'auto'`` (by size and mode), ``'dense'`` (two matmuls), ``'fused'`` (bilinear only),
      ``'gather'`` (``grid_sample``) or ``'banded'`` (slab gathers); see the module docstring.

  Returns:
    ``(..., H', W', C)`` in the image's dtype, equal within float tolerance to ``grid_sample`` on the
    separable grid. Leading dims of ``image``, ``xs`` and ``ys`` broadcast.
  """
  image = _checks.float_array("image", image)
  xs = _checks.float_array("xs", xs)
  ys = _checks.float_array("ys", ys)
  _checks.choice("mode", mode, sampling.MODES)
  _checks.choice("padding_mode", padding_mode, sampling.PADDING_MODES)
  _checks.choice("method", method, METHODS)
  align_corners = _checks.flag("align_corners", align_corners)
  _checks.rank_at_least("image", image, 3, "(..., H, W, C)")
  _checks.rank_at_least("xs", xs, 1, "(..., W')")
  _checks.rank_at_least("ys", ys, 1, "(..., H')")
  batch = _checks.broadcast_batch(("image", "xs"), image.shape[:-3], xs.shape[:-1])
  batch = _checks.broadcast_batch(("image/xs", "ys"), batch, ys.shape[:-1])
  if 0 in image.shape[-3:-1]:
    raise ValueError(f"image must have positive spatial sizes, got shape {tuple(image.shape)}.")
  out_shape = batch + (ys.shape[-1], xs.shape[-1], image.shape[-1])
  if 0 in out_shape:  # an empty batch, output axis or channel axis: nothing to read
    return jnp.zeros(out_shape, image.dtype)
  if method == "auto":
    method = choose_method(image.shape[-3:-1], (ys.shape[-1], xs.shape[-1]), mode)
  if method == "fused":
    if mode != "bilinear":
      raise ValueError(f"method 'fused' is bilinear only; got mode {mode!r} (use 'auto' or 'gather').")
    return _fused(image, xs, ys, padding_mode, align_corners, batch)
  if method == "gather":
    grid = jnp.stack(jnp.broadcast_arrays(xs[..., None, :], ys[..., :, None]), axis=-1)
    return sampling.grid_sample(
      image, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners
    )
  return _separable(image, xs, ys, mode, padding_mode, align_corners, method, batch)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _fused(image, xs, ys, padding_mode, align_corners, batch):
  n = math.prod(batch)
  cdtype = sampling.compute_dtype(jnp.promote_types(image.dtype, jnp.promote_types(xs.dtype, ys.dtype)))
  core = image.shape[-3:]
  img = image.astype(cdtype)
  if math.prod(image.shape[:-3]) == 1:  # one image for every (xs, ys) pair: no copies
    img = img.reshape((1,) + core)
  else:
    img = jnp.broadcast_to(img, batch + core).reshape((n,) + core)
  x = jnp.broadcast_to(xs.astype(cdtype), batch + xs.shape[-1:]).reshape(n, -1)
  y = jnp.broadcast_to(ys.astype(cdtype), batch + ys.shape[-1:]).reshape(n, -1)
  out = _separable_linear.sample(img, x, y, padding_mode, align_corners)
  return out.reshape(batch + out.shape[1:]).astype(image.dtype)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _separable(image, xs, ys, mode, padding_mode, align_corners, method, batch):
  h, w, c = image.shape[-3:]
  hp, wp = ys.shape[-1], xs.shape[-1]
  cdtype = sampling.compute_dtype(jnp.promote_types(image.dtype, jnp.promote_types(xs.dtype, ys.dtype)))
  xt = axis_taps(xs.astype(cdtype), w, mode, padding_mode, align_corners)
  yt = axis_taps(ys.astype(cdtype), h, mode, padding_mode, align_corners)
  img, img_axis = _flat_batch(image.astype(cdtype), batch, 3)
  flat_taps = []
  for taps in (yt, xt):
    flat = [[_flat_batch(a, batch, 1) for a in part] for part in taps]
    flat_taps.append(flat)
  args = (img, *([[a for a, _ in part] for part in taps] for taps in flat_taps))
  axes = (img_axis, *([[ax for _, ax in part] for part in taps] for taps in flat_taps))
  one = _dense_one if method == "dense" else _banded_one
  if not jax.tree_util.tree_leaves(axes):  # None leaves vanish: nothing is batched
    out = one(*args)
  else:
    out = jax.vmap(one, in_axes=axes)(*args)
  return out.reshape(batch + (hp, wp, c)).astype(image.dtype)
