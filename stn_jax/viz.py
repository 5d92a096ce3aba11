"""Drawing helpers: the sampling grid ``T_theta(G)`` overlaid on the input, and input | grid | output rows.

matplotlib is imported inside the functions, so ``import stn_jax`` never needs it. Figures are created as
plain ``matplotlib.figure.Figure`` objects (not through ``pyplot``): they need no display or backend, are
not kept alive by pyplot's figure manager (no leak when a training loop draws one per evaluation) and can
be saved with ``fig.savefig`` or shown in a notebook with ``IPython.display.display(fig)``.

Images are ``(H, W)`` or ``(H, W, C)`` with C in {1, 3, 4}; grids ``(H', W', 2)`` of normalised source
``(x, y)`` (:mod:`stn_jax.coords`). The overlay is drawn in the input's pixel coordinates (pixel centres at
integers, as ``imshow`` places them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stn_jax import _checks, coords


def _as_image(image) -> np.ndarray:
  """``(H, W[, C])`` -> something ``imshow`` draws faithfully: grey 2D or RGB(A) scaled into [0, 1]."""
  img = np.asarray(image, dtype=np.float32)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
    raise ValueError(f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {img.shape}.")
  finite = img[np.isfinite(img)]
  lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
  if lo < 0 or hi > 1:  # only rescale what imshow would otherwise clip
    img = (img - lo) / max(hi - lo, 1e-12)
  return np.nan_to_num(img)


def _show(ax, image, title=None):
  img = _as_image(image)
  ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=9)


def _outline(px: np.ndarray, align_corners: bool) -> np.ndarray:
  """Closed polygon ``(N, 2)`` around the sampled region: the image of the output's outer edges."""
  rows = [px[0], px[:, -1], px[-1, ::-1], px[::-1, 0]]
  if align_corners or min(px.shape[:2]) < 2:
    edge = np.concatenate(rows)
  else:
    # Output edges lie half a pixel beyond the outermost centres; extrapolate the grid linearly to them.
    ext = np.pad(px, ((1, 1), (1, 1), (0, 0)), mode="reflect", reflect_type="odd")
    ext = 0.5 * (ext[1:, :] + ext[:-1, :])
    ext = 0.5 * (ext[:, 1:] + ext[:, :-1])
    edge = np.concatenate([ext[0], ext[:, -1], ext[-1, ::-1], ext[::-1, 0]])
  return np.concatenate([edge, edge[:1]])


