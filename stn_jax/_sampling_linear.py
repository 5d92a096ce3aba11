"""Bilinear / trilinear interpolation core with a hand-written VJP (the hot path of ``grid_sample``).

``interpolate(flat, base, fracs, strides)`` reads the ``2**d`` taps ``flat[b, base + sum(bit_a * stride_a)]``
of a zero-padded, flattened image ``flat (B, N, C)`` and blends them with the weights ``prod_a (1 - f_a)`` or
``f_a``. Indices must already be inside ``[0, N)``; the caller guarantees that by padding and clamping.

Why a custom VJP rather than autodiff:

* The coordinate gradient needs only the taps, which the backward pass re-gathers (gathers only, no
  scatter), and its per-pixel channel sums are unrolled into one elementwise fusion for small C instead of
  4 (8 in 3D) separate reductions over a length-C axis.
* The image gradient is the only scatter. It is a separate output of the backward pass, so under ``jit``
  XLA drops it when the image gradient is not used (e.g. gradient to theta only).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp


def _gather(flat, idx):
  """``flat (B, N, C)``, ``idx (B, P)`` -> ``(B, P, C)``."""
  return jax.vmap(lambda f, i: f[i])(flat, idx)


def _corners(d: int):
  return list(itertools.product((0, 1), repeat=d))


def _weight(fracs, corner):
  """Weight of one corner: ``prod_a (f_a if bit_a else 1 - f_a)``."""
  return math.prod(f if bit else 1 - f for f, bit in zip(fracs, corner, strict=True))


def _channel_dot(a, b):
  """``sum_c a[..., c] * b[..., c]``; unrolled for small C so XLA emits one loop fusion, not a reduce."""
  c = a.shape[-1]
  if c > 8:
    return jnp.sum(a * b, axis=-1)
  return sum(a[..., k] * b[..., k] for k in range(c))


def _forward(flat, base, fracs, strides):
  out = None
  for corner in _corners(len(fracs)):
    offset = sum(bit * s for bit, s in zip(corner, strides, strict=True))
    term = _weight(fracs, corner)[..., None] * _gather(flat, base + offset)
    out = term if out is None else out + term
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def interpolate(flat, base, fracs, strides):
  """Multilinear interpolation of ``flat (B, N, C)`` at ``base (B, P)`` + fractions ``fracs`` (d x (B, P)).

  Reverse-mode differentiable only (``jax.grad``/``vjp``; ``jax.jvp``/``jacfwd`` raise): see the module
  docstring for why the VJP is hand-written.

  Args:
    flat: zero-padded image flattened over its spatial axes, ``(B, N, C)``.
    base: int32 flat index of the lower corner of every point, ``(B, P)``, such that every corner
      ``base + sum(bit_a * strides[a])`` is inside ``[0, N)``.
    fracs: tuple of ``d`` arrays ``(B, P)``: the fractional offset in ``[0, 1]`` along each axis.
    strides: tuple of ``d`` static ints: the flat stride of each axis, same order as ``fracs``.

  Returns:
    ``(B, P, C)``.
  """
  return _forward(flat, base, fracs, strides)


def _fwd(flat, base, fracs, strides):
  # Residuals are the inputs only: re-gathering the taps in the backward pass is cheaper on CPU than writing
  # 2**d tap arrays of the output's size to memory and reading them back.
  return _forward(flat, base, fracs, strides), (flat, base, fracs)


def _bwd(strides, res, g):
  flat, base, fracs = res
  d = len(fracs)
  taps = {}
  for corner in _corners(d):
    offset = sum(bit * s for bit, s in zip(corner, strides, strict=True))
    taps[corner] = _gather(flat, base + offset)
  d_fracs = []
  for a in range(d):
    # d out / d f_a = sum over corners of (+-1) * prod_{b != a} w_b * tap, dotted with g over channels.
    others = [f for b, f in enumerate(fracs) if b != a]
    acc = None
    for rest in _corners(d - 1):
      hi = rest[:a] + (1,) + rest[a:]
      lo = rest[:a] + (0,) + rest[a:]
      term = _weight(others, rest)[..., None] * (taps[hi] - taps[lo])
      acc = term if acc is None else acc + term
    d_fracs.append(_channel_dot(g, acc))
  # The image gradient is the only scatter; jit drops it when the image gradient is unused.
  d_flat = jnp.zeros_like(flat)
  for corner in _corners(d):
    offset = sum(bit * s for bit, s in zip(corner, strides, strict=True))
    upd = _weight(fracs, corner)[..., None] * g
    d_flat = jax.vmap(lambda df, i, u: df.at[i].add(u))(d_flat, base + offset, upd)
  return d_flat, None, tuple(d_fracs)


interpolate.defvjp(_fwd, _bwd)
