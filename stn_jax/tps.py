"""Thin plate spline (TPS) and piecewise-affine transform families.

Both families are parameterised by the *source* positions of control points whose *target* positions (the
base, ``B`` in the paper's ``T_theta = M_theta B``) are fixed: the warp maps target control point ``k`` to
source point ``k`` and interpolates in between (pull mapping, as everywhere in :mod:`stn_jax.coords`). The
parameters are the flattened source points ``(x_0, y_0, x_1, y_1, ...)``; the identity is the base itself.

Both warps are linear in the source points, so the grid is evaluated as ``base_grid + M (source - base)``:
the identity is exact (the correction is exactly 0) and, for a fixed base, ``M`` is precomputed in float64
once per output shape and the whole grid generator is one small matmul.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks, coords, estimate, transforms

_HI = jax.lax.Precision.HIGHEST


def default_control_points(grid_size: int = 4):
  """``grid_size**2`` points evenly over ``[-1, 1] x [-1, 1]``, ``(x, y)``, x varying fastest.

  Args:
    grid_size: points per side (>= 2).

  Returns:
    ``(grid_size**2, 2)`` float32.
  """
  grid_size = _checks.size("grid_size", grid_size, minimum=2)
  t = np.linspace(-1.0, 1.0, grid_size)
  y, x = np.meshgrid(t, t, indexing="ij")
  return jnp.asarray(np.stack([x.ravel(), y.ravel()], axis=-1), jnp.float32)


def _points(name: str, x):
  x = _checks.float_array(name, x)
  _checks.rank_at_least(name, x, 2, "(..., K, 2)")
  _checks.last_dims(name, x, (2,), "(..., K, 2)")
  return x


def _apply_linear(m, delta, base):
  """``base (M, 2) + m (M, K) @ delta (..., K, 2)``, ``(..., M, 2)``."""
  return _linear_correction(m.astype(delta.dtype), base.reshape(-1, 2).astype(delta.dtype), delta)


@jax.custom_jvp
def _linear_correction(m, base, delta):
  # The value is summed term by term in a fixed order (K is small): a matmul's summation order depends on
  # the CPU's vector width, and this grid feeds the fixed elastic test set, which must be the same bits on
  # every machine. Derivatives use the matmul (its transpose is one matmul; see the jvp below).
  corr = sum(m[:, k, None] * delta[..., k, None, :] for k in range(m.shape[1]))
  return base + corr


def _linear_correction_jvp(primals, tangents):
  m, base, delta = primals
  out = _linear_correction(m, base, delta)
  terms = []
  for t, term in (
    (tangents[0], lambda dm: jnp.einsum("mk,...kd->...md", dm, delta, precision=_HI)),
    (tangents[1], lambda dbase: dbase),
    (tangents[2], lambda dd: jnp.einsum("mk,...kd->...md", m, dd, precision=_HI)),
  ):
    if not isinstance(t, jax.custom_derivatives.SymbolicZero):  # m and base are usually constants
      terms.append(term(t))
  tangent = sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)
  return out, jnp.broadcast_to(tangent, out.shape)


_linear_correction.defjvp(_linear_correction_jvp, symbolic_zeros=True)


def _np_base_grid(out_shape: tuple, align_corners: bool) -> np.ndarray:
  """``coords.base_grid`` as a float64 numpy array, also when first needed inside a ``jit`` trace."""
  # These matrices are cached constants; without this, a first call under jit would see tracers.
  with jax.ensure_compile_time_eval():
    return np.asarray(coords.base_grid(out_shape, align_corners=align_corners), np.float64)


def _np_kernel(d2):
  return d2 * np.log(np.where(d2 > 0, d2, 1.0))


@functools.lru_cache(maxsize=64)
def _tps_matrix(cp_key: tuple, out_shape: tuple, align_corners: bool, regularization: float):
  """``(H' W', K)`` float64: the output grid's TPS correction per unit source displacement."""
  c = np.asarray(cp_key, np.float64).reshape(-1, 2)
  estimate.check_tps_base("control_points", c, regularization)
  k = len(c)
  p = _np_base_grid(out_shape, align_corners).reshape(-1, 2)
  d2 = ((c[:, None] - c[None]) ** 2).sum(-1)
  ones = np.ones((k, 1))
  poly = np.concatenate([ones, c], axis=1)
  system = np.block([[_np_kernel(d2) + regularization * np.eye(k), poly], [poly.T, np.zeros((3, 3))]])
  feats = np.concatenate([_np_kernel(((p[:, None] - c[None]) ** 2).sum(-1)), np.ones((len(p), 1)), p], axis=1)
  # Coefficients = inv(system)[:, :K] @ delta; fold the solve into the evaluation matrix.
  return feats @ np.linalg.solve(system, np.eye(k + 3)[:, :k])


