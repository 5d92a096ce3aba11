"""Tests of experiments/mnist/tc_localisation.py: centring error and oracle centring of TC transformers."""

import importlib.util
import os

import helpers
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from stn_jax.data import distortions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
  "tc_localisation", os.path.join(ROOT, "experiments", "mnist", "tc_localisation.py")
)
tcl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tcl)


def test_digit_centres_are_where_the_digits_are():
  # A grid of the digit box's size centred on digit_centres samples exactly the box the generator pasted the
  # digit into (pixel-aligned, so bilinear sampling copies pixels).
  num, side, digit = 16, distortions.canvas_side("tc"), distortions.DIGIT_SIDE
  images, _ = distortions.test_set("tc", 0, num=num)
  centres = tcl.digit_centres(num, 0)
  theta = np.zeros((num, 2, 3), np.float32)
  theta[:, 0, 0] = theta[:, 1, 1] = digit / side
  theta[:, :, 2] = centres
  crops = stn_jax.grid_sample(jnp.asarray(images), stn_jax.affine_grid(jnp.asarray(theta), (digit, digit)))
  offsets = distortions.test_set_params("tc", 0, num=num)["offset"]
  for crop, (x, y), image in zip(np.asarray(crops), offsets, images, strict=True):
    np.testing.assert_allclose(crop, image[y : y + digit, x : x + digit], atol=1e-5)
  assert np.all(np.abs(centres) <= 1 - digit / side + 1e-9)  # every box lies inside the canvas


@pytest.mark.slow  # trains two tiny runs end to end (~2 min under load)
def test_report_on_finished_runs(tmp_path):
  st_dir, cnn_dir, rts_dir = (str(tmp_path / n) for n in ("st", "cnn", "rts"))
  helpers.train_tiny_run(st_dir, "tc,tiny_st_cnn_aff", test_size=32)
  helpers.train_tiny_run(cnn_dir, "tc,tiny_cnn", test_size=32)
  name, seed, labels, run = tcl.evaluate(st_dir, num=20, batch=8)
  assert (
    seed == 0
    and labels.shape == (20,)
    and set(run) == {"pred", "centre", "half", "oracle", "oracle_box", "true"}
  )
  # Two steps from the identity: the view is about the whole canvas (half-extent ~1), centred (~0).
  assert np.all(np.abs(run["centre"]) < 0.2) and np.all(np.abs(run["half"] - 1) < 0.2)
  text = tcl.report([st_dir], cnn_dir, num=20)
  assert "oracle centring" in text and "| centring error px |" in text and "only the baseline" in text
  with pytest.raises(ValueError, match="has no spatial transformer"):
    tcl.report([cnn_dir], None, num=20)
  with pytest.raises(ValueError, match="expected a model without one"):
    tcl.report([st_dir], st_dir, num=20)
  helpers.train_tiny_run(rts_dir, "rts,tiny_cnn", test_size=32)
  with pytest.raises(ValueError, match="not a run on the 'tc' variant"):
    tcl.evaluate(rts_dir, num=20)
