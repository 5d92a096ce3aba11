"""Tests of experiments/mnist/st_pose_stats.py: grid statistics of trained spatial transformers."""

import importlib.util
import os

import helpers
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
  "st_pose_stats", os.path.join(ROOT, "experiments", "mnist", "st_pose_stats.py")
)
pose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pose)


def _grids(scales, shifts, size=(30, 30)):
  theta = np.zeros((len(scales), 2, 3), np.float32)
  theta[:, 0, 0] = theta[:, 1, 1] = scales
  theta[:, :, 2] = shifts
  return np.asarray(transforms.affine_grid(jnp.asarray(theta), size))


def test_identity_grids_have_zoom_one_and_no_spread():
  s = pose.grid_stats(_grids([1.0, 1.0, 1.0], np.zeros((3, 2)), size=(30, 20)))
  assert s["zoom"] == pytest.approx(1.0, abs=1e-6)
  assert s["centre_x_sd"] == s["centre_y_sd"] == 0.0


def test_zoom_and_centre_spread_match_the_affine_parameters():
  shifts = np.array([[0.3, -0.2], [-0.3, 0.2], [0.1, 0.0], [-0.1, 0.0]])
  s = pose.grid_stats(_grids([0.5, 0.5, 0.5, 0.5], shifts))
  assert s["zoom"] == pytest.approx(0.5, abs=1e-5)
  assert s["centre_x_sd"] == pytest.approx(np.std(shifts[:, 0]), abs=1e-6)
  assert s["centre_y_sd"] == pytest.approx(np.std(shifts[:, 1]), abs=1e-6)


def test_identity_sd_is_the_spread_of_the_pixel_centres():
  for n in (1, 2, 7, 30):
    centres = (2 * np.arange(n) + 1) / n - 1
    assert pose.identity_sd(n) == pytest.approx(np.std(centres), abs=1e-12)


def test_live_features_counts_the_columns_that_vary():
  rng = np.random.default_rng(0)
  features = np.zeros((50, 5))
  features[:, 1] = rng.normal(size=50)  # varies
  features[:, 2] = 3.0  # constant but non-zero: a unit that is always on with dead inputs
  features[7, 4] = 1e-3  # varies on one image only: still alive
  assert pose.live_features(features) == 2
  assert pose.live_features(np.zeros((1, 4))) == 0  # one image: nothing can vary


@pytest.mark.slow  # trains two steps end to end (~90 s under load): the suite's training tests cover that
def test_run_stats_restores_a_finished_run(tmp_path):
  helpers.train_tiny_run(tmp_path, "rts,tiny_st_cnn_aff", test_size=32, checkpoint_every=1)
  s = pose.run_stats(str(tmp_path), num=20, batch=8)
  assert set(s) == {"centre_x_sd", "centre_y_sd", "zoom", "live_loc_features", "loc_features", "test_error"}
  assert 0 <= s["live_loc_features"] <= s["loc_features"]
  # Every kept checkpoint can be read back (the tiny run keeps steps 1 and 2).
  rows = list(pose._rows([str(tmp_path)], every_checkpoint=True))
  assert [step for _, step in rows] == [1, 2]
  assert list(pose._rows(["x"], every_checkpoint=False)) == [("x", None)]
  first = pose.run_stats(str(tmp_path), num=20, batch=8, step=1)
  assert first["zoom"] != s["zoom"]
  assert 0.0 <= s["test_error"] <= 100.0 and 0.5 < s["zoom"] < 2.0  # two steps from the identity
