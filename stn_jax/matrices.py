"""Transform matrices: constructors, the homogeneous form, composition and inversion.

Conventions (layout, ``(x, y)`` order, pull mapping target -> source) are those of :mod:`stn_jax.coords`. A
matrix ``A`` maps *target* (output) coordinates to *source* (input) coordinates. Shapes: a 2D transform is an
affine ``(..., 2, 3)`` or a homogeneous ``(..., 3, 3)`` matrix, a 3D one ``(..., 3, 4)`` or ``(..., 4, 4)``;
leading dims are batch dims and broadcast. :mod:`stn_jax.transforms` turns matrices into sampling grids.

Rotation direction
  ``rotation_matrix(angle)`` is ``[[cos, -sin], [sin, cos]]`` in ``(x, y)`` with y pointing down. Sampling
  with it shows the input rotated **counter-clockwise** by ``angle`` radians, as displayed with row 0 at the
  top (``plt.imshow``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks

_HI = jax.lax.Precision.HIGHEST


def stack_rows(rows):
  """Nested lists of broadcastable arrays -> ``(..., R, C)`` (``rows[r][c]`` is entry ``(r, c)``)."""
  flat = jnp.broadcast_arrays(*[x for row in rows for x in row])
  r, c = len(rows), len(rows[0])
  return jnp.stack(flat, axis=-1).reshape(flat[0].shape + (r, c))


def spatial_ndim(name: str, m, square: bool | None = None) -> int:
  """2 or 3 from a matrix's trailing shape: (2, 3)/(3, 3) -> 2, (3, 4)/(4, 4) -> 3.

  Args:
    name: the argument's name, for the error message.
    m: the matrix (batch dims lead).
    square: ``True`` accepts only homogeneous (square) matrices, ``False`` only affine ones, ``None`` both.

  Returns:
    The number of spatial dims.

  Raises:
    ValueError: if ``m`` has none of the accepted trailing shapes.
  """
  shapes = {(2, 3): 2, (3, 3): 2, (3, 4): 3, (4, 4): 3}
  if square is True:
    shapes = {(3, 3): 2, (4, 4): 3}
  elif square is False:
    shapes = {(2, 3): 2, (3, 4): 3}
  shape = tuple(m.shape[-2:]) if m.ndim >= 2 else None
  if shape not in shapes:
    want = " or ".join(f"(..., {a}, {b})" for a, b in shapes)
    raise ValueError(f"{name} must have shape {want}, got shape {tuple(m.shape)}.")
  return shapes[shape]


def check_nonsingular(name: str, m):
  """Raises ``ValueError`` if any square matrix in ``m`` is singular (only when its values are concrete).

  Singular means a condition number above ``1 / eps`` of the dtype the linear algebra runs in
  (:func:`stn_jax._checks.solve_dtype`: float32 for half-precision input), not of ``m``'s own dtype: a
  bfloat16 scale of 0.005 (condition number 200) is a fine transform.
  """
  if not _checks.is_concrete(m):
    return
  _checks.finite(name, m)
  mats = np.asarray(m, dtype=np.float64).reshape((-1,) + tuple(m.shape[-2:]))
  eps = float(jnp.finfo(_checks.solve_dtype(m.dtype)).eps)
  with np.errstate(all="ignore"):
    cond = np.linalg.cond(mats) if mats.size else np.zeros(0)
  bad = ~np.isfinite(cond) | (cond * eps > 1.0)
  if bad.any():
    index = np.unravel_index(int(np.argmax(bad)), m.shape[:-2]) if m.ndim > 2 else ()
    raise ValueError(
      f"{name} is singular (degenerate transform) at batch index {tuple(int(i) for i in index)}: "
      f"condition number {cond[bad][0]:.3g}."
    )


# ------------------------------------------------------------------------------------ matrix constructors


def attention_matrix(params):
  """``(..., 3)`` ``(s, tx, ty)`` -> ``(..., 2, 3)`` ``[[s, 0, tx], [0, s, ty]]`` (the paper's attention)."""
  p = _checks.float_array("params", params)
  _checks.last_dims("params of the 'attention' family", p, (3,), "(..., 3)")
  s, tx, ty = p[..., 0], p[..., 1], p[..., 2]
  zero = jnp.zeros_like(s)
  return stack_rows([[s, zero, tx], [zero, s, ty]])


def rotation_matrix(angle):
  """``angle (...)`` radians -> ``(..., 2, 3)`` rotation about the centre; positive = counter-clockwise."""
  angle = _checks.float_array("angle", angle)
  c, s, zero = jnp.cos(angle), jnp.sin(angle), jnp.zeros_like(angle)
  return stack_rows([[c, -s, zero], [s, c, zero]])


def similarity_matrix(scale, angle, tx, ty):
  """Rotation-scale-translation ``(..., 2, 3)``: ``A = scale * R(angle)``, translation ``(tx, ty)``.

  Args:
    scale: ``(...)`` source-per-target scale (``> 1`` zooms out: the output shows more of the input).
    angle: ``(...)`` radians; positive shows the input rotated counter-clockwise (module docstring).
    tx: ``(...)`` source x of the output centre.
    ty: ``(...)`` source y of the output centre.

  Returns:
    ``(..., 2, 3)`` with the broadcast batch shape of the arguments.
  """
  scale, angle, tx, ty = (
    _checks.float_array(n, v)
    for n, v in zip(("scale", "angle", "tx", "ty"), (scale, angle, tx, ty), strict=True)
  )
  try:
    np.broadcast_shapes(scale.shape, angle.shape, tx.shape, ty.shape)
  except ValueError:
    shapes = ", ".join(
      f"{n} {tuple(v.shape)}"
      for n, v in zip(("scale", "angle", "tx", "ty"), (scale, angle, tx, ty), strict=True)
    )
    raise ValueError(f"the shapes of scale, angle, tx and ty must broadcast, got {shapes}.") from None
  a, b = scale * jnp.cos(angle), scale * jnp.sin(angle)
  return stack_rows([[a, -b, tx], [b, a, ty]])


# ------------------------------------------------------------------------- homogeneous form and algebra


def to_homogeneous(m):
  """``(..., 2, 3)`` -> ``(..., 3, 3)`` and ``(..., 3, 4)`` -> ``(..., 4, 4)``; square input is returned."""
  m = _checks.float_array("m", m)
  ndim = spatial_ndim("m", m)
  if m.shape[-2] == m.shape[-1]:
    return m
  last = jnp.zeros(m.shape[:-2] + (1, ndim + 1), m.dtype).at[..., 0, ndim].set(1)
  return jnp.concatenate([m, last], axis=-2)


def compose(a, b):
  """The transform ``x -> a(b(x))``: homogeneous ``a @ b``.

  For sampling this means ``warp(warp(img, a), b) == warp(img, compose(a, b))`` (up to resampling and
  borders): the output of ``b`` reads the output of ``a``, which reads the image.

  Args:
    a: ``(..., 2, 3)`` / ``(..., 3, 3)`` (2D) or ``(..., 3, 4)`` / ``(..., 4, 4)`` (3D).
    b: same dimensionality as ``a``; batch dims broadcast.

  Returns:
    Affine ``(..., 2, 3)`` / ``(..., 3, 4)`` when both are affine, else the homogeneous square matrix.
  """
  a, b = _checks.float_array("a", a), _checks.float_array("b", b)
  if spatial_ndim("a", a) != spatial_ndim("b", b):
    raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must both be 2D or both be 3D transforms.")
  _checks.broadcast_batch(("a", "b"), a.shape[:-2], b.shape[:-2])
  out = jnp.matmul(to_homogeneous(a), to_homogeneous(b), precision=_HI)
  affine = a.shape[-2] != a.shape[-1] and b.shape[-2] != b.shape[-1]
  return out[..., :-1, :] if affine else out


def invert(m):
  """Inverse transform of ``m`` (the same kinds of shapes as :func:`compose`; affine stays affine).

  Raises:
    ValueError: if ``m`` is singular and concrete. Under ``jit`` a singular input gives inf/NaN entries.
  """
  m = _checks.float_array("m", m)
  spatial_ndim("m", m)
  full = to_homogeneous(m)
  check_nonsingular("m", full)
  inv = jnp.linalg.inv(full.astype(_checks.solve_dtype(m.dtype))).astype(m.dtype)
  return inv[..., :-1, :] if m.shape[-2] != m.shape[-1] else inv
