"""Flax NNX models, one small file per experiment family, looked up through a plain dict.

``create_model(config.model, input_shape=..., num_classes=..., rngs=...)`` builds ``MODELS[config.name]`` with
the remaining config fields as keyword arguments. Families add their variants to ``MODELS`` below.
Every model checks, when called (at trace time under ``jit``), that its input is a floating batch of the
``input_shape`` it was built for (:func:`stn_jax._checks.float_batch`), and validates its options when built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
from flax import nnx

from stn_jax.models import addition, mnist, volume3d

# Appendix families (addition: add_*; 3D: vol_*). The co-localiser is not a classifier: stn_jax.coloc_train
# builds it from stn_jax.models.colocalisation.MODELS.
MODELS = {**mnist.MODELS, **addition.MODELS, **volume3d.MODELS}


def create_model(model_config: Mapping, *, input_shape: Sequence[int], num_classes: int, rngs: nnx.Rngs):
  """Builds a model from its config.

  Args:
    model_config: a mapping (e.g. ``config.model``) with ``name`` (a key of ``MODELS``) and the model's
      keyword arguments (``widths``, ``st_downsample``, ...).
    input_shape: ``(H, W, C)`` of one input image.
    num_classes: number of output logits.
    rngs: NNX random streams for parameter initialisation.

  Returns:
    The NNX module.
  """
  kwargs = dict(model_config)
  name = kwargs.pop("name", None)
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}.")
  return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, rngs=rngs, **kwargs)


def count_params(model: nnx.Module) -> int:
  """Number of trainable scalars (``nnx.Param``) in ``model``."""
  return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
