"""Differentiable grid sampling (the "sampler" of a spatial transformer), 2D and 3D, PyTorch semantics.

``grid_sample(image, grid)`` reads the source ``image`` at the normalised coordinates in ``grid`` (conventions
in :mod:`stn_jax.coords`: channels-last, ``(x, y[, z])`` order, ``align_corners``). It gives the numbers of
``torch.nn.functional.grid_sample`` on the transposed layout for every mode and padding, and the same
gradients to the image and to the grid (torch's one-sided choices at kinks included: the bilinear taps are
``floor`` and ``floor + 1``, so the gradient at an integer coordinate is the right difference; ``border``
clamps pass no gradient at or beyond the edges).

Non-finite and huge coordinates
  * A grid point with any NaN or +-inf component samples **0** (every mode, every padding) and passes zero
    gradient to the image and to its coordinates. No other output pixel or gradient is affected. (torch is
    not consistent here: its CPU border padding maps NaN to pixel 0.)
  * Huge finite coordinates follow the padding mode: ``zeros`` gives 0, ``border`` the edge pixel,
    ``reflection`` the reflected position (one that overflows float when converted to pixels gives 0).
  * Nothing ever reads out of bounds: tap indices are clamped into the image (or a zero-padded copy) and
    taps outside the image are masked to 0.

Non-finite images
  The image is assumed finite. A NaN or inf pixel also reaches the output pixels whose taps give it weight
  zero (``0 * nan`` is NaN), so it spreads to up to a tap-width of neighbours (and breaks the identity's
  exactness there); the separable ``dense`` path spreads it over whole rows and columns.

Exactness
  Coordinates within float rounding (``4 * eps * (size + 1)`` pixels) of a pixel centre are snapped onto it,
  so an identity grid returns the input bit for bit in every mode, padding and ``align_corners``.

Differentiation
  Forward mode (``jax.jvp``, ``jacfwd``, ``linearize``) and reverse mode (``jax.grad``, ``vjp``, ``jacrev``)
  in every mode, with respect to the image and the grid, also under ``jit`` and ``vmap`` and to higher
  order. The bilinear/trilinear kernel has a hand-written JVP whose transpose is the fast backward pass:
  the coordinate gradient by gathers only, the image gradient by one scatter that is never built when the
  image is not differentiated (see ``_sampling_linear``).

Precision
  The output has the image's dtype; bfloat16/float16 images are sampled in float32 and rounded once.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks, coords
from stn_jax import _sampling_coords as sc
from stn_jax import _sampling_kernels as kernels

MODES = sc.MODES
PADDING_MODES = sc.PADDINGS


def compute_dtype(dtype):
  """Accumulation dtype for an image dtype: at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def validate(image, grid, mode: str, padding_mode: str):
  """Checks the arguments of :func:`grid_sample`; returns ``(image, grid, d, batch_shape)``."""
  image = _checks.float_array("image", image)
  grid = _checks.float_array("grid", grid)
  _checks.choice("mode", mode, MODES)
  _checks.choice("padding_mode", padding_mode, PADDING_MODES)
  hint = "(..., H', W', 2) for 2D or (..., D', H', W', 3) for 3D"
  if grid.ndim < 3 or grid.shape[-1] not in (2, 3):
    raise ValueError(f"grid must have shape {hint}, got shape {tuple(grid.shape)}.")
  d = grid.shape[-1]
  _checks.rank_at_least("grid", grid, d + 1, hint)
  image_hint = "(..., H, W, C) to match a 2D grid (..., H', W', 2)"
  if d == 3:
    image_hint = "(..., D, H, W, C) to match a 3D grid (..., D', H', W', 3)"
  _checks.rank_at_least("image", image, d + 1, image_hint)
  if mode == "bicubic" and d == 3:
    raise ValueError("mode 'bicubic' is 2D only; use 'bilinear' (trilinear) or 'nearest' for a 3D grid.")
  batch = _checks.broadcast_batch(("image", "grid"), image.shape[: -(d + 1)], grid.shape[: -(d + 1)])
  if 0 in image.shape[-(d + 1) : -1]:
    raise ValueError(f"image must have positive spatial sizes, got shape {tuple(image.shape)}.")
  return image, grid, d, batch


