r"""The unsupervised co-localisation loop (paper appendix A.2).

For every digit class and variant in the config, a fresh :class:`stn_jax.models.colocalisation.CoLocaliser`
is trained on that class's 100 images with the hinge loss of
:func:`stn_jax.models.colocalisation.hinge_loss` and no labels: the embedding ``e()`` is a frozen digit
classifier trained beforehand by ``stn_jax.main`` with ``configs/mnist.py``,
restored from that run's directory (``config.embedding.workdir``), either its logits or its class
probabilities (``config.embedding.output``); ``config.embedding.workdir = None`` uses a
small randomly initialised CNN instead (for tests only: it localises nothing). Each step uses all images at
once, a fresh random crop per image (of the digit's size, ``config.negative_scale``) as the negative,
and Adam. At the end the predicted boxes are scored
against the true boxes: a success is an IoU above 0.5.

  python -m stn_jax.coloc_train --config=configs/coloc.py --workdir=/tmp/coloc

The run directory gets ``metrics.jsonl`` (``<variant>/<class>/loss`` over steps), ``results.json`` (the
success rate per variant and class, steps, seed, wall time, commit, hardware), ``boxes_<variant>.png`` and
``loss_curves.png``. A rerun of the same command skips the (variant, class) pairs already in
``partial_results.json``, so a killed run loses at most the class it was training.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from stn_jax import checkpoint, coords, layers, metrics, models, parallel, train, warp
from stn_jax.data import colocalisation as coloc_data
from stn_jax.models import colocalisation as coloc_models


def load_trained_model(workdir: str):
  """Rebuilds the model of a finished ``stn_jax.train`` run and restores its newest checkpoint.

  Args:
    workdir: the run directory (holds ``config.json`` and ``checkpoints/``).

  Returns:
    ``(model, config)``: the NNX model with trained parameters and the run's ``ConfigDict``.
  """
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  from stn_jax import data  # noqa: PLC0415 (only needed here, to learn the input shape)

  task = data.get_task(config.data)
  model = models.create_model(
    config.model, input_shape=task.input_shape, num_classes=task.num_classes, rngs=nnx.Rngs(0)
  )
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  tx = train.make_optimizer(config, layers.lr_multipliers(model), train.num_steps(config))
  template = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ckpt.restore(template)
  ckpt.close()
  return nnx.merge(graphdef, state["params"]), config


def make_embedding(config, rngs: nnx.Rngs):
  """The frozen embedding ``e()``: the trained classifier of ``config.workdir``, else a tiny random CNN."""
  if config.get("workdir"):
    model, run_config = load_trained_model(config.workdir)
    logging.info(
      "Embedding: logits of %s (%s) from %s.", run_config.model.name, run_config.data, config.workdir
    )
    return model
  logging.warning("Embedding: a randomly initialised tiny CNN (tests only; it does not know digits).")
  return coloc_models.TinyEmbedding(rngs=rngs)


def _embed(embedding, images, output: str):
  """``e(images)``: the classifier's logits, or its class probabilities (``output='probs'``)."""
  logits = embedding(images)
  return jax.nn.softmax(logits) if output == "probs" else logits


def _step(
  params,
  opt_state,
  embed_params,
  images,
  key,
  *,
  graphdef,
  embed_graphdef,
  tx,
  margin,
  negative_scale,
  output,
):
  """One Adam step of the hinge loss on all images; fresh random crops of ``negative_scale`` are negatives."""
  embed = functools.partial(_embed, nnx.merge(embed_graphdef, embed_params), output=output)
  scale = jnp.full((images.shape[0],), negative_scale, jnp.float32)
  rand = coloc_data.random_attention_params(key, scale)
  emb_random = embed(warp.warp(images, rand, "attention", coloc_models.CROP))

  def loss_fn(p):
    crops, theta = nnx.merge(graphdef, p)(images)
    return coloc_models.hinge_loss(embed(crops), emb_random, margin=margin), theta

  (loss, theta), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, theta