def draw_grid(ax, grid, image_shape: Sequence[int], *, step=None, align_corners: bool = False, **line_kwargs):
  """Overlays the sampling grid ``T_theta(G)`` on an axis that shows the input image.

  Args:
    ax: a matplotlib ``Axes`` (usually after ``imshow`` of the input).
    grid: ``(H', W', 2)`` normalised source coordinates.
    image_shape: the input's shape ``(H, W)`` or ``(H, W, C)``.
    step: draw every ``step``-th grid row and column (default: about 8 lines each way).
    align_corners: the convention the grid was made with (see :mod:`stn_jax.coords`).
    **line_kwargs: passed to ``ax.plot`` for the grid lines (default thin translucent red).

  Returns:
    ``(grid_lines, outline)``: the list of grid-line ``Line2D`` objects and the outline's ``Line2D``, whose
    data are in the input's pixel coordinates.
  """
  grid = np.asarray(grid, dtype=np.float32)
  if grid.ndim != 3 or grid.shape[-1] != 2 or 0 in grid.shape:
    raise ValueError(f"grid must have shape (H', W', 2) with H', W' >= 1, got {grid.shape}.")
  h, w = _checks.positive_shape("image_shape", image_shape, {2: "(H, W)", 3: "(H, W, C)"})[:2]
  px = np.asarray(coords.normalized_to_pixel(grid, (h, w), align_corners=align_corners), np.float64)
  hp, wp = px.shape[:2]
  step = max(1, min(hp, wp) // 8) if step is None else _checks.size("step", step)
  style = {"color": "red", "linewidth": 0.6, "alpha": 0.8, **line_kwargs}
  lines = []
  for i in sorted(set(range(0, hp, step)) | {hp - 1}):
    lines += ax.plot(px[i, :, 0], px[i, :, 1], **style)
  for j in sorted(set(range(0, wp, step)) | {wp - 1}):
    lines += ax.plot(px[:, j, 0], px[:, j, 1], **style)
  edge = _outline(px, align_corners)
  (outline,) = ax.plot(edge[:, 0], edge[:, 1], **{**style, "linewidth": 1.5, "alpha": 1.0})
  # Points far outside (e.g. beyond a homography's horizon) must not zoom the view out of the image.
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  return lines, outline


def plot_transform(
  image,
  grid,
  output,
  *,
  titles: Sequence[str] = ("input", "sampling grid", "output"),
  ax=None,
  align_corners: bool = False,
):
  """One row: input | input with the sampling grid | the spatial transformer's output.

  Args:
    image: ``(H, W[, C])`` input.
    grid: ``(H', W', 2)`` sampling grid.
    output: ``(H', W'[, C])`` warped output.
    titles: the three panel titles.
    ax: three ``Axes`` to draw into; a new figure when ``None``.
    align_corners: the grid's convention.

  Returns:
    The ``Figure`` holding the axes.
  """
  if np.shape(output)[:2] != np.shape(grid)[:2]:
    raise ValueError(
      f"output {np.shape(output)} and grid {np.shape(grid)} must share (H', W'): the output is sampled at "
      "the grid's points."
    )
  if ax is None:
    from matplotlib.figure import Figure  # noqa: PLC0415 (optional dependency)

    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    ax = fig.subplots(1, 3)
  if len(ax) != 3:
    raise ValueError(f"ax must hold 3 axes (input, grid, output), got {len(ax)}.")
  titles = tuple(titles) + ("",) * (3 - len(titles))
  _show(ax[0], image, titles[0])
  _show(ax[1], image, titles[1])
  draw_grid(ax[1], grid, np.shape(image), align_corners=align_corners)
  _show(ax[2], output, titles[2])
  return ax[0].figure


def plot_transforms(
  images,
  grids,
  outputs,
  *,
  labels=None,
  predictions=None,
  max_rows: int = 8,
  path: str | None = None,
  align_corners: bool = False,
):
  """Rows of input | input with grid | ST output for a batch, as in the paper's Table 1 (right) figure.

  Args:
    images: ``(N, H, W[, C])`` inputs.
    grids: ``(N, H', W', 2)`` sampling grids.
    outputs: ``(N, H', W'[, C])`` transformer outputs.
    labels: optional ``(N,)`` true labels, shown above the output.
    predictions: optional ``(N,)`` predicted labels, shown above the output.
    max_rows: at most this many examples are drawn.
    path: if given, the figure is saved there (PNG by extension).
    align_corners: the grids' convention.

  Returns:
    The ``Figure``.
  """
  from matplotlib.figure import Figure  # noqa: PLC0415 (optional dependency)

  sizes = {}
  named = {"images": images, "grids": grids, "outputs": outputs, "labels": labels, "predictions": predictions}
  for name, values in named.items():
    if values is None and name in ("labels", "predictions"):
      continue
    if not hasattr(values, "__len__") or isinstance(values, (str, bytes)):
      raise TypeError(f"{name} must be a sequence or array with one entry per example, got {values!r}.")
    sizes[name] = len(values)
  if len(set(sizes.values())) != 1:
    raise ValueError(f"plot_transforms needs one entry per example in each argument, got lengths {sizes}.")
  n = min(sizes["images"], _checks.size("max_rows", max_rows))
  if n < 1:
    raise ValueError("plot_transforms needs at least one example.")
  fig = Figure(figsize=(7.5, 2.4 * n), layout="constrained")
  axes = np.atleast_2d(fig.subplots(n, 3, squeeze=False))
  for r in range(n):
    out_title = "output" if r == 0 else ""
    tags = []
    if labels is not None:
      tags.append(f"true {np.asarray(labels)[r]}")
    if predictions is not None:
      tags.append(f"pred {np.asarray(predictions)[r]}")
    if tags:
      out_title = ", ".join(tags)
    titles = ("input", "sampling grid", out_title) if r == 0 else ("", "", out_title)
    plot_transform(images[r], grids[r], outputs[r], titles=titles, ax=axes[r], align_corners=align_corners)
  if path is not None:
    fig.savefig(path, dpi=100)
  return fig
