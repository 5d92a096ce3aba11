"""Models for MNIST addition (paper appendix A.1): FCN, CNN, ST-FCN and 2xST-FCN on 42 x 42 x 2 inputs.

* ``add_fcn``: flatten -> Dense h -> Dense h -> Dense 19 (three weight layers).
* ``add_cnn``: conv 9x9 -> max pool 2 -> conv 7x7 -> max pool 2 -> Dense 19 (the paper's MNIST CNN shape).
* ``add_st_fcn_<t>``: one spatial transformer that sees both channels and warps both (the same warp for every
  channel), its 2-channel output 2x downsampled to 21 x 21, then an FCN.
* ``add_2xst_fcn_<t>``: two such transformers in parallel, each seeing and warping both channels; their
  2-channel outputs are concatenated to 4 channels for the FCN. Each transformer can settle on one
  channel, straightening that channel's digit while ignoring the other.

``<t>`` is the transform family: ``aff`` (affine, 6 parameters), ``proj`` (projective, 8) or ``tps`` (thin
plate spline with 16 control points, 32). Every localisation net is the paper's ST-FCN one (FC 32-32-32, then
the identity-initialised regression layer). Widths are chosen so that every model has about 475k parameters
(exact counts, pinned in ``tests/test_addition.py``):

=================  =================================================================  =======
model              layers                                                             params
=================  =================================================================  =======
add_fcn            3528 -> 128 -> 128 -> 19                                           470,675
add_cnn            conv 64 9x9, pool, conv 92 7x7, pool, 9200 -> 19                    473,855
add_st_fcn_aff     loc 3528-32-32-32-6; 21x21x2 = 882 -> 300 -> 300 -> 19             476,157
add_st_fcn_proj    as above, 8 transform parameters                                   476,223
add_st_fcn_tps     as above, 32 transform parameters (16 control points)              477,015
add_2xst_fcn_aff   2 x loc 3528-32-32-32-6; 21x21x4 = 1764 -> 128 -> 128 -> 19        475,359
add_2xst_fcn_proj  as above, 8 transform parameters each                              475,491
add_2xst_fcn_tps   as above, 32 transform parameters each                             477,075
=================  =================================================================  =======

The baselines are the Table 1 classes of :mod:`stn_jax.models.mnist` with wider layers. Calling a model
returns logits ``(B, 19)``; with ``return_aux=True`` also a dict whose ``'transformers'`` entry lists, per
transformer, ``{'output', 'theta', 'grid'}`` (for the figures); ``'st'`` is the first of them, the layout of
:mod:`stn_jax.models.mnist`. The baselines return ``{}``.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
from flax import nnx

from stn_jax import _checks, layers
from stn_jax.models import mnist

FAMILIES = {t: mnist.TRANSFORMS[t] for t in ("aff", "proj", "tps")}
LOC_WIDTHS = mnist.LOC_WIDTHS["fcn"]  # FC 32-32-32
ST_OUT = (21, 21)  # 2x downsampling, as for the RTS digits in Table 1


def _size(shape) -> int:
  return math.prod(int(s) for s in shape)


class STFCN(nnx.Module):
  """``num_transformers`` parallel transformers on the whole 2-channel input, outputs concatenated, an FCN.

  With one transformer this is the paper's "single ST-FCN"; with two, the "2xST-FCN".
  """

  def __init__(
    self,
    input_shape,
    num_classes: int,
    *,
    transform: str,
    num_transformers: int = 2,
    widths=(128, 128),
    loc_widths=LOC_WIDTHS,
    out_shape=ST_OUT,
    lr_multiplier: float = 1.0,
    regression_lr_multiplier: float | None = None,
    rngs: nnx.Rngs,
  ):
    """Builds the transformers and the classifier.

    Args:
      input_shape: ``(H, W, C)`` of one input (42, 42, 2).
      num_classes: number of classes (19).
      transform: ``'aff'``, ``'proj'`` or ``'tps'`` (a key of ``FAMILIES``).
      num_transformers: how many transformers in parallel.
      widths: hidden widths of the FCN classifier.
      loc_widths: hidden widths of each localisation net.
      out_shape: ``(H', W')`` of each transformer's output.
      lr_multiplier: learning-rate factor of every localisation net and regression layer (read by
        ``stn_jax.layers.lr_multipliers``; the ``,quick`` preset of ``configs/addition.py`` says why).
      regression_lr_multiplier: learning-rate factor of every regression layer (default: ``lr_multiplier``).
      rngs: NNX random streams.
    """
    if transform not in FAMILIES:
      raise ValueError(f"unknown transform {transform!r}; expected one of {sorted(FAMILIES)}.")
    num_transformers = _checks.size("num_transformers", num_transformers)
    self.input_shape = _checks.positive_shape("input_shape", input_shape, {3: "(H, W, C)"})
    family, family_kwargs = FAMILIES[transform]
    channels = self.input_shape[-1]
    self.transformers = nnx.List(
      [
        layers.SpatialTransformer(
          layers.MLP(_size(input_shape), loc_widths, rngs=rngs),
          family,
          tuple(out_shape),
          family_kwargs=family_kwargs,
          lr_multiplier=lr_multiplier,
          regression_lr_multiplier=regression_lr_multiplier,
          rngs=rngs,
        )
        for _ in range(num_transformers)
      ]
    )
    self.classifier = mnist.FCN(
      (*out_shape, num_transformers * channels), num_classes, widths=widths, rngs=rngs
    )

  def __call__(self, x, *, return_aux: bool = False):
    _checks.float_batch("x", x, self.input_shape)
    if not return_aux:
      return self.classifier(jnp.concatenate([st(x) for st in self.transformers], axis=-1))
    branches = []
    for st in self.transformers:
      out, aux = st(x, return_aux=True)
      branches.append(dict(aux, output=out))
    logits = self.classifier(jnp.concatenate([b["output"] for b in branches], axis=-1))
    # 'st' (the first transformer) keeps the aux layout of stn_jax.models.mnist for generic figure code.
    return logits, {"st": branches[0], "transformers": branches}


def _st(transform: str, n: int, widths, **kw):
  return functools.partial(STFCN, transform=transform, num_transformers=n, widths=widths, **kw)


# Names are prefixed 'add_' because they share stn_jax.models.MODELS with the Table 1 models.
# Widths give about equal parameter counts (module docstring; exact counts in tests/test_addition.py).
MODELS = {
  "add_fcn": functools.partial(mnist.FCN, widths=(128, 128)),
  "add_cnn": functools.partial(mnist.CNN, widths=(64, 92)),
  **{f"add_st_fcn_{t}": _st(t, 1, (300, 300)) for t in FAMILIES},
  **{f"add_2xst_fcn_{t}": _st(t, 2, (128, 128)) for t in FAMILIES},
  # Tiny variants for tests: the same code paths with a few thousand parameters.
  "tiny_add_2xst_fcn_aff": _st("aff", 2, (8,), loc_widths=(4,), out_shape=(7, 7)),
  "tiny_add_2xst_fcn_tps": _st("tps", 2, (8,), loc_widths=(4,), out_shape=(7, 7)),
}
