r"""Where a CNN training step goes on CPU: the classifier's convolutions, pass by pass, JAX vs PyTorch.

  JAX_PLATFORMS=cpu python experiments/benchmarks/bench_conv.py --tag=cpu

times, for each convolution of the Table 1 CNN (RTS: conv 9x9 1->32 at 42x42, conv 7x7 32->64 at 21x21; TC:
the same at 60x60 and 30x30; batch 256, 'SAME' padding, NHWC), the median wall time of

* JAX (``lax.conv_general_dilated`` as ``nnx.Conv`` calls it): the forward pass, the input gradient and the
  kernel gradient, each jitted on its own (the two gradients as ``jax.vjp`` gives them);
* ``kernel_grad_scan``: the same kernel gradient written as a ``lax.scan`` over the ``k*k`` filter offsets,
  one ``(C_in, N*H*W) @ (N*H*W, C_out)`` matmul per offset (a candidate replacement; checked against XLA's);
* PyTorch (``F.conv2d``, NCHW, ``torch.set_num_threads(--threads)``): forward alone, and forward + both
  gradients.

Repeats are interleaved (every case once per round) and medians reported; results go to
``results/conv_<tag>.{json,md}`` with the hardware, versions, commit and load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sampler  # noqa: E402

from stn_jax import provenance  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
# (name, spatial size, C_in, kernel, C_out): the two convolutions of the CNN per distortion.
LAYERS = {
  "rts": [("conv1", 42, 1, 9, 32), ("conv2", 21, 32, 7, 64)],
  "tc": [("conv1", 60, 1, 9, 32), ("conv2", 30, 32, 7, 64)],
}
_DIMS = ("NHWC", "HWIO", "NHWC")


def conv(x, w):
  """'SAME' convolution, stride 1, channels-last: what ``nnx.Conv`` runs."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DIMS)


