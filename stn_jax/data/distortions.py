"""The five distorted-MNIST variants of the paper (Section 4.1), as pure jittable functions of a PRNG key.

Every variant is built with the library's own transforms and bilinear sampler (zeros padding,
``align_corners=False``). Angles are in degrees, positive = the digit appears rotated counter-clockwise;
lengths are in pixels; offsets are ``(x, y)`` with y pointing down (see :mod:`stn_jax.coords`).

===========  =========  =================================================================================
variant      canvas     generator (the ranges are the paper's appendix as quoted in REFERENCE.md, [likely])
===========  =========  =================================================================================
``'r'``      42 x 42    rotation U[-90, 90], digit centred. The paper leaves the canvas open; we pick 42 so
                        that even a 45-degree turn of the 28 x 28 box (diagonal 39.6 px) never clips a corner.
``'rts'``    42 x 42    rotation U[-45, 45], scale U[0.7, 1.2], then a uniform translation that keeps the
                        scaled (unrotated) 28 x 28 box inside the canvas: |t| <= (42 - 28 s) / 2 per axis.
                        The box corners may leave the canvas when rotated; MNIST ink sits mostly in the
                        central 20 x 20, so the digit itself stays (almost always) fully visible.
``'p'``      28 x 28    scale U[0.75, 1.0] about the centre, then each of the 4 corners of the scaled box
                        moved by N(0, 5 px) per coordinate; the homography taking the perturbed corners back
                        to the digit's corners (``estimate.estimate_homography``) gives a projective grid.
                        Our choice: the corner noise is conditioned on the quadrilateral staying convex
                        (about 1.4% of raw draws fold over, and no homography maps a square onto a folded
                        quad); we draw 4 candidates and keep the first convex one.
``'e'``      28 x 28    scale U[0.75, 1.0], then a 4 x 4 (16-point) thin plate spline whose control points
                        are each moved by N(0, 1.5 px) per coordinate (``tps.tps_grid``).
``'tc'``     60 x 60    the 28 x 28 digit at a uniform random integer offset (exact copy, no resampling),
                        plus 6 clutter patches of 6 x 6 px, each cut at a uniform random place of a uniform
                        random digit of ``clutter_source`` (MNIST training digits) and pasted at a uniform
                        random integer place of the canvas. Layers are composited by pixel-wise maximum, so
                        clutter never darkens the digit and overlapping strokes stay in [0, 1].
===========  =========  =================================================================================

Optionally (:func:`add_offcentre_class`, the ``data.offcentre_fraction`` field of ``configs/mnist.py``) a
fraction of every batch is replaced by off-centre copies of its images labelled :data:`OFFCENTRE_LABEL`, an
eleventh class "no digit centred here": a classifier trained so can serve as an embedding that tells a
centred digit from a fragment of one (``configs/coloc.py``).

Each example gets its own key (``jax.random.split(key, B)``), so example ``i`` of a batch depends only on
``key``, ``i`` and its digit. :func:`sample_params` exposes the drawn parameters; :func:`apply_params` renders
them, and identity parameters (angle 0, scale 1, no offset or noise) render the digit centred in the canvas.
:func:`sample_train` draws fresh training batches on the device; :func:`test_set` is the fixed test set and
:func:`test_set_params` its parameters (where each TC digit sits, for evaluation).
"""

from __future__ import annotations

import collections.abc
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks, estimate, sampling, tps, transforms
from stn_jax.data import _draws, mnist

VARIANTS = {"r": 42, "rts": 42, "p": 28, "e": 28, "tc": 60}
DIGIT_SIDE = 28

R_MAX_ANGLE = 90.0
RTS_MAX_ANGLE = 45.0
RTS_SCALE = (0.7, 1.2)
P_SCALE = (0.75, 1.0)
P_CORNER_SIGMA = 5.0
P_CANDIDATES = 4
E_SCALE = (0.75, 1.0)
E_CONTROL_SIGMA = 1.5
E_GRID = 4
TC_NUM_PATCHES = 6
TC_PATCH_SIDE = 6

