"""Grid generators and transform families: parameters -> sampling grid (and matrix where one exists).

Conventions (layout, ``(x, y)`` order, pull mapping target -> source, ``align_corners``) are those of
:mod:`stn_jax.coords`. A matrix ``A`` maps *target* (output) coordinates to *source* (input) coordinates.

Families
  A :class:`Family` bundles everything a spatial transformer needs to know about one parameterisation. Each
  family's ``identity_params()`` gives exactly the identity grid (``coords.base_grid``), so a localisation
  net's regression layer starts at identity with zero weights and ``identity_params()`` as bias.

  ============  ======  ===========================================================  ===================
  name          params  meaning                                                      identity
  ============  ======  ===========================================================  ===================
  attention     3       ``(s, tx, ty)``: ``A = [[s, 0, tx], [0, s, ty]]``               ``(1, 0, 0)``
  translation   2       ``(tx, ty)``                                                    ``(0, 0)``
  scale         4       ``(sx, sy, tx, ty)``: ``A = [[sx, 0, tx], [0, sy, ty]]``        ``(1, 1, 0, 0)``
  similarity    4       ``(a, b, tx, ty)``: ``A = [[a, -b, tx], [b, a, ty]]``           ``(1, 0, 0, 0)``
  affine        6       ``A`` (2, 3) row-major                                          ``(1,0,0, 0,1,0)``
  projective    8       ``H`` (3, 3) row-major with ``H[2, 2] = 1``                     identity
  affine3d      12      ``A`` (3, 4) row-major, on volumes                              identity
  ============  ======  ===========================================================  ===================

  The similarity family is linear in its parameters (``a = s cos(angle)``, ``b = s sin(angle)``), which is
  better conditioned for regression than ``(log_scale, angle)`` and has no angle wrap-around.
  :func:`get_family` also builds ``'tps'`` and ``'piecewise_affine'`` (see :mod:`stn_jax.tps`).

Matrices
  The matrix constructors (``attention_matrix``, ``rotation_matrix``, ``similarity_matrix``),
  ``to_homogeneous``, ``compose`` and ``invert`` live in :mod:`stn_jax.matrices`, with the rotation
  direction; they are re-exported here.

Projective division (the horizon)
  A homography gives ``(u, v, w) = H (x_t, y_t, 1)``, with ``H`` first scaled to ``max |H_ij| = 1`` and
  ``H[2, 2] >= 0`` (a homography is defined up to scale and sign). Where ``w > HORIZON_EPS`` the source point
  is ``(u / w, v / w)`` clipped to ``[-FAR, FAR]``; at or behind the horizon (``w <= HORIZON_EPS``) it is
  ``(FAR, FAR)``. ``FAR`` lies far outside every image, so those outputs read padding (zeros; the edge
  pixel under ``border``; whatever the mirrored plane holds there under ``reflection``), never NaN/inf and
  never the point-reflected copy of the image that a plain division by a negative ``w`` would show.
  Gradients through clipped and beyond-horizon points are zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from stn_jax import _checks, coords, matrices
from stn_jax.matrices import (  # noqa: F401 (re-exported: these lived here before stn_jax.matrices)
  attention_matrix,
  compose,
  invert,
  rotation_matrix,
  similarity_matrix,
  to_homogeneous,
)

HORIZON_EPS = 1e-6
FAR = 1e4
_HI = jax.lax.Precision.HIGHEST


class Family(NamedTuple):
  """One transform parameterisation.

  Attributes:
    name: the family's name (a key of ``FAMILIES`` or ``'tps'`` / ``'piecewise_affine'``).
    num_params: ``P``, the length of a parameter vector.
    identity_params: ``() -> (P,) float32``, the parameters of the identity warp.
    grid: ``(params (..., P), out_shape, *, align_corners=False) -> (..., H', W', 2)`` (3D: ``(D', H', W')``
      -> ``(..., D', H', W', 3)``).
    matrix: ``params (..., P) -> (..., 3, 3)`` homogeneous matrix (3D: ``(..., 4, 4)``); ``None`` (the field
      itself) for families without a matrix (TPS, piecewise affine).
    axis_aligned: whether x_s depends only on x_t and y_s only on y_t (separable fast path applies).
    axes: for axis-aligned families, ``(params, out_shape, *, align_corners=False) -> (xs (..., W'),
      ys (..., H'))``; else ``None``.
    ndim: number of spatial dims (2, or 3 for ``affine3d``).
    param_names: one short name per parameter, for logs and docs.
  """

  name: str
  num_params: int
  identity_params: Callable[[], jax.Array]
  grid: Callable[..., jax.Array]
  matrix: Callable[[jax.Array], jax.Array] | None
  axis_aligned: bool = False
  axes: Callable[..., tuple[jax.Array, jax.Array]] | None = None
  ndim: int = 2
  param_names: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------- grid generators


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _outer_sum(m, out_shape: tuple[int, ...], align_corners: bool):
  """``m (..., R, n + 1)`` -> ``(..., *out_shape, R)`` with row r = ``sum_j m[r, j] axis_j + m[r, n]``.

  The base grid is never materialised: each term is a per-axis vector broadcast against the others, which
  XLA fuses into one elementwise loop. Computing ``c + a x + b y`` (rather than a matmul) also keeps the
  identity exact: ``0 + 1 * x + 0 * y == x``.
  """
  n = len(out_shape)
  rows = []
  for r in range(m.shape[-2]):
    acc = m[..., r, n][(...,) + (None,) * n]
    for j, size in enumerate(out_shape[::-1]):  # j = 0: x along the last axis, 1: y, 2: z
      axis = coords.linspace(size, align_corners=align_corners, dtype=m.dtype)
      axis = axis.reshape((size,) + (1,) * j)
      acc = acc + m[..., r, j][(...,) + (None,) * n] * axis
    rows.append(acc)
  return jnp.stack(rows, axis=-1)


@_outer_sum.defjvp
def _outer_sum_jvp(out_shape, align_corners, primals, tangents):
  # The same linear map written as a contraction with the (constant) homogeneous base grid: its transpose,
  # the gradient to m, is then one matmul instead of the several strided reductions that autodiff of the
  # broadcasts produces (2.4x / 4.9x faster on a 2-core CPU for batch 64 at 224x224 / 256 at 60x60).
  (m,), (dm,) = primals, tangents
  base = coords.homogeneous(coords.base_grid(out_shape, align_corners=align_corners, dtype=m.dtype))
  base = base.reshape(-1, base.shape[-1])
  dgrid = jnp.einsum("pk,...rk->...pr", base, dm, precision=_HI)
  return _outer_sum(m, out_shape, align_corners), dgrid.reshape(dm.shape[:-2] + out_shape + (dm.shape[-2],))


def _out_shape(out_shape, ndim: int, what: str) -> tuple[int, ...]:
  try:
    return _checks.spatial_shape("out_shape", out_shape, ndims=(ndim,))
  except ValueError as e:
    raise ValueError(f"{e} ({what} needs a {ndim}D out_shape)") from None


def affine_grid(theta, out_shape: Sequence[int], *, align_corners: bool = False):
  """Sampling grid of an affine transform; the numbers of ``torch.nn.functional.affine_grid``.

  Args:
    theta: ``(..., 2, 3)`` for 2D or ``(..., 3, 4)`` for 3D; maps target to source coordinates.
    out_shape: output spatial shape, ``(H', W')`` or ``(D', H', W')``.
    align_corners: see :mod:`stn_jax.coords`.

  Returns:
    ``(..., H', W', 2)`` with ``(x, y)`` or ``(..., D', H', W', 3)`` with ``(x, y, z)``, dtype of theta.
  """
  theta = _checks.float_array("theta", theta)
  ndim = matrices.spatial_ndim("theta", theta, square=False)
  out_shape = _out_shape(out_shape, ndim, f"theta of shape {tuple(theta.shape)}")
  align_corners = _checks.flag("align_corners", align_corners)
  _checks.finite("theta", theta)
  return _outer_sum(theta, out_shape, align_corners)


def _safe_divide(num, w):
  """``num / w`` for points in front of the horizon, ``FAR`` at or behind it (see module docstring)."""
  ok = w > HORIZON_EPS
  safe_w = jnp.where(ok, w, 1.0)
  return jnp.where(ok, jnp.clip(num / safe_w, -FAR, FAR), FAR)


def projective_grid(h, out_shape: Sequence[int], *, align_corners: bool = False):
  """Sampling grid of a homography, with the safe division of the module docstring.

  Args:
    h: ``(..., 3, 3)`` homography mapping target to source coordinates, up to scale and sign: ``c h``
      gives the same grid for every ``c != 0``, because "in front of the horizon" means that ``w`` has the
      sign of ``h[2, 2]`` (the output centre is taken to be in front; families and estimators normalise
      ``h[2, 2] = 1``).
    out_shape: ``(H', W')``.
    align_corners: see :mod:`stn_jax.coords`.

  Returns:
    ``(..., H', W', 2)`` grid of ``(x, y)``.

  Raises:
    ValueError: if ``h`` is singular and its values are concrete. Under ``jit`` no check is possible: a
      singular ``h`` maps the output onto a line or a point of the source (finite values).
  """
  h = _checks.float_array("h", h)
  if h.ndim < 2 or h.shape[-2:] != (3, 3):
    raise ValueError(f"h must have shape (..., 3, 3) (a 2D homography), got shape {tuple(h.shape)}.")
  out_shape = _out_shape(out_shape, 2, "a homography")
  align_corners = _checks.flag("align_corners", align_corners)
  matrices.check_nonsingular("h", h)
  # h is defined up to scale: divide by its largest entry so that HORIZON_EPS means the same for h and
  # 1e-6 h, and fix the sign so that the output centre, (0, 0), where w = h[2, 2], is in front (w > 0).
  scale = jnp.maximum(jnp.max(jnp.abs(h), axis=(-2, -1), keepdims=True), jnp.finfo(h.dtype).tiny)
  h = h * (jnp.where(h[..., 2:3, 2:3] < 0, -1.0, 1.0).astype(h.dtype) / scale)
  uvw = _outer_sum(h, out_shape, align_corners)
  return _safe_divide(uvw[..., :2], uvw[..., 2:3])


# --------------------------------------------------------------------------------------------- families


def _params(family: str, params, num: int):
  """``params`` as a float array, checked to have shape ``(..., num)``."""
  params = _checks.float_array("params", params)
  _checks.last_dims(f"params of the {family!r} family", params, (num,), f"(..., {num})")
  _checks.finite(f"params of the {family!r} family", params)
  return params


def _affine_family(name, param_names, identity, to_theta, axes=None, ndim=2) -> Family:
  """A family whose grid is ``affine_grid(to_theta(params))``."""
  num = len(param_names)

  def theta(params):
    return to_theta(_params(name, params, num))

  def grid(params, out_shape, *, align_corners=False):
    return affine_grid(theta(params), out_shape, align_corners=align_corners)

  def matrix(params):
    return matrices.to_homogeneous(theta(params))

  axes_fn = None
  if axes is not None:

    def axes_fn(params, out_shape, *, align_corners=False):
      h, w = _out_shape(out_shape, 2, f"the {name!r} family")
      p = _params(name, params, num)
      x = coords.linspace(w, align_corners=align_corners, dtype=p.dtype)
      y = coords.linspace(h, align_corners=align_corners, dtype=p.dtype)
      (sx, tx), (sy, ty) = axes(p)
      return sx[..., None] * x + tx[..., None], sy[..., None] * y + ty[..., None]

  return Family(
    name=name,
    num_params=num,
    identity_params=lambda: jnp.asarray(identity, jnp.float32),
    grid=grid,
    matrix=matrix,
    axis_aligned=axes is not None,
    axes=axes_fn,
    ndim=ndim,
    param_names=tuple(param_names),
  )


def _translation_theta(p):
  one, zero = jnp.ones_like(p[..., 0]), jnp.zeros_like(p[..., 0])
  return matrices.stack_rows([[one, zero, p[..., 0]], [zero, one, p[..., 1]]])


def _scale_theta(p):
  zero = jnp.zeros_like(p[..., 0])
  return matrices.stack_rows([[p[..., 0], zero, p[..., 2]], [zero, p[..., 1], p[..., 3]]])


def _similarity_theta(p):
  a, b = p[..., 0], p[..., 1]
  return matrices.stack_rows([[a, -b, p[..., 2]], [b, a, p[..., 3]]])


def _projective_matrix(params):
  p = _params("projective", params, 8)
  return jnp.concatenate([p, jnp.ones_like(p[..., :1])], axis=-1).reshape(p.shape[:-1] + (3, 3))


def _projective_family() -> Family:
  def grid(params, out_shape, *, align_corners=False):
    return projective_grid(_projective_matrix(params), out_shape, align_corners=align_corners)

  return Family(
    name="projective",
    num_params=8,
    identity_params=lambda: jnp.asarray([1, 0, 0, 0, 1, 0, 0, 0], jnp.float32),
    grid=grid,
    matrix=_projective_matrix,
    param_names=("h00", "h01", "h02", "h10", "h11", "h12", "h20", "h21"),
  )


def _ones(p):
  return jnp.ones_like(p[..., 0])


FAMILIES: dict[str, Family] = {
  "attention": _affine_family(
    "attention",
    ("s", "tx", "ty"),
    (1, 0, 0),
    matrices.attention_matrix,
    axes=lambda p: ((p[..., 0], p[..., 1]), (p[..., 0], p[..., 2])),
  ),
  "translation": _affine_family(
    "translation",
    ("tx", "ty"),
    (0, 0),
    _translation_theta,
    axes=lambda p: ((_ones(p), p[..., 0]), (_ones(p), p[..., 1])),
  ),
  "scale": _affine_family(
    "scale",
    ("sx", "sy", "tx", "ty"),
    (1, 1, 0, 0),
    _scale_theta,
    axes=lambda p: ((p[..., 0], p[..., 2]), (p[..., 1], p[..., 3])),
  ),
  "similarity": _affine_family("similarity", ("a", "b", "tx", "ty"), (1, 0, 0, 0), _similarity_theta),
  "affine": _affine_family(
    "affine",
    ("a00", "a01", "a02", "a10", "a11", "a12"),
    (1, 0, 0, 0, 1, 0),
    lambda p: p.reshape(p.shape[:-1] + (2, 3)),
  ),
  "projective": _projective_family(),
  "affine3d": _affine_family(
    "affine3d",
    tuple(f"a{r}{c}" for r in range(3) for c in range(4)),
    tuple(float(r == c) for r in range(3) for c in range(4)),
    lambda p: p.reshape(p.shape[:-1] + (3, 4)),
    ndim=3,
  ),
}


def get_family(name: str | Family, **kwargs) -> Family:
  """Looks up a family by name; builds ``'tps'`` and ``'piecewise_affine'`` with their options.

  Args:
    name: a key of ``FAMILIES``, ``'tps'`` (kwargs of :func:`stn_jax.tps.tps_family`) or
      ``'piecewise_affine'`` (kwargs of :func:`stn_jax.tps.piecewise_affine_family`). A ``Family`` is
      returned as is.
    **kwargs: options of the parameterised families; none for the others.

  Returns:
    The :class:`Family`.
  """
  if isinstance(name, Family):
    return name
  from stn_jax import tps  # noqa: PLC0415 (tps imports this module)

  builders = {"tps": tps.tps_family, "piecewise_affine": tps.piecewise_affine_family}
  if not isinstance(name, str):
    raise TypeError(f"family must be a name or a Family, got {type(name).__name__}.")
  _checks.choice("transform family", name, tuple(FAMILIES) + tuple(builders))
  if name in builders:
    return builders[name](**kwargs) if kwargs else _default_family(name)
  if kwargs:
    raise TypeError(f"family {name!r} takes no options, got {sorted(kwargs)}.")
  return FAMILIES[name]


@functools.cache
def _default_family(name: str) -> Family:
  """``tps`` / ``piecewise_affine`` with default options, built once (building one validates its base)."""
  from stn_jax import tps  # noqa: PLC0415 (tps imports this module)

  return {"tps": tps.tps_family, "piecewise_affine": tps.piecewise_affine_family}[name]()
