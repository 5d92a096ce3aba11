"""3D spatial transformers (paper appendix A.3): a 3D affine ST, a projection to 2D, then a 2D classifier.

* ``vol_st_cnn``: a :class:`stn_jax.layers.SpatialTransformer` of the ``affine3d`` family (12 parameters,
  identity-initialised) whose localisation net is a small 3D CNN (2x average downsample -> conv3d 8 5x5x5
  -> max pool 2 -> conv3d 16 3x3x3 -> max pool 2 -> FC 32). It warps the ``S^3`` volume to an ``S'^3`` one
  (``S' = S // st_downsample``), which is flattened to an ``S' x S'`` image by a projection along depth (the
  mean, i.e. the sum divided by the depth, by default; ``'max'`` also possible; see
  :func:`stn_jax.data.volume.project`), then classified by the Table 1 CNN (conv 9x9 -> pool -> conv 7x7 ->
  pool -> linear). The mean projection is multiplied by ``projection_gain`` (default 6 = 60 / 10, the volume
  depth over the default card thickness), so an upright card projects to the digit in [0, 1].
* ``vol_cnn``: the baseline: the same projection of the raw input volume and a CNN with wider layers, so that
  both models have about the same number of parameters.

The transformer only ever sees class labels; to classify well it has to turn the card so that it faces the
viewer (the projection then shows the digit) and scale and centre it.
With ``return_aux=True`` a model also returns ``{'projection': (B, S', S', 1)}`` and, for the ST model,
``'st': {'theta', 'grid', 'output'}`` (the layout of :mod:`stn_jax.models.mnist`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
from flax import nnx

from stn_jax import _checks, layers
from stn_jax.data import volume
from stn_jax.models import mnist


class ConvNet3D(nnx.Module):
  """Average downsample, then (conv3d + ReLU + 2x max pool) per width, then Dense + ReLU layers.

  Attributes:
    out_features: width of the last layer.
  """

  def __init__(
    self,
    input_shape: Sequence[int],
    conv_widths: Sequence[int] = (8, 16),
    kernel_sizes: Sequence[int] = (5, 3),
    dense_widths: Sequence[int] = (32,),
    *,
    downsample: int = 2,
    rngs: nnx.Rngs,
  ):
    """Builds the layers.

    Args:
      input_shape: ``(D, H, W, C)`` of one volume.
      conv_widths: output channels of each 3D convolution ('SAME' padding), each followed by a 2x pool.
      kernel_sizes: cubic kernel side of each convolution.
      dense_widths: Dense + ReLU widths after flattening.
      downsample: average-pooling factor applied to the input first.
      rngs: NNX random streams.
    """
    conv_widths = _checks.sizes("conv_widths", conv_widths)
    kernel_sizes = _checks.sizes("kernel_sizes", kernel_sizes)
    if len(conv_widths) != len(kernel_sizes):
      raise ValueError(f"conv_widths {conv_widths} and kernel_sizes {kernel_sizes} differ in length.")
    self.input_shape = _checks.positive_shape("input_shape", input_shape, {4: "(D, H, W, C)"})
    *spatial, c = self.input_shape
    self.downsample = _checks.size("downsample", downsample)
    spatial = [s // self.downsample for s in spatial]
    convs = []
    for width, k in zip(conv_widths, kernel_sizes, strict=True):
      convs.append(nnx.Conv(c, width, kernel_size=(k,) * 3, padding="SAME", rngs=rngs))
      c = width
      spatial = [s // 2 for s in spatial]
    if min(spatial) < 1:
      raise ValueError(f"input_shape {tuple(input_shape)} is too small for the downsampling and poolings.")
    self.convs = nnx.List(convs)
    self.dense = layers.MLP(math.prod(spatial) * c, dense_widths, rngs=rngs)
    self.out_features = self.dense.out_features

  def __call__(self, x):
    _checks.float_batch("x", x, self.input_shape)
    d = self.downsample
    if d > 1:
      x = layers.block_pool(x, d, "mean")
    for conv in self.convs:
      x = layers.block_pool(jax.nn.relu(conv(x)), 2, "max")
    return self.dense(x)


def _projection(projection: str, projection_gain) -> tuple[str, float]:
  """Validated ``(projection, projection_gain)``: 'mean' or 'max', and a finite gain > 0."""
  _checks.choice("projection", projection, ("mean", "max"))
  return projection, _checks.real("projection_gain", projection_gain, minimum=0.0, strict=True)


def _project(volumes, mode: str, gain: float):
  return gain * volume.project(volumes, mode) if mode == "mean" else volume.project(volumes, mode)


class VolumeCNN(nnx.Module):
  """Baseline: projection of the input volume along depth, then a 2D CNN."""

  def __init__(
    self,
    input_shape,
    num_classes: int,
    *,
    widths=(16, 32),
    projection: str = "mean",
    projection_gain=6.0,
    rngs,
  ):
    """Builds the classifier.

    Args:
      input_shape: ``(D, H, W, C)`` of one volume.
      num_classes: outputs.
      widths: the 2D CNN's two filter counts.
      projection: ``'mean'`` or ``'max'`` along depth.
      projection_gain: factor on the ``'mean'`` projection (module docstring).
      rngs: NNX random streams.
    """
    d, h, w, c = self.input_shape = _checks.positive_shape("input_shape", input_shape, {4: "(D, H, W, C)"})
    self.projection, self.projection_gain = _projection(projection, projection_gain)
    self.classifier = mnist.CNN((h, w, c), num_classes, widths=widths, rngs=rngs)

  def __call__(self, x, *, return_aux: bool = False):
    _checks.float_batch("x", x, self.input_shape)
    image = _project(x, self.projection, self.projection_gain)
    logits = self.classifier(image)
    return (logits, {"projection": image}) if return_aux else logits


class VolumeSTCNN(nnx.Module):
  """3D affine spatial transformer -> projection along depth -> 2D CNN."""

  def __init__(
    self,
    input_shape,
    num_classes: int,
    *,
    widths=(16, 32),
    loc_conv_widths=(8, 16),
    loc_dense_widths=(32,),
    st_downsample: int = 1,
    loc_downsample: int = 2,
    projection: str = "mean",
    projection_gain: float = 6.0,
    rngs: nnx.Rngs,
  ):
    """Builds the transformer and the classifier.

    Args:
      input_shape: ``(D, H, W, C)`` of one volume.
      num_classes: outputs.
      widths: the 2D CNN's two filter counts.
      loc_conv_widths: the 3D localisation net's convolution widths.
      loc_dense_widths: its fully connected widths.
      st_downsample: the ST output is ``(D // k, H // k, W // k)``.
      loc_downsample: average-pooling factor at the localisation net's input.
      projection: ``'mean'`` or ``'max'`` along depth.
      projection_gain: factor on the ``'mean'`` projection (module docstring).
      rngs: NNX random streams.
    """
    d, h, w, c = self.input_shape = _checks.positive_shape("input_shape", input_shape, {4: "(D, H, W, C)"})
    k = _checks.size("st_downsample", st_downsample)
    if k > min(d, h, w):
      raise ValueError(f"st_downsample {k} is larger than the input {(d, h, w)}.")
    kernels = (5, 3)[: len(loc_conv_widths)]
    loc = ConvNet3D(
      input_shape, loc_conv_widths, kernels, loc_dense_widths, downsample=loc_downsample, rngs=rngs
    )
    self.st = layers.SpatialTransformer(loc, "affine3d", (d // k, h // k, w // k), rngs=rngs)
    self.projection, self.projection_gain = _projection(projection, projection_gain)
    self.classifier = mnist.CNN((h // k, w // k, c), num_classes, widths=widths, rngs=rngs)

  def __call__(self, x, *, return_aux: bool = False):
    _checks.float_batch("x", x, self.input_shape)
    if not return_aux:
      return self.classifier(_project(self.st(x), self.projection, self.projection_gain))
    out, aux = self.st(x, return_aux=True)
    image = _project(out, self.projection, self.projection_gain)
    return self.classifier(image), {"projection": image, "st": dict(aux, output=out)}


MODELS = {
  "vol_cnn": functools.partial(VolumeCNN, widths=(16, 40)),
  "vol_st_cnn": functools.partial(VolumeSTCNN, widths=(16, 32)),
  # Tiny variants for tests.
  "tiny_vol_cnn": functools.partial(VolumeCNN, widths=(4, 8)),
  "tiny_vol_st_cnn": functools.partial(
    VolumeSTCNN, widths=(4, 8), loc_conv_widths=(4,), loc_dense_widths=(8,), st_downsample=2
  ),
}