def train_one(config, embedding, digit_class: int, variant: str, key):
  """Trains one co-localiser on one class and variant.

  Args:
    config: the run config (``configs/coloc.py``).
    embedding: the frozen NNX embedding module.
    digit_class: MNIST class 0..9.
    variant: ``'t'`` or ``'tc'``.
    key: PRNG key of this run (data, initialisation and negatives).

  Returns:
    Dict with ``success`` (fraction of IoU > 0.5), ``mean_iou``, ``losses`` (per step), ``images``,
    ``true_boxes`` and ``pred_boxes`` (numpy).
  """
  k_data, k_init, k_steps = jax.random.split(key, 3)
  images, true_boxes = coloc_data.make_dataset(
    k_data, digit_class, variant, num_images=config.data.num_images, canvas_size=config.data.canvas_size
  )
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  model = coloc_models.MODELS[config.model.name](images.shape[1:], rngs=nnx.Rngs(k_init), **kwargs)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  embed_graphdef, embed_params = nnx.split(embedding, nnx.Param)
  tx = optax.adam(config.learning_rate)
  opt_state = tx.init(params)
  step = jax.jit(
    functools.partial(
      _step,
      graphdef=graphdef,
      embed_graphdef=embed_graphdef,
      tx=tx,
      margin=config.margin,
      negative_scale=float(config.negative_scale),
      output=config.embedding.output,
    )
  )
  losses = []
  for i in range(config.total_steps):
    params, opt_state, loss, _ = step(params, opt_state, embed_params, images, jax.random.fold_in(k_steps, i))
    losses.append(loss)
  losses = np.asarray(jax.device_get(losses), np.float64)
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(
      f"class {digit_class} variant {variant}: non-finite loss at step "
      f"{int(np.flatnonzero(~np.isfinite(losses))[0]) + 1}; lower the learning rate."
    )
  _, theta = nnx.merge(graphdef, params)(images)
  pred_boxes = coloc_data.attention_box(theta)
  iou = coloc_data.box_iou(pred_boxes, true_boxes)
  return {
    "success": float(jnp.mean(iou > 0.5)),
    "mean_iou": float(jnp.mean(iou)),
    "losses": losses,
    "images": np.asarray(images),
    "true_boxes": np.asarray(true_boxes),
    "pred_boxes": np.asarray(pred_boxes),
  }


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs every (variant, class) of ``config``, writes metrics, results and figures to ``workdir``.

  Args:
    config: a ``ConfigDict`` as built by ``configs/coloc.py``.
    workdir: the run directory.

  Returns:
    The dict written to ``workdir/results.json``.
  """
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config.to_dict(), f, indent=2, default=str)
  partial_path = os.path.join(workdir, "partial_results.json")
  done = json.load(open(partial_path)) if os.path.exists(partial_path) else {}
  root = jax.random.key(config.seed)
  embedding = make_embedding(config.embedding, nnx.Rngs(jax.random.fold_in(root, 1_000_000)))
  writer = metrics.MetricWriter(workdir)
  examples = {}
  for variant in config.data.variants:
    for digit_class in config.data.classes:
      name = f"{variant}/{digit_class}"
      if name in done:
        continue
      t0 = time.time()
      key = jax.random.fold_in(
        jax.random.fold_in(root, digit_class), list(coloc_data.VARIANTS).index(variant)
      )
      out = train_one(config, embedding, int(digit_class), variant, key)
      for i in range(0, len(out["losses"]), config.log_every):
        writer.write(i + 1, {f"{name}/loss": out["losses"][i]})
      writer.write(len(out["losses"]), {f"{name}/loss": out["losses"][-1]})
      done[name] = {
        "success": out["success"],
        "mean_iou": out["mean_iou"],
        "final_loss": float(out["losses"][-1]),
        "seconds": time.time() - t0,
      }
      examples[name] = out
      with open(partial_path, "w") as f:
        json.dump(done, f, indent=2)
      logging.info(
        "%s: IoU>0.5 on %.0f%% of images (mean IoU %.2f), loss %.4f, %.0f s.",
        name,
        100 * out["success"],
        out["mean_iou"],
        out["losses"][-1],
        time.time() - t0,
      )
  writer.close()
  success = {
    v: {str(c): 100 * done[f"{v}/{c}"]["success"] for c in config.data.classes} for v in config.data.variants
  }
  results = {
    "success_percent": success,
    "mean_success_percent": {v: float(np.mean(list(s.values()))) for v, s in success.items()},
    "per_run": done,
    "steps": int(config.total_steps),
    "seed": int(config.seed),
    "embedding": config.embedding.get("workdir"),
    "wall_seconds": sum(d["seconds"] for d in done.values()),
    "session_seconds": time.time() - t_start,
    "git_commit": train._git_commit(),
    "hardware": parallel.describe_devices(),
    "config": config.to_dict(),
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=str)
  if examples:
    try:
      write_figures(workdir, examples, config.num_figure_examples)
    except Exception:  # noqa: BLE001 (a figure must never lose a finished run)
      logging.exception("Could not write the co-localisation figures.")
  return results


def write_figures(workdir: str, examples: dict, num_examples: int) -> None:
  """``boxes_<variant>.png`` (true box green, predicted red, per class) and ``loss_curves.png``."""
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
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for name, out in examples.items():
    ax.plot(np.arange(1, len(out["losses"]) + 1), out["losses"], lw=0.8, label=name)
  ax.set_xlabel("step")
  ax.set_ylabel("hinge loss (mean over pairs)")
  ax.legend(fontsize=6, ncol=4)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "loss_curves.png"), dpi=110)
  plt.close(fig)


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  results = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  for variant, rate in results["mean_success_percent"].items():
    print(
      f"{variant.upper()}: IoU>0.5 on {rate:.1f}% of images (mean over classes); "
      f"per class {results['success_percent'][variant]}"
    )


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "Directory for metrics, results.json and figures.")
  config_flags.DEFINE_config_file("config", None, "Co-localisation config file.", lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])
  flags.FLAGS.set_default("logtostderr", True)
  app.run(main)
