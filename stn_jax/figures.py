"""Per-run figures, written into the run directory by ``stn_jax.train``.

* ``transforms.png``: the paper's Table 1 (right) figure for a few test digits: the input, the predicted
  sampling grid drawn on the input, the spatial transformer's output, and the true and predicted labels
  (drawn by :func:`stn_jax.viz.plot_transforms`). Models without a transformer get no such figure.
* ``training_curves.png``: training loss and accuracy, and test error, against the step (from
  ``metrics.jsonl``).

:func:`plot_run_comparison` draws several runs' test error against the step and against their wall time.

matplotlib is imported lazily, so the training loop does not need it until the end of a run.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from stn_jax import metrics


def plot_transform_examples(model, images, labels, path: str) -> bool:
  """Draws input | grid on input | ST output | labels for ``images`` through ``model``'s transformer.

  Args:
    model: an NNX model whose ``__call__(x, return_aux=True)`` returns ``(logits, aux)`` with ``aux['st']``
      holding ``grid`` and ``output`` (the MNIST models do).
    images: ``(N, H, W, C)`` float array.
    labels: ``(N,)`` true labels.
    path: output PNG path.

  Returns:
    True if a figure was written, False if the model has no spatial transformer.
  """
  from stn_jax import viz  # noqa: PLC0415 (pulls in matplotlib)

  logits, aux = model(np.asarray(images, np.float32), return_aux=True)
  if "st" not in aux:
    return False
  st = aux["st"]
  fig = viz.plot_transforms(
    np.asarray(images),
    np.asarray(st["grid"]),
    np.asarray(st["output"]),
    labels=np.asarray(labels),
    predictions=np.asarray(np.argmax(logits, -1)),
    path=path,
  )
  import matplotlib.pyplot as plt  # noqa: PLC0415

  plt.close(fig)
  return True


def plot_training_curves(metrics_path: str, path: str) -> None:
  """Plots train loss / accuracy and test error against the step from a ``metrics.jsonl`` file.

  Args:
    metrics_path: the run's ``metrics.jsonl``.
    path: output PNG path.
  """
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  series = metrics.read_jsonl(metrics_path)
  panels = [
    ("train/loss", "training loss"),
    ("train/accuracy", "training accuracy"),
    ("eval/test_error", "test error (%)"),
  ]
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
  for ax, (name, title) in zip(axes, panels, strict=True):
    points = series.get(name, [])
    if points:
      steps, values = zip(*points, strict=True)
      ax.plot(steps, values, marker="o" if len(points) < 20 else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def test_error_curves(metrics_path: str) -> tuple[list[int], list[float], list[float | None]]:
  """Reads a run's evaluations: steps, test errors (%) and the run's wall time at each (None if unrecorded).

  Args:
    metrics_path: the run's ``metrics.jsonl``.

  Raises:
    ValueError: if the file holds no evaluation.
  """
  series = metrics.read_jsonl(metrics_path)
  if not series.get("eval/test_error"):
    raise ValueError(f"{metrics_path} holds no evaluation (eval/test_error); was the run finished?")
  walls = dict(series.get("eval/wall_seconds", []))
  steps, errors = (list(v) for v in zip(*series["eval/test_error"], strict=True))
  return steps, errors, [walls.get(s) for s in steps]


def plot_run_comparison(runs: dict[str, str], path: str) -> None:
  """Plots the test error of several runs against the step and against the run's own wall time.

  The wall-time panel (log scale) compares runs at equal training time on one machine; evaluations
  written before runs recorded ``eval/wall_seconds`` are left out of it.

  Args:
    runs: ``{label: path of the run's metrics.jsonl}``.
    path: output PNG path.
  """
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  import matplotlib.ticker  # noqa: PLC0415

  fig, (by_step, by_wall) = plt.subplots(1, 2, figsize=(10, 3.8))
  for label, metrics_path in runs.items():
    steps, errors, walls = test_error_curves(metrics_path)
    (line,) = by_step.plot(steps, errors, marker="o", ms=3, label=label)
    timed = [(w, e) for w, e in zip(walls, errors, strict=True) if w is not None]
    if timed:
      by_wall.plot(*zip(*timed, strict=True), marker="o", ms=3, color=line.get_color(), label=label)
  by_step.set_xlabel("training step")
  by_wall.set_xlabel("the run's wall time (s)")
  by_wall.set_xscale("log")
  by_wall.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))  # 1-2-5 labels
  by_wall.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  by_wall.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  for ax in (by_step, by_wall):
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
  by_step.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_run_figures(workdir: str, model, images, labels, *, num_examples: int = 8) -> list[str]:
  """Writes ``training_curves.png`` and (for ST models) ``transforms.png`` into ``workdir``.

  A failing figure is logged, not raised: the run's results are already on disk by then.

  Args:
    workdir: the run directory (holds ``metrics.jsonl``).
    model: the trained NNX model.
    images: test images ``(N, H, W, C)``; the first ``num_examples`` are drawn.
    labels: their labels.
    num_examples: how many test digits the transform figure shows.

  Returns:
    Paths of the figures written.
  """
  written = []
  jobs = [("training_curves.png", lambda p: plot_training_curves(os.path.join(workdir, "metrics.jsonl"), p))]
  if num_examples:
    jobs.append(
      (
        "transforms.png",
        lambda p: plot_transform_examples(model, images[:num_examples], labels[:num_examples], p),
      )
    )
  for name, job in jobs:
    path = os.path.join(workdir, name)
    try:
      if job(path) is not False:
        written.append(path)
    except Exception:  # noqa: BLE001 (a figure must never lose a finished run)
      logging.exception("Could not write %s.", path)
  return written