# The off-centre class: label, and the range of the larger of |dx|, |dy| of its shifts (pixels).
OFFCENTRE_LABEL = 10
OFFCENTRE_SHIFT = (7, 20)

_SAMPLE = dict(mode="bilinear", padding_mode="zeros", align_corners=False)
# Corners of the digit box in normalised coordinates, in cyclic order (for the convexity test).
_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def canvas_side(variant: str) -> int:
  """Side length S of the square output canvas of ``variant``."""
  return VARIANTS[_checks.choice("variant", variant, tuple(VARIANTS))]


# Random numbers used per example, per variant (see _sample_one).
_NUM_DRAWS = {
  "r": 1,
  "rts": 4,
  "p": 1 + P_CANDIDATES * 8,
  "e": 1 + E_GRID * E_GRID * 2,
  "tc": 2 + TC_NUM_PATCHES * 5,
}


def _convex(quad):
  """True when the cyclic quadrilateral ``quad (4, 2)`` is strictly convex (either orientation)."""
  edges = jnp.roll(quad, -1, axis=0) - quad
  nxt = jnp.roll(edges, -1, axis=0)
  cross = edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]
  return jnp.all(cross > 0) | jnp.all(cross < 0)


def _sample_one(key, variant: str, clutter_size: int | None) -> dict[str, jax.Array]:
  """Distortion parameters of one example."""
  side = VARIANTS[variant]
  draw = _draws.Draws(key, _NUM_DRAWS[variant])
  if variant == "r":
    return {"angle": draw.uniform(-R_MAX_ANGLE, R_MAX_ANGLE)}
  if variant == "rts":
    angle = draw.uniform(-RTS_MAX_ANGLE, RTS_MAX_ANGLE)
    scale = draw.uniform(*RTS_SCALE)
    room = (side - DIGIT_SIDE * scale) / 2
    return {"angle": angle, "scale": scale, "shift": room * draw.uniform(-1.0, 1.0, (2,))}
  if variant == "p":
    scale = draw.uniform(*P_SCALE)
    noise = draw.normal(P_CORNER_SIGMA, (P_CANDIDATES, 4, 2))
    half = DIGIT_SIDE / 2 * scale
    ok = jax.vmap(_convex)(half * jnp.asarray(_CORNERS) + noise)
    # First convex candidate; zero noise if none is (probability ~1e-7).
    chosen = jnp.where(jnp.any(ok), noise[jnp.argmax(ok)], 0.0)
    return {"scale": scale, "corner_noise": chosen}
  if variant == "e":
    return {
      "scale": draw.uniform(*E_SCALE),
      "control_noise": draw.normal(E_CONTROL_SIGMA, (E_GRID * E_GRID, 2)),
    }
  # tc
  n = TC_NUM_PATCHES
  return {
    "offset": draw.randint(side - DIGIT_SIDE + 1, (2,)),
    "patch_index": draw.randint(clutter_size, (n,)),
    "patch_src": draw.randint(DIGIT_SIDE - TC_PATCH_SIDE + 1, (n, 2)),
    "patch_dst": draw.randint(side - TC_PATCH_SIDE + 1, (n, 2)),
  }


def sample_params(key, variant: str, batch_size: int, *, clutter_size: int | None = None):
  """Draws the distortion parameters of a batch (pure in ``key``, jittable with static arguments).

  Args:
    key: a ``jax.random.key``.
    variant: one of :data:`VARIANTS`.
    batch_size: number of examples B.
    clutter_size: for ``'tc'``, the number N of clutter-source digits patches are drawn from.

  Returns:
    Dict of arrays with leading dim B: ``'r'``: ``angle``; ``'rts'``: ``angle``, ``scale``, ``shift`` (B, 2)
    px; ``'p'``: ``scale``, ``corner_noise`` (B, 4, 2) px (corners TL, TR, BR, BL); ``'e'``: ``scale``,
    ``control_noise`` (B, 16, 2) px; ``'tc'``: ``offset`` (B, 2), ``patch_index`` (B, 6), ``patch_src``
    (B, 6, 2), ``patch_dst`` (B, 6, 2), all int32 top-left ``(x, y)`` pixel offsets.
  """
  canvas_side(variant)
  batch_size = _checks.size("batch_size", batch_size)
  if variant == "tc":
    if clutter_size is None:
      raise ValueError("variant 'tc' needs clutter_size >= 1 (the number of clutter digits), got None.")
    clutter_size = _checks.size("clutter_size", clutter_size)
  return _params_from_keys(jax.random.split(key, batch_size), variant, clutter_size)


