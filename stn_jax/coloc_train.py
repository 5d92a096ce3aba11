r"""The unsupervised co-localisation loop (paper appendix A.2).

For every digit class and variant in the config, a fresh :class:`stn_jax.models.colocalisation.CoLocaliser`
is trained on that class's 100 images with the hinge loss of the paper and no labels. The embedding ``e()``
is a frozen digit classifier trained beforehand by ``stn_jax.main`` with ``configs/mnist.py`` and restored
from that run's directory (``config.embedding.workdir``). First each image's restart is chosen by minimising
the loss over the discrete choice (:func:`stn_jax.models.colocalisation.select_restarts`, ``R`` random
negatives per image); then Adam trains the transformer on the loss of the chosen restarts' crops, with a
fresh random crop per image (of the digit's size, ``config.negative_scale``) as the negative at each step.

The predicted boxes (the chosen restarts' crops after training) are scored against the true boxes: a success
is an IoU above 0.5. The boxes at selection, before any gradient step, are scored too, to show what the
gradient steps add.

  python -m stn_jax.main --config=configs/coloc.py --workdir=/tmp/coloc

The run directory gets ``metrics.jsonl`` (``<variant>/<class>/loss`` over steps), ``results.json`` (the
success rate per variant and class, steps, seed, wall time, commit, hardware, command),
``boxes_<variant>.png`` and ``loss_curves.png`` (:mod:`stn_jax.coloc_figures`), drawn from
``figure_data/<variant>_<class>.npz`` (the first ``num_figure_examples`` images, boxes and losses of each
pair, kept as each pair finishes, so a run finished over several sessions draws every pair). A rerun of the
same command skips the (variant, class) pairs already in ``partial_results.json``, so a killed run loses at
most the class it was training; a rerun with nothing left to train returns the stored ``results.json`` and
rewrites nothing. Only the list of classes and variants, the logging period and the figure count may change
between such reruns (pairs finished with a smaller count are drawn with what they kept); any other config
change is refused (:mod:`stn_jax.rundir`), since the stored per-class results would not be those of the new
config.
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
from absl import logging
from flax import nnx

from stn_jax import checkpoint, coloc_figures, layers, metrics, models, provenance, rundir, train_config, warp
from stn_jax.data import colocalisation as coloc_data
from stn_jax.models import colocalisation as coloc_models


def load_trained_model(workdir: str, step: int | None = None):
  """Rebuilds the model of a finished ``stn_jax.train`` run and restores one of its checkpoints.

  Args:
    workdir: the run directory (holds ``config.json`` and ``checkpoints/``).
    step: which kept checkpoint (default: the newest).

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
  tx = train_config.make_optimizer(config, layers.lr_multipliers(model), train_config.num_steps(config))
  template = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)  # reads only
  try:
    state, _ = ckpt.restore(template, step=step)
  finally:
    ckpt.close()
  return nnx.merge(graphdef, state["params"]), config


def make_embedding(config):
  """The frozen embedding ``e()``: the trained classifier of ``config.workdir`` (see ``configs/coloc.py``)."""
  if not config.get("workdir"):
    raise ValueError(
      "config.embedding.workdir must name a finished classifier run, e.g. of "
      "python -m stn_jax.main --config=configs/mnist.py:e,cnn,quick --workdir=<dir> (configs/coloc.py)."
    )
  model, run_config = load_trained_model(config.workdir)
  logging.info("Embedding: %s (%s) from %s.", run_config.model.name, run_config.data, config.workdir)
  return model


def _embed(embedding, images, output: str, temperature: float = 1.0):
  """``e(images)``: the classifier's class probabilities, logits, or unit-length penultimate activations.

  ``output='probs'``: ``softmax(logits / temperature)``; ``'logits'``; ``'features'``: the activations of
  the classifier's last hidden layer (``embedding.body``), scaled to unit length so squared distances lie in
  ``[0, 4]``, on the scale of the margin.
  """
  if output == "features":
    h = embedding.body(images)
    return h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), 1e-6)
  logits = embedding(images)
  return jax.nn.softmax(logits / temperature) if output == "probs" else logits


