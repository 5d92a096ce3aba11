"""The spatial transformer as a Flax NNX module: the one place where the pure core meets Flax.

A :class:`SpatialTransformer` is a localisation net, a regression layer, a transform family and a sampler::

  x (B, H, W, C) --localization--> features (B, F) --regression--> theta (B, P)
  theta --family.grid--> grid (B, H', W', 2) --grid_sample(x)--> output (B, H', W', C)

The regression layer starts with zero weights and ``family.identity_params()`` as its bias, so a fresh
transformer is the identity warp (resampled to ``out_shape``) and training starts from the plain classifier.
Sampling goes through :func:`stn_jax.warp.warp`, which picks the separable fast path for axis-aligned
families. Conventions (layout, grid order, ``align_corners``) are those of :mod:`stn_jax.coords`.

Transformers compose: in series with ``nnx.Sequential(st1, st2)`` (each one returns an image), in parallel
with :class:`Parallel`. A learning-rate multiplier for the localisation net is declared on the module
(``lr_multiplier``) and turned into per-parameter optimizer labels by :func:`lr_multipliers`, which
``stn_jax.train_config`` feeds to ``optax.multi_transform``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from stn_jax import _checks, sampling, transforms, warp


def block_pool(x, factor: int, reduce: str = "max"):
  """Non-overlapping ``factor``-wide pooling over every spatial axis of ``x (B, *spatial, C)``.

  Equal to ``nnx.max_pool`` / ``nnx.avg_pool`` with window = stride = ``factor`` and 'VALID' padding
  (trailing rows that do not fill a window are dropped), but written as a reshape and a reduction: XLA's CPU
  backend runs the gradient of ``reduce_window`` (select-and-scatter) several times slower, and max pooling
  was ~40% of a CNN step there. Gradients of the max split equally between tied maxima (``jnp.max``'s rule)
  instead of going to one of them; both are valid subgradients and ties of positive activations are rare.

  Args:
    x: ``(B, *spatial, C)``.
    factor: window and stride along every spatial axis.
    reduce: ``'max'`` or ``'mean'``.
  """
  _checks.choice("reduce", reduce, ("max", "mean"))
  factor = _checks.size("factor", factor)
  if factor == 1:
    return x
  spatial = x.shape[1:-1]
  kept = tuple(s // factor for s in spatial)
  if min(kept, default=1) < 1:
    raise ValueError(f"x spatial shape {spatial} is smaller than the pooling factor {factor}.")
  x = x[(slice(None), *(slice(0, k * factor) for k in kept))]
  split = [x.shape[0]]
  for k in kept:
    split += [k, factor]
  x = x.reshape(*split, x.shape[-1])
  axes = tuple(2 + 2 * i for i in range(len(kept)))
  return jnp.max(x, axis=axes) if reduce == "max" else jnp.mean(x, axis=axes)


class MLP(nnx.Module):
  """Flatten, then Dense + ReLU per width: the ST-FCN localisation net (and the FCN classifier body).

  Attributes:
    in_features: the number of features an input example flattens to.
    out_features: the width of the last layer (what a regression layer on top takes as input).
  """

  def __init__(self, in_features: int, widths: Sequence[int], *, rngs: nnx.Rngs):
    """Builds the layers.

    Args:
      in_features: number of input features after flattening.
      widths: hidden widths, e.g. ``(32, 32, 32)``.
      rngs: NNX random streams for the initialisers.
    """
    sizes = (_checks.size("in_features", in_features), *_checks.sizes("widths", widths))
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
    self.in_features, self.out_features = sizes[0], sizes[-1]

  def __call__(self, x):
    # Only the flattened width is known here (not the layout), so the check is on it and on the dtype.
    if getattr(x, "ndim", 0) < 1 or math.prod(x.shape[1:]) != self.in_features:
      got = tuple(getattr(x, "shape", ()))
      raise ValueError(
        f"x must be a batch (B, ...) of {self.in_features} features per example, got shape {got}."
      )
    _checks.float_batch("x", x, x.shape[1:])  # the dtype: a uint8 image would be used on the 0-255 scale
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: a size-0 batch has no inferable width
    for layer in self.layers:
      x = jax.nn.relu(layer(x))
    return x


class ConvNet(nnx.Module):
  """Optional 2x average downsample, then (conv + ReLU + 2x2 max pool) per conv width, then Dense + ReLU.

  With ``downsample=2, conv_widths=(20, 20), kernel_sizes=(5, 5), dense_widths=(20,)`` and ``pool=(True,
  False)`` this is the paper's ST-CNN localisation net: 2x downsample -> conv 20 5x5 -> max pool 2 ->
  conv 20 5x5 -> FC 20.

  Attributes:
    out_features: the width of the last layer.
  """

  def __init__(
    self,
    input_shape: Sequence[int],
    conv_widths: Sequence[int],
    kernel_sizes: Sequence[int],
    dense_widths: Sequence[int] = (),
    *,
    pool: Sequence[bool] | None = None,
    downsample: int = 1,
    rngs: nnx.Rngs,
  ):
    """Builds the layers.

    Args:
      input_shape: ``(H, W, C)`` of one input image.
      conv_widths: output channels of each convolution ('SAME' padding).
      kernel_sizes: square kernel size of each convolution.
      dense_widths: widths of the Dense + ReLU layers after flattening.
      pool: per convolution, whether a 2x2 max pool follows (default: all True).
      downsample: integer factor of the average pooling applied to the input first (1 = none).
      rngs: NNX random streams for the initialisers.
    """
    conv_widths = _checks.sizes("conv_widths", conv_widths)
    kernel_sizes = _checks.sizes("kernel_sizes", kernel_sizes)
    if len(conv_widths) != len(kernel_sizes):
      raise ValueError(f"conv_widths {conv_widths} and kernel_sizes {kernel_sizes} differ in length.")
    pool = tuple(_checks.flag(f"pool[{i}]", p) for i, p in enumerate(pool)) if pool is not None else None
    pool = pool if pool is not None else (True,) * len(conv_widths)
    if len(pool) != len(conv_widths):
      raise ValueError(f"pool {pool} must have one entry per convolution {conv_widths}.")
    h, w, c = _checks.positive_shape("input_shape", input_shape, {3: "(H, W, C)"})
    self.input_shape = (h, w, c)
    self.downsample = _checks.size("downsample", downsample)
    self.pool = pool
    h, w = h // self.downsample, w // self.downsample
    convs = []
    for width, k, p in zip(conv_widths, kernel_sizes, pool, strict=True):
      convs.append(nnx.Conv(c, width, kernel_size=(k, k), padding="SAME", rngs=rngs))
      c = width
      if p:
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
      raise ValueError(f"input_shape {tuple(input_shape)} is too small for {len(conv_widths)} poolings.")
    self.convs = nnx.List(convs)
    self.dense = MLP(h * w * c, dense_widths, rngs=rngs)
    self.out_features = self.dense.out_features

  def __call__(self, x):
    _checks.float_batch("x", x, self.input_shape)
    x = block_pool(x, self.downsample, "mean")
    for conv, p in zip(self.convs, self.pool, strict=True):
      x = jax.nn.relu(conv(x))
      if p:
        x = block_pool(x, 2, "max")
    return self.dense(x)


class SpatialTransformer(nnx.Module):
  """Localisation net + identity-initialised regression layer + transform family + sampler.

  Attributes:
    family: the :class:`stn_jax.transforms.Family`.
    out_shape: ``(H', W')`` of the output.
    lr_multiplier: factor on the learning rate of the localisation net (read by :func:`lr_multipliers`;
      1.0 = the model's learning rate).
    regression_lr_multiplier: factor on the learning rate of the regression layer and learnable base
      (``lr_multiplier`` unless given).
    base: for TPS with ``learnable_base=True``, the learnable target control points ``(K, 2)``; else None.
  """

  def __init__(
    self,
    localization: Callable,
    family: str | transforms.Family,
    out_shape: Sequence[int],
    *,
    features: int | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    fast_path: bool | str = "auto",
    lr_multiplier: float = 1.0,
    regression_lr_multiplier: float | None = None,
    learnable_base: bool = False,
    family_kwargs: dict | None = None,
    rngs: nnx.Rngs,
  ):
    """Builds the regression layer on top of ``localization``.

    Args:
      localization: maps ``(B, H, W, C)`` to features ``(B, F)``; an ``nnx.Module`` (its parameters are
        trained with the rest) or any function.
      family: a family name for :func:`stn_jax.transforms.get_family` (e.g. ``'affine'``, ``'projective'``,
        ``'tps'``) or a ``Family``.
      out_shape: output spatial shape ``(H', W')``; e.g. half the input size for a 2x downsampling ST.
      features: ``F``; defaults to ``localization.out_features``.
      mode, padding_mode, align_corners, fast_path: sampler options, see :func:`stn_jax.warp.warp`.
      lr_multiplier: learning-rate factor for this transformer's localisation net (and, by default, its
        regression layer and learnable base).
      regression_lr_multiplier: learning-rate factor for the regression layer and the learnable base
        (default: ``lr_multiplier``). Under Adam a large factor on the whole localisation net kills its
        ReLU units within ~100 steps (every weight of a unit moves by the learning rate in one direction,
        and its inputs are non-negative, so the pre-activation jumps by lr x fan-in x mean input); a large
        factor on the regression layer alone speeds up theta without touching the localisation features.
      learnable_base: TPS only: make the target control points a trainable ``nnx.Param``. The family must
        then be given by name (``'tps'``); its ``family_kwargs['regularization']`` still applies.
      family_kwargs: options for a named parameterised family, e.g. ``{'regularization': 0.1}`` for
        ``'tps'`` or ``{'grid_size': 3}`` for ``'piecewise_affine'``.
      rngs: NNX random streams.
    """
    # The family keeps constants (e.g. the TPS base) in closures: make them concrete even when the layer is
    # built inside jit / eval_shape (jitted initialisation), so they cannot leak tracers.
    with jax.ensure_compile_time_eval():
      self.family = transforms.get_family(family, **(family_kwargs or {}))
      self.out_shape = _checks.spatial_shape("out_shape", out_shape, ndims=(self.family.ndim,))
      align_corners = _checks.flag("align_corners", align_corners)
      # One eager grid now builds the family's cached per-shape constants (the TPS matrix is solved in
      # float64 numpy) outside any trace, so the jitted train step only reads them.
      self.family.grid(self.family.identity_params()[None], self.out_shape, align_corners=align_corners)
    known = getattr(localization, "out_features", None)
    if features is None and known is None:
      raise ValueError("pass features= (the localisation net's output width); it has no out_features.")
    features = _checks.size("features", known if features is None else features)
    if known is not None and known != features:
      raise ValueError(f"features={features} differs from the localisation net's out_features {known}.")
    # Sampler options are checked now, not at the first call inside a jitted step.
    _checks.choice("mode", mode, sampling.MODES)
    _checks.choice("padding_mode", padding_mode, sampling.PADDING_MODES)
    if self.family.ndim == 3 and mode == "bicubic":
      raise ValueError("mode 'bicubic' is 2D only; a 3D family samples with 'bilinear' or 'nearest'.")
    warp.uses_fast_path(self.family, mode, fast_path)  # raises for an unknown value or an impossible True
    self.mode, self.padding_mode, self.fast_path = mode, padding_mode, fast_path
    self.align_corners = align_corners
    if regression_lr_multiplier is None:
      regression_lr_multiplier = lr_multiplier
    self.lr_multiplier = _checks.real("lr_multiplier", lr_multiplier, minimum=0.0)
    self.regression_lr_multiplier = _checks.real(
      "regression_lr_multiplier", regression_lr_multiplier, minimum=0.0
    )
    self.localization = localization
    identity = jnp.asarray(self.family.identity_params(), jnp.float32)
    self.regression = nnx.Linear(
      int(features),
      self.family.num_params,
      kernel_init=nnx.initializers.zeros_init(),
      bias_init=lambda *_: identity,
      rngs=rngs,
    )
    learnable_base = _checks.flag("learnable_base", learnable_base)
    if learnable_base and self.family.name != "tps":
      raise ValueError(f"learnable_base needs the 'tps' family, got {self.family.name!r}.")
    if learnable_base and not isinstance(family, str):
      # A Family object keeps its regularization in a closure; the learnable-base grid could not honour it.
      raise ValueError("learnable_base needs the family by name ('tps', options in family_kwargs).")
    # TPS parameters are the source positions of the control points, so at identity they *are* the base.
    self.base = nnx.Param(identity.reshape(-1, 2)) if learnable_base else None
    # The learnable-base grid is built here rather than by the family, so it needs the family's lambda.
    self.tps_regularization = (family_kwargs or {}).get("regularization", 0.0) if learnable_base else None

  def transform_params(self, x):
    """The regressed parameters ``theta (B, P)`` for a batch ``x (B, H, W, C)`` (3D: ``(B, D, H, W, C)``)."""
    if not hasattr(x, "ndim") or x.ndim != self.family.ndim + 2:
      hint = "(B, H, W, C)" if self.family.ndim == 2 else "(B, D, H, W, C)"
      raise ValueError(
        f"x must have shape {hint} for the {self.family.ndim}D family {self.family.name!r}, "
        f"got {tuple(getattr(x, 'shape', ()))}."
      )
    features = self.localization(x)
    if getattr(features, "ndim", 0) != 2 or features.shape[-1] != self.regression.in_features:
      raise ValueError(
        f"the localisation net must give features (B, {self.regression.in_features}) (the regression layer's "
        f"input width), got shape {tuple(getattr(features, 'shape', ()))}."
      )
    return self.regression(features)

  def grid(self, theta):
    """The sampling grid ``(B, H', W', 2)`` for parameters ``theta (B, P)`` (built in at least float32)."""
    theta = theta.astype(sampling.compute_dtype(theta.dtype))
    if self.base is not None:
      from stn_jax import tps  # noqa: PLC0415 (only TPS needs it)

      points = theta.reshape(theta.shape[:-1] + (-1, 2))
      return tps.tps_grid(
        points,
        self.out_shape,
        control_points=self.base[...],
        regularization=self.tps_regularization,
        align_corners=self.align_corners,
      )
    return self.family.grid(theta, self.out_shape, align_corners=self.align_corners)

  def __call__(self, x, *, return_aux: bool = False):
    """Warps ``x (B, H, W, C)`` to ``(B, H', W', C)``.

    Args:
      x: batch of images, channels last.
      return_aux: also return ``{'theta': (B, P), 'grid': (B, H', W', 2)}`` (for figures and losses).

    Returns:
      The warped batch, or ``(warped, aux)`` when ``return_aux``.
    """
    theta = self.transform_params(x)
    if self.base is not None:
      grid = self.grid(theta)
      out = sampling.grid_sample(
        x, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=self.align_corners
      )
    else:
      out = warp.warp(
        x,
        theta,
        self.family,
        self.out_shape,
        mode=self.mode,
        padding_mode=self.padding_mode,
        align_corners=self.align_corners,
        fast_path=self.fast_path,
      )
      grid = self.grid(theta) if return_aux else None
    if return_aux:
      return out, {"theta": theta, "grid": grid}
    return out


class Parallel(nnx.Module):
  """Applies several transformers to the same input, as the paper's parallel STs (CUB birds).

  Returns the outputs as a tuple, or concatenated along channels when ``concat=True`` (all outputs must
  then share ``(H', W')``).
  """

  def __init__(self, transformers: Sequence[SpatialTransformer], *, concat: bool = False):
    """Args: transformers: the branches; concat: concatenate outputs along the channel axis."""
    if not transformers:
      raise ValueError("Parallel needs at least one transformer.")
    shapes = [getattr(st, "out_shape", None) for st in transformers]  # None: e.g. an nnx.Sequential of STs
    if concat and len({s for s in shapes if s is not None}) > 1:
      raise ValueError(f"concat=True needs transformers of one out_shape (H', W'), got out_shapes {shapes}.")
    self.transformers = nnx.List(list(transformers))
    self.concat = bool(concat)

  def __call__(self, x):
    outs = tuple(st(x) for st in self.transformers)
    return jnp.concatenate(outs, axis=-1) if self.concat else outs


def lr_multipliers(model: nnx.Module) -> dict:
  """Per-parameter learning-rate factors: a pure dict shaped like ``nnx.to_pure_dict(nnx.state(model,
  nnx.Param))`` holding a Python float per parameter.

  Parameters of a :class:`SpatialTransformer`'s localisation net get its ``lr_multiplier``, those of its
  regression layer and learnable base its ``regression_lr_multiplier``; all others 1.0. For nested
  transformers the innermost one wins, also where its factors are the default 1.0.

  Args:
    model: any NNX module.

  Returns:
    The tree of floats.
  """
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  owners = [
    (
      tuple(path),
      {
        "localization": module.lr_multiplier,
        "regression": module.regression_lr_multiplier,
        "base": module.regression_lr_multiplier,
      },
    )
    for path, module in nnx.iter_modules(model)
    if isinstance(module, SpatialTransformer)
  ]
  owners.sort(key=lambda item: len(item[0]))  # outer first, so inner transformers overwrite

  def factor(key_path, _):
    keys = tuple(getattr(k, "key", getattr(k, "idx", k)) for k in key_path)
    value = 1.0
    for path, mult in owners:
      n = len(path)
      if keys[:n] == path and len(keys) > n and keys[n] in mult:
        value = mult[keys[n]]
    return value

  return jax.tree_util.tree_map_with_path(factor, params)
