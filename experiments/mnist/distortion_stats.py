"""How destructive is each distortion? Ink kept and blank digits in the fixed distorted test sets.

Command (from the repository root):

  python experiments/mnist/distortion_stats.py [--num 10000] [--seed 0]

For each variant, the "ink" of a test image is the sum of its pixels; the ratio to the ink of the clean 28x28
digit measures how much of the digit survives (scaling shrinks it by about ``s**2``; clipping at the canvas
edge and strong projective compression remove more). A "blank" digit keeps under 5% of its ink: its label
cannot be read from the image, so it bounds the error any model can reach from below. TC is skipped (its
digit is an exact copy and clutter only adds ink). The numbers go to stdout as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import numpy as np  # noqa: E402

from stn_jax.data import distortions, mnist  # noqa: E402

BLANK_FRACTION = 0.05


def stats(variant: str, num: int, seed: int) -> dict[str, float]:
  """Ink-ratio statistics of the first ``num`` digits of ``test_set(variant, seed)``."""
  clean = mnist.load("test", source="idx")[0][:num].astype(np.float64).sum(axis=(1, 2)) / 255.0
  images, _ = distortions.test_set(variant, seed, num=num)
  ratio = images.astype(np.float64).sum(axis=(1, 2, 3)) / clean
  return {
    "median": float(np.median(ratio)),
    "p1": float(np.percentile(ratio, 1)),
    "below_25": float(np.mean(ratio < 0.25)),
    "blank": float(np.mean(ratio < BLANK_FRACTION)),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num", type=int, default=10_000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  print(f"test_set(variant, seed={args.seed}), first {args.num} digits; ink ratio = distorted / clean ink")
  print("| variant | median ink ratio | 1st percentile | share < 0.25 | blank share (< 0.05) |")
  print("|---|---:|---:|---:|---:|")
  for variant in ("r", "rts", "p", "e"):
    s = stats(variant, args.num, args.seed)
    shares = f"{100 * s['below_25']:.2f}% | {100 * s['blank']:.2f}%"
    print(f"| {variant} | {s['median']:.3f} | {s['p1']:.3f} | {shares} |")


if __name__ == "__main__":
  main()
