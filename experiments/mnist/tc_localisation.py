"""What limits a TC spatial transformer: where it looks, and what its classifier does when it looks right.

Command (from the repository root):

  python experiments/mnist/tc_localisation.py ST_WORKDIR [ST_WORKDIR ...] [--baseline CNN_WORKDIR] \
      [--num 10000]

Each ``ST_WORKDIR`` is a finished ``stn_jax.main`` run of an ST model on the cluttered ``tc`` variant (it
holds ``config.json`` and ``checkpoints/``); ``--baseline`` is a run without a transformer (the CNN) to
compare with image by image. On the first ``num`` images of the fixed TC test set, whose digit positions are
known (``distortions.test_set_params``), it reports as markdown:

* the **centring error**: distance in canvas pixels between the centre of the transformer's sampling grid
  (its mean source coordinate) and the centre of the 28 x 28 digit box (MNIST centres each digit's ink in
  its box, to about a pixel); its median and 90th / 99th percentiles, its mean (systematic) part, and the
  test error within bands of it;
* the **view**: the grid's half-extent in canvas pixels along x and y (14 = the digit box exactly), and how
  many digit boxes the view cuts (the box reaches outside the grid's axis-aligned extent);
* **oracle centring**: the test error when each image's grid is moved (same shape, same zoom) so that its
  centre is the digit box's centre plus the model's mean offset from it (the systematic part of the centring
  error, which its classifier was trained with), and the model's own classifier reads that output; also with
  the grid moved onto the box's centre itself. The gap between the model's error and the first is what the
  image-to-image centring error costs; the first against the baseline's is what the classifier does with a
  consistently placed view;
* against the baseline: the share of images both get wrong, only the ST model, only the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import stn_jax  # noqa: E402
from stn_jax.coloc_train import load_trained_model  # noqa: E402
from stn_jax.data import distortions  # noqa: E402

BANDS_PX = ((0, 2), (2, 3), (3, 5), (5, 8), (8, np.inf))


def digit_centres(num: int, seed: int) -> np.ndarray:
  """Normalised ``(x, y)`` centres of the digit boxes of the first ``num`` TC test images of ``seed``.

  The box with top-left pixel ``o`` covers pixels ``o .. o + 27``, so its centre is pixel coordinate
  ``o + 13.5``, normalised as the models sample (``align_corners=False``, :mod:`stn_jax.coords`).
  """
  side = distortions.canvas_side("tc")
  offset = distortions.test_set_params("tc", seed, num=num)["offset"].astype(np.float32)
  centre_px = offset + (distortions.DIGIT_SIDE - 1) / 2
  return np.asarray(stn_jax.pixel_to_normalized(centre_px, (side, side), align_corners=False), np.float64)


def evaluate(workdir: str, num: int, batch: int = 500):
  """Restores the TC run in ``workdir`` and runs it on the first ``num`` images of its test set.

  Returns ``(name, test_seed, labels, run)``; ``run`` holds per image the predicted class ``'pred'`` and,
  for an ST model, the grid's normalised centre ``'centre'`` and half-extent ``'half'`` (x, y), the digit
  box's centre ``'true'``, and the predictions with the grid moved (same shape) so that its centre is the
  box's centre plus the model's mean offset from it (``'oracle'``: only the image-to-image part of the
  centring error removed, the systematic part its classifier was trained with kept) or exactly the box's
  centre (``'oracle_box'``).
  """
  model, config = load_trained_model(workdir)
  if config.data.get("name") != "mnist" or config.data.get("variant") != "tc":
    raise ValueError(f"{workdir}: not a run on the 'tc' variant of MNIST (data {config.data.to_dict()}).")
  if config.data.get("offcentre_fraction", 0.0):
    raise ValueError(f"{workdir}: trained with the off-centre class; its test set is not the TC one.")
  test_seed = int(config.data.get("test_seed", 0))
  images, labels = distortions.test_set("tc", test_seed, num=num)
  batches = [jnp.asarray(images[i : i + batch]) for i in range(0, num, batch)]
  if not hasattr(model, "st"):
    pred = np.concatenate([np.argmax(np.asarray(model(x)), -1) for x in batches])
    return _display(workdir), test_seed, labels, {"pred": pred}

  def read(x, grid, target):  # the classifier on the grid moved, same shape, to centre on target
    centre = grid.reshape(len(grid), -1, 2).mean(axis=1)
    moved = grid + (target - centre)[:, None, None, :]
    sampled = stn_jax.grid_sample(x, jnp.asarray(moved, jnp.float32), align_corners=False)
    return np.argmax(np.asarray(model.classifier(sampled)), -1)

  preds, grids = [], []  # the grids are kept (float32, 72 MB for 10,000 TC images) for the oracle pass
  for x in batches:
    logits, aux = model(x, return_aux=True)
    preds.append(np.argmax(np.asarray(logits), -1))
    grids.append(np.asarray(aux["st"]["grid"]))
  points = np.concatenate([g.reshape(len(g), -1, 2) for g in grids]).astype(np.float64)
  run = {
    "pred": np.concatenate(preds),
    "centre": points.mean(axis=1),
    "half": (points.max(axis=1) - points.min(axis=1)) / 2,
    "true": digit_centres(num, test_seed),
  }
  del points
  bias = np.mean(run["centre"] - run["true"], axis=0)
  oracle, oracle_box = [], []
  for i, x, grid in zip(range(0, num, batch), batches, grids, strict=True):
    true = run["true"][i : i + batch]
    oracle.append(read(x, grid.astype(np.float64), true + bias))
    oracle_box.append(read(x, grid.astype(np.float64), true))
  run["oracle"], run["oracle_box"] = np.concatenate(oracle), np.concatenate(oracle_box)
  return _display(workdir), test_seed, labels, run


def _display(path: str) -> str:
  """``path`` relative to the working directory when it is below it, else absolute."""
  rel = os.path.relpath(os.path.abspath(path))
  return os.path.abspath(path) if rel.startswith("..") else rel


def _pct(mask) -> float:
  return 100.0 * float(np.mean(mask))


def report(st_dirs, baseline: str | None, num: int) -> str:
  """The markdown report (module docstring) of the ST runs ``st_dirs`` against ``baseline``."""
  px = distortions.canvas_side("tc") / 2  # canvas pixels per normalised unit
  lines, seeds, base_wrong = [], set(), None
  if baseline:
    name, seed, labels, run = evaluate(baseline, num)
    if "centre" in run:
      raise ValueError(f"--baseline {baseline}: has a spatial transformer; expected a model without one.")
    seeds.add(seed)
    base_wrong = run["pred"] != labels
    lines += [f"Baseline `{name}`: test error **{_pct(base_wrong):.2f}%** on the first {num} images.", ""]
  for workdir in st_dirs:
    name, seed, labels, run = evaluate(workdir, num)
    if "centre" not in run:
      raise ValueError(f"{workdir}: has no spatial transformer (pass a model without one as --baseline).")
    seeds.add(seed)
    if len(seeds) > 1:
      raise ValueError(f"the runs use different test seeds {sorted(seeds)}; compare runs on one test set.")
    wrong, oracle_wrong = run["pred"] != labels, run["oracle"] != labels
    box_wrong = run["oracle_box"] != labels
    err_px = np.linalg.norm((run["centre"] - run["true"]) * px, axis=1)
    half_px = run["half"] * px
    bias = np.mean(run["centre"] - run["true"], axis=0) * px
    spread_px = np.linalg.norm((run["centre"] - run["true"]) * px - bias, axis=1)
    cut = np.any(
      np.abs(run["centre"] - run["true"]) * px + distortions.DIGIT_SIDE / 2 > half_px + 0.5, axis=1
    )
    lines += [
      f"`{name}` (first {num} TC test images, test seed {seed}):",
      "",
      f"- test error **{_pct(wrong):.2f}%**; with oracle centring (each grid moved, same shape, onto the "
      f"digit box's centre plus the model's mean offset, same classifier) **{_pct(oracle_wrong):.2f}%**; "
      f"onto the box's centre itself {_pct(box_wrong):.2f}%",
      f"- centring error (canvas px): median {np.median(err_px):.2f}, 90th percentile "
      f"{np.percentile(err_px, 90):.2f}, 99th {np.percentile(err_px, 99):.2f}; mean offset from the box "
      f"centre x {bias[0]:+.2f}, y {bias[1]:+.2f} (the systematic part); without it (the image-to-image "
      f"part) median {np.median(spread_px):.2f}, 90th percentile {np.percentile(spread_px, 90):.2f}",
      f"- view half-extent (canvas px; 14 = the digit box): median x {np.median(half_px[:, 0]):.1f}, "
      f"y {np.median(half_px[:, 1]):.1f}; the view cuts the digit box on {_pct(cut):.1f}% of the images "
      f"(error there {_pct(wrong[cut]) if cut.any() else 0:.2f}%, elsewhere {_pct(wrong[~cut]):.2f}%)",
    ]
    if base_wrong is not None:
      lines.append(
        f"- against the baseline: both wrong {_pct(wrong & base_wrong):.2f}%, only this model "
        f"{_pct(wrong & ~base_wrong):.2f}%, only the baseline {_pct(~wrong & base_wrong):.2f}%"
      )
    header = "| centring error px | share of images % | test error % | oracle-centred % |"
    rule = "|---|---:|---:|---:|"
    if base_wrong is not None:
      header, rule = header + " baseline % |", rule + "---:|"
    lines += ["", header, rule]
    for lo, hi in BANDS_PX:
      band = (err_px >= lo) & (err_px < hi)
      if not band.any():
        continue
      cells = [_pct(band), _pct(wrong[band]), _pct(oracle_wrong[band])]
      if base_wrong is not None:
        cells.append(_pct(base_wrong[band]))
      label = f"{lo}-{hi}" if np.isfinite(hi) else f">= {lo}"
      lines.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines.append("")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("st_workdirs", nargs="+")
  parser.add_argument("--baseline", help="a TC run without a transformer, compared image by image")
  parser.add_argument("--num", type=int, default=10_000)
  args = parser.parse_args()
  print(report(args.st_workdirs, args.baseline, args.num))


if __name__ == "__main__":
  main()