def tps_grid(
  source_points,
  out_shape: Sequence[int],
  *,
  control_points=None,
  regularization=0.0,
  align_corners: bool = False,
):
  """Sampling grid of the TPS mapping each target control point to its source point.

  Args:
    source_points: ``(..., K, 2)`` source positions of the K control points.
    out_shape: ``(H', W')``.
    control_points: ``(K, 2)`` target base (default :func:`default_control_points` ``(4)``); may be a traced
      (learnable) array, also with batch dims ``(..., K, 2)``.
    regularization: ``lambda >= 0`` on the kernel diagonal (0: exact interpolation).
    align_corners: see :mod:`stn_jax.coords`.

  Returns:
    ``(..., H', W', 2)`` grid of ``(x, y)``.

  Raises:
    ValueError: for wrong shapes, or (concrete base only) duplicate or collinear control points. A traced
      singular base gives NaN.
  """
  source = _points("source_points", source_points)
  out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(2,))
  align_corners = _checks.flag("align_corners", align_corners)
  regularization = _checks.regularization(regularization)
  _checks.finite("source_points", source)
  c = default_control_points(4) if control_points is None else _points("control_points", control_points)
  _checks.finite("control_points", c)
  _checks.broadcast_batch(("source_points", "control_points"), source.shape[:-2], c.shape[:-2])
  if c.shape[-2] != source.shape[-2]:
    raise ValueError(
      f"source_points {tuple(source.shape)} and control_points {tuple(c.shape)} must have the same number "
      "of points K."
    )
  base = coords.base_grid(out_shape, align_corners=align_corners, dtype=source.dtype)
  delta = source - c.astype(source.dtype)
  static_reg = isinstance(regularization, float)
  if static_reg and c.ndim == 2 and _checks.is_concrete(c):
    key = tuple(np.asarray(c, np.float64).ravel().tolist())
    m = jnp.asarray(_tps_matrix(key, out_shape, align_corners, regularization), jnp.float32)
    grid = _apply_linear(m, delta, base)
  else:
    coeffs = estimate.fit_tps(c, delta, regularization=regularization)
    feats = estimate.tps_features(base.reshape(-1, 2), c.astype(source.dtype))
    grid = base.reshape(-1, 2) + jnp.einsum("...mk,...kd->...md", feats, coeffs, precision=_HI)
  return grid.reshape(grid.shape[:-2] + out_shape + (2,))


def _family_points(name: str, params, k: int):
  params = _checks.float_array("params", params)
  _checks.last_dims(f"params of the {name!r} family", params, (2 * k,), f"(..., {2 * k})")
  # Checked here, before the reshape, so that the error names the flat params the caller passed and the
  # index into them (the grid function would name its (K, 2) source_points).
  _checks.finite(f"params of the {name!r} family", params)
  return params.reshape(params.shape[:-1] + (k, 2))


def tps_family(control_points=None, regularization=0.0) -> transforms.Family:
  """The TPS family with a fixed target base.

  Args:
    control_points: ``(K, 2)`` target base; default the 16-point 4x4 grid of the paper's MNIST models.
    regularization: ``lambda >= 0`` (see :func:`tps_grid`).

  Returns:
    A :class:`~stn_jax.transforms.Family` with ``2 K`` parameters (flattened source points).
  """
  c = default_control_points(4) if control_points is None else _points("control_points", control_points)
  if c.ndim != 2:
    raise ValueError(f"control_points of a family must have shape (K, 2), got {tuple(c.shape)}.")
  # Fail early on a singular base, with the argument's own name (fit_tps would call it target_points).
  estimate.check_tps_base("control_points", c, regularization)
  k = c.shape[0]

  def grid(params, out_shape, *, align_corners=False):
    points = _family_points("tps", params, k)
    return tps_grid(
      points, out_shape, control_points=c, regularization=regularization, align_corners=align_corners
    )

  return transforms.Family(
    name="tps",
    num_params=2 * k,
    identity_params=lambda: jnp.asarray(c, jnp.float32).reshape(-1),
    grid=grid,
    matrix=None,
    param_names=tuple(f"{a}{i}" for i in range(k) for a in "xy"),
  )


