"""Co-localisation data (paper appendix A.2): one digit class placed at random in a large canvas.

For one MNIST class, ``num_images`` (paper: 100) digits are each pasted, 28x28 and unscaled, at a uniformly
random integer position of an ``S x S`` canvas (paper: 84x84), variant **T**. Variant **TC** adds
``num_clutter`` (paper: 16) random ``6 x 6`` patches cut from training digits of *other* classes at random
places; patches and digit are combined with a pixelwise max, so clutter never erases the digit.

Nothing here is a label for training: the co-localisation model sees only the images. The true box of each
digit is returned for evaluation alone.

Boxes are ``(x_min, y_min, x_max, y_max)`` in the *normalised* coordinates of :mod:`stn_jax.coords`
(``align_corners=False``: -1 and +1 are the outer edges of the canvas), the frame in which an attention
transform ``(s, t_x, t_y)`` crops the box ``(t_x - s, t_y - s, t_x + s, t_y + s)``. Working in that frame
keeps the IoU independent of the canvas size and of any pixel-centre convention.

Everything is a pure function of a PRNG key, so a data set is reproducible bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks, coords
from stn_jax.data import mnist

VARIANTS = {"t": 0, "tc": 16}  # variant -> number of clutter patches (paper A.2)
CANVAS = 84
DIGIT = 28
CLUTTER_SIZE = 6


def _digit_class(digit_class) -> int:
  """An MNIST class 0..9 as an int (2.5 must not silently mean class 2)."""
  digit_class = _checks.size("digit_class", digit_class, minimum=0)
  if digit_class > 9:
    raise ValueError(f"digit_class must be in 0..9, got {digit_class}.")
  return digit_class


def class_digits(digit_class: int, *, split: str = "train") -> np.ndarray:
  """All MNIST digits of one class, uint8 ``(N, 28, 28)``."""
  digit_class = _digit_class(digit_class)
  images, labels = mnist.load(split)
  return images[labels == digit_class]


def other_digits(digit_class: int, *, split: str = "train") -> np.ndarray:
  """All MNIST digits *not* of ``digit_class`` (the clutter source), uint8 ``(N, 28, 28)``."""
  digit_class = _digit_class(digit_class)
  images, labels = mnist.load(split)
  return images[labels != digit_class]


def _place(canvas_size: int, patch, top_left):
  """A ``canvas_size`` square of zeros with ``patch (h, w)`` pasted with its corner at ``top_left (y, x)``."""
  canvas = jnp.zeros((canvas_size, canvas_size), patch.dtype)
  return jax.lax.dynamic_update_slice(canvas, patch, (top_left[0], top_left[1]))


def _one_image(key, digit, clutter_source, canvas_size: int, num_clutter: int, clutter_size: int):
  """One canvas: the digit at a random place plus clutter; returns (image (S, S), top_left (y, x))."""
  k_pos, k_src, k_cut, k_put = jax.random.split(key, 4)
  top_left = jax.random.randint(k_pos, (2,), 0, canvas_size - DIGIT + 1)
  image = _place(canvas_size, digit, top_left)
  if num_clutter:
    src = jax.random.randint(k_src, (num_clutter,), 0, clutter_source.shape[0])
    cut = jax.random.randint(k_cut, (num_clutter, 2), 0, DIGIT - clutter_size + 1)
    put = jax.random.randint(k_put, (num_clutter, 2), 0, canvas_size - clutter_size + 1)

    def patch(i, c, p):
      piece = jax.lax.dynamic_slice(clutter_source[i], (c[0], c[1]), (clutter_size, clutter_size))
      return _place(canvas_size, piece.astype(jnp.float32) / 255.0, p)

    image = jnp.maximum(image, jnp.max(jax.vmap(patch)(src, cut, put), axis=0))
  return image, top_left


def make_dataset(
  key,
  digit_class: int,
  variant: str = "t",
  *,
  num_images: int = 100,
  canvas_size: int = CANVAS,
  split: str = "train",
):
  """The co-localisation set for one digit class.

  Args:
    key: PRNG key; the whole set (which digits, where, which clutter) is a pure function of it.
    digit_class: the MNIST class, 0..9.
    variant: ``'t'`` (digit only) or ``'tc'`` (plus 16 clutter patches of other classes).
    num_images: how many images (paper: 100).
    canvas_size: canvas side (paper: 84); must be at least 28.
    split: MNIST split the digits come from.

  Returns:
    ``(images float32 (N, S, S, 1) in [0, 1], boxes float32 (N, 4))``; boxes are the true digit boxes,
    ``(x_min, y_min, x_max, y_max)`` in normalised coordinates (module docstring), for evaluation only.
  """
  _checks.choice("variant", variant, tuple(VARIANTS))
  canvas_size = _checks.size("canvas_size", canvas_size, minimum=DIGIT)
  num_images = _checks.size("num_images", num_images)
  digits = class_digits(digit_class, split=split)
  if num_images > digits.shape[0]:
    raise ValueError(
      f"num_images must be <= {digits.shape[0]}, the number of {split} digits of class {digit_class}; "
      f"got {num_images}."
    )
  clutter = jnp.asarray(other_digits(digit_class, split=split)) if VARIANTS[variant] else None
  k_pick, k_img = jax.random.split(key)
  picked = digits[np.asarray(jax.random.choice(k_pick, digits.shape[0], (num_images,), replace=False))]
  picked = jnp.asarray(picked, jnp.float32) / 255.0
  keys = jax.random.split(k_img, num_images)
  images, top_left = _make(keys, picked, clutter, canvas_size, VARIANTS[variant])
  return images[..., None], pixel_box_to_normalized(top_left, DIGIT, canvas_size)


@functools.partial(jax.jit, static_argnames=("canvas_size", "num_clutter"))
def _make(keys, digits, clutter, canvas_size: int, num_clutter: int):
  return jax.vmap(lambda k, d: _one_image(k, d, clutter, canvas_size, num_clutter, CLUTTER_SIZE))(
    keys, digits
  )


def pixel_box_to_normalized(top_left, size: int, canvas_size: int):
  """Boxes of ``size`` pixels with integer ``top_left (..., 2)`` ``(y, x)`` -> normalised box ``(..., 4)``.

  The box's outer edges are half a pixel outside its first and last pixel centres.
  """
  top_left = jnp.asarray(top_left, jnp.float32)
  first = top_left[..., ::-1] - 0.5  # (x, y) of the top-left outer edge, in pixel coordinates
  last = first + size
  shape = (canvas_size, canvas_size)
  lo = coords.pixel_to_normalized(first, shape)
  hi = coords.pixel_to_normalized(last, shape)
  return jnp.concatenate([lo, hi], axis=-1)


def attention_box(params):
  """The box an attention transform ``(s, t_x, t_y)`` crops: ``(..., 3) -> (..., 4)`` normalised.

  ``|s|`` is used because a negative scale crops the same region (mirrored).
  """
  params = _checks.float_array("params", params)
  _checks.last_dims("params", params, (3,), "(..., 3) as (s, t_x, t_y)")
  s = jnp.abs(params[..., :1])
  t = params[..., 1:]
  return jnp.concatenate([t - s, t + s], axis=-1)


def box_iou(a, b):
  """Intersection over union of boxes ``(..., 4)`` ``(x_min, y_min, x_max, y_max)``; 0 for empty boxes."""
  a = _checks.float_array("a", a)
  b = _checks.float_array("b", b)
  _checks.last_dims("a", a, (4,), "(..., 4)")
  _checks.last_dims("b", b, (4,), "(..., 4)")
  lo = jnp.maximum(a[..., :2], b[..., :2])
  hi = jnp.minimum(a[..., 2:], b[..., 2:])
  inter = jnp.prod(jnp.clip(hi - lo, 0.0), axis=-1)

  def area(x):
    return jnp.prod(jnp.clip(x[..., 2:] - x[..., :2], 0.0), axis=-1)

  union = area(a) + area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def random_attention_params(key, scale):
  """Random attention crops ``(B, 3)`` of the given scales, placed uniformly where they fit in the canvas.

  These give the negatives ``I^rand`` of the co-localisation loss: a random crop from the same image.

  Args:
    key: PRNG key.
    scale: ``(B,)`` crop scales ``s`` (half the crop side in normalised units; ``|s|`` is used). A crop
      larger than the canvas (``|s| > 1``) is centred.

  Returns:
    ``(B, 3)`` parameters ``(s, t_x, t_y)`` with ``|t| <= max(0, 1 - |s|)`` per axis.
  """
  scale = _checks.float_array("scale", scale)
  if scale.ndim != 1:
    raise ValueError(f"scale must have shape (B,), got {tuple(scale.shape)}.")
  room = jnp.maximum(0.0, 1.0 - jnp.abs(scale))[:, None]
  t = room * jax.random.uniform(key, (scale.shape[0], 2), minval=-1.0, maxval=1.0)
  return jnp.concatenate([scale[:, None], t], axis=-1)
