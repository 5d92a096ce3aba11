"""The PyTorch ports used by the training-step benchmark are the JAX models: same parameter counts, and the
same logits once the JAX weights are copied into them (skipped without torch).

The ports live in ``experiments/benchmarks/torch_models.py``; the benchmark is
``experiments/benchmarks/bench_train.py`` (its cases: ``train_cases.py``).
"""

import os
import sys

import numpy as np
import pytest
from flax import nnx

from stn_jax import models

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "benchmarks"))
import torch_models  # noqa: E402
import train_cases  # noqa: E402

pytestmark = pytest.mark.torch


def _pair(variant, name, *, abstract=False):
  """The JAX model (shapes only when ``abstract``: fast), its PyTorch port and the input shape."""
  model_config, side = train_cases.model_spec(variant, name)
  shape = (side, side, 1)
  build = lambda: models.create_model(model_config, input_shape=shape, num_classes=10, rngs=nnx.Rngs(0))
  jax_model = nnx.eval_shape(build) if abstract else build()
  return jax_model, torch_models.create_model(model_config, input_shape=shape, num_classes=10), shape


@pytest.mark.parametrize("variant", ["rts", "tc"])
@pytest.mark.parametrize("name", ["cnn", "st_cnn_aff", train_cases.ST_BASELINE])
def test_param_counts_match(variant, name):
  jax_model, torch_model, _ = _pair(variant, name, abstract=True)
  assert torch_models.count_params(torch_model) == models.count_params(jax_model)


def _copy_conv(conv, dst):
  dst.weight.copy_(torch.from_numpy(np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1).copy()))
  dst.bias.copy_(torch.from_numpy(np.array(conv.bias[...])))


def _copy_dense(dense, dst, chw=None):
  """``chw``: the (C, H, W) feature map flattened before ``dense`` (NHWC order in JAX, NCHW in torch)."""
  kernel = np.asarray(dense.kernel[...])
  if chw is not None:
    c, h, w = chw
    kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
  dst.weight.copy_(torch.from_numpy(kernel.T.copy()))
  dst.bias.copy_(torch.from_numpy(np.array(dense.bias[...])))


def _copy_cnn(src, dst):
  convs = [m for m in dst.body if isinstance(m, torch.nn.Conv2d)]
  for conv, t in zip(src.body.convs, convs, strict=True):
    _copy_conv(conv, t)
  c = convs[-1].out_channels
  side = int(round((dst.head.in_features / c) ** 0.5))
  _copy_dense(src.head, dst.head, (c, side, side))


def test_st_cnn_logits_match_after_weight_copy():
  jax_model, torch_model, shape = _pair("rts", "st_cnn_aff")
  # A non-identity regression layer, so the transformer really warps.
  rng = np.random.default_rng(0)
  jax_model.st.regression.kernel[...] = rng.normal(size=(20, 6)).astype(np.float32) * 0.05
  with torch.no_grad():
    loc = [m for m in torch_model.st.loc if isinstance(m, torch.nn.Conv2d)]
    for conv, t in zip(jax_model.st.localization.convs, loc, strict=True):
      _copy_conv(conv, t)
    fc = [m for m in torch_model.st.loc if isinstance(m, torch.nn.Linear)][0]
    _copy_dense(jax_model.st.localization.dense.layers[0], fc, (20, 10, 10))
    _copy_dense(jax_model.st.regression, torch_model.st.regression)
    _copy_cnn(jax_model.classifier, torch_model.classifier)
    x = rng.uniform(size=(3, *shape)).astype(np.float32)
    want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  got = np.asarray(jax_model(x))
  assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
  # The transformer is not the identity here, so the comparison covers the warp too.
  theta = np.asarray(jax_model.st.transform_params(x))
  assert np.abs(theta - np.array([1.0, 0, 0, 0, 1, 0])).max() > 0.05


def test_torch_device_flag():
  assert torch_models.resolve_device("cpu") == "cpu"
  assert torch_models.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
  if not torch.cuda.is_available():
    with pytest.raises(ValueError, match="cuda"):
      torch_models.resolve_device("cuda")
  with pytest.raises(ValueError, match="auto"):
    torch_models.resolve_device("gpu")


@pytest.mark.parametrize("field", ["lr_multiplier", "regression_lr_multiplier"])
def test_ports_refuse_learning_rate_multipliers_they_do_not_have(field):
  from configs import mnist as mnist_configs  # noqa: PLC0415

  model_config = mnist_configs.get_config("tc,st_cnn_aff").model
  torch_models.create_model(model_config, input_shape=(60, 60, 1))  # defaults: accepted
  model_config[field] = 10.0
  with pytest.raises(ValueError, match="learning-rate multiplier"):
    torch_models.create_model(model_config, input_shape=(60, 60, 1))
