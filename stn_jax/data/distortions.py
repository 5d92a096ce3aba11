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

This module is the one to call; the parameter sampling and rendering live in ``_distortion_variants.py`` and
the whole-pixel paste and the off-centre class in ``_paste.py``, whose public names it re-exports.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks
from stn_jax.data import _distortion_variants, _paste, mnist

# The public names of the parts, so that users call this one module.
VARIANTS = _distortion_variants.VARIANTS
DIGIT_SIDE = _distortion_variants.DIGIT_SIDE
OFFCENTRE_LABEL = _paste.OFFCENTRE_LABEL
OFFCENTRE_SHIFT = _paste.OFFCENTRE_SHIFT
canvas_side = _distortion_variants.canvas_side
sample_params = _distortion_variants.sample_params
identity_params = _distortion_variants.identity_params
apply_params = _distortion_variants.apply_params
add_offcentre_class = _paste.add_offcentre_class
check_offcentre = _paste.check_offcentre


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
  _distortion_variants.check_digits("digits", digits)  # Fail before drawing any random numbers.
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
  params = _distortion_variants.params_from_keys(keys, variant, None if clutter is None else clutter.shape[0])
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
  return _test_set(variant, _checks.seed("seed", seed), check_test_num(num))


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
    keys = _test_keys(_checks.seed("seed", seed))[:num]
    params = _distortion_variants.params_from_keys(keys, variant, clutter_size)
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