def _params_from_keys(keys, variant: str, clutter_size: int | None):
  """Parameters of one example per key: example i depends only on ``keys[i]``."""
  return jax.vmap(lambda k: _sample_one(k, variant, clutter_size))(keys)


def identity_params(variant: str, batch_size: int) -> dict[str, jax.Array]:
  """Parameters that render each digit undistorted, centred in the canvas (TC: no clutter patches)."""
  side = canvas_side(variant)
  b = _checks.size("batch_size", batch_size)
  zeros, ones = jnp.zeros((b,), jnp.float32), jnp.ones((b,), jnp.float32)
  return {
    "r": lambda: {"angle": zeros},
    "rts": lambda: {"angle": zeros, "scale": ones, "shift": jnp.zeros((b, 2), jnp.float32)},
    "p": lambda: {"scale": ones, "corner_noise": jnp.zeros((b, 4, 2), jnp.float32)},
    "e": lambda: {"scale": ones, "control_noise": jnp.zeros((b, E_GRID * E_GRID, 2), jnp.float32)},
    "tc": lambda: {
      "offset": jnp.full((b, 2), (side - DIGIT_SIDE) // 2, jnp.int32),
      "patch_index": jnp.zeros((b, 0), jnp.int32),
      "patch_src": jnp.zeros((b, 0, 2), jnp.int32),
      "patch_dst": jnp.zeros((b, 0, 2), jnp.int32),
    },
  }[variant]()


def _similarity_grid(side: int, angle_deg, scale, shift_px):
  """Pull grid of ``canvas <- digit``: the digit scaled by ``scale``, rotated, its centre moved by ``shift``.

  In normalised coordinates a canvas point u reads the digit at ``k R(angle) (u - t)``, where
  ``k = side / (28 scale)`` (the canvas is ``side / 28`` times wider than the digit), ``t = 2 shift / side``.
  """
  k = side / (DIGIT_SIDE * scale)
  t = 2.0 * shift_px / side
  zero = jnp.zeros_like(k)
  rotate_scale = transforms.similarity_matrix(k, jnp.deg2rad(angle_deg), zero, zero)
  untranslate = transforms.similarity_matrix(jnp.ones_like(k), zero, -t[..., 0], -t[..., 1])
  return transforms.affine_grid(transforms.compose(rotate_scale, untranslate), (side, side))


def _projective_grid(scale, corner_noise_px):
  corners = jnp.asarray(_CORNERS, jnp.float32)
  target = scale[..., None, None] * corners + corner_noise_px * (2.0 / DIGIT_SIDE)
  # estimate_homography(src, dst) maps src -> dst; the pull grid maps canvas (target) -> digit (source).
  h = estimate.estimate_homography(target, jnp.broadcast_to(corners, target.shape))
  return transforms.projective_grid(h, (DIGIT_SIDE, DIGIT_SIDE))


def _elastic_grid(scale, control_noise_px):
  control = tps.default_control_points(E_GRID)
  source = (control + control_noise_px * (2.0 / DIGIT_SIDE)) / scale[..., None, None]
  return tps.tps_grid(source, (DIGIT_SIDE, DIGIT_SIDE))


def _layer(src, src_xy, size: int, dst_xy, side: int):
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


def _clutter_one(digit, params, clutter):
  side = VARIANTS["tc"]
  canvas = _layer(digit, jnp.zeros(2, jnp.int32), DIGIT_SIDE, params["offset"], side)
  for i in range(params["patch_index"].shape[0]):
    patch = _layer(
      clutter[params["patch_index"][i]], params["patch_src"][i], TC_PATCH_SIDE, params["patch_dst"][i], side
    )
    # Max compositing: clutter never darkens the digit, overlapping strokes stay in [0, 1].
    canvas = jnp.maximum(canvas, patch)
  return canvas


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
  move = functools.partial(_layer, src_xy=jnp.zeros(2, jnp.int32), size=side, dst_xy=shift, side=side)
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
  bad = f"offcentre_shift must be (min, max) px with 1 <= min <= max < {side}, got {shift!r}."
  if isinstance(shift, (str, bytes)) or not isinstance(shift, (collections.abc.Sequence, np.ndarray)):
    raise TypeError(bad)
  if len(shift) != 2:
    raise ValueError(bad)
  # Whole pixels: a float shift would be truncated to another shift than the one asked for.
  low, high = (_checks.size("offcentre_shift", s) for s in shift)
  if not low <= high < side:
    raise ValueError(bad)
  return low, high


def _as_float(name: str, images):
  """uint8 in [0, 255] -> float32 in [0, 1]; float input is taken to be in [0, 1] already."""
  if not hasattr(images, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(images).__name__}.")
  if images.dtype == jnp.uint8:
    return jnp.asarray(images, jnp.float32) / 255.0
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"{name} must be uint8 (0..255) or float (0..1), got {images.dtype}.")
  return jnp.asarray(images, jnp.float32)