@functools.lru_cache(maxsize=64)
def _piecewise_matrix(grid_size: int, out_shape: tuple, align_corners: bool):
  """``(H' W', grid_size**2)`` barycentric weights of each output point in its target triangle."""
  g = grid_size
  p = _np_base_grid(out_shape, align_corners).reshape(-1, 2)
  h = 2.0 / (g - 1)
  # Regular mesh: the cell is found in closed form; points outside [-1, 1] use the nearest boundary cell.
  cell = np.clip(np.floor((p + 1) / h), 0, g - 2).astype(np.int64)
  u, v = ((p + 1) - cell * h).T / h
  i, j = cell.T
  idx = lambda di, dj: (j + dj) * g + (i + di)  # vertex order of default_control_points: x fastest
  rows = np.arange(len(p))
  w = np.zeros((len(p), g * g))
  # Each square cell is split along its anti-diagonal into the triangles {00, 10, 01} and {11, 01, 10}.
  low = u + v <= 1
  for (di, dj), wl, wu in (
    ((0, 0), 1 - u - v, 0 * u),
    ((1, 0), u, 1 - v),
    ((0, 1), v, 1 - u),
    ((1, 1), 0 * u, u + v - 1),
  ):
    np.add.at(w, (rows, idx(di, dj)), np.where(low, wl, wu))
  return w


def piecewise_affine_grid(
  source_points, out_shape: Sequence[int], *, grid_size: int = 4, align_corners: bool = False
):
  """Sampling grid of a piecewise-affine warp over a regular triangulated ``grid_size x grid_size`` mesh.

  Args:
    source_points: ``(..., grid_size**2, 2)`` source positions of the mesh vertices (order of
      :func:`default_control_points`).
    out_shape: ``(H', W')``.
    grid_size: vertices per side of the target mesh over ``[-1, 1]^2``.
    align_corners: see :mod:`stn_jax.coords`.

  Returns:
    ``(..., H', W', 2)``: each output point is located in its target triangle and mapped by barycentric
    interpolation of that triangle's source vertices.
  """
  source = _points("source_points", source_points)
  out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(2,))
  align_corners = _checks.flag("align_corners", align_corners)
  _checks.finite("source_points", source)
  grid_size = _checks.size("grid_size", grid_size, minimum=2)
  c = default_control_points(grid_size)
  if source.shape[-2] != c.shape[0]:
    raise ValueError(
      f"source_points must have shape (..., {c.shape[0]}, 2) for grid_size={grid_size}, "
      f"got {tuple(source.shape)}."
    )
  base = coords.base_grid(out_shape, align_corners=align_corners, dtype=source.dtype)
  m = jnp.asarray(_piecewise_matrix(grid_size, out_shape, align_corners), jnp.float32)
  grid = _apply_linear(m, source - c.astype(source.dtype), base)
  return grid.reshape(grid.shape[:-2] + out_shape + (2,))


def piecewise_affine_family(grid_size: int = 4) -> transforms.Family:
  """The piecewise-affine family: ``2 * grid_size**2`` parameters (source vertex positions)."""
  c = default_control_points(grid_size)
  k = c.shape[0]

  def grid(params, out_shape, *, align_corners=False):
    points = _family_points("piecewise_affine", params, k)
    return piecewise_affine_grid(points, out_shape, grid_size=grid_size, align_corners=align_corners)

  return transforms.Family(
    name="piecewise_affine",
    num_params=2 * k,
    identity_params=lambda: c.reshape(-1),
    grid=grid,
    matrix=None,
    param_names=tuple(f"{a}{i}" for i in range(k) for a in "xy"),
  )
