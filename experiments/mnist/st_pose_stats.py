"""Where does a trained spatial transformer look? Grid statistics of finished ST runs on their test set.

Command (from the repository root):

  python experiments/mnist/st_pose_stats.py WORKDIR [WORKDIR ...] [--num 2000] [--every_checkpoint]

Each ``WORKDIR`` is a finished ``stn_jax.main`` run of an ST model (it holds ``config.json`` and
``checkpoints/``). The model is restored (its newest checkpoint; with ``--every_checkpoint`` each kept
one in turn, to watch a run over time: train it with ``--config.checkpoint_every=25
--config.checkpoints_to_keep=30``) and run on the first ``num`` images of its fixed test set; from the
sampling grid ``T_theta(G)`` of each image (any transform family) it reports, as a markdown table:

* ``centre x/y sd``: the spread over images of the grid's centre (its mean source coordinate, in normalised
  units). A transformer that localises the digit moves its centre with the digit: on TC (digit centre
  uniform over 32 of the 60 pixels) a perfect one has sd 0.31. **0 means the localisation net's output is
  the same for every image** (a dead localisation net: the transformer is one fixed warp).
* ``zoom``: the mean over images of the grid's extent relative to the identity grid's (square root of the
  ratio of the per-axis standard deviations' product): 1 = no zoom, 0.47 = the 28 px digit fills a 60 px
  canvas's output.
* ``live loc features``: how many of the localisation net's output features (the regression layer's
  inputs, after their ReLU) vary over the images. A feature that is the same for every image is a dead
  unit (its ReLU is off for every image, or on but fed by dead units); with none live the transformer is
  one fixed warp. Under Adam a large learning-rate factor on the whole localisation net kills most of them
  within ~100 steps (``experiments/RESULTS.md``, TC).
* the run's test error on these images (the run's own ``results.json`` has it on the full test set).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from stn_jax import checkpoint, data  # noqa: E402
from stn_jax.coloc_train import load_trained_model  # noqa: E402


def identity_sd(n: int) -> float:
  """Standard deviation of the identity grid's coordinates along an axis of ``n`` output pixels.

  The pixel centres ``(2i + 1) / n - 1`` (``align_corners=False``, the models' setting) have variance
  ``(n^2 - 1) / (3 n^2)``.
  """
  return float(np.sqrt((n * n - 1) / 3) / n)


def grid_stats(grid: np.ndarray) -> dict[str, float]:
  """Statistics of sampling grids ``(N, H', W', 2)`` of ``(x, y)`` normalised source coordinates."""
  height, width = grid.shape[1:3]
  grid = np.asarray(grid, np.float64).reshape(grid.shape[0], -1, 2)
  centre = grid.mean(axis=1)
  # Per-axis spread of the sampled points relative to the identity grid's, x over the width and y over the
  # height; their geometric mean is the zoom (for an affine grid, sqrt|det A| when A is diagonal).
  extent = grid.std(axis=1) / np.array([identity_sd(width), identity_sd(height)])
  return {
    "centre_x_sd": float(centre[:, 0].std()),
    "centre_y_sd": float(centre[:, 1].std()),
    "zoom": float(np.mean(np.sqrt(extent[:, 0] * extent[:, 1]))),
  }


def live_features(features: np.ndarray, atol: float = 1e-6) -> int:
  """How many columns of ``features (N, F)`` vary over the ``N`` rows by more than ``atol``."""
  features = np.asarray(features, np.float64)
  return int(np.sum(features.max(axis=0) - features.min(axis=0) > atol))


def run_stats(workdir: str, num: int, batch: int = 500, step: int | None = None) -> dict[str, float]:
  """:func:`grid_stats`, live localisation features and test error of the run in ``workdir`` (at checkpoint
  ``step``, default the newest) on its first ``num`` test images."""
  model, config = load_trained_model(workdir, step=step)
  if not hasattr(model, "st"):
    raise ValueError(f"{workdir}: model {config.model.name!r} has no spatial transformer.")
  images, labels = data.get_task(config.data).test_set()
  images, labels = images[:num], labels[:num]
  grids, features, wrong = [], [], 0
  for start in range(0, len(images), batch):
    x = jnp.asarray(images[start : start + batch])
    logits, aux = model(x, return_aux=True)
    grids.append(np.asarray(aux["st"]["grid"]))
    features.append(np.asarray(model.st.localization(x)))
    wrong += int(np.sum(np.argmax(np.asarray(logits), -1) != np.asarray(labels[start : start + batch])))
  stats = grid_stats(np.concatenate(grids))
  features = np.concatenate(features)
  stats["live_loc_features"] = live_features(features)
  stats["loc_features"] = features.shape[1]
  stats["test_error"] = 100.0 * wrong / len(images)
  return stats


def _rows(workdirs, every_checkpoint):
  """``(workdir, step)`` pairs to report: step None (the newest) or every kept checkpoint's step."""
  for workdir in workdirs:
    if not every_checkpoint:
      yield workdir, None
      continue
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
    steps = ckpt.all_steps()
    ckpt.close()
    if not steps:
      raise FileNotFoundError(f"{workdir}: no checkpoints.")
    yield from ((workdir, s) for s in steps)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--num", type=int, default=2000)
  parser.add_argument("--every_checkpoint", action="store_true", help="one row per kept checkpoint")
  args = parser.parse_args()
  print(f"| run | centre x sd | centre y sd | zoom | live loc features | test error % (first {args.num}) |")
  print("|---|---:|---:|---:|---:|---:|")
  for workdir, step in _rows(args.workdirs, args.every_checkpoint):
    s = run_stats(workdir, args.num, step=step)
    name = os.path.relpath(os.path.abspath(workdir)) + ("" if step is None else f" @ {step}")
    cells = (s["centre_x_sd"], s["centre_y_sd"], s["zoom"])
    live = f"{s['live_loc_features']}/{s['loc_features']}"
    print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {live} | {s['test_error']:.2f} |")


if __name__ == "__main__":
  main()
