"""Bad inputs and options to the layers and models: a clear error at construction or call, never a silent
wrong answer (wrong input shapes or dtypes, size-0 batches, unvalidated options, lost TPS regularization)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stn_jax import layers, models, parallel, tps, train_steps, transforms
from stn_jax.models import colocalisation, volume3d
from stn_jax.models import mnist as mnist_models


def _st(family="affine", out_shape=(8, 8), in_shape=(8, 8, 2), **kw):
  loc = layers.MLP(int(np.prod(in_shape)), (6,), rngs=nnx.Rngs(0))
  return layers.SpatialTransformer(loc, family, out_shape, rngs=nnx.Rngs(1), **kw)


def _model(name, input_shape, num_classes=10, **kw):
  return models.create_model(
    {"name": name, **kw}, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(0)
  )


# ---------------------------------------------------------------------------------------------- input rank


def test_2d_transformer_refuses_a_volume_and_3d_refuses_an_image():
  st = _st()
  with pytest.raises(ValueError, match=r"x must have shape \(B, H, W, C\) for the 2D family 'affine'"):
    st(jnp.zeros((2, 1, 8, 8, 2)))  # used to broadcast the extra axis through the sampler
  loc = volume3d.ConvNet3D((8, 8, 8, 1), (2,), (3,), (4,), downsample=1, rngs=nnx.Rngs(0))
  st3 = layers.SpatialTransformer(loc, "affine3d", (4, 4, 4), rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match=r"\(B, D, H, W, C\)"):
    st3.transform_params(jnp.zeros((8, 8, 8, 1)))  # a batch-less volume used to read its depth as batch
  assert st3(jnp.zeros((2, 8, 8, 8, 1))).shape == (2, 4, 4, 4, 1)


@pytest.mark.parametrize(
  "name, input_shape, bad_shape",
  [
    ("tiny_fcn", (8, 8, 1), (2, 4, 16, 1)),  # same pixel count: an FCN used to flatten it silently
    ("tiny_cnn", (8, 8, 1), (2, 12, 12, 1)),  # a CNN's head only fails when the flattened size differs
    ("tiny_st_fcn_aff", (8, 8, 1), (2, 8, 8, 2)),
    ("tiny_st_cnn_tps", (12, 12, 1), (2, 8, 8, 1)),
    ("tiny_add_2xst_fcn_aff", (14, 14, 2), (2, 14, 14, 1)),
    ("tiny_vol_cnn", (8, 8, 8, 1), (2, 8, 8, 1)),
    ("tiny_vol_st_cnn", (8, 8, 8, 1), (2, 8, 8, 4, 1)),
  ],
)
def test_models_refuse_another_input_shape(name, input_shape, bad_shape):
  model = _model(name, input_shape)
  assert model(jnp.zeros((2, *input_shape))).shape == (2, 10)
  with pytest.raises(ValueError, match=r"x must have shape \(B, "):
    model(jnp.zeros(bad_shape))


@pytest.mark.parametrize("name", ["tiny_fcn", "tiny_cnn", "tiny_st_cnn_aff"])
def test_models_refuse_integer_images(name):
  model = _model(name, (8, 8, 1))
  with pytest.raises(TypeError, match="floating batch"):
    model(jnp.zeros((2, 8, 8, 1), jnp.uint8))  # uint8 pixels would be used on the 0-255 scale


def test_mlp_localisation_net_names_its_input_size():
  st = _st(out_shape=(3, 3), in_shape=(6, 6, 1))
  with pytest.raises(
    ValueError, match=r"batch \(B, \.\.\.\) of 36 features per example, got shape \(2, 5, 5, 1\)"
  ):
    st(jnp.ones((2, 5, 5, 1)))  # used to be XLA's dot_general contracting-dimensions error
  with pytest.raises(TypeError, match="floating batch"):
    st.localization(jnp.ones((2, 6, 6, 1), jnp.uint8))  # used to run on the 0-255 scale
  assert st.localization(jnp.ones((2, 36))).shape == (2, 6)  # any layout of 36 features per example


def test_features_must_match_the_localisation_net():
  loc = layers.MLP(36, (8,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"features=5 differs from the localisation net's out_features 8"):
    layers.SpatialTransformer(loc, "affine", (3, 3), features=5, rngs=nnx.Rngs(0))
  # A plain function has no out_features: the widths are compared at the call.
  st = layers.SpatialTransformer(
    lambda x: x.reshape(len(x), -1), "affine", (3, 3), features=5, rngs=nnx.Rngs(0)
  )
  with pytest.raises(
    ValueError, match=r"features \(B, 5\) \(the regression layer's input width\), got shape \(2, 36\)"
  ):
    st(jnp.ones((2, 6, 6, 1)))
  assert st(jnp.ones((2, 5, 1, 1))).shape == (2, 3, 3, 1)


def test_parallel_concat_needs_one_out_shape():
  with pytest.raises(ValueError, match=r"one out_shape .* got out_shapes \[\(8, 8\), \(4, 4\)\]"):
    layers.Parallel([_st(), _st(out_shape=(4, 4))], concat=True)
  assert (
    len(layers.Parallel([_st(), _st(out_shape=(4, 4))])(jnp.zeros((2, 8, 8, 2)))) == 2
  )  # tuples may differ
  series = nnx.Sequential(_st(), _st())  # no out_shape to compare: still accepted
  assert layers.Parallel([series, _st()], concat=True)(jnp.zeros((2, 8, 8, 2))).shape == (2, 8, 8, 4)


def test_colocaliser_refuses_another_image_size():
  model = colocalisation.MODELS["tiny_coloc"]((28, 28, 1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\(B, 28, 28, 1\)"):
    model(jnp.zeros((2, 32, 32, 1)))


def test_models_under_jit_check_shapes_at_trace_time():
  model = _model("tiny_cnn", (8, 8, 1))
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  assert run(state, jnp.ones((3, 8, 8, 1))).shape == (3, 10)
  with pytest.raises(ValueError, match="x must have shape"):
    run(state, jnp.ones((3, 9, 9, 1)))


# -------------------------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("name", ["tiny_fcn", "tiny_cnn", "tiny_st_fcn_tps", "tiny_st_cnn_aff"])
def test_size_zero_batch_gives_empty_logits(name):
  model = _model(name, (12, 12, 1))
  assert model(jnp.zeros((0, 12, 12, 1))).shape == (0, 10)  # MLP's reshape(0, -1) used to raise


def test_mlp_size_zero_batch():
  mlp = layers.MLP(6, (4,), rngs=nnx.Rngs(0))
  assert mlp(jnp.zeros((0, 2, 3))).shape == (0, 4)


# --------------------------------------------------------------------------------------- TPS learnable base


def test_learnable_base_keeps_the_tps_regularization():
  lam = 0.5
  st = _st("tps", learnable_base=True, family_kwargs={"regularization": lam})
  fixed = _st("tps", family_kwargs={"regularization": lam})
  theta = st.family.identity_params()[None] + 0.1 * jax.random.normal(jax.random.key(0), (1, 32))
  np.testing.assert_allclose(st.grid(theta), fixed.grid(theta), atol=1e-5)
  exact = tps.tps_grid(theta.reshape(1, 16, 2), (8, 8))
  assert float(jnp.abs(st.grid(theta) - exact).max()) > 1e-3  # the regularization really changes the grid


def test_learnable_base_needs_the_family_by_name():
  with pytest.raises(ValueError, match="by name"):
    _st(transforms.get_family("tps", regularization=0.5), learnable_base=True)


# ------------------------------------------------------------------------------------------ lr multipliers


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, True, "0.1"])
def test_lr_multiplier_must_be_finite_and_non_negative(value):
  with pytest.raises((ValueError, TypeError), match="lr_multiplier"):
    _st(lr_multiplier=value)
  with pytest.raises((ValueError, TypeError), match="regression_lr_multiplier"):
    _st(regression_lr_multiplier=value)


def test_inner_transformer_at_default_multiplier_is_not_overridden_by_the_outer_one():
  inner = _st("affine")
  loc = nnx.Sequential(inner, layers.MLP(8 * 8 * 2, (6,), rngs=nnx.Rngs(2)))
  outer = layers.SpatialTransformer(loc, "affine", (8, 8), features=6, lr_multiplier=0.1, rngs=nnx.Rngs(3))
  mults = layers.lr_multipliers(outer)
  inner_mults = mults["localization"]["layers"][0]
  assert set(jax.tree.leaves(inner_mults)) == {1.0}  # innermost wins, also at 1.0 (was 0.1)
  assert set(jax.tree.leaves(mults["localization"]["layers"][1])) == {0.1}
  assert mults["regression"]["kernel"] == 0.1


# ---------------------------------------------------------------------------------- construction options


@pytest.mark.parametrize(
  "kw, error, match",
  [
    ({"mode": "cubic"}, ValueError, "mode"),
    ({"padding_mode": "wrap"}, ValueError, "padding_mode"),
    ({"fast_path": "yes"}, ValueError, "fast_path"),
    ({"fast_path": True}, ValueError, "axis-aligned"),  # affine has no separable path
    ({"align_corners": "False"}, TypeError, "align_corners"),
    ({"features": 0}, ValueError, "features"),
    ({"features": 2.5}, TypeError, "features"),
    ({"learnable_base": 1}, TypeError, "learnable_base"),
  ],
)
def test_transformer_options_checked_at_construction(kw, error, match):
  with pytest.raises(error, match=match):
    _st(**kw)


def test_bicubic_3d_transformer_refused_at_construction():
  loc = volume3d.ConvNet3D((8, 8, 8, 1), (2,), (3,), (4,), downsample=1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="bicubic"):
    layers.SpatialTransformer(loc, "affine3d", (4, 4, 4), mode="bicubic", rngs=nnx.Rngs(1))


@pytest.mark.parametrize("factor, error", [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_block_pool_factor(factor, error):
  with pytest.raises(error, match="factor"):
    layers.block_pool(jnp.zeros((1, 4, 4, 1)), factor)


@pytest.mark.parametrize(
  "kw, error, match",
  [
    ({"downsample": 0}, ValueError, "downsample"),
    ({"downsample": 2.0}, TypeError, "downsample"),
    ({"conv_widths": (4, 0)}, ValueError, r"conv_widths\[1\]"),
    ({"kernel_sizes": (5, "3")}, TypeError, r"kernel_sizes\[1\]"),
    ({"dense_widths": (8.5,)}, TypeError, r"widths\[0\]"),
    ({"input_shape": (16, 16)}, ValueError, "input_shape"),
    ({"input_shape": (16, 16.0, 1)}, TypeError, "input_shape"),
  ],
)
def test_convnet_options(kw, error, match):
  args = {"input_shape": (16, 16, 1), "conv_widths": (4, 4), "kernel_sizes": (5, 3), "dense_widths": (8,)}
  args.update(kw)
  with pytest.raises(error, match=match):
    layers.ConvNet(**args, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
  "name, kw, error, match",
  [
    ("tiny_st_cnn_aff", {"st_downsample": 0}, ValueError, "st_downsample"),
    ("tiny_st_cnn_aff", {"st_downsample": 2.0}, TypeError, "st_downsample"),
    ("tiny_st_fcn_aff", {"st_downsample": 16}, ValueError, "larger than the input"),
    ("tiny_fcn", {"widths": (16, 0)}, ValueError, r"widths\[1\]"),
    ("tiny_fcn", {"widths": "16"}, TypeError, "widths"),
    ("tiny_vol_cnn", {"projection": "sum"}, ValueError, "projection"),
    ("tiny_vol_cnn", {"projection_gain": float("inf")}, ValueError, "projection_gain"),
    ("tiny_vol_st_cnn", {"st_downsample": 9}, ValueError, "st_downsample"),
  ],
)
def test_model_options(name, kw, error, match):
  shape = (8, 8, 8, 1) if "vol" in name else (8, 8, 1)
  with pytest.raises(error, match=match):
    _model(name, shape, **kw)


@pytest.mark.parametrize("num_classes, error", [(0, ValueError), ("10", TypeError), (10.0, TypeError)])
def test_num_classes(num_classes, error):
  with pytest.raises(error, match="num_classes"):
    _model("tiny_fcn", (8, 8, 1), num_classes=num_classes)


def test_fcn_takes_any_number_of_hidden_layers():
  model = mnist_models.FCN((8, 8, 1), 10, widths=(5,), rngs=nnx.Rngs(0))
  assert len(model.body.layers) == 1 and model(jnp.zeros((2, 8, 8, 1))).shape == (2, 10)


# ------------------------------------------------------------------------------------- co-localiser restarts


def _coloc():
  return colocalisation.MODELS["tiny_coloc"]((28, 28, 1), restarts_per_axis=2, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("restart", [[0, 4], [-1, 0]])
def test_colocaliser_out_of_range_restart_is_an_error(restart):
  with pytest.raises(ValueError, match=r"restart must lie in \[0, 4\)"):
    _coloc()(jnp.zeros((2, 28, 28, 1)), jnp.asarray(restart))


@pytest.mark.parametrize("restart", [jnp.zeros(3, jnp.int32), jnp.zeros(2)])
def test_colocaliser_restart_shape_and_dtype(restart):
  with pytest.raises(ValueError, match=r"restart must be \(2,\) integer"):
    _coloc()(jnp.zeros((2, 28, 28, 1)), restart)


def test_colocaliser_out_of_range_restart_under_jit_is_nan_not_another_crop():
  model = _coloc()
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda s, x, r: nnx.merge(graphdef, s)(x, r)[1])
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  params = np.asarray(run(state, x, jnp.asarray([3, 4, -1])))
  np.testing.assert_allclose(params[0], model.restart_params(x)[0, 3], rtol=1e-6)
  assert np.isnan(params[1:]).all()


# ------------------------------------------------------------------------------------------------- training


def test_create_setup_checks_the_batch_splits_over_devices():
  from configs import mnist as mnist_configs  # noqa: PLC0415

  config = mnist_configs.get_config("rts,tiny_cnn")
  config.batch_size = 8
  mesh = types.SimpleNamespace(shape={parallel.DATA_AXIS: 3})  # only its size is read before the check
  with pytest.raises(ValueError, match="batch_size 8 must be divisible"):
    train_steps.create_setup(config, mesh=mesh)


def test_colocaliser_restart_as_a_numpy_constant_under_jit():
  # A numpy restart closed over in jit becomes a tracer inside: the range check must not inspect it.
  model = _coloc()
  graphdef, state = nnx.split(model)
  restart = np.array([0, 3])
  run = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, restart)[1])
  x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  np.testing.assert_allclose(run(state, x), model(x, restart)[1], rtol=1e-6)
