"""PyTorch ports of the distorted-MNIST CNN and ST-CNN of ``stn_jax.models.mnist``, for speed comparisons.

Layer for layer the same networks as the JAX models (benchmark-only; the library never imports torch):

* CNN: conv 9x9 (w1, 'same') -> ReLU -> max pool 2 -> conv 7x7 (w2, 'same') -> ReLU -> max pool 2 ->
  Linear(classes).
* ST-CNN: localisation net 2x average downsample -> conv 20 5x5 -> ReLU -> max pool 2 -> conv 20 5x5 ->
  ReLU -> Linear 20 -> ReLU, then a regression layer with zero weights and the identity transform as bias;
  ``F.affine_grid`` + bilinear ``F.grid_sample`` (zeros padding, ``align_corners=False``) to an output of
  ``input // st_downsample``; then the CNN on that output.

Layout is PyTorch's native NCHW (flattening order differs from the JAX NHWC models; sizes do not). Only the
affine transformer is ported: it is the one PyTorch ships a grid generator for. :func:`resolve_device` and
:func:`synchronize` are the device handling both benchmark scripts share (``--torch_device``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_stack(in_channels, widths, kernels, pools, hw):
  """Conv ('same') + ReLU (+ 2x2 max pool) per width; returns the layers and the output ``(C, H, W)``."""
  h, w = hw
  mods, c = [], in_channels
  for width, k, pool in zip(widths, kernels, pools, strict=True):
    mods += [nn.Conv2d(c, width, k, padding="same"), nn.ReLU()]
    c = width
    if pool:
      mods.append(nn.MaxPool2d(2))
      h, w = h // 2, w // 2
  return mods, (c, h, w)


class CNN(nn.Module):
  """Convolutional baseline: conv 9x9 -> pool -> conv 7x7 -> pool -> linear classifier."""

  def __init__(self, input_shape: Sequence[int], num_classes: int = 10, widths: Sequence[int] = (32, 64)):
    """Args: input_shape: (H, W, C) as in the JAX models; num_classes: outputs; widths: filter counts."""
    super().__init__()
    h, w, c = input_shape
    mods, (c, h, w) = _conv_stack(c, widths, (9, 7), (True, True), (h, w))
    self.body = nn.Sequential(*mods, nn.Flatten())
    self.head = nn.Linear(c * h * w, num_classes)

  def forward(self, x):
    return self.head(self.body(x))


class AffineST(nn.Module):
  """The ST-CNN localisation net + identity-initialised affine regression + affine_grid/grid_sample."""

  def __init__(self, input_shape: Sequence[int], out_hw: Sequence[int], loc_widths=(20, 20, 20)):
    """Args: input_shape: (H, W, C); out_hw: (H', W') of the output; loc_widths: (conv1, conv2, fc)."""
    super().__init__()
    h, w, c = input_shape
    self.out_hw = tuple(out_hw)
    mods, (c2, h2, w2) = _conv_stack(c, loc_widths[:2], (5, 5), (True, False), (h // 2, w // 2))
    self.loc = nn.Sequential(
      nn.AvgPool2d(2), *mods, nn.Flatten(), nn.Linear(c2 * h2 * w2, loc_widths[2]), nn.ReLU()
    )
    self.regression = nn.Linear(loc_widths[2], 6)
    with torch.no_grad():
      self.regression.weight.zero_()
      self.regression.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

  def forward(self, x):
    theta = self.regression(self.loc(x)).view(-1, 2, 3)
    grid = F.affine_grid(theta, (x.shape[0], x.shape[1], *self.out_hw), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class STCNN(nn.Module):
  """ST-CNN with the affine transformer: an :class:`AffineST` on the input, then a :class:`CNN`."""

  def __init__(
    self,
    input_shape: Sequence[int],
    num_classes: int = 10,
    widths: Sequence[int] = (32, 64),
    st_downsample: int = 1,
  ):
    """Args: as :class:`CNN`; st_downsample: the ST output is ``(H // st_downsample, W // st_downsample)``."""
    super().__init__()
    h, w, c = input_shape
    out_hw = (h // st_downsample, w // st_downsample)
    self.st = AffineST(input_shape, out_hw)
    self.classifier = CNN((*out_hw, c), num_classes, widths)

  def forward(self, x):
    return self.classifier(self.st(x))


MODELS = {"cnn": CNN, "st_cnn_aff": STCNN}


def create_model(model_config, *, input_shape: Sequence[int], num_classes: int = 10) -> nn.Module:
  """Builds the port of ``model_config`` (a ``configs/mnist.py`` model block: name, widths, st_downsample).

  Args:
    model_config: mapping with ``name`` (a key of ``MODELS``), ``widths`` and, for ST models,
      ``st_downsample``; other fields (``lr_multiplier``, ``regression_lr_multiplier``) must keep their
      defaults.
    input_shape: ``(H, W, C)``.
    num_classes: number of logits.

  Returns:
    The ``nn.Module``.
  """
  kwargs = dict(model_config)
  name = kwargs.pop("name")
  if name not in MODELS:
    raise ValueError(f"no PyTorch port of {name!r}; ported: {sorted(MODELS)}.")
  body, head = kwargs.pop("lr_multiplier", 1.0), kwargs.pop("regression_lr_multiplier", None)
  if body != 1.0 or head not in (None, 1.0):
    raise ValueError("the PyTorch ports have no localisation or regression learning-rate multiplier.")
  return MODELS[name](tuple(input_shape), num_classes, **kwargs)


def resolve_device(name: str = "auto") -> str:
  """The torch device for a ``--torch_device`` flag: ``'auto'`` is ``'cuda'`` where
  ``torch.cuda.is_available()``, else ``'cpu'``; ``'cuda'`` without a CUDA device is a ``ValueError``."""
  if name == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  if name not in ("cpu", "cuda"):
    raise ValueError(f"torch device must be 'auto', 'cpu' or 'cuda', got {name!r}.")
  if name == "cuda" and not torch.cuda.is_available():
    raise ValueError("torch device 'cuda' asked for, but torch.cuda.is_available() is False.")
  return name


def synchronize(device: str) -> None:
  """Waits until the work queued on ``device`` is done: CUDA runs asynchronously, so a timed call must end
  with this; a no-op on the CPU."""
  if torch.device(device).type == "cuda":
    torch.cuda.synchronize(device)


def count_params(model: nn.Module) -> int:
  """Number of trainable scalars."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_step_fn(model: nn.Module, *, learning_rate: float = 0.01, momentum: float = 0.9):
  """A PyTorch step equal to ``stn_jax.train_steps.train_step`` on the 'paper' schedule (SGD with momentum).

  Args:
    model: the network.
    learning_rate: SGD learning rate.
    momentum: SGD momentum.

  Returns:
    ``step(images (B, C, H, W), labels (B,)) -> loss`` (a float tensor).
  """
  opt = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)

  def step(images, labels):
    opt.zero_grad(set_to_none=True)
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    opt.step()
    return loss.detach()

  return step