def _check_digits(name: str, digits):
  if digits.ndim != 3 or tuple(digits.shape[1:]) != (DIGIT_SIDE, DIGIT_SIDE):
    raise ValueError(f"{name} must have shape (B, 28, 28), got shape {tuple(digits.shape)}.")
  return _as_float(name, digits)


def apply_params(digits, params, variant: str, *, clutter_source=None):
  """Renders a batch with given distortion parameters (see :func:`sample_params`).

  Args:
    digits: ``(B, 28, 28)`` uint8 (0..255) or float (0..1).
    params: dict from :func:`sample_params` or :func:`identity_params`.
    variant: one of :data:`VARIANTS`.
    clutter_source: ``'tc'`` only: ``(N, 28, 28)`` digits the clutter patches are cut from.

  Returns:
    ``(B, S, S, 1)`` float32 in [0, 1], S = ``VARIANTS[variant]``.
  """
  side = canvas_side(variant)
  x = _check_digits("digits", digits)
  if variant == "tc":
    if clutter_source is None:
      raise ValueError("variant 'tc' needs clutter_source, (N, 28, 28) digits to cut clutter patches from.")
    clutter = _check_digits("clutter_source", clutter_source)
    out = jax.vmap(_clutter_one, in_axes=(0, 0, None))(x, params, clutter)
    return out[..., None]
  if variant == "r":
    grid = _similarity_grid(
      side, params["angle"], jnp.ones_like(params["angle"]), jnp.zeros(params["angle"].shape + (2,))
    )
  elif variant == "rts":
    grid = _similarity_grid(side, params["angle"], params["scale"], params["shift"])
  elif variant == "p":
    grid = _projective_grid(params["scale"], params["corner_noise"])
  else:
    grid = _elastic_grid(params["scale"], params["control_noise"])
  out = sampling.grid_sample(x[..., None], grid, **_SAMPLE)
  # Bilinear weights are convex, so this only removes float round-off (e.g. 1.0000001).
  return jnp.clip(out, 0.0, 1.0)