def make_functions(config, graphdef, embed_graphdef, tx):
  """The jitted pieces of a run, built once and shared by every (variant, class).

  Returns:
    A dict of jitted functions:
    ``restarts(params, embed_params, images)`` -> ``(e() of every restart's crop (N, K, F), params (N, K,
    3))``; ``random_crops(embed_params, images, key, num)`` -> ``e()`` of ``num`` random crops per image ``(N,
    num, F)``; ``select(emb_restarts, emb_random, candidates)`` -> ``(restart (N,), loss)``;
    ``step(params, opt_state, embed_params, images, restart, key)`` -> ``(params, opt_state, loss)``: one
    Adam step of the paper's loss on the chosen restarts' crops, a fresh random crop per image as negative.
  """
  margin, scale = float(config.margin), float(config.negative_scale)

  def embed_fn(embed_params):
    return functools.partial(
      _embed,
      nnx.merge(embed_graphdef, embed_params),
      output=config.embedding.output,
      temperature=float(config.embedding.temperature),
    )

  def random_crops(embed_params, images, key, num):
    n = images.shape[0]
    rand = coloc_data.random_attention_params(key, jnp.full((n * num,), scale, jnp.float32))
    crops = warp.warp(images[:, None], rand.reshape(n, num, 3), "attention", coloc_models.CROP)
    return embed_fn(embed_params)(crops.reshape(n * num, *crops.shape[2:])).reshape(n, num, -1)

  def restarts(params, embed_params, images):
    theta = nnx.merge(graphdef, params).restart_params(images)
    n, k = theta.shape[:2]
    crops = warp.warp(images[:, None], theta, "attention", coloc_models.CROP, fast_path=False)
    return embed_fn(embed_params)(crops.reshape(n * k, *crops.shape[2:])).reshape(n, k, -1), theta

  def select(emb_restarts, emb_random, candidates):
    return coloc_models.select_restarts(
      emb_restarts,
      emb_random,
      candidates,
      margin=margin,
      num_seeds=int(config.selection_seeds),
      iterations=int(config.selection_iterations),
    )

  def step(params, opt_state, embed_params, images, restart, key):
    embed = embed_fn(embed_params)
    emb_random = random_crops(embed_params, images, key, 1)

    def loss_fn(p):
      crops, _ = nnx.merge(graphdef, p)(images, restart)
      return coloc_models.hinge_loss(embed(crops), emb_random, margin=margin)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return {
    "restarts": jax.jit(restarts),
    "random_crops": jax.jit(random_crops, static_argnames="num"),
    "select": jax.jit(select),
    "step": jax.jit(step),
  }


def setup(config, embedding, images_shape):
  """Builds a model template, the optimiser and the jitted functions for images of ``images_shape``.

  Returns:
    ``(tx, functions)``; :func:`train_one` takes them, so every class reuses one compilation.
  """
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  model = coloc_models.MODELS[config.model.name](tuple(images_shape[1:]), rngs=nnx.Rngs(0), **kwargs)
  graphdef, _ = nnx.split(model, nnx.Param)
  embed_graphdef, _ = nnx.split(embedding, nnx.Param)
  tx = optax.adam(config.learning_rate)
  return tx, make_functions(config, graphdef, embed_graphdef, tx)


def _score(theta, true_boxes):
  """Boxes of ``theta (N, 3)``, the fraction with IoU > 0.5 against ``true_boxes`` and the mean IoU."""
  boxes = coloc_data.attention_box(theta)
  iou = coloc_data.box_iou(boxes, true_boxes)
  return np.asarray(boxes), float(jnp.mean(iou > 0.5)), float(jnp.mean(iou))


def run_key(config, digit_class: int, variant: str):
  """The PRNG key of one ``(variant, class)`` run: the config's seed folded with the class and variant."""
  root = jax.random.fold_in(jax.random.key(config.seed), int(digit_class))
  return jax.random.fold_in(root, list(coloc_data.VARIANTS).index(variant))


