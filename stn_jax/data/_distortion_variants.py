"""Per-variant distortion parameters and rendering: what :mod:`stn_jax.data.distortions` builds on.

The variants, their canvases and ranges are described once, in the docstring of
:mod:`stn_jax.data.distortions` (the module users call; it re-exports the public names here). This module
draws one example's parameters from its key (:func:`sample_params`; :func:`identity_params` gives the
no-op ones) and renders a batch from parameters (:func:`apply_params`): a pull grid per variant (similarity,
projective, thin plate spline) sampled bilinearly with zeros padding and ``align_corners=False``, or for
``'tc'`` exact whole-pixel copies (:func:`stn_jax.data._paste.paste`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stn_jax import _checks, estimate, sampling, tps, transforms
from stn_jax.data import _draws, _paste

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
  return params_from_keys(jax.random.split(key, batch_size), variant, clutter_size)


def params_from_keys(keys, variant: str, clutter_size: int | None):
  """Parameters of one example per key: example i depends only on ``keys[i]`` (arguments unchecked)."""
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


def _clutter_one(digit, params, clutter):
  side = VARIANTS["tc"]
  canvas = _paste.paste(digit, jnp.zeros(2, jnp.int32), DIGIT_SIDE, params["offset"], side)
  for i in range(params["patch_index"].shape[0]):
    patch = _paste.paste(
      clutter[params["patch_index"][i]], params["patch_src"][i], TC_PATCH_SIDE, params["patch_dst"][i], side
    )
    # Max compositing: clutter never darkens the digit, overlapping strokes stay in [0, 1].
    canvas = jnp.maximum(canvas, patch)
  return canvas


def _as_float(name: str, images):
  """uint8 in [0, 255] -> float32 in [0, 1]; float input is taken to be in [0, 1] already."""
  if not hasattr(images, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(images).__name__}.")
  if images.dtype == jnp.uint8:
    return jnp.asarray(images, jnp.float32) / 255.0
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"{name} must be uint8 (0..255) or float (0..1), got {images.dtype}.")
  return jnp.asarray(images, jnp.float32)


def check_digits(name: str, digits):
  """``digits (B, 28, 28)`` (uint8 0..255 or float 0..1, named ``name`` in errors) as float32 in [0, 1]."""
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
  x = check_digits("digits", digits)
  if variant == "tc":
    if clutter_source is None:
      raise ValueError("variant 'tc' needs clutter_source, (N, 28, 28) digits to cut clutter patches from.")
    clutter = check_digits("clutter_source", clutter_source)
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
