"""The contenders of ``bench_sampler.py``: one sampling path per library, as zero-argument callables.

Each library does the same end-to-end user path (``bench_sampler.py``'s docstring lists them): affine theta
-> grid -> bilinear sample, or the attention crop for the crop cases. JAX contenders are compiled ahead of
time for one task (``fwd``, ``bwd_theta``, ``bwd_both``) and block until their result is ready; PyTorch
contenders (``torch``, ``kornia``) run on the torch device and end with a CUDA synchronise there.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp

from stn_jax import coords, sampling, separable, transforms, warp

# Every library, in the order of the results table; the JAX ones, in the order they are timed.
LIBS = ("stn_jax", "baseline", "torch", "kornia", "dm_pix", "map_coordinates")
JAX_LIBS = ("stn_jax", "baseline", "dm_pix", "map_coordinates")
CROP_PREFIX = "stn_jax/"  # + a separable method: the crop through separable_sample(..., method=...)


def _jax_task(sample, task, image, theta, cot):
  """Compiled JAX callable for ``task`` given ``sample(image, theta) -> (B, H', W', C)``."""
  loss = lambda i, t: jnp.sum(sample(i, t) * cot)
  fn = {
    "fwd": jax.jit(sample),
    "bwd_theta": jax.jit(jax.grad(loss, argnums=1)),
    "bwd_both": jax.jit(jax.grad(loss, argnums=(0, 1))),
  }[task]
  compiled = fn.lower(image, theta).compile()
  return lambda: jax.block_until_ready(compiled(image, theta))


def _stn_path(pkg, case):
  """``(f(image, arg), arg)``: the issue's stn_jax path for ``case`` with the modules of ``pkg``."""
  out_shape = case["out_shape"]
  if case.get("crop"):
    return lambda i, p: pkg.warp.warp(i, p, "attention", out_shape), "params"
  return lambda i, t: pkg.sampling.grid_sample(i, pkg.transforms.affine_grid(t, out_shape)), "theta"


def jax_libs(case, task, image, theta, params, cot, libs, baseline=None):
  """The JAX contenders named in ``libs`` as zero-argument callables.

  ``baseline``: a :func:`bench_sampler.load_baseline` namespace; ``stn_jax/<method>`` entries of ``libs``
  (crop cases only) sample the attention crop with ``separable.separable_sample(..., method=<method>)``.
  """
  out_shape = case["out_shape"]
  image, cot = jnp.asarray(image), jnp.asarray(cot)
  current = types.SimpleNamespace(sampling=sampling, transforms=transforms, warp=warp)
  stn, which = _stn_path(current, case)
  arg = jnp.asarray(params if which == "params" else theta)
  in_hw = case["in_shape"]

  def pixel_grid(t):
    grid = transforms.affine_grid(t, out_shape)
    return coords.normalized_to_pixel(grid, in_hw)  # (B, H', W', 2) as (x, y)

  def dm_pix_sample(i, t):
    import dm_pix

    pix = pixel_grid(t)
    yx = jnp.stack([pix[..., 1], pix[..., 0]], axis=0)  # (2, H', W')
    per_channel = lambda img2d, c: dm_pix.flat_nd_linear_interpolate(img2d, c)
    per_image = lambda img, c: jax.vmap(per_channel, in_axes=(-1, None), out_axes=-1)(img, c)
    return jax.vmap(per_image, in_axes=(0, 1))(i, yx)

  def map_coordinates_sample(i, t):
    pix = pixel_grid(t)
    per_channel = lambda img2d, p: jax.scipy.ndimage.map_coordinates(
      img2d, [p[..., 1], p[..., 0]], order=1, mode="constant"
    )
    per_image = lambda img, p: jax.vmap(per_channel, in_axes=(-1, None), out_axes=-1)(img, p)
    return jax.vmap(per_image)(i, pix)

  def separable_method(method):
    family = transforms.get_family("attention")
    return lambda i, p: separable.separable_sample(i, *family.axes(p, out_shape), method=method)

  jt = jnp.asarray(theta)
  builders = {
    "stn_jax": lambda: _jax_task(stn, task, image, arg, cot),
    "baseline": lambda: _jax_task(_stn_path(baseline, case)[0], task, image, arg, cot),
    "dm_pix": lambda: _jax_task(dm_pix_sample, task, image, jt, cot),
    "map_coordinates": lambda: _jax_task(map_coordinates_sample, task, image, jt, cot),
  }
  if case.get("crop"):
    for lib in libs:
      if lib.startswith(CROP_PREFIX):
        method = lib[len(CROP_PREFIX) :]
        builders[lib] = lambda m=method: _jax_task(separable_method(m), task, image, arg, cot)
  return {lib: builders[lib]() for lib in libs if lib in builders and (lib != "baseline" or baseline)}


def torch_libs(case, task, image, theta, cot, libs, device="cpu"):
  """The PyTorch contenders (torch, kornia) named in ``libs`` as zero-argument callables on ``device``."""
  import torch
  import torch.nn.functional as F
  import torch_models

  torch.set_num_threads(2)
  b, c = case["batch"], case["channels"]
  (h, w), (ho, wo) = case["in_shape"], case["out_shape"]
  on = lambda x: torch.tensor(x).contiguous().to(device)
  ti = on(image.transpose(0, 3, 1, 2))
  tt = on(theta)
  tc = on(cot.transpose(0, 3, 1, 2))
  # theta (normalised, target -> source) as a pixel-space matrix source -> target, kornia's convention.
  to_norm = torch.tensor([[2 / wo, 0, 1 / wo - 1], [0, 2 / ho, 1 / ho - 1], [0, 0, 1]], device=device)
  to_pix = torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], device=device)
  bottom = torch.tensor([[0.0, 0.0, 1.0]], device=device).expand(b, 1, 3)

  def torch_sample(i, t):
    grid = F.affine_grid(t, (b, c, ho, wo), align_corners=False)
    return F.grid_sample(i, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

  def kornia_sample(i, t):
    from kornia.geometry.transform import warp_affine

    target_to_source = to_pix @ torch.cat([t, bottom], dim=1) @ to_norm
    m = torch.linalg.inv(target_to_source)[:, :2]
    return warp_affine(i, m, (ho, wo), mode="bilinear", padding_mode="zeros", align_corners=False)

  def runner(sample):
    def run():
      if task == "fwd":
        with torch.no_grad():
          out = sample(ti, tt)
      else:
        i = ti.clone().requires_grad_(task == "bwd_both")
        t = tt.clone().requires_grad_(True)
        (sample(i, t) * tc).sum().backward()
        out = t.grad
      torch_models.synchronize(device)
      return out

    return run

  fns = {"torch": runner(torch_sample), "kornia": runner(kornia_sample)}
  return {k: v for k, v in fns.items() if k in libs}
