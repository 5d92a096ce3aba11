"""Distorted-MNIST classifiers (paper section 4.1, Table 1): FCN, CNN, ST-FCN and ST-CNN.

Every model maps ``(B, H, W, 1)`` images to ``(B, num_classes)`` logits, and with ``return_aux=True``
returns ``(logits, aux)`` where ``aux['st']`` holds the transformer's ``theta``, ``grid`` and ``output``
(``aux`` is empty for the baselines). The classification network always has three weight layers:

* FCN: Dense(w1) -> ReLU -> Dense(w2) -> ReLU -> Dense(classes).
* CNN: conv 9x9 (w1) -> ReLU -> max pool 2 -> conv 7x7 (w2) -> ReLU -> max pool 2 -> Dense(classes).
* ST-FCN: an ST on the input with the localisation net FC 32-32-32 -> regression, then an FCN.
* ST-CNN: an ST on the input with the localisation net 2x downsample -> conv 20 5x5 -> max pool 2 ->
  conv 20 5x5 -> FC 20 -> regression, then a CNN.

The ST output is ``input / st_downsample`` in size (the paper downsamples 2x for RTS and TC). The widths of
each classifier are chosen per distortion so that all models of one variant have about the same number of
parameters; the table lives in ``configs/mnist.py`` and ``tests/test_models_mnist.py`` checks exact counts.
Variants are ``functools.partial`` aliases in ``MODELS``; ``tiny_*`` ones are for tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from flax import nnx

from stn_jax import _checks, layers

# Transformer suffix -> (family name, family options). The default TPS base is the 4x4 (16-point) grid.
TRANSFORMS = {"aff": ("affine", {}), "proj": ("projective", {}), "tps": ("tps", {})}
# Paper localisation nets: FC 32-32-32 (ST-FCN); conv 20, conv 20, FC 20 (ST-CNN).
LOC_WIDTHS = {"fcn": (32, 32, 32), "cnn": (20, 20, 20)}


def _no_aux(logits, return_aux):
  return (logits, {}) if return_aux else logits


class FCN(nnx.Module):
  """Fully connected baseline: two hidden ReLU layers and a linear classifier."""

  def __init__(
    self, input_shape: Sequence[int], num_classes: int, *, widths: Sequence[int] = (128, 128), rngs: nnx.Rngs
  ):
    """Args: input_shape: (H, W, C); num_classes: outputs; widths: the hidden widths (the paper's FCN has
    two, the tiny test variants may have one); rngs: NNX rngs."""
    self.input_shape = _checks.positive_shape("input_shape", input_shape, {3: "(H, W, C)"})
    self.body = layers.MLP(math.prod(self.input_shape), widths, rngs=rngs)
    self.head = nnx.Linear(self.body.out_features, _checks.size("num_classes", num_classes), rngs=rngs)

  def __call__(self, x, *, return_aux: bool = False):
    _checks.float_batch("x", x, self.input_shape)
    return _no_aux(self.head(self.body(x)), return_aux)


class CNN(nnx.Module):
  """Convolutional baseline: conv 9x9 -> pool -> conv 7x7 -> pool -> linear classifier."""

  def __init__(
    self, input_shape: Sequence[int], num_classes: int, *, widths: Sequence[int] = (32, 64), rngs: nnx.Rngs
  ):
    """Args: input_shape: (H, W, C); num_classes: outputs; widths: the two filter counts; rngs: NNX rngs."""
    if len(widths) != 2:
      raise ValueError(f"CNN widths must be two filter counts, got {tuple(widths)}.")
    self.body = layers.ConvNet(input_shape, widths, (9, 7), rngs=rngs)
    self.head = nnx.Linear(self.body.out_features, _checks.size("num_classes", num_classes), rngs=rngs)

  def __call__(self, x, *, return_aux: bool = False):
    return _no_aux(self.head(self.body(x)), return_aux)


class STClassifier(nnx.Module):
  """A spatial transformer on the input followed by an FCN or CNN classifier (ST-FCN / ST-CNN)."""

  def __init__(
    self,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    classifier: str,
    transform: str,
    widths: Sequence[int],
    st_downsample: int = 1,
    loc_widths: Sequence[int] | None = None,
    lr_multiplier: float = 1.0,
    regression_lr_multiplier: float | None = None,
    learnable_base: bool = False,
    rngs: nnx.Rngs,
  ):
    """Builds the transformer and the classifier.

    Args:
      input_shape: ``(H, W, C)`` of the input.
      num_classes: number of outputs.
      classifier: ``'fcn'`` or ``'cnn'``; also picks the localisation net's kind.
      transform: ``'aff'``, ``'proj'`` or ``'tps'`` (a key of ``TRANSFORMS``).
      widths: the classifier's widths (see :class:`FCN`, :class:`CNN`).
      st_downsample: the ST output is ``(H // st_downsample, W // st_downsample)``.
      loc_widths: localisation widths (default ``LOC_WIDTHS[classifier]``): FC widths for ``'fcn'``;
        ``(conv1, conv2, fc)`` for ``'cnn'``.
      lr_multiplier: learning-rate factor of the localisation net (see ``layers.lr_multipliers``).
      regression_lr_multiplier: learning-rate factor of the regression layer (default: ``lr_multiplier``).
      learnable_base: TPS only: learn the target control points too.
      rngs: NNX random streams.
    """
    if classifier not in ("fcn", "cnn"):
      raise ValueError(f"classifier must be 'fcn' or 'cnn', got {classifier!r}.")
    if transform not in TRANSFORMS:
      raise ValueError(f"unknown transform {transform!r}; expected one of {sorted(TRANSFORMS)}.")
    h, w, c = self.input_shape = _checks.positive_shape("input_shape", input_shape, {3: "(H, W, C)"})
    loc_widths = tuple(loc_widths or LOC_WIDTHS[classifier])
    if classifier == "fcn":
      loc = layers.MLP(h * w * c, loc_widths, rngs=rngs)
    else:
      if len(loc_widths) != 3:
        raise ValueError(f"ST-CNN loc_widths must be (conv1, conv2, fc), got {loc_widths}.")
      loc = layers.ConvNet(
        input_shape, loc_widths[:2], (5, 5), loc_widths[2:], pool=(True, False), downsample=2, rngs=rngs
      )
    family, family_kwargs = TRANSFORMS[transform]
    k = _checks.size("st_downsample", st_downsample)
    out_hw = (h // k, w // k)
    if min(out_hw) < 1:
      raise ValueError(f"st_downsample {k} is larger than the input {self.input_shape[:2]}.")
    self.st = layers.SpatialTransformer(
      loc,
      family,
      out_hw,
      family_kwargs=family_kwargs,
      lr_multiplier=lr_multiplier,
      regression_lr_multiplier=regression_lr_multiplier,
      learnable_base=learnable_base,
      rngs=rngs,
    )
    net = FCN if classifier == "fcn" else CNN
    self.classifier = net((*out_hw, c), num_classes, widths=widths, rngs=rngs)

  def __call__(self, x, *, return_aux: bool = False):
    _checks.float_batch("x", x, self.input_shape)
    if not return_aux:
      return self.classifier(self.st(x))
    out, aux = self.st(x, return_aux=True)
    return self.classifier(out), {"st": dict(aux, output=out)}


def _st(classifier, transform, **kw):
  return functools.partial(STClassifier, classifier=classifier, transform=transform, **kw)


MODELS = {
  "fcn": FCN,
  "cnn": CNN,
  **{f"st_{c}_{t}": _st(c, t) for c in ("fcn", "cnn") for t in TRANSFORMS},
  # Tiny variants for fast tests: same code paths, a few hundred to a few thousand parameters.
  "tiny_fcn": functools.partial(FCN, widths=(16, 16)),
  "tiny_cnn": functools.partial(CNN, widths=(4, 8)),
  **{f"tiny_st_fcn_{t}": _st("fcn", t, widths=(16, 16), loc_widths=(8,)) for t in TRANSFORMS},
  **{f"tiny_st_cnn_{t}": _st("cnn", t, widths=(4, 8), loc_widths=(4, 4, 8)) for t in TRANSFORMS},
}
