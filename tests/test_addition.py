"""MNIST addition (appendix A.1): data, exact parameter counts, and real training steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import addition as addition_configs
from stn_jax import layers, models
from stn_jax.data import addition, mnist
from stn_jax.models import addition as addition_models

# Exact parameter counts (documented in stn_jax/models/addition.py); all within 2% of each other.
PARAM_COUNTS = {
  "add_fcn": 470_675,
  "add_cnn": 473_855,
  "add_st_fcn_aff": 476_157,
  "add_st_fcn_proj": 476_223,
  "add_st_fcn_tps": 477_015,
  "add_2xst_fcn_aff": 475_359,
  "add_2xst_fcn_proj": 475_491,
  "add_2xst_fcn_tps": 477_075,
}


def _build(name, **kw):
  return addition_models.MODELS[name](
    input_shape=addition.INPUT_SHAPE, num_classes=19, rngs=nnx.Rngs(0), **kw
  )


def test_test_set_shapes_labels_and_determinism():
  images, labels = addition.test_set(0, num=40)
  assert images.shape == (40, 42, 42, 2) and images.dtype == np.float32
  assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() <= 18
  assert 0.0 <= images.min() and images.max() <= 1.0
  # Label = first digit (test digit i) + a second digit: the difference is a digit label.
  first = mnist.load("test", source="idx")[1][:40]
  assert np.all((labels - first >= 0) & (labels - first <= 9))
  assert not np.array_equal(images[..., 0], images[..., 1])
  prefix, prefix_labels = addition.test_set(0, num=12)  # a smaller set is a prefix, bit for bit
  np.testing.assert_array_equal(prefix, images[:12])
  np.testing.assert_array_equal(prefix_labels, labels[:12])
  other, _ = addition.test_set(1, num=12)
  assert not np.array_equal(other, prefix)
  with pytest.raises(ValueError, match="num"):
    addition.test_set(0, num=0)


@pytest.mark.parametrize("bad", [2.5, True, "4", np.float64(4.0)])
def test_counts_and_seeds_must_be_ints(bad):
  digits, labels = jnp.zeros((3, 28, 28), jnp.uint8), jnp.zeros((3,), jnp.int32)
  with pytest.raises(TypeError, match="^batch_size must be an int"):
    addition.sample_train(jax.random.key(0), digits, labels, bad)
  with pytest.raises(TypeError, match="^num must be an int"):
    addition.test_set(0, num=bad)
  with pytest.raises(TypeError, match="^seed must be an int"):
    addition.test_set(bad, num=2)
  for field in ("test_size", "test_seed"):
    with pytest.raises(TypeError, match=f"^{field} must be an int"):
      addition.task({"name": "addition", "source": "idx", field: bad})
  task = addition.task({"name": "addition", "source": "idx"})
  with pytest.raises(TypeError, match="^batch_size must be an int"):
    task.sample_train(jax.random.key(0), bad)


def test_counts_out_of_range():
  with pytest.raises(ValueError, match=r"num must be in \[1, 10000\], got 10001"):
    addition.test_set(0, num=10_001)
  with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
    addition.sample_train(jax.random.key(0), jnp.zeros((3, 28, 28)), jnp.zeros((3,), jnp.int32), 0)
  with pytest.raises(ValueError, match="test_size must be >= 1, got 0"):
    addition.task({"name": "addition", "source": "idx", "test_size": 0})


def test_training_sampler_is_pure_and_sums_labels():
  digits = np.zeros((3, 28, 28), np.uint8)
  digits[1, 10:18, 10:18] = 255  # only digit 1 has ink
  labels = np.array([0, 7, 4], np.int32)
  x, y = addition.sample_train(jax.random.key(0), jnp.asarray(digits), jnp.asarray(labels), 64)
  assert x.shape == (64, 42, 42, 2) and y.shape == (64,) and y.dtype == jnp.int32
  # Each channel has ink exactly when its digit is digit 1 (label 7), so the ink says what the sum is.
  ink = np.asarray(x.sum(axis=(1, 2)) > 1.0)
  sevens = ink.sum(axis=1)
  np.testing.assert_array_equal(np.asarray(y) >= 7 * sevens, True)
  assert set(np.asarray(y)[sevens == 2].tolist()) <= {14}
  assert set(np.asarray(y)[sevens == 0].tolist()) <= {0, 4, 8}
  x2, y2 = addition.sample_train(jax.random.key(0), jnp.asarray(digits), jnp.asarray(labels), 64)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_exact_parameter_counts(name):
  abstract = nnx.eval_shape(lambda: _build(name))
  assert models.count_params(abstract) == PARAM_COUNTS[name]


def test_registry_and_configs_agree():
  for arg in addition_configs.MODEL_NAMES:
    config = addition_configs.get_config(arg)
    assert config.model.name in models.MODELS and config.data.name == "addition"
  with pytest.raises(ValueError, match="unknown addition model"):
    addition_configs.get_config("st_cnn_aff")


def test_quick_preset_slows_only_the_localisation_nets():
  config = addition_configs.get_config("2xst_fcn_aff,quick")
  factor = addition_configs.QUICK_LOC_LR_MULTIPLIER
  assert config.model.lr_multiplier == factor and factor < 1
  assert "lr_multiplier" not in addition_configs.get_config("fcn,quick").model
  build = lambda: models.create_model(
    config.model, input_shape=addition.INPUT_SHAPE, num_classes=19, rngs=nnx.Rngs(0)
  )
  mults = layers.lr_multipliers(nnx.eval_shape(build))
  for st in mults["transformers"].values():
    assert set(jax.tree.leaves(st)) == {factor}
  assert set(jax.tree.leaves(mults["classifier"])) == {1.0}


def test_two_transformers_each_warp_both_channels():
  model = _build("tiny_add_2xst_fcn_aff")
  x = jax.random.uniform(jax.random.key(0), (2, 42, 42, 2))
  logits, aux = model(x, return_aux=True)
  assert logits.shape == (2, 19) and len(aux["transformers"]) == 2
  for branch in aux["transformers"]:
    assert branch["output"].shape == (2, 7, 7, 2) and branch["theta"].shape == (2, 6)
  np.testing.assert_allclose(model(x), logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny_add_2xst_fcn_aff", "tiny_add_2xst_fcn_tps"])
def test_two_real_training_steps_lower_the_loss(name):
  model = _build(name)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  digits, labels = mnist.load("train", source="idx")
  x, y = addition.sample_train(jax.random.key(0), jnp.asarray(digits[:512]), jnp.asarray(labels[:512]), 32)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    logits = nnx.merge(graphdef, p)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, grads

  state = tx.init(params)
  params, state, loss0, grads = step(params, state)
  # The localisation nets get gradient through the sampler (regression weights start at zero).
  reg = grads["transformers"][0]["regression"]["kernel"]
  assert float(jnp.abs(reg).sum()) > 0
  params, state, loss1, _ = step(params, state)
  assert np.isfinite(float(loss1)) and float(loss1) < float(loss0)
