"""``warp``: parameters of a transform family -> warped image, through the fastest sampler that applies.

For axis-aligned families (attention, translation, scale) the sampling grid factorises into one coordinate
per output column and one per output row, and :func:`stn_jax.separable.separable_sample` interpolates each
axis with small matrices (no gather/scatter, no ``(H', W', 2)`` grid). Every other family builds its grid
and calls :func:`stn_jax.sampling.grid_sample`. Both paths give the same numbers within float tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

from stn_jax import _checks, sampling, separable, transforms

FAST_PATH_OPTIONS = ("auto", True, False)


def uses_fast_path(family: str | transforms.Family, mode: str = "bilinear", fast_path="auto") -> bool:
  """Whether :func:`warp` takes the separable path for this family, mode and ``fast_path`` setting."""
  family = transforms.get_family(family)
  if fast_path not in FAST_PATH_OPTIONS or isinstance(fast_path, int) and not isinstance(fast_path, bool):
    raise ValueError(f"fast_path must be 'auto', True or False, got {fast_path!r}.")
  applies = family.axis_aligned and family.ndim == 2 and mode in sampling.MODES
  if fast_path is True and not applies:
    raise ValueError(
      f"fast_path=True needs an axis-aligned 2D family (attention, translation, scale); "
      f"family {family.name!r} is not one."
    )
  return applies and fast_path is not False


def warp(
  image,
  params,
  family: str | transforms.Family,
  out_shape: Sequence[int],
  *,
  mode: str = "bilinear",
  padding_mode: str = "zeros",
  align_corners: bool = False,
  fast_path="auto",
):
  """Warps ``image`` by the transform ``family`` with parameters ``params``.

  Args:
    image: ``(..., H, W, C)`` (3D families: ``(..., D, H, W, C)``), channels-last float array; the last axis
      is always the channels (a grayscale batch is ``(N, H, W, 1)``; see :func:`stn_jax.grid_sample`).
    params: ``(..., P)`` parameters of ``family``; leading dims broadcast with the image's.
    family: a :class:`~stn_jax.transforms.Family` or a name for :func:`~stn_jax.transforms.get_family`
      (parameterised families by name use their defaults).
    out_shape: output spatial shape ``(H', W')`` (or ``(D', H', W')``).
    mode: ``'bilinear'``, ``'nearest'`` or ``'bicubic'`` (see :func:`stn_jax.sampling.grid_sample`).
    padding_mode: ``'zeros'``, ``'border'`` or ``'reflection'``.
    align_corners: see :mod:`stn_jax.coords`.
    fast_path: ``'auto'`` takes the separable path where it applies; ``True`` forces it (``ValueError``
      if the family is not axis-aligned); ``False`` always builds the full grid.

  Returns:
    ``(..., H', W', C)`` (or ``(..., D', H', W', C)``) in the image's dtype.

  Parameters are used in at least float32 (a bfloat16 or float16 localisation net still gets an exact
  grid). The image must be finite: a NaN or inf pixel can reach outputs that give it zero weight
  (``0 * nan`` is NaN), a few neighbours on the general path but whole rows and columns on the separable
  ``dense`` path.
  """
  family = transforms.get_family(family)
  _checks.choice("mode", mode, sampling.MODES)
  _checks.choice("padding_mode", padding_mode, sampling.PADDING_MODES)
  out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(family.ndim,))
  align_corners = _checks.flag("align_corners", align_corners)
  image = _checks.float_array("image", image)
  # Coordinates in at least float32: a bfloat16 grid is off by up to a quarter pixel at 60 px, which would
  # also break the identity's exactness (the image itself is sampled in float32 too, see grid_sample).
  params = _checks.float_array("params", params)
  params = params.astype(sampling.compute_dtype(params.dtype))
  d = family.ndim
  _checks.rank_at_least("image", image, d + 1, "(..., H, W, C)" if d == 2 else "(..., D, H, W, C)")
  _checks.rank_at_least("params", params, 1, f"(..., {family.num_params})")
  _checks.broadcast_batch(("image", "params"), image.shape[: -(d + 1)], params.shape[:-1])
  if uses_fast_path(family, mode, fast_path):
    xs, ys = family.axes(params, out_shape, align_corners=align_corners)
    return separable.separable_sample(
      image, xs, ys, mode=mode, padding_mode=padding_mode, align_corners=align_corners
    )
  grid = family.grid(params, out_shape, align_corners=align_corners)
  return sampling.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
