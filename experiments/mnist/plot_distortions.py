"""Figure of distorted-MNIST samples: one row per variant (R, RTS, P, E, TC), drawn from the fixed test sets.

Command (from the repository root):

  python experiments/mnist/plot_distortions.py [--out experiments/mnist/figures/distortion_samples.png]

The top row shows the first ``--cols`` MNIST test digits; each further row shows the same digits in
``distortions.test_set(variant, seed=0)``, so the figure is the same on every run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stn_jax.data import distortions, mnist  # noqa: E402

_NAMES = {"r": "R (rotated)", "rts": "RTS", "p": "P (projective)", "e": "E (elastic)", "tc": "TC (cluttered)"}


def plot(out_path: pathlib.Path, cols: int = 10, seed: int = 0) -> None:
  """Writes the figure to ``out_path``.

  Args:
    out_path: PNG path (its folder is created).
    cols: distorted samples per row.
    seed: test-set seed.
  """
  digits, labels = mnist.load("test", source="idx")
  variants = list(distortions.VARIANTS)
  # squeeze=False keeps axes 2-D (rows, cols) for --cols 1 too.
  fig, axes = plt.subplots(
    len(variants) + 1, cols, figsize=(1.2 * cols, 1.3 * (len(variants) + 1)), squeeze=False
  )
  for c in range(cols):
    axes[0, c].imshow(digits[c], cmap="gray", vmin=0, vmax=255)
    axes[0, c].set_title(f"test #{c}: {int(labels[c])}", fontsize=7)
  axes[0, 0].set_ylabel("original\n28x28", fontsize=8)
  for r, variant in enumerate(variants, start=1):
    images, _ = distortions.test_set(variant, seed, num=cols)
    side = distortions.VARIANTS[variant]
    axes[r, 0].set_ylabel(f"{_NAMES[variant]}\n{side}x{side}", fontsize=8)
    for c in range(cols):
      axes[r, c].imshow(images[c, ..., 0], cmap="gray", vmin=0, vmax=1)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(
    f"Distorted MNIST test digits (test_set seed {seed}), each shown at its own canvas size", fontsize=9
  )
  fig.tight_layout()
  out_path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out_path, dpi=110)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  default = pathlib.Path(__file__).resolve().parent / "figures" / "distortion_samples.png"
  parser.add_argument("--out", type=pathlib.Path, default=default)
  parser.add_argument("--cols", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  plot(args.out, args.cols, args.seed)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
