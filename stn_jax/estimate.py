"""Transforms estimated from point correspondences: affine least squares, DLT homography, TPS fit.

Points are ``(..., N, 2)`` arrays of ``(x, y)`` in any one coordinate system (normalised coordinates of
:mod:`stn_jax.coords` for use with the grid generators). Every estimator maps ``src`` to ``dst``; to build a
sampling grid that shows ``src`` content at ``dst`` positions (pull mapping), estimate from ``dst`` (target)
to ``src`` (source).

Degenerate inputs (duplicate points, collinear sets) raise ``ValueError`` when the values are concrete. Under
``jit`` (or ``vmap``/``grad``) values cannot be inspected: degenerate inputs then give meaningless, possibly
inf/NaN, results, so validate data outside the traced function if it may be degenerate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks

_HI = jax.lax.Precision.HIGHEST
# Relative tolerance below which a point set counts as degenerate (collinear / coincident): a few float32
# ulps of the point set's scale.
_DEGENERATE_TOL = 1e-5


def _point_pair(src, dst, min_points: int, names=("src", "dst")):
  src = _checks.float_array(names[0], src)
  dst = _checks.float_array(names[1], dst)
  for name, x in zip(names, (src, dst), strict=True):
    _checks.rank_at_least(name, x, 2, "(..., N, 2)")
    _checks.last_dims(name, x, (2,), "(..., N, 2)")
  if src.shape[-2] != dst.shape[-2]:
    raise ValueError(
      f"{names[0]} and {names[1]} must have the same number of points N, got shapes {tuple(src.shape)} "
      f"and {tuple(dst.shape)}."
    )
  if src.shape[-2] < min_points:
    raise ValueError(f"need at least {min_points} points, got {names[0]} of shape {tuple(src.shape)}.")
  _checks.broadcast_batch(names, src.shape[:-2], dst.shape[:-2])
  return src, dst


def _np_batches(x):
  return np.asarray(x, dtype=np.float64).reshape((-1,) + tuple(x.shape[-2:]))


def _closest_duplicate(p, tol):
  """``(b, i, j)``, ``i < j``, of the closest pair of points of ``p (B, N, 2)`` within Chebyshev distance
  ``tol (B,)`` in the first batch element that has one (the lowest such ``(i, j)`` on ties), or ``None``.

  Found by sorting, in O(B N log N) time and O(B N) memory (comparing all pairs took N^2): exact
  duplicates are neighbours in lexicographic order; the remaining distinct points are binned into square
  cells of side ``tol``, so that a close pair lies in the same or in neighbouring cells. Only distinct
  points closer than about ``tol`` share a cell, so the candidate pairs stay O(N) unless a set holds many
  near duplicates of one point.
  """
  bsz, n, _ = p.shape
  if p.size == 0:
    return None
  flat, batch = p.reshape(-1, 2), np.repeat(np.arange(bsz), n)
  order = np.lexsort((flat[:, 1], flat[:, 0], batch))  # stable: equal points stay in index order
  same = (np.diff(batch[order]) == 0) & (np.diff(flat[order], axis=0) == 0).all(axis=1)
  pairs = [(order[:-1][same], order[1:][same])]  # within a run of equal points: its first two come first
  reps = order[np.concatenate([[True], ~same])]  # one point of each run
  # Cell indices are < 2 / _DEGENERATE_TOL + 2 (every point is within 2 scale of the minimum), so cell
  # keys fit in int64 and a neighbour of an edge cell never aliases an occupied one.
  side = int(2 / _DEGENERATE_TOL) + 4
  origin = p.min(axis=1)[batch[reps]]
  cells = np.floor((flat[reps] - origin) / tol[batch[reps], None]).astype(np.int64)
  keys = (batch[reps] * side + cells[:, 0]) * side + cells[:, 1]
  by_key = np.argsort(keys, kind="stable")
  keys_sorted = keys[by_key]
  for dx in (-1, 0, 1):
    for dy in (-1, 0, 1):
      target = keys + dx * side + dy
      lo, hi = np.searchsorted(keys_sorted, target), np.searchsorted(keys_sorted, target, side="right")
      count = hi - lo
      first = np.repeat(np.arange(len(reps)), count)
      pos = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())
      pairs.append((reps[first], reps[by_key[pos]]))
  i, j = (np.concatenate(x) for x in zip(*pairs, strict=True))
  dist = np.abs(flat[i] - flat[j]).max(axis=1)
  keep = (i < j) & (dist <= tol[batch[i]])
  if not keep.any():
    return None
  i, j, dist, b = i[keep], j[keep], dist[keep], batch[i[keep]]
  best = np.lexsort((j, i, dist, b))[0]
  return int(b[best]), int(i[best] - b[best] * n), int(j[best] - b[best] * n)


def check_tps_base(name: str, points, regularization):
  """Checks the points a thin plate spline interpolates at and its regularisation; returns the latter.

  The base needs at least 3 points and, when concrete, not all on one line; coincident points only with
  ``regularization > 0`` (interpolating two values at one place is singular, smoothing them is not).

  Returns:
    ``regularization`` as :func:`stn_jax._checks.regularization` returns it (a float, or a traced value).
  """
  if points.shape[-2] < 3:
    raise ValueError(f"{name} must have at least 3 points, got shape {tuple(points.shape)}.")
  regularization = _checks.regularization(regularization)
  reg_is_zero = isinstance(regularization, float) and regularization == 0
  check_points(name, points, allow_duplicates=not reg_is_zero)
  return regularization


def check_points(name: str, points, *, allow_duplicates: bool = False):
  """Raises ``ValueError`` for coincident or collinear point sets (concrete values only; numpy is fine).

  Args:
    name: the argument's name, for the message.
    points: ``(..., N, 2)``.
    allow_duplicates: accept coincident points (only collinearity is checked).
  """
  if not _checks.is_concrete(points):
    return
  p = _np_batches(points)

  def where(b):
    return (
      f" (batch element {tuple(int(i) for i in np.unravel_index(b, points.shape[:-2]))})"
      if points.ndim > 2
      else ""
    )

  finite = np.isfinite(p).all(axis=(1, 2))
  if not finite.all():
    raise ValueError(f"{name} contains non-finite values{where(int(np.argmin(finite)))}.")
  centred = p - p.mean(axis=1, keepdims=True)
  scale = np.maximum(np.abs(centred).max(axis=(1, 2)), 1e-30)[:, None, None]
  if not allow_duplicates:
    pair = _closest_duplicate(p, _DEGENERATE_TOL * scale[:, 0, 0])
    if pair is not None:
      b, i, j = pair
      raise ValueError(f"{name} has duplicate points {i} and {j}: {p[b, i].tolist()}{where(b)}.")
  sv = np.linalg.svd(centred / scale, compute_uv=False)
  flat = (sv > _DEGENERATE_TOL * np.sqrt(p.shape[1])).sum(axis=-1) < 2
  if flat.any():
    raise ValueError(
      f"{name} is degenerate (all points coincide or are collinear){where(int(np.argmax(flat)))}."
    )


def estimate_affine(src, dst):
  """Least-squares affine transform mapping ``src`` to ``dst``.

  Args:
    src: ``(..., N, 2)``, N >= 3, not all collinear.
    dst: ``(..., N, 2)``; batch dims broadcast with ``src``.

  Returns:
    ``(..., 2, 3)`` matrix ``A`` minimising ``sum_n |A (src_n, 1) - dst_n|^2`` (exact for N = 3).
  """
  src, dst = _point_pair(src, dst, 3)
  check_points("src", src, allow_duplicates=True)
  _checks.finite("dst", dst)
  out_dtype = jnp.result_type(src, dst)
  src, dst = src.astype(_checks.solve_dtype(out_dtype)), dst.astype(_checks.solve_dtype(out_dtype))
  # Centring decouples the translation and keeps the 2x2 normal equations well conditioned.
  mu_s, mu_d = src.mean(axis=-2, keepdims=True), dst.mean(axis=-2, keepdims=True)
  s, d = src - mu_s, dst - mu_d
  cov_ss = jnp.einsum("...ni,...nj->...ij", s, s, precision=_HI)
  cov_ds = jnp.einsum("...ni,...nj->...ij", d, s, precision=_HI)
  a = jnp.linalg.solve(cov_ss, jnp.swapaxes(cov_ds, -1, -2))  # (A^T) from cov_ss A^T = cov_sd
  a = jnp.swapaxes(a, -1, -2)
  t = mu_d[..., 0, :] - jnp.einsum("...ij,...j->...i", a, mu_s[..., 0, :], precision=_HI)
  return jnp.concatenate([a, t[..., None]], axis=-1).astype(out_dtype)


def _hartley(points):
  """Similarity ``T (..., 3, 3)`` moving the centroid to 0 and the mean distance to sqrt(2)."""
  mu = points.mean(axis=-2)
  dist = jnp.sqrt(jnp.sum((points - mu[..., None, :]) ** 2, axis=-1)).mean(axis=-1)
  s = jnp.sqrt(2.0) / jnp.maximum(dist, jnp.finfo(points.dtype).tiny)
  zero, one = jnp.zeros_like(s), jnp.ones_like(s)
  rows = [s, zero, -s * mu[..., 0], zero, s, -s * mu[..., 1], zero, zero, one]
  return jnp.stack(rows, axis=-1).reshape(s.shape + (3, 3))


def _apply_h(t, points):
  p = jnp.einsum("...ij,...nj->...ni", t[..., :2, :2], points, precision=_HI)
  return p + t[..., None, :2, 2]


def _mul3(a, b):
  """``a @ b`` for ``(..., 3, 3)`` matrices, written as element-wise products and sums in a fixed order.

  A matmul's summation order depends on the CPU's vector width (and the library XLA calls); this form gives
  the same bits on every x86-64 machine, which keeps the fixed distorted test sets machine-independent.
  """
  return sum(a[..., :, k, None] * b[..., None, k, :] for k in range(3))


def _adjugate3(m):
  """Adjugate of ``(..., 3, 3)`` matrices: ``inv(m) * det(m)``, element-wise (no LAPACK, no division)."""
  c = [[m[..., i, j] for j in range(3)] for i in range(3)]

  def cof(i, j):
    r = [k for k in range(3) if k != i]
    q = [k for k in range(3) if k != j]
    minor = c[r[0]][q[0]] * c[r[1]][q[1]] - c[r[0]][q[1]] * c[r[1]][q[0]]
    return minor if (i + j) % 2 == 0 else -minor

  # adj[i, j] = cofactor[j, i]
  return jnp.stack([jnp.stack([cof(j, i) for j in range(3)], axis=-1) for i in range(3)], axis=-2)


def _square_to_quad(q):
  """Homography ``(..., 3, 3)`` taking the unit square (0,0), (1,0), (1,1), (0,1) onto ``q (..., 4, 2)``.

  The closed form of the projective map of a square onto a quadrilateral (as in Heckbert's 1989 notes):
  only element-wise arithmetic, exact up to rounding, and ``g = h = 0`` (affine) for a parallelogram.
  """
  x, y = [q[..., i, 0] for i in range(4)], [q[..., i, 1] for i in range(4)]
  sx, sy = x[0] - x[1] + x[2] - x[3], y[0] - y[1] + y[2] - y[3]
  dx1, dx2, dy1, dy2 = x[1] - x[2], x[3] - x[2], y[1] - y[2], y[3] - y[2]
  den = dx1 * dy2 - dx2 * dy1
  g = (sx * dy2 - dx2 * sy) / den
  h = (dx1 * sy - sx * dy1) / den
  one = jnp.ones_like(g)
  rows = [
    x[1] - x[0] + g * x[1], x[3] - x[0] + h * x[3], x[0],
    y[1] - y[0] + g * y[1], y[3] - y[0] + h * y[3], y[0],
    g, h, one,
  ]  # fmt: skip
  return jnp.stack(rows, axis=-1).reshape(g.shape + (3, 3))


def _normalise(h):
  # x / x is 1 in IEEE arithmetic, but XLA may turn a division by a broadcast into a multiplication by the
  # reciprocal (an ulp off on some CPUs), so the normalised entry is set exactly.
  return (h / h[..., 2:3, 2:3]).at[..., 2, 2].set(1.0)


def estimate_homography(src, dst):
  """Homography mapping ``src`` to ``dst``: closed form for 4 points, normalised DLT for more.

  With N = 4 the homography is ``S_dst adj(S_src)``, where ``S_p`` is the closed-form map of the unit
  square onto the quadrilateral ``p``: it maps the four points exactly (up to float rounding), uses no
  linear-algebra library and gives the same bits on every machine. With N > 4 it minimises the algebraic
  error after Hartley normalisation of both point sets (the direct linear transform, by SVD).

  Args:
    src: ``(..., N, 2)``, N >= 4; for N = 4 no three points collinear.
    dst: ``(..., N, 2)``; batch dims broadcast with ``src``.

  Returns:
    ``(..., 3, 3)`` matrix ``H`` normalised so that ``H[2, 2] = 1``, with
    ``dst ~ (H (src, 1))[:2] / (H (src, 1))[2]``.

  Raises:
    ValueError: for degenerate concrete inputs (duplicates, three collinear of four, all collinear,
      a solution that is not unique or singular, or one that sends the origin to infinity).
  """
  src, dst = _point_pair(src, dst, 4)
  batch = jnp.broadcast_shapes(src.shape[:-2], dst.shape[:-2])
  src = jnp.broadcast_to(src, batch + src.shape[-2:])
  dst = jnp.broadcast_to(dst, batch + dst.shape[-2:])
  for name, p in (("src", src), ("dst", dst)):
    check_points(name, p)
    if p.shape[-2] == 4 and _checks.is_concrete(p):
      for i in range(4):
        check_points(f"{name} (three of the four points)", np.delete(np.asarray(p), i, axis=-2))
  if src.shape[-2] == 4:
    h = _mul3(_square_to_quad(dst), _adjugate3(_square_to_quad(src)))
    _check_solution(h)
    return _normalise(h)
  out_dtype = jnp.result_type(src, dst)
  src, dst = src.astype(_checks.solve_dtype(out_dtype)), dst.astype(_checks.solve_dtype(out_dtype))
  t_src, t_dst = _hartley(src), _hartley(dst)
  s, d = _apply_h(t_src, src), _apply_h(t_dst, dst)
  x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
  zero, one = jnp.zeros_like(x), jnp.ones_like(x)
  row_u = jnp.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=-1)
  row_v = jnp.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=-1)
  a = jnp.concatenate([row_u, row_v], axis=-2)  # (..., 2N, 9)
  # Reduced SVD: vh is still (9, 9), and U is (2N, 9) instead of a (2N, 2N) matrix.
  _, sv, vh = jnp.linalg.svd(a, full_matrices=False)
  h_norm = vh[..., -1, :].reshape(batch + (3, 3))
  h = jnp.matmul(jnp.linalg.inv(t_dst), jnp.matmul(h_norm, t_src, precision=_HI), precision=_HI)
  if _checks.is_concrete(sv):
    sv_np = np.asarray(sv, np.float64).reshape(-1, sv.shape[-1])
    # A unique solution needs a one-dimensional null space: the 8th singular value must be clearly > 0.
    if (sv_np[:, 7] <= _DEGENERATE_TOL * sv_np[:, 0]).any():
      raise ValueError("src/dst do not determine a unique homography (degenerate point configuration).")
  _check_solution(h)
  return _normalise(h).astype(out_dtype)


def _check_solution(h):
  """Raises for a concrete homography that cannot be normalised to ``H[2, 2] = 1`` or is singular."""
  if not _checks.is_concrete(h):
    return
  h_np = np.asarray(h, np.float64).reshape(-1, 3, 3)
  if not np.isfinite(h_np).all():
    raise ValueError("the estimated homography is not finite (degenerate point configuration).")
  if (np.abs(h_np[:, 2, 2]) <= _DEGENERATE_TOL * np.abs(h_np).max(axis=(1, 2))).any():
    raise ValueError("the homography sends the origin to infinity, so it cannot be normalised to H[2,2]=1.")
  if (np.linalg.cond(h_np) * float(jnp.finfo(h.dtype).eps) > 1).any():
    raise ValueError("the estimated homography is singular (degenerate point configuration).")


def tps_kernel(points, control_points):
  """Thin plate spline radial basis ``U(r) = r^2 log r^2`` between two point sets, with ``U(0) = 0``.

  The gradient at coincident points is 0 (the limit of ``2 (1 + log r^2) (p - c)``), not NaN.

  Args:
    points: ``(..., M, 2)``.
    control_points: ``(..., K, 2)``; batch dims broadcast.

  Returns:
    ``(..., M, K)``.
  """
  diff = points[..., :, None, :] - control_points[..., None, :, :]
  d2 = jnp.sum(diff * diff, axis=-1)
  positive = d2 > 0
  # The double where keeps log's -inf (and its infinite derivative) out of the untaken branch.
  safe = jnp.where(positive, d2, 1.0)
  return jnp.where(positive, d2 * jnp.log(safe), 0.0)


def tps_system(control_points, regularization=0.0):
  """The TPS interpolation matrix ``[[U + lambda I, P], [P^T, 0]]`` of shape ``(..., K + 3, K + 3)``."""
  c = control_points
  k = c.shape[-2]
  u = tps_kernel(c, c) + regularization * jnp.eye(k, dtype=c.dtype)
  p = jnp.concatenate([jnp.ones(c.shape[:-1] + (1,), c.dtype), c], axis=-1)  # (..., K, 3)
  zeros = jnp.zeros(c.shape[:-2] + (3, 3), c.dtype)
  top = jnp.concatenate([u, p], axis=-1)
  bottom = jnp.concatenate([jnp.swapaxes(p, -1, -2), zeros], axis=-1)
  return jnp.concatenate([top, bottom], axis=-2)


def tps_features(points, control_points):
  """``[U(|p - c_k|^2) for k, 1, x, y]`` of shape ``(..., M, K + 3)``: multiply by TPS coefficients."""
  ones = jnp.ones(points.shape[:-1] + (1,), points.dtype)
  u = tps_kernel(points, control_points)
  u = jnp.broadcast_to(u, jnp.broadcast_shapes(u.shape, points.shape[:-2] + u.shape[-2:]))
  affine = jnp.broadcast_to(jnp.concatenate([ones, points], axis=-1), u.shape[:-1] + (3,))
  return jnp.concatenate([u, affine], axis=-1)


def fit_tps(target_points, source_points, *, regularization=0.0):
  """Thin plate spline ``f`` with ``f(target_k) = source_k`` (smoothed when ``regularization > 0``).

  ``f(p) = sum_k w_k U(|p - target_k|^2) + a_0 + a_1 x + a_2 y``, evaluated by
  ``tps_features(p, target_points) @ coefficients``.

  Args:
    target_points: ``(..., K, 2)`` control points (K >= 3, not all collinear, no duplicates unless
      ``regularization > 0``).
    source_points: ``(..., K, 2)`` their images; batch dims broadcast.
    regularization: ``lambda >= 0`` added to the kernel diagonal (0 interpolates exactly).

  Returns:
    ``(..., K + 3, 2)`` coefficients: K kernel weights, then the affine part ``(a_0, a_1, a_2)``.
  """
  target, source = _point_pair(target_points, source_points, 3, names=("target_points", "source_points"))
  regularization = check_tps_base("target_points", target, regularization)
  _checks.finite("source_points", source)
  out_dtype = jnp.result_type(target, source)
  target, source = (
    target.astype(_checks.solve_dtype(out_dtype)),
    source.astype(_checks.solve_dtype(out_dtype)),
  )
  system = tps_system(target, regularization)
  rhs = jnp.concatenate([source, jnp.zeros(source.shape[:-2] + (3, 2), source.dtype)], axis=-2)
  if system.ndim == 2:
    # One base for many source sets (the usual learnable-base case): one solve with many right-hand sides.
    k3 = system.shape[-1]
    cols = jnp.moveaxis(rhs, -2, 0).reshape(k3, -1)
    coeffs = jnp.linalg.solve(system, cols).reshape((k3,) + rhs.shape[:-2] + (2,))
    return jnp.moveaxis(coeffs, 0, -2).astype(out_dtype)
  batch = jnp.broadcast_shapes(system.shape[:-2], rhs.shape[:-2])
  system = jnp.broadcast_to(system, batch + system.shape[-2:])
  return jnp.linalg.solve(system, jnp.broadcast_to(rhs, batch + rhs.shape[-2:])).astype(out_dtype)
