r"""What the machine is, and whether stn_jax computes PyTorch's numbers there (device_checks' first stage).

  python3 experiments/gpu/env_check.py --out=/tmp/env.json [--torch_device=auto] [--cases=mnist,cub_crop]

Prints and writes (JSON) ``nvidia-smi``'s report, the Python, jax/jaxlib, flax, optax, torch, Kornia,
dm-pix and ml_collections versions, the JAX backend and devices, torch's CUDA device, and a parity check
on the benchmark's own inputs (``bench_sampler.make_inputs``): for each case the sampler output and the
gradient to theta of ``sum(out * cotangent)`` from stn_jax (JAX's default backend) and from torch
``F.affine_grid`` + ``F.grid_sample`` (on ``--torch_device``), as ``|a - b| / |b|`` (Frobenius norms).
Float32 on both sides, so a right sampler lands near 1e-6 (output) and 1e-5 (gradient, a sum over many
pixels); ``parity_ok`` is every error under 1e-3. Each part is guarded: a failure is recorded, the rest runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
PACKAGES = (
  *("numpy", "jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "chex"),
  *("torch", "kornia", "dm_pix"),
)
PARITY_TOLERANCE = 1e-3


def _error(e: BaseException) -> str:
  return f"{type(e).__name__}: {e}"


def nvidia_smi() -> str | None:
  """``nvidia-smi``'s report (GPU, driver, CUDA version, clocks, memory), or None where there is none."""
  try:
    return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return None


def versions() -> dict:
  """``{package: version or None}`` for :data:`PACKAGES` (None: not importable here)."""
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception:  # noqa: BLE001 (any import failure means "not usable here")
      out[name] = None
  return out


def devices(torch_device: str) -> dict:
  """The JAX backend and devices, and torch's view of CUDA (name, capability, cuDNN, TF32 settings)."""
  import jax  # noqa: PLC0415

  info = {
    "jax_backend": jax.default_backend(),
    "jax_devices": [str(d) for d in jax.devices()],
    "jax_device_kind": jax.devices()[0].device_kind,
  }
  try:
    import torch  # noqa: PLC0415

    info["torch_cuda_available"] = torch.cuda.is_available()
    info["torch_device"] = torch_device
    if torch_device != "cpu":
      info["torch_device_name"] = torch.cuda.get_device_name(torch.device(torch_device))
      info["torch_device_capability"] = list(torch.cuda.get_device_capability(torch.device(torch_device)))
      info["torch_cuda_version"] = torch.version.cuda
      info["cudnn_version"] = torch.backends.cudnn.version()
      info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
      info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
  except ImportError as e:
    info["torch_error"] = _error(e)
  return info


def parity(case_names, torch_device: str) -> dict:
  """Relative errors stn_jax vs torch for the output and the gradient to theta, per case."""
  import bench_sampler  # noqa: PLC0415 (experiments/benchmarks, put on the path by main)
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  import torch  # noqa: PLC0415
  import torch.nn.functional as F  # noqa: PLC0415

  from stn_jax import sampling, transforms, warp  # noqa: PLC0415

  rel = lambda a, b: float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))
  out = {}
  for name in case_names:
    case = bench_sampler.CASES[name]
    image, theta, params, cot = bench_sampler.make_inputs(case)
    ho, wo = case["out_shape"]
    if case.get("crop"):
      sample = lambda i, p, case=case: warp.warp(i, p, "attention", case["out_shape"])
      arg = params
    else:
      sample = lambda i, t, case=case: sampling.grid_sample(i, transforms.affine_grid(t, case["out_shape"]))
      arg = theta
    loss = lambda i, a, sample=sample, cot=cot: jnp.sum(sample(i, a) * cot)
    j_out = np.asarray(jax.jit(sample)(jnp.asarray(image), jnp.asarray(arg)))
    j_grad = np.asarray(jax.jit(jax.grad(loss, argnums=1))(jnp.asarray(image), jnp.asarray(arg)))

    on = lambda x: torch.tensor(x).contiguous().to(torch_device)
    ti, tc = on(image.transpose(0, 3, 1, 2)), on(cot.transpose(0, 3, 1, 2))
    tt = on(theta).requires_grad_(True)
    grid = F.affine_grid(tt, (case["batch"], case["channels"], ho, wo), align_corners=False)
    t_out = F.grid_sample(ti, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    (t_out * tc).sum().backward()
    t_out = t_out.detach().cpu().numpy().transpose(0, 2, 3, 1).astype(np.float64)
    t_grad = tt.grad.cpu().numpy().astype(np.float64)
    if case.get("crop"):  # d/d(s, tx, ty) from d/dtheta: theta = [[s, 0, tx], [0, s, ty]]
      t_grad = np.stack([t_grad[:, 0, 0] + t_grad[:, 1, 1], t_grad[:, 0, 2], t_grad[:, 1, 2]], -1)
    out[name] = {"output_rel_error": rel(j_out, t_out), "theta_grad_rel_error": rel(j_grad, t_grad)}
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True, help="the JSON file to write")
  p.add_argument("--torch_device", default="auto", choices=("auto", "cpu", "cuda"))
  p.add_argument("--cases", default="mnist,cub_crop", help="bench_sampler cases for the parity check")
  args = p.parse_args(argv)
  report = {}

  def part(name, fn):
    try:
      report[name] = fn()
    except Exception as e:  # noqa: BLE001 (recorded; the other parts still run)
      report[name] = {"error": _error(e), "traceback": traceback.format_exc()}
    shown = report[name] if isinstance(report[name], str) else json.dumps(report[name], indent=1)
    print(f"== {name}\n{shown}", flush=True)

  part("nvidia_smi", nvidia_smi)
  part("versions", versions)
  sys.path.insert(0, os.path.join(_ROOT, "experiments", "benchmarks"))
  sys.path.insert(0, _ROOT)
  torch_device = "cpu"
  try:
    import torch_models  # noqa: PLC0415

    torch_device = torch_models.resolve_device(args.torch_device)
  except Exception as e:  # noqa: BLE001
    report["torch_device_error"] = _error(e)
  part("devices", lambda: devices(torch_device))
  part("parity", lambda: parity([c for c in args.cases.split(",") if c], torch_device))
  checked = report["parity"]
  ran = bool(checked) and "error" not in checked
  report["parity_ok"] = ran and all(max(v.values()) < PARITY_TOLERANCE for v in checked.values())
  report["parity_tolerance"] = PARITY_TOLERANCE
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1, default=str)
  print(f"parity_ok: {report['parity_ok']}; wrote {args.out}", flush=True)


if __name__ == "__main__":
  main()