def distort(key, digits, variant: str, *, clutter_source=None, return_params: bool = False):
  """Distorts a batch of digits afresh: pure in ``key`` and jittable (``variant`` static).

  Args:
    key: a ``jax.random.key``.
    digits: ``(B, 28, 28)`` uint8 (0..255) or float (0..1).
    variant: one of ``'r'``, ``'rts'``, ``'p'``, ``'e'``, ``'tc'`` (module docstring).
    clutter_source: ``'tc'`` only (required there): ``(N, 28, 28)`` digits to cut clutter patches from,
      normally the MNIST training set.
    return_params: also return the parameters drawn (see :func:`sample_params`).

  Returns:
    ``(B, S, S, 1)`` float32 images in [0, 1], and the parameter dict when ``return_params``.
  """
  canvas_side(variant)
  _check_digits("digits", digits)  # Fail before drawing any random numbers.
  if variant == "tc" and clutter_source is None:
    raise ValueError("variant 'tc' needs clutter_source, (N, 28, 28) digits to cut clutter patches from.")
  clutter_size = None if clutter_source is None else clutter_source.shape[0]
  params = sample_params(key, variant, digits.shape[0], clutter_size=clutter_size)
  images = apply_params(digits, params, variant, clutter_source=clutter_source)
  return (images, params) if return_params else images


def sample_train(key, images, labels, batch_size: int, variant: str):
  """A fresh training batch: B digits drawn uniformly with replacement, each distorted afresh.

  Meant to run on the accelerator, inside or beside the jitted train step: pass ``images`` and ``labels`` as
  (device-resident) jit arguments rather than closing over them, or XLA embeds the 47 MB array in the program.
  A jitted call and an eager one draw the same digits and parameters but their images agree only to float
  tolerance (allclose, about 1e-6), not bit for bit: XLA fuses and reorders float arithmetic differently in
  the two programs. (:func:`test_set` is bit-for-bit reproducible because it always runs one fixed program.)

  Args:
    key: a ``jax.random.key``; the batch is a pure function of it.
    images: ``(N, 28, 28)`` uint8 training digits; for ``'tc'`` they are also the clutter source.
    labels: ``(N,)`` integer labels.
    batch_size: B (static).
    variant: one of :data:`VARIANTS` (static).

  Returns:
    ``(images (B, S, S, 1) float32 in [0, 1], labels (B,) int32)``.
  """
  batch_size = _checks.size("batch_size", batch_size)
  if labels.shape != (images.shape[0],):
    raise ValueError(
      f"labels must have shape ({images.shape[0]},), one per image; got {tuple(labels.shape)}."
    )
  k_index, k_distort = jax.random.split(key)
  index = jax.random.randint(k_index, (batch_size,), 0, images.shape[0])
  clutter = images if variant == "tc" else None
  batch = distort(k_distort, jnp.take(images, index, axis=0), variant, clutter_source=clutter)
  return batch, jnp.take(labels, index, axis=0).astype(jnp.int32)


# Examples are rendered in fixed-size chunks so that example i of the test set is computed by the same XLA
# program whatever ``num`` is: ``test_set(v, s, num=n)`` is exactly the first n examples of the full set.
_TEST_CHUNK = 500


@functools.partial(jax.jit, static_argnames=("variant",))
def _render(keys, digits, clutter, variant):
  params = _params_from_keys(keys, variant, None if clutter is None else clutter.shape[0])
  return apply_params(digits, params, variant, clutter_source=clutter)


def _cpu_device():
  """The CPU: the same XLA CPU program on every machine, whatever accelerator it has."""
  try:
    return jax.local_devices(backend="cpu")[0]
  except RuntimeError:  # JAX_PLATFORMS excludes the CPU backend.
    logging.warning(
      "No CPU backend: building the test set on %s; its last bits may differ.", jax.devices()[0]
    )
    return jax.devices()[0]


def check_test_num(num: int | None, name: str = "num") -> int:
  """``num`` (named ``name`` in errors) as an int in 1..10,000, the MNIST test digits (None: all of them)."""
  total = mnist.NUM_EXAMPLES["test"]
  num = total if num is None else _checks.size(name, num)
  if num > total:
    raise ValueError(f"{name} must be in [1, {total}], got {num}.")
  return num


def check_seed(seed, name: str = "seed") -> int:
  """A seed as a Python int: ``TypeError`` for a float, bool or string (``2.5`` must not mean seed 2)."""
  return _checks.size(name, seed, minimum=-(2**63))


