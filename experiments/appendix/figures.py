r"""Figures of trained addition and 3D runs (the generic per-run figure draws one-channel 2D inputs only).

  python experiments/appendix/figures.py addition /tmp/stn_appendix/addition/2xst_fcn_aff out.png
  python experiments/appendix/figures.py volume3d /tmp/stn_appendix/volume3d/st_cnn out.png

addition: per test pair, both channels, each transformer's sampling grid drawn on them, and its output (both
warped channels). volume3d: the input volume's projections along depth, height and width, the ST output's
depth projection (the digit should come out upright and facing the viewer) and the true / predicted labels.
The experiment named must be the run's (its ``config.json``'s ``data.name``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stn_jax import coloc_train, data  # noqa: E402


def _grid_lines(ax, grid, size, step=3):
  """Draws every ``step``-th row and column of a normalised grid ``(H', W', 2)`` on a ``size`` image."""
  pix = (np.asarray(grid) + 1) * size / 2 - 0.5
  for r in range(0, pix.shape[0], step):
    ax.plot(pix[r, :, 0], pix[r, :, 1], lw=0.4, color="red")
  for c in range(0, pix.shape[1], step):
    ax.plot(pix[:, c, 0], pix[:, c, 1], lw=0.4, color="red")
  ax.set_xlim(-0.5, size - 0.5)
  ax.set_ylim(size - 0.5, -0.5)


def addition_figure(model, images, labels, path, n=4):
  """One row per test pair: both channels, then per transformer its grid on each channel and its output.

  Args:
    model: a trained addition model (``stn_jax.models.addition``); baselines give only the input columns.
    images: ``(N, 42, 42, 2)`` test pairs in [0, 1].
    labels: ``(N,)`` true sums.
    path: the PNG to write.
    n: number of pairs (rows).
  """
  logits, aux = model(images[:n], return_aux=True)
  branches = aux.get("transformers", [])
  cols = 2 + 4 * len(branches)
  fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.4 * n), squeeze=False)
  for i in range(n):
    row = axes[i]
    for c in range(2):
      row[c].imshow(images[i, ..., c], cmap="gray", vmin=0, vmax=1)
      row[c].set_title(
        f"ch{c}" + (f" y={labels[i]} p={int(np.argmax(logits[i]))}" if c == 0 else ""), fontsize=6
      )
    for b, branch in enumerate(branches):
      for c in range(2):
        ax = row[2 + 4 * b + c]
        ax.imshow(images[i, ..., c], cmap="gray", vmin=0, vmax=1)
        _grid_lines(ax, branch["grid"][i], images.shape[1])
        ax.set_title(f"ST{b + 1} grid ch{c}", fontsize=6)
        out = row[4 + 4 * b + c]
        out.imshow(np.asarray(branch["output"][i, ..., c]), cmap="gray", vmin=0, vmax=1)
        out.set_title(f"ST{b + 1} out ch{c}", fontsize=6)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def volume_figure(model, volumes, labels, path, n=6):
  logits, aux = model(volumes[:n], return_aux=True)
  fig, axes = plt.subplots(n, 5, figsize=(7, 1.5 * n), squeeze=False)
  for i in range(n):
    v = volumes[i, ..., 0]
    views = [v.mean(0), v.mean(1), v.mean(2), np.asarray(aux["projection"][i, ..., 0])]
    titles = ["input: depth proj.", "height proj.", "width proj.", "classifier input"]
    if "st" in aux:
      views.append(np.asarray(aux["st"]["output"][i, ..., 0]).max(0))
      titles.append("ST output: max proj.")
    for ax, img, t in zip(axes[i], views, titles, strict=False):
      ax.imshow(img, cmap="gray")
      ax.set_title(t, fontsize=6)
    axes[i, 0].set_ylabel(f"y={labels[i]} p={int(np.argmax(logits[i]))}", fontsize=7)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def check_experiment(workdir: str, experiment: str) -> None:
  """Raises ``ValueError`` unless the run in ``workdir`` is of ``experiment`` (each figure needs its data).

  Args:
    workdir: a ``stn_jax.main`` run directory (holds ``config.json``).
    experiment: ``'addition'`` or ``'volume3d'``.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir}: no config.json (not a stn_jax.main run directory?).")
  with open(path) as f:
    task = (json.load(f).get("data") or {}).get("name")
  if task != experiment:
    raise ValueError(f"{workdir} is a {task!r} run (data.name in its config.json), not {experiment!r}.")


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("experiment", choices=("addition", "volume3d"))
  parser.add_argument("workdir")
  parser.add_argument("out")
  args = parser.parse_args()
  try:
    check_experiment(args.workdir, args.experiment)
  except ValueError as e:
    parser.error(str(e))
  model, config = coloc_train.load_trained_model(args.workdir)
  config.data.test_size = 8
  images, labels = data.get_task(config.data).test_set()
  draw = addition_figure if args.experiment == "addition" else volume_figure
  draw(model, np.asarray(images), np.asarray(labels), args.out)


if __name__ == "__main__":
  main()
