r"""The failing images of one co-localisation run: chosen vs oracle crop, offset and e()'s top probability.

Repeats the restart choice of ``stn_jax.coloc_train.train_one`` for one ``(variant, class)`` with the
default ``configs/coloc.py`` (same keys, so the same choice as ``runs/coloc/all_classes_v2/`` at selection)
and, for every image whose chosen crop has IoU <= 0.5 with the true box, prints the offset of the chosen
crop's centre from the true centre (pixels, x then y, y down), the class e() gives the chosen crop and its
probability, and the same for the *oracle* crop (the restart with the largest IoU; a diagnostic only). Writes
``<out>/<variant><class>_failing.png``: top row the chosen crops, middle the oracle's, bottom the images.

  PYTHONPATH=. python experiments/appendix/runs/coloc/all_classes_v2/failing_crops.py t 5 [--out=DIR]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import configs.coloc as coloc_config
from stn_jax import coloc_train, warp
from stn_jax.data import colocalisation as coloc_data


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("variant", choices=("t", "tc"))
  parser.add_argument("digit_class", type=int)
  parser.add_argument("--out", default="/tmp/coloc_failing")
  args = parser.parse_args()
  config = coloc_config.get_config(args.variant)
  embedding = coloc_train.make_embedding(config.embedding)
  n, size = config.data.num_images, config.data.canvas_size
  _, fns = coloc_train.setup(config, embedding, (n, size, size, 1))
  key = coloc_train.run_key(config, args.digit_class, args.variant)
  sel = coloc_train.select_restarts(config, embedding, args.digit_class, args.variant, key, fns)
  theta, emb, chosen, boxes = sel["theta_all"], sel["emb_restarts"], sel["restart"], sel["true_boxes"]
  iou = np.asarray(coloc_data.box_iou(coloc_data.attention_box(theta), boxes[:, None]))  # (N, K)
  oracle = iou.argmax(axis=1)
  chosen = np.asarray(chosen)
  rows = np.arange(n)
  failing = np.flatnonzero(iou[rows, chosen] <= 0.5)
  centres = np.asarray((boxes[:, :2] + boxes[:, 2:]) / 2)
  print(f"{args.variant}{args.digit_class}: {len(failing)} of {n} images at IoU <= 0.5")
  for i in failing:
    offset = (np.asarray(theta[i, chosen[i], 1:]) - centres[i]) * size / 2  # normalised -> pixels
    p_chosen, p_oracle = np.asarray(emb[i, chosen[i]]), np.asarray(emb[i, oracle[i]])
    print(
      f"  image {i}: IoU {iou[i, chosen[i]]:.2f}, offset (x, y) ({offset[0]:+.1f}, {offset[1]:+.1f}) px, "
      f"e() chosen: {p_chosen.argmax()} ({p_chosen.max():.2f}), "
      f"oracle (IoU {iou[i, oracle[i]]:.2f}): {p_oracle.argmax()} ({p_oracle.max():.2f})"
    )
  if len(failing):
    _figure(sel["images"], theta, chosen, oracle, failing, args.out, f"{args.variant}{args.digit_class}")


def _figure(images, theta, chosen, oracle, failing, out, name):
  import matplotlib  # noqa: PLC0415 (lazy: only for the figure)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  os.makedirs(out, exist_ok=True)
  fig, axes = plt.subplots(3, len(failing), figsize=(1.5 * len(failing), 4.6), squeeze=False)
  for j, i in enumerate(failing):
    for row, choice in enumerate((chosen, oracle)):
      crop = warp.warp(images[i : i + 1], theta[i : i + 1, choice[i]], "attention", (28, 28))
      axes[row, j].imshow(np.asarray(crop[0, ..., 0]), cmap="gray", vmin=0, vmax=1)
    axes[2, j].imshow(np.asarray(images[i, ..., 0]), cmap="gray", vmin=0, vmax=1)
    axes[0, j].set_title(f"image {i}", fontsize=7)
    for ax in axes[:, j]:
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel("chosen", fontsize=7)
  axes[1, 0].set_ylabel("oracle", fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out, f"{name}_failing.png"), dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
