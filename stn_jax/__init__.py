"""stn_jax: Spatial Transformer Networks in JAX.

The library core (this namespace) is pure ``jax.numpy``: grid generators for the transform families, the
differentiable samplers, estimation from point correspondences and drawing helpers. It imports neither Flax
nor any training code (nor matplotlib, which :mod:`stn_jax.viz` imports only when drawing). Conventions
(layout, coordinate order, ``align_corners``, which way a transform maps) are stated once, in
:mod:`stn_jax.coords`.

``warp(image, params, family, out_shape, ...)`` lives in :mod:`stn_jax.warp` (call ``stn_jax.warp.warp``):
re-exporting it here would shadow the module of the same name.
"""

from stn_jax.coords import base_grid, homogeneous, linspace, normalized_to_pixel, pixel_to_normalized
from stn_jax.estimate import estimate_affine, estimate_homography, fit_tps
from stn_jax.matrices import attention_matrix, compose, invert, rotation_matrix, similarity_matrix
from stn_jax.sampling import grid_sample
from stn_jax.separable import separable_sample
from stn_jax.tps import (
  default_control_points,
  piecewise_affine_family,
  piecewise_affine_grid,
  tps_family,
  tps_grid,
)
from stn_jax.transforms import FAMILIES, Family, affine_grid, get_family, projective_grid

__version__ = "0.1.0"