def select_restarts(config, embedding, digit_class: int, variant: str, key, fns) -> dict:
  """Builds one run's images and restarts and picks each image's restart by the hinge loss (no training).

  Args:
    config, embedding, digit_class, variant, key: as :func:`train_one`.
    fns: the functions of :func:`setup` (its second output).

  Returns:
    Dict with ``images``, ``true_boxes`` (evaluation only), ``model`` (the initial co-localiser),
    ``params``, ``embed_params``, ``emb_restarts`` (N, K, E) and ``theta_all`` (N, K, 3) of every restart,
    ``emb_random`` (the random negatives), the chosen ``restart`` (N,), ``selection_loss`` and ``k_steps``
    (the key of the gradient steps).
  """
  k_data, k_init, k_select, k_seeds, k_steps = jax.random.split(key, 5)
  images, true_boxes = coloc_data.make_dataset(
    k_data, digit_class, variant, num_images=config.data.num_images, canvas_size=config.data.canvas_size
  )
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  model = coloc_models.MODELS[config.model.name](images.shape[1:], rngs=nnx.Rngs(k_init), **kwargs)
  params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
  embed_params = nnx.split(embedding, nnx.Param)[1]
  emb_restarts, theta_all = fns["restarts"](params, embed_params, images)
  emb_random = fns["random_crops"](embed_params, images, k_select, num=int(config.num_selection_negatives))
  n, k = theta_all.shape[:2]
  num = min(int(config.selection_candidates), n * k)
  candidates = jax.random.choice(k_seeds, n * k, (num,), replace=False)
  restart, selection_loss = fns["select"](emb_restarts, emb_random, candidates)
  return {
    "images": images,
    "true_boxes": true_boxes,
    "model": model,
    "params": params,
    "embed_params": embed_params,
    "emb_restarts": emb_restarts,
    "theta_all": theta_all,
    "emb_random": emb_random,
    "restart": restart,
    "selection_loss": selection_loss,
    "k_steps": k_steps,
  }


def train_one(config, embedding, digit_class: int, variant: str, key, prepared=None):
  """Trains one co-localiser on one class and variant.

  Args:
    config: the run config (``configs/coloc.py``).
    embedding: the frozen NNX embedding module.
    digit_class: MNIST class 0..9.
    variant: ``'t'`` or ``'tc'``.
    key: PRNG key of this run (data, initialisation, selection and negatives; :func:`run_key`).
    prepared: the output of :func:`setup` (built here when None).

  Returns:
    Dict with ``success`` (fraction of IoU > 0.5) and ``mean_iou`` after training,
    ``success_at_selection`` and ``mean_iou_at_selection`` (the chosen restarts before any gradient step),
    ``grid_best_success`` (the fraction of images with *some* restart at IoU > 0.5 before training: a bound
    on the selection, computed with the true boxes and used for nothing else), ``selection_loss``,
    ``losses`` (per step), ``restart`` (N,), ``images``, ``true_boxes`` and ``pred_boxes`` (numpy).
  """
  size = config.data.canvas_size
  tx, fns = prepared or setup(config, embedding, (config.data.num_images, size, size, 1))
  sel = select_restarts(config, embedding, digit_class, variant, key, fns)
  images, true_boxes, params, restart = sel["images"], sel["true_boxes"], sel["params"], sel["restart"]
  embed_params, theta_all, k_steps = sel["embed_params"], sel["theta_all"], sel["k_steps"]
  n = theta_all.shape[0]
  grid_iou = coloc_data.box_iou(coloc_data.attention_box(theta_all), true_boxes[:, None])
  _, success_sel, iou_sel = _score(theta_all[jnp.arange(n), restart], true_boxes)

  opt_state = tx.init(params)
  losses = []
  for i in range(config.total_steps):
    params, opt_state, loss = fns["step"](
      params, opt_state, embed_params, images, restart, jax.random.fold_in(k_steps, i)
    )
    losses.append(loss)
  losses = np.asarray(jax.device_get(losses), np.float64)
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(
      f"class {digit_class} variant {variant}: non-finite loss at step "
      f"{int(np.flatnonzero(~np.isfinite(losses))[0]) + 1}; lower the learning rate."
    )
  _, theta = nnx.merge(nnx.split(sel["model"], nnx.Param)[0], params)(images, restart)
  pred_boxes, success, mean_iou = _score(theta, true_boxes)
  return {
    "success": success,
    "mean_iou": mean_iou,
    "success_at_selection": success_sel,
    "mean_iou_at_selection": iou_sel,
    "grid_best_success": float(jnp.mean(jnp.max(grid_iou, axis=1) > 0.5)),
    "selection_loss": float(sel["selection_loss"]),
    "losses": losses,
    "restart": np.asarray(restart),
    "images": np.asarray(images),
    "true_boxes": np.asarray(true_boxes),
    "pred_boxes": pred_boxes,
  }


