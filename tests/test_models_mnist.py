"""Tests of the distorted-MNIST models: exact parameter counts per distortion, shapes, identity start, aux."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import mnist as mnist_configs
from stn_jax import models
from stn_jax.data import distortions

# Exact trainable-parameter counts of every Table 1 / TC model (documented in experiments/mnist/README.md).
EXPECTED_COUNTS = {
  "r": {"fcn": 167950, "cnn": 167050, "st_fcn_aff": 167065, "st_fcn_proj": 167131, "st_fcn_tps": 167923,
        "st_cnn_aff": 164046, "st_cnn_proj": 164088, "st_cnn_tps": 164592},
  "rts": {"fcn": 167950, "cnn": 167050, "st_fcn_aff": 167098, "st_fcn_proj": 167164, "st_fcn_tps": 167956,
          "st_cnn_aff": 169736, "st_cnn_proj": 169778, "st_cnn_tps": 170282},
  "p": {"fcn": 134287, "cnn": 134410, "st_fcn_aff": 134261, "st_fcn_proj": 134327, "st_fcn_tps": 135119,
        "st_cnn_aff": 136920, "st_cnn_proj": 136962, "st_cnn_tps": 137466},
  "e": {"fcn": 134287, "cnn": 134410, "st_fcn_aff": 134261, "st_fcn_proj": 134327, "st_fcn_tps": 135119,
        "st_cnn_aff": 136920, "st_cnn_proj": 136962, "st_cnn_tps": 137466},
  "tc": {"fcn": 246503, "cnn": 247050, "st_fcn_aff": 247177, "st_fcn_proj": 247243, "st_fcn_tps": 248035,
         "st_cnn_aff": 250160, "st_cnn_proj": 250202, "st_cnn_tps": 250706},
}  # fmt: skip


def _abstract_model(distortion, name):
  config = mnist_configs.get_config(f"{distortion},{name}")
  side = distortions.VARIANTS[distortion]
  return nnx.eval_shape(
    lambda: models.create_model(config.model, input_shape=(side, side, 1), num_classes=10, rngs=nnx.Rngs(0))
  )


@pytest.mark.parametrize("distortion", sorted(EXPECTED_COUNTS))
def test_exact_parameter_counts_and_balance(distortion):
  counts = {
    name: models.count_params(_abstract_model(distortion, name)) for name in mnist_configs.MODEL_NAMES
  }
  assert counts == EXPECTED_COUNTS[distortion]
  # "All models have about the same number of parameters": within 3% of the CNN's.
  ref = counts["cnn"]
  assert all(abs(c - ref) / ref < 0.03 for c in counts.values()), counts


def test_paper_architecture_pieces():
  model = _abstract_model("rts", "st_cnn_tps")
  assert model.st.family.name == "tps" and model.st.family.num_params == 32
  assert model.st.out_shape == (21, 21)  # 2x downsampled ST output on RTS
  assert [c.kernel.shape for c in model.st.localization.convs] == [(5, 5, 1, 20), (5, 5, 20, 20)]
  assert model.st.localization.dense.layers[0].kernel.shape[1] == 20
  assert [c.kernel.shape[:2] for c in model.classifier.body.convs] == [(9, 9), (7, 7)]
  fcn = _abstract_model("r", "st_fcn_proj")
  assert fcn.st.out_shape == (42, 42)  # no downsampling on R
  assert [layer.kernel.shape[1] for layer in fcn.st.localization.layers] == [32, 32, 32]


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_st_fcn_tps", "tiny_st_cnn_aff"])
def test_tiny_models_shapes_and_identity_start(name):
  model = models.create_model({"name": name}, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))

  @nnx.jit
  def run(model, x):
    logits, aux = model(x, return_aux=True)
    plain = model.classifier(x) if hasattr(model, "classifier") else logits
    return logits, aux, model(x), plain

  logits, aux, logits_no_aux, plain = run(model, x)
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_allclose(logits_no_aux, logits, atol=1e-6)
  if name.startswith("tiny_st"):
    # A fresh ST is the identity, so the ST model starts as its classifier on the raw input.
    np.testing.assert_allclose(aux["st"]["output"], x, atol=1e-5)
    np.testing.assert_allclose(plain, logits, atol=1e-5)
    assert aux["st"]["grid"].shape == (2, 28, 28, 2)
  else:
    assert aux == {}


def test_st_downsample_and_lr_multiplier_options():
  model = models.create_model(
    {"name": "tiny_st_cnn_aff", "st_downsample": 2, "lr_multiplier": 0.5},
    input_shape=(42, 42, 1),
    num_classes=10,
    rngs=nnx.Rngs(0),
  )
  _, aux = nnx.eval_shape(lambda m, x: m(x, return_aux=True), model, jnp.zeros((1, 42, 42, 1)))
  assert aux["st"]["output"].shape == (1, 21, 21, 1)
  assert model.st.lr_multiplier == 0.5


def test_unknown_model_and_bad_options():
  with pytest.raises(ValueError, match="unknown model"):
    models.create_model({"name": "resnet"}, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="st_downsample"):
    models.create_model(
      {"name": "cnn", "st_downsample": 2}, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
    )
  with pytest.raises(ValueError, match="transform"):
    models.mnist.STClassifier(
      (28, 28, 1), 10, classifier="cnn", transform="bogus", widths=(4, 8), rngs=nnx.Rngs(0)
    )
