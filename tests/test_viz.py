"""Tests for stn_jax.viz (drawing helpers) and for the package importing without optional dependencies."""

import subprocess
import sys

import numpy as np
import pytest

from stn_jax import coords, transforms

pytest.importorskip("matplotlib")

from stn_jax import viz  # noqa: E402  (after the importorskip)


def _axes():
  from matplotlib.figure import Figure

  return Figure().subplots()


def test_identity_grid_lands_on_pixel_centres():
  ax = _axes()
  lines, outline = viz.draw_grid(ax, coords.base_grid((6, 8)), (6, 8, 1), step=1)
  assert len(lines) == 6 + 8
  first_row = lines[0]
  np.testing.assert_allclose(first_row.get_xdata(), np.arange(8), atol=1e-5)
  np.testing.assert_allclose(first_row.get_ydata(), np.zeros(8), atol=1e-5)
  # The outline runs along the image's outer pixel edges.
  xs, ys = outline.get_xdata(), outline.get_ydata()
  np.testing.assert_allclose([xs.min(), xs.max(), ys.min(), ys.max()], [-0.5, 7.5, -0.5, 5.5], atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_attention_crop_outline_in_pixel_coordinates(align_corners):
  # Half-scale centred crop of an 8x8 image: the sampled region spans normalised [-0.5, 0.5].
  grid = transforms.affine_grid(
    transforms.attention_matrix(np.array([0.5, 0.0, 0.0], np.float32)), (4, 4), align_corners=align_corners
  )
  _, outline = viz.draw_grid(_axes(), grid, (8, 8), align_corners=align_corners)
  # Normalised -0.5 / 0.5 in pixels: ((x + 1) * 8 - 1) / 2, or (x + 1) * 3.5 with aligned corners.
  want = (1.75, 5.25) if align_corners else (1.5, 5.5)
  xs, ys = outline.get_xdata(), outline.get_ydata()
  np.testing.assert_allclose([xs.min(), xs.max(), ys.min(), ys.max()], want + want, atol=1e-5)


def test_far_points_do_not_move_the_view():
  ax = _axes()
  grid = transforms.projective_grid(np.array([[1.0, 0, 0], [0, 1, 0], [2, 0, 1]], np.float32), (8, 8))
  viz.draw_grid(ax, grid, (10, 12))
  assert ax.get_xlim() == (-0.5, 11.5) and ax.get_ylim() == (9.5, -0.5)


def test_plot_transforms_writes_a_figure(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(3, 12, 12, 1)).astype(np.float32)
  theta = np.stack([transforms.similarity_matrix(0.8, a, 0.1, 0.0) for a in (0.0, 0.3, -0.3)])
  grids = np.asarray(transforms.affine_grid(theta, (6, 6)))
  outputs = rng.normal(size=(3, 6, 6, 3)).astype(np.float32)  # RGB outside [0, 1]: rescaled for display
  path = tmp_path / "transforms.png"
  fig = viz.plot_transforms(
    images, grids, outputs, labels=[1, 2, 3], predictions=[1, 7, 3], max_rows=2, path=str(path)
  )
  assert path.stat().st_size > 1000
  assert len(fig.axes) == 2 * 3
  assert fig.axes[5].get_title() == "true 2, pred 7"
  single = viz.plot_transform(images[0], grids[0], outputs[0])
  assert len(single.axes) == 3 and single.axes[1].get_title() == "sampling grid"


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"grid must have shape \(H', W', 2\)"):
    viz.draw_grid(_axes(), np.zeros((4, 4, 3)), (4, 4))
  with pytest.raises(ValueError, match="image must have shape"):
    viz.plot_transform(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), np.zeros((4, 4)))


@pytest.mark.parametrize("image_shape", [6, None, "66"])
def test_draw_grid_image_shape_must_be_a_tuple(image_shape):
  with pytest.raises(TypeError, match=r"image_shape must be a tuple of ints like \(H, W\)"):
    viz.draw_grid(_axes(), coords.base_grid((5, 5)), image_shape)  # 6 used to fail on iterating an int


def test_plot_transform_output_must_match_the_grid():
  grid = np.asarray(coords.base_grid((5, 5)))
  with pytest.raises(ValueError, match=r"output \(9, 9\) and grid \(5, 5, 2\) must share"):
    viz.plot_transform(np.zeros((9, 9)), grid, np.zeros((9, 9)))  # used to draw a 9x9 output silently
  assert len(viz.plot_transform(np.zeros((9, 9)), grid, np.zeros((5, 5, 1))).axes) == 3


@pytest.mark.parametrize("field", ["labels", "predictions"])
def test_plot_transforms_labels_must_be_a_sequence(field):
  images, grids, outputs = np.zeros((3, 6, 6)), np.zeros((3, 4, 4, 2)), np.zeros((3, 4, 4))
  with pytest.raises(
    TypeError, match=f"{field} must be a sequence or array with one entry per example, got 3"
  ):
    viz.plot_transforms(images, grids, outputs, **{field: 3})  # used to fail on len()
  with pytest.raises(TypeError, match="images must be a sequence"):
    viz.plot_transforms(7, grids, outputs)


def test_package_imports_without_optional_dependencies():
  code = (
    "import sys\n"
    "for name in ('matplotlib', 'flax', 'optax', 'torch', 'tensorflow'):\n"
    "  sys.modules[name] = None\n"
    "import stn_jax\n"
    "assert stn_jax.get_family('affine').num_params == 6\n"
    "assert not any(m.startswith(('matplotlib', 'flax', 'optax')) for m in sys.modules if sys.modules[m])\n"
  )
  subprocess.run(
    [sys.executable, "-c", code], check=True, env={"JAX_PLATFORMS": "cpu", "PATH": ""}, timeout=120
  )
