r"""Probe of the co-localisation restart choice (selection only, no gradient steps), for tuning and diagnosis.

For each ``(variant, class)`` and each settings dict (JSON overrides of ``configs/coloc.py``), builds the
same data, restarts, random negatives and candidates as ``stn_jax.coloc_train.train_one`` (same keys) and
prints ``<variant><class>:<IoU > 0.5 in %>(<selection loss>/<oracle loss>)``. The *oracle* choice takes,
per image, the restart with the largest IoU with the true box; its loss says whether a failure is the
search's (oracle loss lower than the chosen one's) or the objective's (higher). The true boxes serve only
these two diagnostics, never the choice. ``--detail`` also prints, per run, the mean offset of the chosen
crops from the true centres, the class histograms of e() (argmax) of the chosen, oracle and random crops,
and writes ``<out>/<variant>_<class>.png`` (top row: the chosen crops with e()'s argmax; middle: the
oracle's; bottom: the images). ``--failing`` prints, for every image whose chosen crop has IoU <= 0.5, the
offset of the chosen crop's centre from the true one (pixels, x then y, y down), the class e() gives the
chosen and the oracle crop and its probability, and writes ``<out>/<variant><class>_failing.png`` (the
same three rows, one column per failing image). e() is the classifier run of each settings dict's
``embedding.workdir`` (default: ``configs/coloc.py``'s).

  PYTHONPATH=. python experiments/appendix/runs/coloc/probe_selection.py tc1,t2 \
      '{"embedding.temperature": 3.0}' '{"model.init_scale": 0.35}' [--detail] [--failing] [--out=/tmp/probe]
"""

from __future__ import annotations

import argparse
import json
import os

import jax.numpy as jnp
import numpy as np

import configs.coloc as coloc_config
from stn_jax import coloc_train, warp
from stn_jax.data import colocalisation as coloc_data
from stn_jax.models import colocalisation as coloc_models


def configured(overrides: dict):
  config = coloc_config.get_config("t,tc")
  for name, value in overrides.items():
    node, *parts = [config, *name.split(".")]
    for part in parts[:-1]:
      node = node[part]
    node[parts[-1]] = value
  return config


def probe(
  config, embedding, fns, variant: str, digit_class: int, detail: bool, failing: bool, out: str
) -> str:
  key = coloc_train.run_key(config, digit_class, variant)  # the same keys as the training run
  sel = coloc_train.select_restarts(config, embedding, digit_class, variant, key, fns)
  images, true_boxes, theta, emb = sel["images"], sel["true_boxes"], sel["theta_all"], sel["emb_restarts"]
  emb_random, chosen, loss = sel["emb_random"], sel["restart"], sel["selection_loss"]
  n = theta.shape[0]
  rows = jnp.arange(n)
  iou = coloc_data.box_iou(coloc_data.attention_box(theta), true_boxes[:, None])
  oracle = jnp.argmax(iou, axis=1)
  oracle_loss = coloc_models.hinge_loss(emb[rows, oracle], emb_random, margin=float(config.margin))
  line = f"{variant}{digit_class}:{100 * float(jnp.mean(iou[rows, chosen] > 0.5)):.0f}"
  line += f"({float(loss):.4f}/{float(oracle_loss):.4f})"
  half = config.data.canvas_size / 2  # pixels per normalised unit
  offset = (theta[rows, chosen, 1:] - (true_boxes[:, :2] + true_boxes[:, 2:]) / 2) * half
  if failing:
    prefix = os.path.join(out, f"{variant}{digit_class}")
    line += _failing(images, theta, emb, iou, chosen, oracle, offset, prefix)
  if not detail:
    return line
  histogram = {
    name: np.bincount(np.asarray(jnp.argmax(e, axis=-1)).ravel(), minlength=10).tolist()
    for name, e in (("chosen", emb[rows, chosen]), ("oracle", emb[rows, oracle]), ("random", emb_random))
  }
  line += f"\n  offset of chosen crops (x, y) px: mean {np.round(np.asarray(offset.mean(0)), 1).tolist()}"
  line += f", std {np.round(np.asarray(offset.std(0)), 1).tolist()}"
  line += "".join(f"\n  argmax e() {name}: {h}" for name, h in histogram.items())
  _figure(images, theta, emb, chosen, oracle, range(12), os.path.join(out, f"{variant}_{digit_class}.png"))
  return line


