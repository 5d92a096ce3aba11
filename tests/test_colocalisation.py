"""Co-localisation (appendix A.2): data, boxes and IoU, the hinge loss, and real training steps."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from stn_jax import coloc_train
from stn_jax.data import colocalisation as data
from stn_jax.models import colocalisation as models
from stn_jax.models import mnist as mnist_models


@pytest.fixture(scope="module")
def cluttered():
  return data.make_dataset(jax.random.key(3), 7, "tc", num_images=6)


def test_dataset_shapes_boxes_and_determinism(cluttered):
  images, boxes = data.make_dataset(jax.random.key(0), 2, "t", num_images=5)
  assert images.shape == (5, 84, 84, 1) and images.dtype == jnp.float32
  assert boxes.shape == (5, 4)
  np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 2 * 28 / 84, atol=1e-6)
  assert np.all(boxes >= -1 - 1e-6) and np.all(boxes <= 1 + 1e-6)
  again, _ = data.make_dataset(jax.random.key(0), 2, "t", num_images=5)
  np.testing.assert_array_equal(images, again)
  other, _ = data.make_dataset(jax.random.key(1), 2, "t", num_images=5)
  assert not np.array_equal(images, other)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"digit_class": 2.5}, TypeError, "^digit_class must be an int"),
    ({"digit_class": True}, TypeError, "^digit_class must be an int"),
    ({"digit_class": 10}, ValueError, "digit_class must be in 0..9, got 10"),
    ({"num_images": 2.5}, TypeError, "^num_images must be an int"),
    ({"num_images": "5"}, TypeError, "^num_images must be an int"),
    ({"num_images": 0}, ValueError, "num_images must be >= 1, got 0"),
    ({"num_images": 10**6}, ValueError, "num_images must be <= 5958, the number of train digits of class 2"),
    ({"canvas_size": 84.5}, TypeError, "^canvas_size must be an int"),
    ({"canvas_size": 27}, ValueError, "canvas_size must be >= 28, got 27"),
  ],
)
def test_make_dataset_rejects_bad_counts(kwargs, error, message):
  kwargs = {"digit_class": 2, "num_images": 2, **kwargs}
  with pytest.raises(error, match=message):
    data.make_dataset(jax.random.key(0), kwargs.pop("digit_class"), "t", **kwargs)


def test_class_helpers_check_the_class():
  with pytest.raises(ValueError, match="digit_class must be in 0..9, got 12"):
    data.other_digits(12)  # once: every digit, silently
  with pytest.raises(TypeError, match="^digit_class must be an int"):
    data.class_digits(np.float32(3.0))
  assert data.class_digits(np.int64(3)).shape == data.class_digits(3).shape


def _inside(boxes, size=84):
  """Boolean masks (N, S, S) of the pixels whose centres lie inside the normalised boxes."""
  centres = np.asarray(jnp.linspace(-1 + 1 / size, 1 - 1 / size, size))
  x = (centres > boxes[:, 0, None]) & (centres < boxes[:, 2, None])  # (N, S)
  y = (centres > boxes[:, 1, None]) & (centres < boxes[:, 3, None])
  return y[:, :, None] & x[:, None, :]


def test_digit_is_inside_its_box_and_clutter_is_not(cluttered):
  images, boxes = data.make_dataset(jax.random.key(0), 2, "t", num_images=5)
  images, boxes = np.asarray(images[..., 0]), np.asarray(boxes)
  inside = _inside(boxes)
  assert inside.sum(axis=(1, 2)).tolist() == [28 * 28] * 5
  assert np.all(images[~inside] == 0)  # T: nothing outside the digit's box
  # The box holds an exact copy of a class-2 MNIST digit.
  digits = data.class_digits(2).astype(np.float32) / 255.0
  crop = images[0][inside[0]].reshape(28, 28)
  assert np.min(np.abs(digits - crop).sum(axis=(1, 2))) < 1e-5
  c_images, c_boxes = (np.asarray(a) for a in cluttered)
  assert np.all((c_images[..., 0] * ~_inside(c_boxes)).sum(axis=(1, 2)) > 0)  # TC: clutter outside the box


def test_box_iou_known_answers():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0]] * 4)
  b = jnp.array([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [2.0, 2.0, 3.0, 3.0], [0.5, 0.5, 1.5, 1.5]])
  np.testing.assert_allclose(data.box_iou(a, b), [1.0, 2.0 / 6.0, 0.0, 0.25], rtol=1e-6)
  assert float(data.box_iou(jnp.zeros(4), jnp.zeros(4))) == 0.0  # empty boxes: 0, not NaN


def test_attention_box_and_pixel_boxes():
  np.testing.assert_allclose(
    data.attention_box(jnp.array([0.5, 0.1, -0.2])), [-0.4, -0.7, 0.6, 0.3], atol=1e-6
  )
  # A 28-pixel box at the top-left corner of an 84 canvas spans the first third of each axis.
  np.testing.assert_allclose(
    data.pixel_box_to_normalized(jnp.array([0, 0]), 28, 84), [-1, -1, -1 / 3, -1 / 3], atol=1e-6
  )
  # (y, x) order of top_left: x = 56 puts the box in the last third horizontally.
  np.testing.assert_allclose(
    data.pixel_box_to_normalized(jnp.array([0, 56]), 28, 84), [1 / 3, -1, 1, -1 / 3], atol=1e-6
  )
  with pytest.raises(ValueError, match=r"\(s, t_x, t_y\)"):
    data.attention_box(jnp.zeros((2, 4)))


def test_random_crops_stay_inside():
  scale = jnp.linspace(0.1, 1.2, 500)
  p = data.random_attention_params(jax.random.key(0), scale)
  box = data.attention_box(p)
  fits = scale <= 1
  assert np.all(box[fits] >= -1 - 1e-6) and np.all(box[fits] <= 1 + 1e-6)
  np.testing.assert_array_equal(p[~fits, 1:], 0.0)  # too large to fit: centred
  np.testing.assert_allclose(p[:, 0], scale)
  assert float(jnp.abs(p[scale < 0.5, 1:]).max()) > 0.4  # small crops do move around


def test_hinge_loss_by_hand():
  crops = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  rand = jnp.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
  # ||c_n - c_m||^2: (0,1)=1, (0,2)=4, (1,2)=5; ||c_n - r_n||^2 = 1, 1, 4. Hinge terms over ordered pairs:
  # n=0: 1-1+1=1, 4-1+1=4; n=1: 1-1+1=1, 5-1+1=5; n=2: 4-4+1=1, 5-4+1=2 -> sum 14 over 6 pairs.
  np.testing.assert_allclose(models.hinge_loss(crops, rand), 14.0 / 6.0, rtol=1e-6)
  # A large margin of separation zeroes every term.
  np.testing.assert_allclose(models.hinge_loss(crops, rand + 100.0), 0.0)
  with pytest.raises(ValueError, match=r"\(N, F\)"):
    models.hinge_loss(crops, rand[:2])


def test_hinge_loss_averages_over_several_random_crops():
  crops = jax.random.normal(jax.random.key(0), (5, 3))
  rand = jax.random.normal(jax.random.key(1), (5, 4, 3))
  each = [models.hinge_loss(crops, rand[:, r]) for r in range(4)]
  np.testing.assert_allclose(models.hinge_loss(crops, rand), np.mean(each), rtol=1e-6)


def test_restart_grid_tiles_the_canvas():
  grid = models.restart_grid(3, 1 / 3)
  assert grid.shape == (9, 3)
  np.testing.assert_allclose(grid[:, 0], 1 / 3)
  # Row-major, x fastest: the 3 x 3 tiling of an 84 canvas by 28-pixel crops, edges touching.
  np.testing.assert_allclose(grid[:3, 1], [-2 / 3, 0, 2 / 3], atol=1e-6)
  np.testing.assert_allclose(grid[::3, 2], [-2 / 3, 0, 2 / 3], atol=1e-6)
  np.testing.assert_allclose(models.restart_grid(1, 0.4), [[0.4, 0.0, 0.0]])
  with pytest.raises(ValueError, match="restarts_per_axis"):
    models.restart_grid(0, 0.5)


def test_colocaliser_starts_at_the_requested_crop():
  model = models.MODELS["tiny_coloc"]((84, 84, 1), init_scale=1 / 3, rngs=nnx.Rngs(0))
  image = jnp.zeros((1, 84, 84, 1)).at[0, 28:56, 28:56, 0].set(1.0)
  crops, theta = model(image)
  np.testing.assert_allclose(theta, [[1 / 3, 0.0, 0.0]], atol=1e-6)
  np.testing.assert_allclose(crops, jnp.ones((1, 28, 28, 1)), atol=1e-5)  # exactly the centre square


def test_restarts_crop_their_grid_cells():
  model = models.MODELS["tiny_coloc"]((84, 84, 1), init_scale=1 / 3, restarts_per_axis=3, rngs=nnx.Rngs(0))
  # Image 0 lit in the top-right tile (restart 2), image 1 in the bottom-left one (restart 6).
  images = jnp.zeros((2, 84, 84, 1)).at[0, :28, 56:, 0].set(1.0).at[1, 56:, :28, 0].set(1.0)
  np.testing.assert_allclose(model.restart_params(images), np.stack([models.restart_grid(3, 1 / 3)] * 2))
  crops, theta = model(images, jnp.array([2, 6]))
  np.testing.assert_allclose(theta, [[1 / 3, 2 / 3, -2 / 3], [1 / 3, -2 / 3, 2 / 3]], atol=1e-6)
  np.testing.assert_allclose(crops, jnp.ones((2, 28, 28, 1)), atol=1e-5)
  crops, _ = model(images, jnp.array([6, 2]))  # the other way round: empty tiles
  np.testing.assert_allclose(crops, 0.0, atol=1e-6)


def test_select_restarts_finds_the_shared_kind_of_crop():
  # 6 images x 3 restarts: restart order shuffled per image. The "digit" restart embeds near one point in
  # every image; the other two are scattered "fragments"; random crops are scattered too.
  n, f = 6, 4
  key = jax.random.key(0)
  k_frag, k_rand, k_noise, k_perm = jax.random.split(key, 4)
  digit = jnp.array([1.0, 0.0, 0.0, 0.0]) + 0.05 * jax.random.normal(k_noise, (n, f))
  fragments = jax.random.uniform(k_frag, (n, 2, f)) * 2.0
  per_image = jnp.concatenate([digit[:, None], fragments], axis=1)  # digit at restart 0
  order = jnp.stack([jax.random.permutation(k, 3) for k in jax.random.split(k_perm, n)])
  emb = jnp.take_along_axis(per_image, order[:, :, None], axis=1)
  rand = jax.random.uniform(k_rand, (n, 5, f)) * 2.0
  chosen, loss = models.select_restarts(emb, rand, jnp.arange(n * 3), num_seeds=3, iterations=2)
  np.testing.assert_array_equal(chosen, jnp.argmin(order, axis=1))  # where restart 0 went
  np.testing.assert_allclose(loss, models.hinge_loss(emb[jnp.arange(n), chosen], rand), rtol=1e-6)


def test_two_real_training_steps_change_the_crop_and_score_it():
  config = ml_collections.ConfigDict(
    {
      "data": {"num_images": 8, "canvas_size": 84},
      "model": {"name": "tiny_coloc", "init_scale": 0.5, "restarts_per_axis": 2},
      "learning_rate": 1e-2,
      "margin": 1.0,
      "negative_scale": 1 / 3,
      "embedding": {"output": "probs", "temperature": 1.0},
      "num_selection_negatives": 2,
      "selection_candidates": 8,
      "selection_seeds": 2,
      "selection_iterations": 1,
      "total_steps": 2,
    }
  )
  embedding = models.TinyEmbedding(rngs=nnx.Rngs(1))
  out = coloc_train.train_one(config, embedding, 4, "tc", jax.random.key(0))
  assert out["losses"].shape == (2,) and np.all(np.isfinite(out["losses"]))
  assert out["restart"].shape == (8,) and np.all((out["restart"] >= 0) & (out["restart"] < 4))
  # The crops moved away from the chosen restarts' starting grid cells.
  start = models.restart_grid(2, 0.5)[out["restart"]]
  start_boxes = np.concatenate([start[:, 1:] - 0.5, start[:, 1:] + 0.5], axis=1)
  assert not np.allclose(out["pred_boxes"], start_boxes, atol=1e-6)
  iou = np.asarray(data.box_iou(jnp.asarray(out["pred_boxes"]), jnp.asarray(out["true_boxes"])))
  assert out["success"] == pytest.approx(float(np.mean(iou > 0.5)))
  assert 0.0 <= out["success_at_selection"] <= out["grid_best_success"] <= 1.0


def test_embedding_outputs():
  classifier = mnist_models.FCN((28, 28, 1), 10, widths=(8, 8), rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  logits = classifier(x)
  np.testing.assert_allclose(coloc_train._embed(classifier, x, "logits"), logits)
  np.testing.assert_allclose(coloc_train._embed(classifier, x, "probs", 2.0), jax.nn.softmax(logits / 2.0))
  features = coloc_train._embed(classifier, x, "features")
  assert features.shape == (3, 8)
  np.testing.assert_allclose(jnp.linalg.norm(features, axis=-1), 1.0, rtol=1e-5)


def test_a_run_resumed_over_sessions_draws_every_class(tmp_path):
  # The boxes figure of a run finished in a second session used to show only that session's classes.
  import matplotlib.image  # noqa: PLC0415

  from configs import coloc as coloc_configs  # noqa: PLC0415

  config = coloc_configs.get_config("t")
  config.data.num_images, config.data.classes = 4, (1,)
  config.model.name, config.model.restarts_per_axis = "tiny_coloc", 2
  config.total_steps, config.log_every, config.num_figure_examples = 1, 1, 2
  config.selection_candidates, config.selection_seeds, config.selection_iterations = 4, 1, 1
  config.num_selection_negatives = 2
  coloc_train.train_and_evaluate(config, str(tmp_path))  # a first session: class 1 only
  one_row = matplotlib.image.imread(tmp_path / "boxes_t.png").shape[0]
  (tmp_path / "results.json").unlink()
  config.data.classes = (1, 2)
  results = coloc_train.train_and_evaluate(config, str(tmp_path))  # the second: trains class 2 only
  assert sorted(results["per_run"]) == ["t/1", "t/2"]
  assert matplotlib.image.imread(tmp_path / "boxes_t.png").shape[0] == 2 * one_row
  # Nothing left to train: the stored results come back and no file changes.
  written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  stored = json.loads((tmp_path / "results.json").read_text())
  assert coloc_train.train_and_evaluate(config, str(tmp_path)) == stored
  assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == written


@pytest.mark.parametrize("seed", [2**32, -1])
def test_a_seed_jax_cannot_tell_apart_is_refused_before_anything_is_written(tmp_path, seed):
  from configs import coloc as coloc_configs  # noqa: PLC0415

  config = coloc_configs.get_config("t")
  config.seed = seed
  with pytest.raises(ValueError, match="config.seed must be"):
    coloc_train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
