"""Figures of the co-localisation run (:mod:`stn_jax.coloc_train`) and the data they are drawn from.

As each (variant, class) pair finishes, :func:`save_figure_data` keeps what its figures need in
``figure_data/<variant>_<class>.npz``: the first ``num_examples`` images with their true and predicted boxes
(normalised ``(x0, y0, x1, y1)``, see :mod:`stn_jax.data.colocalisation`), the loss per step and the success
rate. At the end of a run :func:`load_figure_data` reads them back for every pair, also those of earlier,
interrupted sessions, and :func:`write_figures` draws ``boxes_<variant>.png`` and ``loss_curves.png``.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from stn_jax import coords

_FIGURE_FIELDS = ("images", "true_boxes", "pred_boxes", "losses", "success")


def _figure_data_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, "figure_data", name.replace("/", "_") + ".npz")


def save_figure_data(workdir: str, name: str, out: dict, num_examples: int) -> None:
  """Keeps what the figures need of one (variant, class) pair, so a resumed run can draw every pair.

  Args:
    workdir: the run directory.
    name: the pair, ``'<variant>/<class>'``.
    out: the output of :func:`stn_jax.coloc_train.train_one` (``images``, ``true_boxes``, ``pred_boxes``,
      ``losses`` and ``success`` are kept).
    num_examples: how many of the images (and their boxes) to keep.
  """
  path = _figure_data_path(workdir, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arrays = {k: np.asarray(out[k]) for k in _FIGURE_FIELDS}
  for k in ("images", "true_boxes", "pred_boxes"):
    arrays[k] = arrays[k][:num_examples]
  tmp = path + ".tmp.npz"  # renamed into place: a kill mid-write leaves no damaged file
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def load_figure_data(workdir: str, names: list[str]) -> dict:
  """Reads back the figure data of the pairs in ``names`` that kept it (see :func:`save_figure_data`).

  Args:
    workdir: the run directory.
    names: the pairs, ``'<variant>/<class>'``.

  Returns:
    ``{name: {field: array}}``, without the pairs that kept nothing.
  """
  examples = {}
  for name in names:
    path = _figure_data_path(workdir, name)
    if os.path.exists(path):
      with np.load(path) as data:
        examples[name] = {k: data[k] for k in _FIGURE_FIELDS}
  return examples


def write_figures(workdir: str, examples: dict, num_examples: int) -> None:
  """Draws ``boxes_<variant>.png`` (true box green, predicted red, per class) and ``loss_curves.png``.

  Args:
    workdir: the run directory (the figures are written there).
    examples: the output of :func:`load_figure_data`.
    num_examples: the figure's columns (pairs that kept fewer images leave the rest blank).
  """
  import matplotlib  # noqa: PLC0415 (lazy: only for figures)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  def corners(box, size):
    # Normalised box -> pixel-edge coordinates of imshow (pixel centres at integers).
    lo = np.asarray(coords.normalized_to_pixel(jnp.asarray(box[:2]), (size, size)))
    hi = np.asarray(coords.normalized_to_pixel(jnp.asarray(box[2:]), (size, size)))
    return lo, hi

  variants = sorted({name.split("/")[0] for name in examples})
  for variant in variants:
    names = [n for n in examples if n.startswith(variant + "/")]
    fig, axes = plt.subplots(
      len(names), num_examples, figsize=(1.4 * num_examples, 1.4 * len(names)), squeeze=False
    )
    for row, name in enumerate(names):
      out = examples[name]
      size = out["images"].shape[1]
      for col in range(num_examples):
        ax = axes[row, col]
        if col >= len(out["images"]):  # a pair finished with a smaller figure count kept fewer examples
          ax.axis("off")
          continue
        ax.imshow(out["images"][col, ..., 0], cmap="gray", vmin=0, vmax=1)
        for box, color in ((out["true_boxes"][col], "lime"), (out["pred_boxes"][col], "red")):
          lo, hi = corners(box, size)
          ax.add_patch(plt.Rectangle(lo, *(hi - lo), fill=False, color=color, lw=1))
        ax.set_xticks([])
        ax.set_yticks([])
      axes[row, 0].set_ylabel(f"{name}\n{100 * out['success']:.0f}%", fontsize=7)
    fig.suptitle(f"co-localisation {variant.upper()}: true box (green), predicted (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, f"boxes_{variant}.png"), dpi=100)
    plt.close(fig)
  fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 3.5), squeeze=False)
  for ax, variant in zip(axes[0], variants, strict=True):
    for name, out in examples.items():
      if name.startswith(variant + "/"):
        steps = np.arange(1, len(out["losses"]) + 1)
        ax.plot(steps, out["losses"], lw=0.8, label=f"class {name.split('/')[1]}")
    ax.set_title(f"{variant.upper()}: hinge loss on the chosen restarts' crops", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over pairs)")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "loss_curves.png"), dpi=110)
  plt.close(fig)
