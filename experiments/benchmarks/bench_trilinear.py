r"""3D (trilinear) sampler, this tree against the package as of a commit, in one process.

  JAX_PLATFORMS=cpu PYTHONPATH=. python experiments/benchmarks/bench_trilinear.py --baseline=HEAD

For each case (batch x S^3 volume x C channels -> M^3 output, a random near-identity 3D affine theta) it
jits ``affine_grid`` + ``grid_sample`` and the gradient of ``sum(out * cotangent)`` with respect to the
volume and theta (``bwd_both``, or ``--task=bwd_theta``: theta only), with this tree's ``stn_jax`` and with
the one of ``--baseline`` (``bench_sampler.load_baseline``), and times them interleaved, alternating the
order each repeat. It prints the medians and the paired ratio (median over repeats of new / baseline), the
load-independent figure on a shared machine. Nothing is written: the numbers go where they are cited, with
this command. ``--cases=b,s,c,m;...`` replaces the default cases (the tests use a tiny one).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sampler  # noqa: E402

from stn_jax import sampling, transforms  # noqa: E402

# (batch, input side S, channels C, output side M)
CASES = ((8, 32, 1, 32), (4, 48, 1, 32), (8, 32, 3, 32))


def _parse_cases(text):
  """``"b,s,c,m;b,s,c,m"`` -> tuples of four positive ints; a clear error otherwise."""
  cases = []
  for part in text.split(";"):
    fields = part.split(",")
    if len(fields) != 4 or not all(f.strip().isdigit() and int(f) > 0 for f in fields):
      raise argparse.ArgumentTypeError(
        f"a case is four positive integers batch,side,channels,out_side; got {part!r}"
      )
    cases.append(tuple(int(f) for f in fields))
  return tuple(cases)


def _step(pkg_transforms, pkg_sampling, task, volume, theta, cot, out_side):
  """Jitted gradient of ``sum(grid_sample(volume, affine_grid(theta)) * cot)`` for ``task``."""
  out_shape = (out_side,) * 3

  def loss(v, t):
    return jnp.sum(pkg_sampling.grid_sample(v, pkg_transforms.affine_grid(t, out_shape)) * cot)

  f = jax.jit(jax.grad(loss, argnums=(0, 1) if task == "bwd_both" else 1))
  return lambda: jax.block_until_ready(f(volume, theta))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--baseline", default="HEAD", help="git commit whose stn_jax is timed alongside")
  p.add_argument("--task", default="bwd_both", choices=("bwd_both", "bwd_theta"))
  p.add_argument("--repeats", type=int, default=9)
  p.add_argument("--cases", type=_parse_cases, default=CASES, help="b,s,c,m;... (default: the three above)")
  args = p.parse_args(argv)

  base = bench_sampler.load_baseline(args.baseline)
  rng = np.random.default_rng(0)
  print(f"task {args.task}, baseline {args.baseline}, {args.repeats} repeats, load {os.getloadavg()[0]:.2f}")
  results = []
  for b, s, c, m in args.cases:
    volume = jnp.asarray(rng.random((b, s, s, s, c), np.float32))
    theta = np.eye(3, 4, dtype=np.float32)[None] * 0.9 + rng.normal(0, 0.05, (b, 3, 4)).astype(np.float32)
    cot = jnp.asarray(rng.random((b, m, m, m, c), np.float32))
    fns = {
      "new": _step(transforms, sampling, args.task, volume, jnp.asarray(theta), cot, m),
      "baseline": _step(base.transforms, base.sampling, args.task, volume, jnp.asarray(theta), cot, m),
    }
    for fn in fns.values():  # compile and warm up
      fn()
    times, _ = bench_sampler.time_interleaved(fns, args.repeats, alternate=True)
    new, old = np.asarray(times["new"]), np.asarray(times["baseline"])
    row = dict(case=(b, s, c, m), new_ms=float(np.median(new)), baseline_ms=float(np.median(old)))
    row["paired_ratio"] = float(np.median(new / old))
    results.append(row)
    print(
      f"{b} x {s}^3 x {c} -> {m}^3: new {row['new_ms']:.1f} ms, baseline {row['baseline_ms']:.1f} ms, "
      f"paired new / baseline {row['paired_ratio']:.2f}"
    )
  return results


if __name__ == "__main__":
  main()
