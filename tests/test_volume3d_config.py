"""The 3D config's volume side: ``,size=N`` derives the model widths; each listed side is a fair match."""

from __future__ import annotations

import pytest
from flax import nnx

from configs import volume3d
from stn_jax import models


def _count(model, size: int) -> int:
  kwargs = {k: v for k, v in model.items() if k != "name"}
  build = models.MODELS[model.name]
  return models.count_params(
    nnx.eval_shape(lambda: build((size,) * 3 + (1,), 10, rngs=nnx.Rngs(0), **kwargs))
  )


@pytest.mark.parametrize("size", sorted(volume3d.BASELINE_WIDTHS))
def test_each_side_gives_the_closest_baseline_width_to_the_st_model(size):
  st = volume3d.get_config(f"st_cnn,size={size}")
  cnn = volume3d.get_config(f"cnn,quick,size={size}")
  assert st.data.size == cnn.data.size == size
  assert st.model.loc_downsample == volume3d.loc_downsample(size)
  target = _count(st.model, size)
  chosen = abs(_count(cnn.model, size) - target)
  for width in range(8, 129, 8):  # no other multiple of 8 comes closer
    other = cnn.model.copy_and_resolve_references()
    other.widths = (16, width)
    assert chosen <= abs(_count(other, size) - target), (size, width)


def test_size_option_and_preset_defaults():
  assert volume3d.get_config("cnn").data.size == 60
  assert volume3d.get_config("cnn,quick").data.size == 32
  config = volume3d.get_config("cnn,quick,size=24")
  assert (config.data.size, config.model.widths, config.total_steps) == (24, (16, 48), 1500)
  assert volume3d.get_config("st_cnn,size=24,quick").data.size == 24


@pytest.mark.parametrize(
  "arg, message",
  [
    ("cnn,size=36", "The size must be one of \\[24, 32, 40, 48, 60\\], got '36'"),
    ("cnn,size=x", "got 'x'"),
    ("cnn,size=32,size=32", "must be '<model>\\[,quick\\]\\[,size=N\\]'"),
    ("cnn,quick,quick", "must be '<model>\\[,quick\\]\\[,size=N\\]'"),
    ("cnn,fast", "must be '<model>\\[,quick\\]\\[,size=N\\]'"),
  ],
)
def test_bad_arguments_are_refused(arg, message):
  with pytest.raises(ValueError, match=message):
    volume3d.get_config(arg)
