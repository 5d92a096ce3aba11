"""Co-localisation (paper appendix A.2): an attention transformer trained with no labels, and its loss.

The model is one :class:`stn_jax.layers.SpatialTransformer` of the ``attention`` family (isotropic scale and
translation, ``(s, t_x, t_y)``) on the whole ``S x S`` image, whose localisation net is a small CNN (2x
average downsample -> conv 20 5x5 -> max pool 2 -> conv 20 5x5 -> max pool 2 -> FC 32, the ST-CNN net of
Table 1 with one more pool for the larger canvas). Its output is a ``28 x 28`` crop, the input size of the
digit classifier that provides the embedding ``e()``.

The objective (paper A.2) asks the crops ``I^T_n`` of different images to be closer to each other, in
embedding space, than each crop is to a random crop ``I^rand_n`` of its own image, by a margin of 1::

  L = sum_n sum_{m != n} max(0, ||e(I^T_n) - e(I^T_m)||^2 - ||e(I^T_n) - e(I^rand_n)||^2 + 1)

Since every image holds the same digit class, the crops that satisfy it are the ones on the digit.
:func:`hinge_loss` returns the mean over the ``N (N - 1)`` ordered pairs (the paper's sum divided by a
constant), so the learning rate does not depend on the number of images.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from flax import nnx

from stn_jax import _checks, layers

CROP = (28, 28)


def pairwise_sq_dists(a, b):
  """``||a_n - b_m||^2`` for ``a (N, F)``, ``b (M, F)`` -> ``(N, M)``, by differences (exact zeros)."""
  return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)


def hinge_loss(emb_crops, emb_random, *, margin: float = 1.0):
  """The co-localisation hinge loss, averaged over ordered pairs ``n != m`` (module docstring).

  Args:
    emb_crops: ``(N, F)`` embeddings ``e(I^T_n)`` of the transformer's crops, ``N >= 2``.
    emb_random: ``(N, F)`` embeddings ``e(I^rand_n)`` of a random crop of the same images.
    margin: the hinge margin (paper: 1).

  Returns:
    Scalar loss.
  """
  emb_crops = _checks.float_array("emb_crops", emb_crops)
  emb_random = _checks.float_array("emb_random", emb_random)
  if emb_crops.ndim != 2 or emb_crops.shape != emb_random.shape or emb_crops.shape[0] < 2:
    raise ValueError(
      f"emb_crops and emb_random must both be (N, F) with N >= 2, got {tuple(emb_crops.shape)} and "
      f"{tuple(emb_random.shape)}."
    )
  n = emb_crops.shape[0]
  to_others = pairwise_sq_dists(emb_crops, emb_crops)  # (N, N)
  to_random = jnp.sum(jnp.square(emb_crops - emb_random), axis=-1)  # (N,)
  hinge = jnp.maximum(0.0, to_others - to_random[:, None] + margin)
  off_diagonal = 1.0 - jnp.eye(n, dtype=hinge.dtype)
  return jnp.sum(hinge * off_diagonal) / (n * (n - 1))


class CoLocaliser(nnx.Module):
  """An attention spatial transformer with a CNN localisation net; returns the crop and ``(s, t_x, t_y)``."""

  def __init__(
    self,
    input_shape,
    *,
    conv_widths=(20, 20),
    dense_widths=(32,),
    init_scale: float = 1.0,
    downsample: int = 2,
    out_shape=CROP,
    rngs: nnx.Rngs,
  ):
    """Builds the transformer.

    Args:
      input_shape: ``(S, S, C)`` of one image (paper: 84, 84, 1).
      conv_widths: the two convolutions' widths of the localisation net.
      dense_widths: its fully connected widths.
      init_scale: the scale ``s`` the regression bias starts at; 1 is the identity (the whole image), as
        every other transformer in the project; translation always starts at 0 (the centre).
      downsample: average-pooling factor at the localisation net's input.
      out_shape: ``(H', W')`` of the crop (the embedding's input size).
      rngs: NNX random streams.
    """
    loc = layers.ConvNet(
      input_shape, conv_widths, (5, 5), dense_widths, pool=(True, True), downsample=downsample, rngs=rngs
    )
    self.st = layers.SpatialTransformer(loc, "attention", tuple(out_shape), rngs=rngs)
    if init_scale != 1.0:
      # Zero weights + this bias: every image starts with the same centred crop of side init_scale.
      self.st.regression.bias.value = jnp.asarray([init_scale, 0.0, 0.0], jnp.float32)

  def __call__(self, x):
    """``x (B, S, S, C)`` -> ``(crops (B, H', W', C), params (B, 3))``."""
    crops, aux = self.st(x, return_aux=True)
    return crops, aux["theta"]


class TinyEmbedding(nnx.Module):
  """A small randomly initialised CNN embedding, a stand-in for the trained classifier in tests."""

  def __init__(self, input_shape=(*CROP, 1), features: int = 8, *, rngs: nnx.Rngs):
    self.net = layers.ConvNet(input_shape, (4,), (5,), (features,), rngs=rngs)

  def __call__(self, x):
    return self.net(x)


MODELS = {
  "coloc": CoLocaliser,
  "tiny_coloc": functools.partial(CoLocaliser, conv_widths=(4, 4), dense_widths=(8,)),
}