def kernel_grad_scan(x, g, k):
  """``d sum(conv(x, w) * g) / d w`` as ``k*k`` matmuls, one per filter offset, in a ``lax.scan``."""
  n, h, w, c_in = x.shape
  lo, hi = (k - 1) // 2, k // 2  # XLA's 'SAME' split
  padded = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  g2 = g.reshape(-1, g.shape[-1])

  def one_offset(_, offset):
    window = jax.lax.dynamic_slice(padded, (0, offset // k, offset % k, 0), (n, h, w, c_in))
    return None, window.reshape(-1, c_in).T @ g2

  return jax.lax.scan(one_offset, None, jnp.arange(k * k))[1].reshape(k, k, c_in, g.shape[-1])


def jax_cases(size, c_in, k, c_out, batch, seed=0):
  """Zero-argument callables per JAX pass, and the relative error of ``kernel_grad_scan``."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((batch, size, size, c_in), np.float32))
  w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out), np.float32))
  g = jnp.asarray(rng.standard_normal((batch, size, size, c_out), np.float32))
  fwd = jax.jit(conv)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
  kernel_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
  scan_grad = jax.jit(kernel_grad_scan, static_argnums=2)
  reference = kernel_grad(x, w, g)
  error = float(jnp.max(jnp.abs(scan_grad(x, g, k) - reference)) / jnp.max(jnp.abs(reference)))
  fns = {
    "jax fwd": lambda: fwd(x, w),
    "jax input_grad": lambda: input_grad(x, w, g),
    "jax kernel_grad": lambda: kernel_grad(x, w, g),
    "jax kernel_grad_scan": lambda: scan_grad(x, g, k),
  }
  return {name: (lambda f=f: jax.block_until_ready(f())) for name, f in fns.items()}, error


def torch_cases(size, c_in, k, c_out, batch, threads, seed=0):
  """Zero-argument callables: PyTorch forward, and forward + input and kernel gradients."""
  import torch
  import torch.nn.functional as F

  torch.set_num_threads(threads)
  gen = torch.Generator().manual_seed(seed)
  x = torch.randn(batch, c_in, size, size, generator=gen)
  w = torch.randn(c_out, c_in, k, k, generator=gen)
  g = torch.randn(batch, c_out, size, size, generator=gen)

  def forward():
    with torch.no_grad():
      return F.conv2d(x, w, padding="same")

  def forward_backward():
    xi, wi = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    F.conv2d(xi, wi, padding="same").backward(g)
    return wi.grad

  return {"torch fwd": forward, "torch fwd+input_grad+kernel_grad": forward_backward}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--variants", default="rts,tc", help=f"comma-separated, of {','.join(LAYERS)}")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  p.add_argument("--no_torch", dest="torch", action="store_false")
  p.add_argument("--tag", default="cpu")
  p.add_argument("--out_dir", default=os.path.join(_HERE, "results"))
  args = p.parse_args(argv)

  variants = args.variants.split(",")
  unknown = [v for v in variants if v not in LAYERS]
  if unknown:
    p.error(f"unknown variants {unknown}; choose from {sorted(LAYERS)}")
  started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  load_start = os.getloadavg()
  cases, errors, flops = {}, {}, {}
  for variant in variants:
    for name, size, c_in, k, c_out in LAYERS[variant]:
      key = f"{variant} {name} {k}x{k} {c_in}->{c_out} at {size}x{size}"
      fns, errors[key] = jax_cases(size, c_in, k, c_out, args.batch)
      if args.torch:
        fns.update(torch_cases(size, c_in, k, c_out, args.batch, args.threads))
      flops[key] = 2 * args.batch * size * size * k * k * c_in * c_out / 1e9
      for fn in fns.values():  # compile and warm up
        fn()
      cases[key] = fns
  flat = {(key, name): fn for key, fns in cases.items() for name, fn in fns.items()}
  times, _ = bench_sampler.time_interleaved(flat, args.repeats)
  medians = {key: {name: float(np.median(times[key, name])) for name in fns} for key, fns in cases.items()}
  command = "JAX_PLATFORMS=cpu python experiments/benchmarks/bench_conv.py " + " ".join(argv or sys.argv[1:])
  info = {
    "command": command.strip(),
    "commit": provenance.git_commit(),
    "started": started,
    "loadavg_start": load_start,
    "loadavg_end": os.getloadavg(),
    "cpu": provenance.cpu_model(),
    "cpus": os.cpu_count(),
    "jax": jax.__version__,
    "jax_devices": [str(d) for d in jax.devices()],
    "batch": args.batch,
    "repeats": args.repeats,
    "torch_threads": args.threads if args.torch else None,
  }
  if args.torch:
    import torch

    info["torch"] = torch.__version__
  result = {"info": info, "median_ms": medians, "gflop_per_pass": flops, "kernel_grad_scan_rel_error": errors}
  os.makedirs(args.out_dir, exist_ok=True)
  stem = os.path.join(args.out_dir, f"conv_{args.tag}")
  with open(stem + ".json", "w") as f:
    json.dump(result, f, indent=1)
  names = list(next(iter(medians.values())))
  torch_note = f", torch {info['torch']} ({args.threads} threads)" if args.torch else ""
  lines = [
    "# Convolution passes, JAX vs PyTorch",
    "",
    f"Command: `{info['command']}` (commit {info['commit']}), started {started}; {info['cpus']} CPUs "
    f"({info['cpu']}), jax {info['jax']}{torch_note}; batch {args.batch}; "
    f"load average {load_start[0]:.2f} -> {info['loadavg_end'][0]:.2f}.",
    "",
    "Median ms over interleaved rounds. GFLOP is one pass (forward, or one of the two gradients).",
    "",
    "| layer | GFLOP | " + " | ".join(names) + " | scan rel. error |",
    "|---|---:|" + "---:|" * len(names) + "---:|",
  ]
  for key, per in medians.items():
    cells = " | ".join(f"{per[n]:.1f}" for n in names)
    lines.append(f"| {key} | {flops[key]:.1f} | {cells} | {errors[key]:.1e} |")
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
  main()
