"""3D MNIST (paper appendix A.3): a digit extruded into a slab and placed at a random 3D pose in a volume.

The digit is a thin "card": the 28x28 MNIST image repeated over ``thickness`` slices along depth. In the
paper's 60x60x60 volume the card is 28x28 pixels and ``thickness`` (default 10) voxels deep, centred; every
volume size ``S`` keeps these proportions (the card spans ``28 / 60`` of the volume's width and height), so a
reduced-size volume is the same scene at a coarser resolution.

A random pose (similarity: rotation about x, y and z, each uniform in ``[-max_angle, max_angle]`` degrees,
isotropic scale uniform in ``scale_range``, translation uniform in ``[-max_shift, max_shift]`` normalised
units per axis) moves the card, and the library's own 3D affine warp (:func:`stn_jax.transforms.affine_grid`
with a ``(3, 4)`` matrix, then :func:`stn_jax.sampling.grid_sample`, trilinear, zero padding) renders it:
one grid maps every output voxel of the posed volume back into the card's own volume.

Layout is ``(..., D, H, W, 1)``, coordinates ``(x, y, z)`` along ``(W, H, D)`` (see :mod:`stn_jax.coords`);
"facing the viewer" means the card's plane is the ``(x, y)`` plane, so summing along depth shows the digit.

All generators are pure functions of a PRNG key: the test set is fixed by its seed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks, sampling, transforms
from stn_jax import data as data_lib  # the Task record (stn_jax.data imports this module too)
from stn_jax.data import distortions, mnist

PAPER_SIZE = 60  # the paper's volume side; the card is 28 voxels wide at this size
MIN_SIZE = 4  # smallest volume side rendered


@dataclasses.dataclass(frozen=True)
class PoseRanges:
  """Ranges of the random 3D pose (see the module docstring), checked at construction.

  Attributes:
    max_angle: rotations about x, y and z are each uniform in ``[-max_angle, max_angle]`` degrees; finite,
      ``>= 0``.
    scale_range: ``(min, max)`` of the uniform isotropic scale, ``0 < min <= max``, finite.
    max_shift: translations are uniform in ``[-max_shift, max_shift]`` normalised units per axis; finite,
      ``>= 0``.
    thickness: card depth in voxels of the paper's 60-voxel volume, an int ``>= 1``.

  The fields are stored as Python floats, a tuple and an int, so equal ranges hash alike (the class is a
  static ``jit`` argument).
  """

  max_angle: float = 45.0
  scale_range: tuple[float, float] = (0.8, 1.2)
  max_shift: float = 0.15
  thickness: int = 10

  def __post_init__(self):
    # A bad range would not fail later: uniform(min > max) or a zero scale gives a silent garbage pose.
    set_ = functools.partial(object.__setattr__, self)
    set_("max_angle", _checks.real("PoseRanges.max_angle", self.max_angle, minimum=0.0))
    set_("max_shift", _checks.real("PoseRanges.max_shift", self.max_shift, minimum=0.0))
    real = functools.partial(_checks.real, minimum=0.0)
    set_("scale_range", _checks.ordered_pair("PoseRanges.scale_range", self.scale_range, real, above=0))
    set_("thickness", _checks.size("PoseRanges.thickness", self.thickness))


def card(digits, thickness: int):
  """Extrudes digits ``(B, 28, 28)`` in [0, 1] to cards ``(B, thickness, 28, 28, 1)``."""
  thickness = _checks.size("thickness", thickness)
  digits = _checks.float_array("digits", digits)
  _checks.last_dims("digits", digits, (28, 28), "(B, 28, 28)")
  return jnp.broadcast_to(digits[:, None, :, :, None], (digits.shape[0], thickness, 28, 28, 1))


def _rotation(angles):
  """Rotation matrix ``(3, 3)`` acting on ``(x, y, z)``: R_z(c) R_y(b) R_x(a) for ``angles (a, b, c)``."""
  ca, cb, cc = jnp.cos(angles)
  sa, sb, sc = jnp.sin(angles)
  one, zero = jnp.ones_like(ca), jnp.zeros_like(ca)
  rx = jnp.array([[one, zero, zero], [zero, ca, -sa], [zero, sa, ca]])
  ry = jnp.array([[cb, zero, sb], [zero, one, zero], [-sb, zero, cb]])
  rz = jnp.array([[cc, -sc, zero], [sc, cc, zero], [zero, zero, one]])
  return rz @ ry @ rx


def sample_poses(key, batch: int, ranges: PoseRanges = PoseRanges()):
  """Random poses: ``(angles (B, 3) radians, scale (B,), shift (B, 3))``."""
  batch = _checks.size("batch", batch)
  _check_ranges(ranges)
  k_a, k_s, k_t = jax.random.split(key, 3)
  max_angle = np.deg2rad(ranges.max_angle)
  angles = jax.random.uniform(k_a, (batch, 3), minval=-max_angle, maxval=max_angle)
  scale = jax.random.uniform(k_s, (batch,), minval=ranges.scale_range[0], maxval=ranges.scale_range[1])
  shift = jax.random.uniform(k_t, (batch, 3), minval=-ranges.max_shift, maxval=ranges.max_shift)
  return angles, scale, shift


def pose_theta(angles, scale, shift, thickness: int):
  """The ``(B, 3, 4)`` sampling matrices: posed-volume coordinates -> the card volume's own coordinates.

  The pose moves an upright point ``p`` to ``q = scale R p + shift``; pulling samples needs the inverse,
  ``p = R^T (q - shift) / scale``, then the change of frame from the whole volume to the card's volume
  (the card spans ``28 / 60`` of x and y and ``thickness / 60`` of z).
  """
  thickness = _checks.size("thickness", thickness)

  def one(a, s, t):
    r_inv = _rotation(a).T / s
    to_card = jnp.diag(jnp.array([PAPER_SIZE / 28, PAPER_SIZE / 28, PAPER_SIZE / thickness], jnp.float32))
    m = to_card @ r_inv
    return jnp.concatenate([m, -(m @ t)[:, None]], axis=1)

  return jax.vmap(one)(angles, scale, shift)


def render_poses(digits, angles, scale, shift, size: int, thickness: int = PoseRanges.thickness):
  """Volumes of digits at given poses (see :func:`pose_theta`).

  Args:
    digits: float ``(B, 28, 28)`` in [0, 1].
    angles: ``(B, 3)`` rotation angles (radians) about x, y and z.
    scale: ``(B,)`` isotropic scales.
    shift: ``(B, 3)`` translations in normalised units.
    size: volume side ``S``.
    thickness: card depth in voxels of the paper's 60-voxel volume.

  Returns:
    ``(B, S, S, S, 1)`` float32 volumes.
  """
  size = _checks.size("size (the volume side)", size, minimum=MIN_SIZE)
  theta = pose_theta(angles, scale, shift, thickness)
  grid = transforms.affine_grid(theta, (size, size, size))
  return sampling.grid_sample(card(digits, thickness), grid, mode="bilinear", padding_mode="zeros")


def render(key, digits, size: int, ranges: PoseRanges = PoseRanges()):
  """Volumes of digits at random poses drawn from ``ranges``.

  Args:
    key: PRNG key for the poses.
    digits: float ``(B, 28, 28)`` in [0, 1].
    size: volume side ``S`` (paper: 60).
    ranges: pose ranges and card thickness.

  Returns:
    ``(B, S, S, S, 1)`` float32 volumes.
  """
  size = _checks.size("size (the volume side)", size, minimum=MIN_SIZE)
  angles, scale, shift = sample_poses(key, digits.shape[0], ranges)
  return render_poses(digits, angles, scale, shift, size, ranges.thickness)


def upright(digits, size: int, thickness: int = PoseRanges.thickness):
  """The volumes at the identity pose (card centred, facing the viewer): the target a 3D ST should reach."""
  b = digits.shape[0]
  return render_poses(digits, jnp.zeros((b, 3)), jnp.ones((b,)), jnp.zeros((b, 3)), size, thickness)


def project(volumes, mode: str = "mean"):
  """Flattens volumes ``(..., D, H, W, C)`` to images ``(..., H, W, C)`` along depth.

  ``'mean'`` is the sum along depth divided by ``D`` (a line integral, like an X-ray, kept in [0, 1]);
  ``'max'`` the maximum intensity projection.
  """
  _checks.choice("projection", mode, ("mean", "max"))
  _checks.rank_at_least("volumes", volumes, 4, "(..., D, H, W, C)")
  return jnp.mean(volumes, axis=-4) if mode == "mean" else jnp.max(volumes, axis=-4)


@functools.partial(jax.jit, static_argnames=("batch_size", "size", "ranges"))
def _sample(key, data, batch_size: int, size: int, ranges: PoseRanges):
  digits, labels = data
  if labels.shape != (digits.shape[0],):
    raise ValueError(
      f"labels must have shape ({digits.shape[0]},), one per digit; got {tuple(labels.shape)}."
    )
  k_idx, k_pose = jax.random.split(key)
  idx = jax.random.randint(k_idx, (batch_size,), 0, digits.shape[0])
  chosen = jnp.take(digits, idx, axis=0).astype(jnp.float32) / 255.0
  return render(k_pose, chosen, size, ranges), jnp.take(labels, idx).astype(jnp.int32)


def sample_train(key, digits, labels, batch_size: int, size: int, ranges: PoseRanges = PoseRanges()):
  """A fresh training batch of volumes: digits drawn uniformly with replacement, each at a fresh pose.

  Args:
    key: a ``jax.random.key``; the batch is a pure function of it.
    digits: ``(N, 28, 28)`` uint8 training digits (pass them as jit arguments, not closed-over constants).
    labels: ``(N,)`` integer labels.
    batch_size: B (static).
    size: volume side S (static).
    ranges: pose ranges (static).

  Returns:
    ``(volumes (B, S, S, S, 1) float32, labels (B,) int32)``.
  """
  # Checked before the jitted sampler: as a static argument 2.0 or True would hit the cache entry of 2 or 1.
  batch_size = _checks.size("batch_size", batch_size)
  size = _checks.size("size (the volume side)", size, minimum=MIN_SIZE)
  return _sample(key, (digits, labels), batch_size, size, _check_ranges(ranges))


# Fixed-size chunks: example i is computed by the same XLA program whatever ``num`` is (a prefix property).
_TEST_CHUNK = 100


@functools.partial(jax.jit, static_argnames=("size", "ranges"))
def _render(keys, digits, size: int, ranges: PoseRanges):
  return jax.vmap(lambda k, d: render(k, d[None], size, ranges)[0])(keys, digits)


@functools.cache
def _test_set(seed: int, num: int, size: int, ranges: PoseRanges):
  digits, labels = mnist.load("test", source="idx")
  # Always on the CPU: the same XLA CPU program on every machine, whatever accelerator it has.
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    keys = jax.random.split(jax.random.key(seed), digits.shape[0])
    chunks = []
    for start in range(0, num, _TEST_CHUNK):
      stop = start + _TEST_CHUNK
      part = jnp.asarray(digits[start:stop], jnp.float32) / 255.0
      chunks.append(np.asarray(_render(keys[start:stop], part, size, ranges)))
  volumes = np.concatenate(chunks)[:num]
  volumes.setflags(write=False)
  return volumes, labels[:num]


def test_set(seed: int = 0, *, num: int = 1000, size: int = PAPER_SIZE, ranges: PoseRanges = PoseRanges()):
  """The 3D test set, fixed by ``seed``: the first ``num`` MNIST test digits at poses drawn from the seed.

  Built from the shipped IDX copy on the CPU backend (identical on every machine) and cached. Example ``i``
  uses key ``jax.random.split(key(seed), 10000)[i]``; a smaller ``num`` gives a prefix. The default ``num``
  is 1,000 because 10,000 volumes of 60^3 voxels take 8.6 GB.

  Args:
    seed: fixes the poses.
    num: number of test volumes.
    size: volume side S.
    ranges: pose ranges.

  Returns:
    ``(volumes float32 (num, S, S, S, 1), labels int32 (num,))`` read-only numpy arrays.
  """
  num = distortions.check_test_num(num)
  size = _checks.size("size (the volume side)", size, minimum=MIN_SIZE)
  return _test_set(_checks.seed("seed", seed), num, size, _check_ranges(ranges))


def _check_ranges(ranges) -> PoseRanges:
  if not isinstance(ranges, PoseRanges):
    raise TypeError(f"ranges must be a PoseRanges, got {type(ranges).__name__}.")
  return ranges


def pose_ranges(config) -> PoseRanges:
  """:class:`PoseRanges` from the data config fields of the same names (missing fields keep the defaults)."""
  get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
  default = PoseRanges()
  # Passed as given: PoseRanges checks them (float()/int() here would turn "45" or 10.7 into a silent value).
  return PoseRanges(
    max_angle=get("max_angle", default.max_angle),
    scale_range=get("scale_range", default.scale_range),
    max_shift=get("max_shift", default.max_shift),
    thickness=get("thickness", default.thickness),
  )


def task(config):
  """The ``'volume3d'`` :class:`stn_jax.data.Task`.

  Args:
    config: the data config: ``name='volume3d'``, ``size`` (volume side, default 60), the pose fields of
      :class:`PoseRanges`, ``test_seed`` (default 0), ``test_size`` (default 1,000), optional ``source`` and
      ``data_dir`` of the training digits.

  Returns:
    The task; ``input_shape`` is ``(S, S, S, 1)``.
  """
  get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
  size = _checks.size("size (the volume side)", get("size", PAPER_SIZE), minimum=MIN_SIZE)
  ranges = pose_ranges(config)
  seed = _checks.seed("test_seed", get("test_seed", 0))
  test_size = get("test_size")
  test_size = 1000 if test_size is None else distortions.check_test_num(test_size, "test_size")
  digits, labels = mnist.load("train", source=get("source", "auto"), data_dir=get("data_dir"))
  train_data = (jnp.asarray(digits), jnp.asarray(labels, jnp.int32))

  def sample(key, batch_size: int, data=None):
    batch_size = _checks.size("batch_size", batch_size)
    return _sample(key, train_data if data is None else data, batch_size, size, ranges)

  return data_lib.Task(
    name=f"volume3d_{size}",
    input_shape=(size, size, size, 1),
    num_classes=10,
    sample_train=sample,
    test_set=functools.partial(test_set, seed, num=test_size, size=size, ranges=ranges),
    train_data=train_data,
  )