def sample_points(image, pix, mode: str, padding_mode: str, align_corners: bool):
  """Samples ``image (B, *S, C)`` at pixel coordinates ``pix (B, P, d)`` (``(x, y[, z])``): ``(B, P, C)``.

  The low-level entry point behind :func:`grid_sample` (no validation, no broadcasting); coordinates are in
  pixels (see :func:`stn_jax.coords.normalized_to_pixel`) and snapped to pixel centres here.
  """
  # All axes in one element-wise expression on the stacked coordinates (per-axis sizes broadcast over the
  # last axis): splitting and restacking them would split the coordinate gradient into per-axis consumers.
  sizes = np.asarray(image.shape[1:-1][::-1])
  pix = sc.snap(pix, sizes)
  return kernels.KERNELS[mode](image, pix, padding_mode, align_corners)


def grid_sample(
  image, grid, *, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool = False
):
  """Samples ``image`` at the normalised source coordinates ``grid`` (PyTorch ``grid_sample`` semantics).

  Args:
    image: float array ``(..., H, W, C)`` (2D) or ``(..., D, H, W, C)`` (3D), channels-last. The last axis is
      always the channels: give a grayscale batch as ``(N, H, W, 1)``, not ``(N, H, W)``, and a PyTorch
      ``(N, C, H, W)`` batch transposed to ``(N, H, W, C)``. Untransposed, both are valid shapes that mean
      something else (one ``N x H`` image of ``W`` channels shared by every grid; ``N`` images of height
      ``C``), so no check can catch them.
    grid: float array ``(..., H', W', 2)`` of ``(x, y)`` or ``(..., D', H', W', 3)`` of ``(x, y, z)``
      normalised source coordinates; the last axis picks 2D or 3D. Leading (batch) dims of ``image`` and
      ``grid`` broadcast against each other (one image and many grids, or many images and one grid).
    mode: ``'bilinear'`` (trilinear in 3D), ``'nearest'`` (round half to even, as torch) or ``'bicubic'``
      (2D only; cubic convolution with A = -0.75, as torch).
    padding_mode: what lies outside the image: ``'zeros'``, ``'border'`` (edge pixels repeated) or
      ``'reflection'`` (mirrored about the edges).
    align_corners: see :mod:`stn_jax.coords`.

  Returns:
    ``(..., H', W', C)`` or ``(..., D', H', W', C)`` in the image's dtype; leading dims broadcast.
    Non-finite grid points give 0 (see the module docstring).
  """
  image, grid, _, _ = validate(image, grid, mode, padding_mode)
  return _grid_sample(image, grid, mode, padding_mode, _checks.flag("align_corners", align_corners))


# Compiled per shape and option set: eager calls run as one fused program instead of dozens of small ops.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _grid_sample(image, grid, mode, padding_mode, align_corners):
  d = grid.shape[-1]
  batch = _checks.broadcast_batch(("image", "grid"), image.shape[: -(d + 1)], grid.shape[: -(d + 1)])
  spatial = image.shape[-(d + 1) : -1]
  channels = image.shape[-1]
  out_spatial = grid.shape[-(d + 1) : -1]
  ib, gb = image.shape[: -(d + 1)], grid.shape[: -(d + 1)]
  cdtype = compute_dtype(jnp.promote_types(image.dtype, grid.dtype))
  img = image.astype(cdtype)
  pix = coords.normalized_to_pixel(grid.astype(cdtype), spatial, align_corners=align_corners)
  n = math.prod(batch)
  num_points = math.prod(out_spatial)
  if n * num_points * channels == 0:  # an empty batch, grid or channel axis: nothing to read
    return jnp.zeros(batch + out_spatial + (channels,), image.dtype)
  if math.prod(ib) == 1:
    # One image, many grids: all points of all grids are points of the single image.
    out = sample_points(
      img.reshape((1,) + spatial + (channels,)), pix.reshape(1, -1, d), mode, padding_mode, align_corners
    )
  elif math.prod(gb) == 1:
    # Many images, one grid: fold the batch into channels so each tap fetches one long contiguous vector.
    stacked = jnp.moveaxis(img.reshape((-1,) + spatial + (channels,)), 0, -2).reshape((1,) + spatial + (-1,))
    out = sample_points(stacked, pix.reshape(1, -1, d), mode, padding_mode, align_corners)
    out = jnp.moveaxis(out.reshape(num_points, n, channels), 1, 0)
  else:
    img = jnp.broadcast_to(img, batch + spatial + (channels,)).reshape((n,) + spatial + (channels,))
    pix = jnp.broadcast_to(pix, batch + out_spatial + (d,)).reshape(n, num_points, d)
    out = sample_points(img, pix, mode, padding_mode, align_corners)
  return out.reshape(batch + out_spatial + (channels,)).astype(image.dtype)
