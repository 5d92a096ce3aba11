"""Coordinate conventions of stn_jax, stated once, and the one pixel <-> normalised helper pair.

Every transform family and sampler in the library goes through the functions here.

Layout
  Images are channels-last, ``(..., H, W, C)``; volumes are ``(..., D, H, W, C)``. Leading dims are batch
  dims and broadcast where that makes sense.

Grids
  A sampling grid has shape ``(..., H', W', 2)`` (2D) or ``(..., D', H', W', 3)`` (3D). Its last axis holds
  *source* coordinates in the order ``(x, y)`` / ``(x, y, z)``: x runs along W (left to right), y along H
  (top to bottom), z along D. Coordinates are normalised to [-1, 1] over the spatial extent of the source.

Which way a transform maps
  Sampling is "pull": output pixel ``(i, j)`` reads the source at ``grid[..., i, j, :]``. A transform with
  matrix ``A`` therefore maps *target (output)* coordinates to *source (input)* coordinates,
  ``(x_s, y_s, 1)^T = A (x_t, y_t, 1)^T``, exactly as in the paper and in ``torch.nn.functional.affine_grid``.

``align_corners`` (same meaning as PyTorch)
  * ``False`` (default): -1 and +1 are the *outer edges* of the first and last pixels. Pixel centre ``i`` of
    an axis of ``n`` pixels sits at ``(2 i + 1) / n - 1``. Resampling to another size keeps the image extent.
  * ``True``: -1 and +1 are the *centres* of the first and last pixels: pixel ``i`` sits at
    ``2 i / (n - 1) - 1``. (For ``n == 1`` the single pixel sits at 0, with either setting.)

Pixel coordinates
  Pixel coordinate ``p`` along an axis is the continuous index whose integer values are pixel centres,
  0 .. n-1. ``normalized_to_pixel`` and ``pixel_to_normalized`` convert between the two systems; they take
  the spatial shape in array order ``(H, W)`` / ``(D, H, W)`` and coordinates in ``(x, y[, z])`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from stn_jax import _checks


def _sizes_xyz(spatial_shape: Sequence[int], ndim: int) -> np.ndarray:
  """(H, W) -> [W, H]; (D, H, W) -> [W, H, D]: sizes in coordinate (x, y, z) order."""
  layout = _checks.SPATIAL_LAYOUTS.get(ndim, " or ".join(_checks.SPATIAL_LAYOUTS.values()))
  spatial_shape = _checks.int_tuple("spatial_shape", spatial_shape, layout)
  if len(spatial_shape) != ndim:
    raise ValueError(
      f"spatial_shape {spatial_shape} has {len(spatial_shape)} entries but the coordinates have "
      f"{ndim} components (expected (H, W) for (x, y) or (D, H, W) for (x, y, z))."
    )
  if any(s < 1 for s in spatial_shape):
    raise ValueError(f"spatial_shape must be positive, got {spatial_shape}.")
  return np.asarray(spatial_shape[::-1], dtype=np.float64)


def _coords(name: str, x):
  """A float array of points ``(..., n)`` (rank >= 1)."""
  x = _checks.float_array(name, x)
  _checks.rank_at_least(name, x, 1, "(..., 2) with (x, y) or (..., 3) with (x, y, z)")
  return x


def normalized_to_pixel(coords, spatial_shape: Sequence[int], *, align_corners: bool = False):
  """Converts normalised coordinates in [-1, 1] to continuous pixel coordinates.

  Args:
    coords: float array ``(..., n)`` with ``(x, y)`` or ``(x, y, z)`` in its last axis.
    spatial_shape: the source's spatial shape in array order, ``(H, W)`` or ``(D, H, W)``.
    align_corners: see the module docstring.

  Returns:
    Array of the same shape and dtype whose integer values are pixel centres (0 .. size-1).
  """
  coords = _coords("coords", coords)
  sizes = _sizes_xyz(spatial_shape, coords.shape[-1]).astype(coords.dtype)
  if _checks.flag("align_corners", align_corners):
    return (coords + 1) * 0.5 * (sizes - 1)
  return ((coords + 1) * sizes - 1) * 0.5


def pixel_to_normalized(coords, spatial_shape: Sequence[int], *, align_corners: bool = False):
  """Inverse of :func:`normalized_to_pixel`.

  Args:
    coords: float array ``(..., n)`` of pixel coordinates in ``(x, y[, z])`` order.
    spatial_shape: spatial shape in array order, ``(H, W)`` or ``(D, H, W)``.
    align_corners: see the module docstring.

  Returns:
    Normalised coordinates, same shape and dtype.
  """
  coords = _coords("coords", coords)
  sizes = _sizes_xyz(spatial_shape, coords.shape[-1])
  if _checks.flag("align_corners", align_corners):
    # A size-1 axis has its only pixel at 0 (as in linspace and torch's affine_grid), not at -1; there
    # p -> 2 p, what align_corners=False gives for one pixel, which keeps n - 1 = 0 out of the division.
    dtype = coords.dtype
    return coords * 2 / np.maximum(sizes - 1, 1).astype(dtype) - (sizes > 1).astype(dtype)
  return (coords * 2 + 1) / sizes.astype(coords.dtype) - 1


def linspace(size: int, *, align_corners: bool = False, dtype=jnp.float32):
  """Normalised coordinates of the ``size`` pixel centres along one axis.

  Equal to the per-axis base coordinates of ``torch.nn.functional.affine_grid``.

  Args:
    size: number of pixels along the axis (>= 1).
    align_corners: see the module docstring.
    dtype: float dtype of the result.

  Returns:
    ``(size,)`` array.
  """
  size = _checks.size("size", size)
  dtype = _checks.float_dtype("dtype", dtype)
  idx = np.arange(size, dtype=np.float64)
  if _checks.flag("align_corners", align_corners):
    vals = idx * 2 / max(size - 1, 1) - 1 if size > 1 else np.zeros(1)
  else:
    vals = (idx * 2 + 1) / size - 1
  return jnp.asarray(vals, dtype=dtype)


def base_grid(out_shape: Sequence[int], *, align_corners: bool = False, dtype=jnp.float32):
  """The identity sampling grid: normalised target coordinates of every output pixel centre.

  Args:
    out_shape: output spatial shape in array order, ``(H', W')`` or ``(D', H', W')``.
    align_corners: see the module docstring.
    dtype: float dtype of the result.

  Returns:
    ``(H', W', 2)`` with ``(x, y)`` or ``(D', H', W', 3)`` with ``(x, y, z)`` in the last axis.
  """
  out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(2, 3))
  dtype = _checks.float_dtype("dtype", dtype)
  axes = [linspace(n, align_corners=align_corners, dtype=dtype) for n in out_shape]
  mesh = jnp.meshgrid(*axes, indexing="ij")  # array order: (y, x) or (z, y, x)
  return jnp.stack(mesh[::-1], axis=-1)


def homogeneous(points):
  """Appends a 1 to the last axis: ``(..., n) -> (..., n + 1)``."""
  points = _coords("points", points)
  return jnp.concatenate([points, jnp.ones(points.shape[:-1] + (1,), points.dtype)], axis=-1)
