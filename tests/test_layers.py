"""Tests of the SpatialTransformer NNX layer: identity start, known warps, composition, lr scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from stn_jax import coords, layers, tps


def _st(family="affine", out_shape=(8, 8), in_shape=(8, 8, 2), **kw):
  loc = layers.MLP(int(np.prod(in_shape)), (6,), rngs=nnx.Rngs(0))
  return layers.SpatialTransformer(loc, family, out_shape, rngs=nnx.Rngs(1), **kw)


def _images(shape=(3, 8, 8, 2), seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize("family", ["affine", "projective", "tps", "similarity", "attention"])
def test_fresh_transformer_is_identity(family):
  st = _st(family)
  x = _images()
  out, aux = st(x, return_aux=True)
  np.testing.assert_allclose(out, x, atol=1e-5)
  np.testing.assert_allclose(aux["theta"], np.broadcast_to(st.family.identity_params(), aux["theta"].shape))
  np.testing.assert_allclose(aux["grid"], np.broadcast_to(coords.base_grid((8, 8)), (3, 8, 8, 2)), atol=1e-6)
  assert float(jnp.abs(st.regression.kernel[...]).max()) == 0.0


def test_downsampling_output_shape():
  st = _st("affine", out_shape=(4, 4))
  assert st(_images()).shape == (3, 4, 4, 2)


def test_integer_translation_known_answer():
  # align_corners=False: tx = 2 k / W moves the sampling grid k pixels right, out[:, :, j] = x[:, :, j + k].
  st = _st("affine")
  st.regression.bias[...] = jnp.array([1.0, 0.0, 2 * 2 / 8, 0.0, 1.0, 0.0])
  x = _images()
  out = st(x)
  np.testing.assert_allclose(out[:, :, :6], x[:, :, 2:], atol=1e-5)
  np.testing.assert_allclose(out[:, :, 6:], 0.0, atol=1e-6)  # zeros padding past the right edge


def test_gradients_reach_regression_and_localisation():
  st = _st("affine")
  x = _images()
  target = jnp.roll(x, 1, axis=2)

  def loss(model):
    return jnp.mean((model(x) - target) ** 2)

  grads = nnx.grad(loss)(st)
  assert float(jnp.abs(grads.regression.kernel[...]).max()) > 0
  # Zero regression weights block the gradient to the localisation net until they move away from 0.
  assert float(jnp.abs(grads.localization.layers[0].kernel[...]).max()) == 0.0
  st.regression.kernel[...] = st.regression.kernel[...] + 0.01
  grads = nnx.grad(loss)(st)
  assert float(jnp.abs(grads.localization.layers[0].kernel[...]).max()) > 0


def test_series_and_parallel_composition():
  x = _images()
  series = nnx.Sequential(_st("affine"), _st("projective"))
  np.testing.assert_allclose(series(x), x, atol=1e-5)
  par = layers.Parallel([_st("affine"), _st("tps", out_shape=(4, 4))])
  a, b = par(x)
  assert a.shape == (3, 8, 8, 2) and b.shape == (3, 4, 4, 2)
  cat = layers.Parallel([_st("affine"), _st("similarity")], concat=True)(x)
  np.testing.assert_allclose(cat, jnp.concatenate([x, x], -1), atol=1e-5)


def test_jit_matches_eager():
  st = _st("tps")
  st.regression.bias[...] = st.regression.bias[...] + 0.05 * jnp.sin(jnp.arange(32.0))
  x = _images()
  np.testing.assert_allclose(nnx.jit(lambda m, v: m(v))(st, x), st(x), atol=1e-5)


def test_tps_learnable_base():
  st = _st("tps", learnable_base=True)
  fixed = _st("tps")
  count = lambda m: sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert count(st) == count(fixed) + 32
  np.testing.assert_allclose(st.base[...], tps.default_control_points(4))
  x = _images()
  np.testing.assert_allclose(st(x), x, atol=1e-5)
  # Moving one source point: the learnable-base path equals the fixed family with the same base.
  bias = st.regression.bias[...].at[10].add(0.2)
  st.regression.bias[...], fixed.regression.bias[...] = bias, bias
  np.testing.assert_allclose(st(x), fixed(x), atol=1e-5)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(st)
  assert float(jnp.abs(grads.base[...]).max()) > 0


def test_lr_multipliers_tree():
  class Net(nnx.Module):
    def __init__(self):
      self.st = _st("affine", lr_multiplier=0.1)
      self.head = nnx.Linear(8 * 8 * 2, 3, rngs=nnx.Rngs(2))

  mults = layers.lr_multipliers(Net())
  assert mults["head"]["kernel"] == 1.0 and mults["head"]["bias"] == 1.0
  assert mults["st"]["regression"]["kernel"] == 0.1
  assert mults["st"]["localization"]["layers"][0]["bias"] == 0.1


def test_regression_lr_multiplier_only_for_the_regression_layer_and_base():
  class Net(nnx.Module):
    def __init__(self, **kw):
      self.st = _st("tps", learnable_base=True, **kw)

  mults = layers.lr_multipliers(Net(regression_lr_multiplier=10.0))
  assert mults["st"]["regression"]["kernel"] == 10.0 and mults["st"]["base"] == 10.0
  assert all(v == 1.0 for v in jax.tree.leaves(mults["st"]["localization"]))
  mults = layers.lr_multipliers(Net(lr_multiplier=0.1, regression_lr_multiplier=3.0))
  assert mults["st"]["regression"]["bias"] == 3.0
  assert set(jax.tree.leaves(mults["st"]["localization"])) == {0.1}
  # Default: the regression layer follows lr_multiplier.
  mults = layers.lr_multipliers(Net(lr_multiplier=0.1))
  assert mults["st"]["regression"]["kernel"] == 0.1 and mults["st"]["base"] == 0.1


def test_lr_multiplier_scales_sgd_updates():
  from configs import mnist as mnist_configs  # noqa: PLC0415
  from stn_jax import train_config  # noqa: PLC0415

  config = mnist_configs.get_config("p,tiny_cnn")
  config.schedule, config.momentum, config.learning_rate = "paper", 0.0, 0.5
  params = {"loc": jnp.ones(3), "head": jnp.ones(2)}
  tx = train_config.make_optimizer(config, {"loc": 0.1, "head": 1.0}, total_steps=100)
  grads = {"loc": jnp.full(3, 2.0), "head": jnp.full(2, 2.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["head"], -1.0)
  np.testing.assert_allclose(updates["loc"], -0.1, rtol=1e-6)
  # Adam normalises gradient scale away, so only a real lr multiplier shrinks its step.
  config.schedule, config.warmup_steps = "fast", 0
  tx = train_config.make_optimizer(config, {"loc": 0.1, "head": 1.0}, total_steps=100)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["loc"] / updates["head"][0], 0.1, rtol=1e-5)
  assert isinstance(tx, optax.GradientTransformation)


def test_bad_arguments():
  with pytest.raises(ValueError, match="learnable_base"):
    _st("affine", learnable_base=True)
  with pytest.raises(ValueError, match="lr_multiplier"):
    _st("affine", lr_multiplier=-1.0)
  with pytest.raises(ValueError, match="regression_lr_multiplier"):
    _st("affine", regression_lr_multiplier=float("nan"))
  with pytest.raises(ValueError, match="features"):
    layers.SpatialTransformer(lambda x: x.reshape(len(x), -1), "affine", (8, 8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="transform family"):
    _st("bogus")
  with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
    _st("affine")(jnp.zeros((8, 8, 2)))


@pytest.mark.parametrize(
  ("shape", "factor"), [((2, 8, 6, 3), 2), ((1, 9, 7, 2), 2), ((2, 12, 9, 1), 3), ((1, 6, 5, 4, 2), 2)]
)
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_block_pool_matches_flax_pooling(shape, factor, reduce):
  x = jax.random.normal(jax.random.key(0), shape)
  window = (factor,) * (len(shape) - 2)
  flax_pool = nnx.max_pool if reduce == "max" else nnx.avg_pool
  want = flax_pool(x, window, strides=window)
  got = layers.block_pool(x, factor, reduce)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Without ties the gradient is the same as flax's (select-and-scatter for the max).
  cot = jax.random.normal(jax.random.key(1), want.shape)
  g_want = jax.grad(lambda v: jnp.sum(flax_pool(v, window, strides=window) * cot))(x)
  g_got = jax.grad(lambda v: jnp.sum(layers.block_pool(v, factor, reduce) * cot))(x)
  np.testing.assert_allclose(g_got, g_want, rtol=1e-6, atol=1e-6)


def test_block_pool_bad_arguments():
  with pytest.raises(ValueError, match="reduce"):
    layers.block_pool(jnp.zeros((1, 4, 4, 1)), 2, "median")
  with pytest.raises(ValueError, match="smaller than the pooling factor"):
    layers.block_pool(jnp.zeros((1, 1, 4, 1)), 2)
