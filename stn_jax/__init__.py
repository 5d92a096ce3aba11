"""stn_jax: Spatial Transformer Networks in JAX.

The library core (this namespace) is pure ``jax.numpy``: grid generators for the transform families, the
differentiable samplers, estimation from point correspondences and drawing helpers. It imports neither Flax
nor any training code. Conventions (layout, coordinate order, ``align_corners``, which way a transform
maps) are stated once, in :mod:`stn_jax.coords`.
"""

from stn_jax.coords import base_grid, homogeneous, linspace, normalized_to_pixel, pixel_to_normalized

__version__ = "0.1.0"
