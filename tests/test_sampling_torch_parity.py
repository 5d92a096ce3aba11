"""grid_sample against PyTorch: values and gradients on the stored fixtures (no torch needed), plus a live
check on larger random inputs when torch is installed.

Fixtures: ``tests/fixtures/grid_sample_torch.npz``, written by ``tests/fixtures/make_torch_fixtures.py``.
"""

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import sampling

FIXTURES = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "grid_sample_torch.npz"))
PADDINGS = ("zeros", "border", "reflection")
CASES = [
  ("2d", m, p, ac) for m, p, ac in itertools.product(("bilinear", "nearest", "bicubic"), PADDINGS, (0, 1))
]
CASES += [("3d", m, p, 0) for m, p in itertools.product(("bilinear", "nearest"), PADDINGS)]
# 3D with align_corners=True shares every code path with 2D; kept out of the default (fast) suite.
CASES += [
  pytest.param("3d", m, p, 1, marks=pytest.mark.slow)
  for m, p in itertools.product(("bilinear", "nearest"), PADDINGS)
]


def _assert_close(got, want, name):
  # float32 tolerance, scaled to the magnitude of the values (grid gradients carry a factor ~size/2).
  scale = max(1.0, float(np.max(np.abs(want))))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=2e-6 * scale, err_msg=name)


def _value_and_grads(f, image, grid, cot):
  """Output and vjp of ``f`` as one compiled program (an eager vjp compiles every backward op alone)."""

  @jax.jit
  def run(image, grid, cot):
    out, vjp = jax.vjp(f, image, grid)
    return (out, *vjp(cot))

  return run(jnp.asarray(image), jnp.asarray(grid), jnp.asarray(cot))


@pytest.mark.parametrize("dim,mode,padding,ac", CASES)
def test_values_and_gradients_match_torch_fixtures(dim, mode, padding, ac):
  image, grid, cot = (FIXTURES[f"{dim}_{k}"] for k in ("image", "grid", "cot"))
  key = f"{dim}_{mode}_{padding}_{ac}"
  f = lambda i, g: sampling.grid_sample(i, g, mode=mode, padding_mode=padding, align_corners=bool(ac))
  out, d_image, d_grid = _value_and_grads(f, image, grid, cot)
  _assert_close(out, FIXTURES[key + "_out"], key + " values")
  _assert_close(d_image, FIXTURES[key + "_dimage"], key + " d image")
  _assert_close(d_grid, FIXTURES[key + "_dgrid"], key + " d grid")
  if padding != "reflection":
    _assert_close(f(image, FIXTURES[f"{dim}_huge_grid"]), FIXTURES[key + "_huge_out"], key + " huge coords")


def test_fixtures_cover_far_outside_coordinates():
  # The fixtures must exercise the borders and far outside, not just the interior.
  for dim in ("2d", "3d"):
    grid = FIXTURES[f"{dim}_grid"]
    assert np.abs(grid).max() > 1e4 and (np.abs(grid) > 1.0).mean() > 0.2


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("mode,padding", itertools.product(("bilinear", "nearest", "bicubic"), PADDINGS))
def test_live_torch_on_larger_inputs(mode, padding):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(7)
  image = rng.normal(size=(3, 17, 23, 4)).astype(np.float32)
  grid = rng.uniform(-1.6, 1.6, size=(3, 11, 13, 2)).astype(np.float32)
  cot = rng.normal(size=(3, 11, 13, 4)).astype(np.float32)
  # One align_corners per case keeps this fast; the fixtures cover both for every case.
  for ac in [(len(mode) + len(padding)) % 2 == 0]:
    ti = torch.tensor(image.transpose(0, 3, 1, 2), requires_grad=True)
    tg = torch.tensor(grid, requires_grad=True)
    tout = torch.nn.functional.grid_sample(ti, tg, mode=mode, padding_mode=padding, align_corners=ac)
    tout.backward(torch.tensor(cot.transpose(0, 3, 1, 2)))
    f = lambda i, g, ac=ac: sampling.grid_sample(i, g, mode=mode, padding_mode=padding, align_corners=ac)
    out, d_image, d_grid = _value_and_grads(f, image, grid, cot)
    _assert_close(out, tout.detach().numpy().transpose(0, 2, 3, 1), "values")
    _assert_close(d_image, ti.grad.numpy().transpose(0, 2, 3, 1), "d image")
    _assert_close(d_grid, tg.grad.numpy(), "d grid")