# Fields a rerun in the same directory may change: which (variant, class) pairs to run, logging, figures.
_RERUN_FIELDS = ("data.classes", "data.variants", "log_every", "num_figure_examples")


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs every (variant, class) of ``config``, writes metrics, results and figures to ``workdir``.

  Args:
    config: a ``ConfigDict`` as built by ``configs/coloc.py``.
    workdir: the run directory.

  Returns:
    The dict written to ``workdir/results.json``.
  """
  t_start = time.time()
  train_config.check_seed(config)
  embedding = make_embedding(config.embedding)  # fails (before anything is written) on a bad embedding run
  os.makedirs(workdir, exist_ok=True)
  partial_path = os.path.join(workdir, "partial_results.json")
  results_path = os.path.join(workdir, "results.json")
  has_progress = os.path.exists(partial_path) or os.path.exists(results_path)
  rundir.claim(workdir, config, has_progress=has_progress, ignore=_RERUN_FIELDS)
  done = json.load(open(partial_path)) if os.path.exists(partial_path) else {}
  pairs = [f"{v}/{c}" for v in config.data.variants for c in config.data.classes]
  if os.path.exists(results_path) and all(name in done for name in pairs):
    with open(results_path) as f:
      stored = json.load(f)
    if sorted(stored.get("per_run", {})) == sorted(pairs):  # the finished run of exactly these pairs
      logging.info("%s holds this finished run; nothing to do (delete results.json to redo it).", workdir)
      return stored
  size = config.data.canvas_size
  functions = setup(config, embedding, (config.data.num_images, size, size, 1))
  writer = metrics.MetricWriter(workdir)
  for variant in config.data.variants:
    for digit_class in config.data.classes:
      name = f"{variant}/{digit_class}"
      if name in done:
        continue
      t0 = time.time()
      key = run_key(config, digit_class, variant)
      out = train_one(config, embedding, int(digit_class), variant, key, functions)
      for i in [*range(0, len(out["losses"]), config.log_every), len(out["losses"]) - 1]:
        writer.write(i + 1, {f"{name}/loss": out["losses"][i]})
      done[name] = {
        "success": out["success"],
        "mean_iou": out["mean_iou"],
        "success_at_selection": out["success_at_selection"],
        "mean_iou_at_selection": out["mean_iou_at_selection"],
        "grid_best_success": out["grid_best_success"],
        "selection_loss": out["selection_loss"],
        "final_loss": float(out["losses"][-1]),
        "seconds": time.time() - t0,
      }
      if config.num_figure_examples > 0:  # before partial_results.json marks the pair done
        coloc_figures.save_figure_data(workdir, name, out, config.num_figure_examples)
      provenance.write_json(partial_path, done)
      logging.info(
        "%s: IoU>0.5 on %.0f%% of images (mean IoU %.2f; at selection %.0f%%, %.2f), loss %.4f, %.0f s.",
        name,
        100 * out["success"],
        out["mean_iou"],
        100 * out["success_at_selection"],
        out["mean_iou_at_selection"],
        out["losses"][-1],
        time.time() - t0,
      )
  writer.close()

  def percent(field):
    return {
      v: {str(c): 100 * done[f"{v}/{c}"][field] for c in config.data.classes} for v in config.data.variants
    }

  success, at_init = percent("success"), percent("success_at_selection")
  results = {
    "success_percent": success,
    "mean_success_percent": {v: float(np.mean(list(s.values()))) for v, s in success.items()},
    "success_percent_at_selection": at_init,
    "mean_success_percent_at_selection": {v: float(np.mean(list(s.values()))) for v, s in at_init.items()},
    "per_run": done,
    "steps": int(config.total_steps),
    "seed": int(config.seed),
    "embedding": config.embedding.get("workdir"),
    "wall_seconds": sum(d["seconds"] for d in done.values()),
    "session_seconds": time.time() - t_start,
    **provenance.environment(),
    "command": provenance.command(),
    "config": config.to_dict(),
  }
  results["hardware"]["load_average_at_end"] = os.getloadavg()
  # Figures first, from every pair's saved examples (also those of earlier, interrupted sessions), then
  # results.json, which marks the run finished.
  examples = coloc_figures.load_figure_data(workdir, pairs)
  if examples and config.num_figure_examples > 0:
    try:
      coloc_figures.write_figures(workdir, examples, config.num_figure_examples)
    except Exception:  # noqa: BLE001 (a figure must never lose a finished run)
      logging.exception("Could not write the co-localisation figures.")
  provenance.write_json(results_path, results)
  for variant, rate in results["mean_success_percent"].items():
    logging.info("%s: IoU>0.5 on %.1f%% of images (mean over classes): %s", variant, rate, success[variant])
  return results
