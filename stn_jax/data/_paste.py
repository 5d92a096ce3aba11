"""Whole-pixel cut and paste (no resampling): the TC clutter canvas's primitive, and the off-centre class.

Re-exported by :mod:`stn_jax.data.distortions`, whose docstring describes the off-centre class (an eleventh
class "no digit centred here", label :data:`OFFCENTRE_LABEL`). Offsets are top-left ``(x, y)`` pixels with y
pointing down (see :mod:`stn_jax.coords`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from stn_jax import _checks
from stn_jax.data import _draws

# The off-centre class: label, and the range of the larger of |dx|, |dy| of its shifts (pixels).
OFFCENTRE_LABEL = 10
OFFCENTRE_SHIFT = (7, 20)


def paste(src, src_xy, size: int, dst_xy, side: int):
  """A ``side x side`` canvas holding the ``size x size`` crop of ``src`` at ``src_xy``, pasted at ``dst_xy``.

  Built as a gather with a validity mask (not ``dynamic_update_slice`` under ``vmap``, which lowers to
  scatters that are slow to compile); every pixel is copied exactly, none resampled.
  """
  rows = jnp.arange(side) - dst_xy[1]
  cols = jnp.arange(side) - dst_xy[0]
  valid = ((rows >= 0) & (rows < size))[:, None] & ((cols >= 0) & (cols < size))[None, :]
  r = jnp.clip(rows + src_xy[1], 0, src.shape[0] - 1)
  c = jnp.clip(cols + src_xy[0], 0, src.shape[1] - 1)
  return jnp.where(valid, src[r[:, None], c[None, :]], 0.0)


def _offcentre_one(key, image, label, fraction, min_shift: int, max_shift: int):
  """With probability ``fraction``: ``image`` shifted by whole pixels (zeros shifted in), labelled off-centre.

  The shift has one axis (chosen uniformly) at ``min_shift..max_shift`` px either way and the other at
  ``-max_shift..max_shift``, so the digit is at least ``min_shift`` px off centre and often cut by the edge.
  """
  draw = _draws.Draws(key, 5)
  replace = draw.uniform(0.0, 1.0) < fraction
  axis = draw.randint(2, ())
  sign = 2 * draw.randint(2, ()) - 1
  far = sign * (min_shift + draw.randint(max_shift - min_shift + 1, ()))
  other = draw.randint(2 * max_shift + 1, ()) - max_shift
  shift = jnp.where(axis == 0, jnp.stack([far, other]), jnp.stack([other, far]))
  side = image.shape[0]
  move = functools.partial(paste, src_xy=jnp.zeros(2, jnp.int32), size=side, dst_xy=shift, side=side)
  shifted = jax.vmap(move, in_axes=-1, out_axes=-1)(image)  # every channel by the same shift
  return jnp.where(replace, shifted, image), jnp.where(replace, OFFCENTRE_LABEL, label).astype(jnp.int32)


def add_offcentre_class(keys, images, labels, fraction: float, shift=OFFCENTRE_SHIFT):
  """Replaces a random ``fraction`` of a batch by off-centre copies labelled :data:`OFFCENTRE_LABEL`.

  Args:
    keys: ``(B,)`` PRNG keys, one per example (example i depends only on ``keys[i]`` and its image).
    images: ``(B, S, S, C)`` float images.
    labels: ``(B,)`` integer labels.
    fraction: probability in ``[0, 1)`` that an example is replaced.
    shift: ``(min, max)`` of the larger of |dx|, |dy| in pixels, ``1 <= min <= max < S``.

  Returns:
    ``(images, labels)`` of the same shapes, labels int32.
  """
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"images must be (B, S, S, C), got shape {tuple(images.shape)}.")
  if labels.shape != images.shape[:1] or keys.shape[:1] != images.shape[:1]:
    raise ValueError(
      f"keys {tuple(keys.shape)} and labels {tuple(labels.shape)} must have the batch size {images.shape[0]}."
    )
  low, high = check_offcentre(fraction, shift, images.shape[-2])
  one = functools.partial(_offcentre_one, fraction=fraction, min_shift=low, max_shift=high)
  return jax.vmap(one)(keys, images, labels)


def check_offcentre(fraction, shift, side: int) -> tuple[int, int]:
  """Validates the off-centre class settings (an error naming the field); returns ``shift`` as two ints."""
  if not 0.0 <= float(fraction) < 1.0:
    raise ValueError(f"offcentre_fraction must be in [0, 1), got {fraction}.")
  # Whole pixels >= 1 (_checks.size): a float shift would be truncated to another shift than the one asked.
  return _checks.ordered_pair("offcentre_shift", shift, _checks.size, above=0, below=side)
