"""Co-localisation (paper appendix A.2): an attention transformer trained with no labels, and its loss.

The model is an attention spatial transformer (isotropic scale and translation, ``(s, t_x, t_y)``) on the
whole ``S x S`` image, whose localisation net is a small CNN (average downsample, 4x in configs/coloc.py ->
conv 20 5x5 -> max pool 2 -> conv 20 5x5 -> max pool 2 -> FC 32). Its output is a ``28 x 28`` crop, the
input size of the digit classifier that provides the embedding ``e()``.

The objective (paper A.2) asks the crops ``I^T_n`` of different images to be closer to each other, in
embedding space, than each crop is to a random crop ``I^rand_n`` of its own image, by a margin of 1::

  L = sum_n sum_{m != n} max(0, ||e(I^T_n) - e(I^T_m)||^2 - ||e(I^T_n) - e(I^rand_n)||^2 + 1)

Since every image holds the same digit class, the crops that satisfy it are the ones on the digit.
:func:`hinge_loss` returns the mean over the ``N (N - 1)`` ordered pairs (the paper's sum divided by a
constant), so the learning rate does not depend on the number of images.

**Restarts.** The gradient of a bilinear crop with respect to its translation only sees the pixels within
about one pixel of the crop, so a crop that starts on empty background (or on clutter) never finds a digit
that lies further away, and a digit classifier tells a digit from a fragment of one only within a few pixels
of the right place. The co-localiser therefore has ``K = g x g`` restarts per image: ``K`` attention
transformers that share the localisation net (its regression layer has ``3 K`` outputs), whose initial crops
lie on a ``g x g`` grid of translations. Which restart each image uses is chosen by minimising the same loss
over that discrete choice (:func:`select_restarts`); the chosen crops are then trained by gradient descent on
the loss. With ``K = 1`` this is the paper's single transformer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stn_jax import _checks, layers, warp

CROP = (28, 28)


def pairwise_sq_dists(a, b):
  """``||a_n - b_m||^2`` for ``a (N, F)``, ``b (M, F)`` -> ``(N, M)``, by differences (exact zeros)."""
  return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)


def hinge_loss(emb_crops, emb_random, *, margin: float = 1.0):
  """The paper's co-localisation hinge loss, averaged over ordered pairs ``n != m`` (module docstring).

  Args:
    emb_crops: ``(N, F)`` embeddings ``e(I^T_n)`` of the transformer's crops, ``N >= 2``.
    emb_random: ``(N, F)`` embeddings ``e(I^rand_n)`` of a random crop of the same images, or ``(N, R, F)``
      for ``R`` random crops per image (the loss is then averaged over them).
    margin: the hinge margin (paper: 1).

  Returns:
    Scalar loss.
  """
  emb_crops = _checks.float_array("emb_crops", emb_crops)
  emb_random = _checks.float_array("emb_random", emb_random)
  if (
    emb_crops.ndim != 2
    or emb_random.ndim not in (2, 3)
    or emb_random.shape[0] != emb_crops.shape[0]
    or emb_random.shape[-1] != emb_crops.shape[-1]
    or emb_crops.shape[0] < 2
  ):
    raise ValueError(
      f"emb_crops must be (N, F) with N >= 2 and emb_random (N, F) or (N, R, F), got "
      f"{tuple(emb_crops.shape)} and {tuple(emb_random.shape)}."
    )
  if emb_random.ndim == 2:
    emb_random = emb_random[:, None, :]
  n = emb_crops.shape[0]
  to_others = pairwise_sq_dists(emb_crops, emb_crops)  # (N, N)
  to_random = jnp.sum(jnp.square(emb_crops[:, None, :] - emb_random), axis=-1)  # (N, R)
  hinge = jnp.mean(jnp.maximum(0.0, to_others[:, :, None] - to_random[:, None, :] + margin), axis=-1)
  off_diagonal = 1.0 - jnp.eye(n, dtype=hinge.dtype)
  return jnp.sum(hinge * off_diagonal) / (n * (n - 1))


def _restart_costs(emb_restarts, to_random, chosen, *, margin: float):
  """``(N, K)``: the loss terms image ``n`` would contribute with restart ``k``, the others as ``chosen``."""
  n = emb_restarts.shape[0]
  rows = jnp.arange(n)
  z_chosen = emb_restarts[rows, chosen]  # (N, F)
  d = jnp.sum(jnp.square(emb_restarts[:, :, None, :] - z_chosen[None, None]), axis=-1)  # (N, K, M)
  # n as the anchor: max(0, d(z_nk, z_m) - d(z_nk, r_n) + margin), averaged over n's random crops ...
  as_anchor = jnp.mean(jnp.maximum(0.0, d[..., None] - to_random[:, :, None, :] + margin), axis=-1)
  # ... and n as the other image of anchor m: max(0, d(z_m, z_nk) - d(z_m, r_m) + margin).
  to_random_chosen = to_random[rows, chosen]  # (M, R)
  as_other = jnp.mean(jnp.maximum(0.0, d[..., None] - to_random_chosen[None, None] + margin), axis=-1)
  off_diagonal = 1.0 - jnp.eye(n, dtype=d.dtype)[:, None, :]
  return jnp.sum((as_anchor + as_other) * off_diagonal, axis=-1)


def select_restarts(
  emb_restarts, emb_random, candidates, *, margin: float = 1.0, num_seeds: int = 8, iterations: int = 4
):
  """One restart per image that minimises :func:`hinge_loss` over the discrete choice.

  The loss has one local minimum per "kind" of crop that every image holds (the digit, or the same fragment
  of it in every image, or empty background); the digit's is the deepest. Search: every candidate restart's
  embedding is a prototype, and every image takes its restart nearest to it; the ``num_seeds`` prototypes
  whose choices have the lowest loss seed a coordinate descent, in which ``iterations`` times every image
  moves (all at once) to the restart that minimises its terms of the loss given the others' current choice.
  The choice of lowest loss seen is returned.

  Args:
    emb_restarts: ``(N, K, F)`` embeddings of every restart's crop.
    emb_random: ``(N, R, F)`` embeddings of ``R`` random crops per image.
    candidates: ``(C,)`` flat indices into the ``N * K`` restarts, the prototypes tried.
    margin: the hinge margin.
    num_seeds: how many of the best prototypes start a coordinate descent.
    iterations: coordinate-descent sweeps per seed.

  Returns:
    ``(chosen (N,) int32, loss ())``: the restart of each image and its :func:`hinge_loss`.
  """
  n, k, f = emb_restarts.shape
  rows = jnp.arange(n)
  to_random = jnp.sum(jnp.square(emb_restarts[:, :, None, :] - emb_random[:, None]), axis=-1)  # (N, K, R)

  def loss_of(chosen):
    return hinge_loss(emb_restarts[rows, chosen], emb_random, margin=margin)

  def nearest(candidate):
    z = emb_restarts.reshape(n * k, f)[candidate]
    chosen = jnp.argmin(jnp.sum(jnp.square(emb_restarts - z), axis=-1), axis=1)
    return chosen, loss_of(chosen)

  starts, start_losses = jax.lax.map(nearest, jnp.asarray(candidates))
  seeds = starts[jnp.argsort(start_losses)[:num_seeds]]

  def descend(chosen):
    def sweep(carry, _):
      chosen, best, best_loss = carry
      chosen = jnp.argmin(_restart_costs(emb_restarts, to_random, chosen, margin=margin), axis=1)
      loss = loss_of(chosen)
      better = loss < best_loss
      return (chosen, jnp.where(better, chosen, best), jnp.where(better, loss, best_loss)), None

    (_, best, best_loss), _ = jax.lax.scan(sweep, (chosen, chosen, loss_of(chosen)), None, length=iterations)
    return best, best_loss

  chosen, losses = jax.lax.map(descend, seeds)
  i = jnp.argmin(losses)
  return chosen[i].astype(jnp.int32), losses[i]


def restart_grid(restarts_per_axis: int, scale: float):
  """Initial ``(s, t_x, t_y)`` of ``g x g`` restarts, ``(g * g, 3)``: crops of half-side ``scale`` on a grid.

  The translations are evenly spaced over ``[-(1 - s), 1 - s]`` per axis, so the outer crops touch the
  canvas edges; ``g = 1`` is the centred crop. Row-major, ``t_x`` fastest.
  """
  g = int(restarts_per_axis)
  if g < 1:
    raise ValueError(f"restarts_per_axis must be >= 1, got {restarts_per_axis}.")
  room = max(0.0, 1.0 - abs(float(scale)))
  t = np.linspace(-room, room, g) if g > 1 else np.zeros(1)
  ty, tx = np.meshgrid(t, t, indexing="ij")
  return np.stack([np.full(g * g, float(scale)), tx.ravel(), ty.ravel()], axis=-1).astype(np.float32)


class CoLocaliser(nnx.Module):
  """``K`` attention transformers sharing one CNN localisation net; returns the crops and ``(s, t_x, t_y)``.

  With ``restarts_per_axis=1`` this is one attention spatial transformer (``layers.SpatialTransformer`` with
  the ``'attention'`` family, its regression layer starting at ``(init_scale, 0, 0)``). Crops are sampled
  through the gather path of ``grid_sample``, which is faster here than the separable path (many crops of
  one large image).
  """

  def __init__(
    self,
    input_shape,
    *,
    conv_widths=(20, 20),
    dense_widths=(32,),
    init_scale: float = 1.0,
    restarts_per_axis: int = 1,
    downsample: int = 2,
    out_shape=CROP,
    rngs: nnx.Rngs,
  ):
    """Builds the transformers.

    Args:
      input_shape: ``(S, S, C)`` of one image (paper: 84, 84, 1).
      conv_widths: the two convolutions' widths of the localisation net.
      dense_widths: its fully connected widths.
      init_scale: the scale ``s`` every restart starts at (1 = the whole image).
      restarts_per_axis: ``g``: ``g x g`` restarts whose translations start on a grid
        (:func:`restart_grid`); 1 = a single centred crop.
      downsample: average-pooling factor at the localisation net's input.
      out_shape: ``(H', W')`` of the crops (the embedding's input size).
      rngs: NNX random streams.
    """
    self.localization = layers.ConvNet(
      input_shape, conv_widths, (5, 5), dense_widths, pool=(True, True), downsample=downsample, rngs=rngs
    )
    start = jnp.asarray(restart_grid(restarts_per_axis, init_scale).ravel())
    # Zero weights + grid bias: every image starts with the same K crops, as an identity-initialised ST.
    self.regression = nnx.Linear(
      self.localization.out_features,
      start.shape[0],
      kernel_init=nnx.initializers.zeros_init(),
      bias_init=lambda *_: start,
      rngs=rngs,
    )
    self.num_restarts = start.shape[0] // 3
    self.out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(2,))

  def restart_params(self, x):
    """``x (B, S, S, C)`` -> the parameters ``(s, t_x, t_y)`` of every restart, ``(B, K, 3)``."""
    return self.regression(self.localization(x)).reshape(x.shape[0], self.num_restarts, 3)

  def __call__(self, x, restart=None):
    """The crops of one restart per image.

    Args:
      x: ``(B, S, S, C)`` images.
      restart: ``(B,)`` int restart index per image; None = restart 0 (the only one when ``K = 1``).

    Returns:
      ``(crops (B, H', W', C), params (B, 3))``.

    Raises:
      ValueError: if ``restart`` is not ``(B,)``, or (concrete values) holds an index outside ``[0, K)``.
        Under ``jit`` an out-of-range index gives NaN parameters (and so a NaN loss), never another
        restart's crop.
    """
    theta = self.restart_params(x)
    b = x.shape[0]
    if restart is None:
      index = jnp.zeros(b, jnp.int32)
    else:
      index = jnp.asarray(restart)
      if index.shape != (b,) or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(f"restart must be ({b},) integer indices, got {index.dtype} {tuple(index.shape)}.")
      if _checks.is_concrete(index):  # not restart: a numpy array closed over in jit becomes a tracer here
        values = np.asarray(index)
        bad = (values < 0) | (values >= self.num_restarts)
        if bad.any():
          raise ValueError(
            f"restart must lie in [0, {self.num_restarts}), got {int(values[bad][0])} "
            f"at {int(np.argmax(bad))}."
          )
    # 'fill' rather than the default clamping (and no negative wrap-around): a wrong index under jit must not
    # silently pick another restart's crop.
    k = self.num_restarts
    index = jnp.where((index >= 0) & (index < k), index, k)
    theta = theta.at[jnp.arange(b), index].get(mode="fill", fill_value=jnp.nan)
    return warp.warp(x, theta, "attention", self.out_shape, fast_path=False), theta


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