def _failing(images, theta, emb, iou, chosen, oracle, offset, prefix: str) -> str:
  """One line per image whose chosen crop misses the digit (IoU <= 0.5), and their figure."""
  rows = jnp.arange(theta.shape[0])
  failing = np.flatnonzero(np.asarray(iou[rows, chosen]) <= 0.5)
  lines = f"\n  {len(failing)} images at IoU <= 0.5"
  for i in failing:
    p_chosen, p_oracle = np.asarray(emb[i, chosen[i]]), np.asarray(emb[i, oracle[i]])
    lines += (
      f"\n  image {i}: IoU {float(iou[i, chosen[i]]):.2f}, offset (x, y) "
      f"({float(offset[i, 0]):+.1f}, {float(offset[i, 1]):+.1f}) px, "
      f"e() chosen: {p_chosen.argmax()} ({p_chosen.max():.2f}), "
      f"oracle (IoU {float(iou[i, oracle[i]]):.2f}): {p_oracle.argmax()} ({p_oracle.max():.2f})"
    )
  if len(failing):
    _figure(images, theta, emb, chosen, oracle, failing, f"{prefix}_failing.png", titles="index")
  return lines


def _figure(images, theta, emb, chosen, oracle, columns, path, titles: str = "class"):
  """Columns of (chosen crop, oracle crop, image) for the given image indices; crops titled by e()'s argmax
  (``titles='class'``) or the image index above the column (``'index'``)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  columns = [int(i) for i in columns]
  fig, axes = plt.subplots(3, len(columns), figsize=(1.5 * len(columns), 4.6), squeeze=False)
  for j, i in enumerate(columns):
    for row, choice in enumerate((chosen, oracle)):
      crop = warp.warp(images[i : i + 1], theta[i : i + 1, choice[i]], "attention", (28, 28))
      axes[row, j].imshow(np.asarray(crop[0, ..., 0]), cmap="gray", vmin=0, vmax=1)
      if titles == "class":
        axes[row, j].set_title(str(int(jnp.argmax(emb[i, choice[i]]))), fontsize=7)
    axes[2, j].imshow(np.asarray(images[i, ..., 0]), cmap="gray", vmin=0, vmax=1)
    if titles == "index":
      axes[0, j].set_title(f"image {i}", fontsize=7)
    for ax in axes[:, j]:
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel("chosen", fontsize=7)
  axes[1, 0].set_ylabel("oracle", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=70)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("runs", help="comma-separated <variant><class>, e.g. tc1,t2")
  parser.add_argument("settings", nargs="*", help="JSON dicts of config overrides (default: one, {})")
  parser.add_argument("--detail", action="store_true")
  parser.add_argument("--failing", action="store_true", help="list and draw the images whose crop misses")
  parser.add_argument("--out", default="/tmp/coloc_probe")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  embeddings = {}  # e() per classifier run, loaded once
  for settings in [json.loads(s) for s in args.settings] or [{}]:
    config = configured(settings)
    if config.embedding.workdir not in embeddings:
      embeddings[config.embedding.workdir] = coloc_train.make_embedding(config.embedding)
    embedding = embeddings[config.embedding.workdir]
    size = config.data.canvas_size
    _, fns = coloc_train.setup(config, embedding, (config.data.num_images, size, size, 1))
    lines = [
      probe(config, embedding, fns, r[:-1], int(r[-1]), args.detail, args.failing, args.out)
      for r in args.runs.split(",")
    ]
    print(json.dumps(settings), " ".join(lines), flush=True)


if __name__ == "__main__":
  main()
