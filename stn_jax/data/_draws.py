"""Random numbers for the distortion generators, all drawn by one ``jax.random.bits`` call per example.

Every ``jax.random`` call compiles its own threefry hash, about a second of XLA compile time each on a CPU;
drawing all of an example's numbers at once keeps the jitted train step quick to compile.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


class Draws:
  """Hands out ``count`` random numbers drawn from ``key``, in order; asking for more than ``count`` fails."""

  def __init__(self, key, count: int):
    self._bits = jax.random.bits(key, (count,), jnp.uint32)
    self._next = 0

  def _take(self, shape):
    n = math.prod(shape)
    if self._next + n > self._bits.shape[0]:
      raise ValueError(f"asked for more than the {self._bits.shape[0]} random numbers drawn.")
    out = self._bits[self._next : self._next + n].reshape(shape)
    self._next += n
    return out

  def uniform(self, low, high, shape=()):
    """Float32 uniform on (low, high), 24-bit resolution."""
    # The top 24 bits, centred in their bin: exact in float32 and strictly inside (0, 1).
    u = ((self._take(shape) >> 8).astype(jnp.float32) + 0.5) / 2**24
    return low + (high - low) * u

  def normal(self, sigma, shape):
    """Float32 N(0, sigma^2) by inverting the normal CDF of a uniform draw."""
    return sigma * jax.scipy.special.ndtri(self.uniform(0.0, 1.0, shape))

  def randint(self, high, shape):
    """Integers in [0, high); the modulo bias is below high / 2**32 (< 2e-5 for MNIST's 60,000)."""
    return (self._take(shape) % jnp.uint32(high)).astype(jnp.int32)