def _test_keys(seed: int):
  """One key per test digit: example i of the fixed test set uses ``split(key(seed), 10000)[i]``."""
  return jax.random.split(jax.random.key(seed), mnist.NUM_EXAMPLES["test"])


@functools.cache
def _test_set(variant: str, seed: int, num: int):
  images, labels = mnist.load("test", source="idx")
  clutter = mnist.load("train", source="idx")[0] if variant == "tc" else None
  with jax.default_device(_cpu_device()):
    keys = _test_keys(seed)
    clutter = None if clutter is None else jnp.asarray(clutter)
    chunks = []
    for start in range(0, num, _TEST_CHUNK):
      stop = start + _TEST_CHUNK
      chunks.append(np.asarray(_render(keys[start:stop], jnp.asarray(images[start:stop]), clutter, variant)))
  out = np.concatenate(chunks)[:num]
  out.setflags(write=False)
  return out, labels[:num]


def test_set(variant: str, seed: int = 0, *, num: int | None = None):
  """The distorted MNIST test set, fixed by ``seed``: identical on every run (cached in memory).

  Always built from the shipped IDX copy of MNIST (TFDS stores the test digits in another order) and on the
  CPU backend, so it does not depend on the data source or accelerator of the machine. Clutter patches for
  ``'tc'`` come from the MNIST training digits. Example i uses key ``jax.random.split(key(seed), 10000)[i]``.

  Args:
    variant: one of :data:`VARIANTS`.
    seed: integer seed of the distortions.
    num: number of test digits (the first ``num`` of the 10,000; default all). A smaller ``num`` gives a
      prefix of the full set, bit for bit.

  Returns:
    ``(images (num, S, S, 1) float32 in [0, 1], labels (num,) int32)`` read-only numpy arrays.
  """
  canvas_side(variant)
  return _test_set(variant, check_seed(seed), check_test_num(num))


def test_set_params(variant: str, seed: int = 0, *, num: int | None = None) -> dict[str, np.ndarray]:
  """The distortion parameters of :func:`test_set`'s images, for evaluation (e.g. where each TC digit is).

  ``apply_params(digits, test_set_params(v, s, num=n), v, clutter_source=...)`` on the first ``n`` MNIST test
  digits (and, for ``'tc'``, the MNIST training digits as clutter source) renders ``test_set(v, s, num=n)``.

  Args:
    variant: one of :data:`VARIANTS`.
    seed: the test set's seed.
    num: number of test digits (default all 10,000); a prefix of the full set's parameters.

  Returns:
    The dict of :func:`sample_params` as read-only numpy arrays with leading dim ``num``; for ``'tc'``,
    ``offset + DIGIT_SIDE / 2`` is the digit box's centre in pixels.
  """
  canvas_side(variant)
  num = check_test_num(num)
  clutter_size = mnist.NUM_EXAMPLES["train"] if variant == "tc" else None
  with jax.default_device(_cpu_device()):
    params = _params_from_keys(_test_keys(check_seed(seed))[:num], variant, clutter_size)
  out = {k: np.asarray(v) for k, v in params.items()}
  for v in out.values():
    v.setflags(write=False)
  return out


@functools.cache
def offcentre_test_set(variant: str, seed: int, num: int | None, fraction: float, shift=OFFCENTRE_SHIFT):
  """:func:`test_set` with the off-centre class (:func:`add_offcentre_class`), fixed by ``seed``.

  Example i is replaced or not, and shifted, by key ``jax.random.split(fold_in(key(seed), 1), 10000)[i]``,
  so a smaller ``num`` still gives a prefix of the full set. Returns read-only numpy arrays.
  """
  low, high = check_offcentre(fraction, shift, VARIANTS[variant])  # before the (costly) test set
  images, labels = test_set(variant, seed, num=num)
  with jax.default_device(_cpu_device()):
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), mnist.NUM_EXAMPLES["test"])
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    out = add_offcentre_class(keys[: images.shape[0]], images, labels, fraction, (low, high))
  images, labels = (np.asarray(a) for a in out)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels
