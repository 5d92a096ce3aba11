"""The cases ``bench_train.py`` times: one training step (JAX or PyTorch), one data batch, or a step's part.

``build_cases`` turns the benchmark's flags into ``[(key, run, param_count)]``, where ``run()`` performs one
step of the case and blocks until it is done. A JAX step is ``stn_jax.train_steps.train_step`` on a fixed
random batch, compiled ahead of time (XLA's FLOP count of it is kept); a PyTorch step is the port in
``torch_models.py``; a data case is the real task's on-device distortion sampler; the parts of the affine
ST-CNN are ``train_parts.py``'s. Importers put the repository root and this directory on ``sys.path``, as
``bench_train.py`` does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import train_parts
from flax import nnx

from configs import mnist as mnist_configs
from stn_jax import data, layers, models, parallel, train_config, train_steps
from stn_jax.data import distortions

NUM_CLASSES = 10
# The CNN that an ST-CNN runs after its transformer (its widths, on the ST output size) with no transformer:
# the baseline for the transformer's own cost, comparable to the paper's "6% slower" (same-size output).
ST_BASELINE = "cnn_st_out"


def model_spec(variant: str, name: str):
  """``(model config, input side)`` of a ``configs/mnist.py`` model name or :data:`ST_BASELINE`."""
  side = distortions.VARIANTS[variant]
  if name == ST_BASELINE:
    widths = mnist_configs.WIDTHS[variant]["st_cnn"]
    return {"name": "cnn", "widths": widths}, side // mnist_configs.ST_DOWNSAMPLE[variant]
  return mnist_configs.model_config(variant, name).to_dict(), side


def jax_step_case(variant, name, batch_size, mesh, seed, flops):
  """One ``stn_jax.train_steps.train_step`` on a fixed random batch; returns ``(run, param_count)``.

  Also stores XLA's FLOP count of the step in ``flops[(variant, name)]``.
  """
  config = mnist_configs.get_config(f"{variant},cnn")  # for the optimizer settings ('paper' schedule)
  model_config, side = model_spec(variant, name)
  model = models.create_model(
    model_config, input_shape=(side, side, 1), num_classes=NUM_CLASSES, rngs=nnx.Rngs(seed)
  )
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  tx = train_config.make_optimizer(config, layers.lr_multipliers(model), train_config.num_steps(config))
  rng = np.random.default_rng(seed)
  batch = (
    rng.uniform(size=(batch_size, side, side, 1)).astype(np.float32),
    rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
  )
  fixed = data.Task(
    name=f"fixed_{variant}",
    input_shape=(side, side, 1),
    num_classes=NUM_CLASSES,
    sample_train=lambda key, n, d: d,
    test_set=lambda: None,
    train_data=batch,
  )
  step = jax.jit(
    functools.partial(
      train_steps.train_step,
      graphdef=graphdef,
      tx=tx,
      task=fixed,
      batch_size=batch_size,
      data_key=jax.random.key(seed),
      mesh=mesh,
    ),
    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
    donate_argnums=0,
  )
  holder = {"state": parallel.replicate({"step": jnp.zeros((), jnp.int32), "params": params,
                                         "opt_state": tx.init(params)}, mesh)}  # fmt: skip
  batch = parallel.replicate(batch, mesh)
  # One eager forward first: it fills the host-side cache of the TPS family (tps._tps_matrix), whose first
  # call fails under jit (a known tps.py bug); harmless for the other models.
  model(batch[0][:2])

  # Compiled ahead of time so XLA's own FLOP count of the step can be reported beside its time.
  compiled = step.lower(holder["state"], batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list | tuple) else cost
  flops[(variant, name)] = float(cost.get("flops", float("nan"))) if cost else float("nan")

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready((holder["state"], metrics))

  return run, models.count_params(model)


def jax_data_case(variant, batch_size, seed):
  """The real task's on-device distortion sampler for one batch."""
  task = data.get_task({"name": "mnist", "variant": variant, "source": "idx"})
  train_data = task.train_data
  counter = {"k": 0}
  base = jax.random.key(seed)

  def run():
    counter["k"] += 1
    jax.block_until_ready(task.sample_train(jax.random.fold_in(base, counter["k"]), batch_size, train_data))

  return run, 0


def torch_step_case(variant, name, batch_size, seed, device="cpu"):
  """One PyTorch SGD step of the port of ``name`` on a fixed random batch, model and batch on ``device``."""
  import torch  # noqa: PLC0415 (optional dependency)
  import torch_models  # noqa: PLC0415

  torch.manual_seed(seed)
  model_config, side = model_spec(variant, name)
  model = torch_models.create_model(model_config, input_shape=(side, side, 1), num_classes=NUM_CLASSES)
  model.to(device)
  step = torch_models.train_step_fn(model, learning_rate=0.01, momentum=0.9)
  images = torch.rand(batch_size, 1, side, side).to(device)
  labels = torch.randint(0, NUM_CLASSES, (batch_size,)).to(device)

  def run():
    loss = step(images, labels).item()  # .item() waits for the step; the synchronize says so explicitly
    torch_models.synchronize(device)
    return loss

  return run, torch_models.count_params(model)


def _failing(error):
  def run():
    raise error

  return run


def build_cases(args, mesh, flops, torch_device="cpu"):
  """``[(key, run, param_count)]`` for every case the flags ask for (``flops``: see :func:`jax_step_case`)."""
  cases = []
  for variant in args.variants:
    step = lambda fw, name, v=variant: {"variant": v, "framework": fw, "model": name, "kind": "step"}
    for name in args.jax_models:
      try:
        built = jax_step_case(variant, name, args.batch_size, mesh, args.seed, flops)
      except Exception as e:  # noqa: BLE001 (reported by measure, the other cases still run)
        built = (_failing(e), 0)
      cases.append((step("jax", name), *built))
    for name in args.torch_models:
      built = torch_step_case(variant, name, args.batch_size, args.seed, torch_device)
      cases.append((step("torch", name), *built))
    if args.data:
      run, _ = jax_data_case(variant, args.batch_size, args.seed)
      cases.append(
        ({"variant": variant, "framework": "jax", "model": "sample_train", "kind": "data"}, run, 0)
      )
    if args.breakdown:
      builders = {
        "jax": train_parts.jax_parts,
        # train_parts runs its PyTorch parts on the CPU: not comparable with a CUDA step.
        "torch": train_parts.torch_parts if args.torch_models and torch_device == "cpu" else None,
      }
      for framework, build in builders.items():
        for part, run in (build(variant, args.batch_size, args.seed) if build else {}).items():
          cases.append(({"variant": variant, "framework": framework, "model": part, "kind": "part"}, run, 0))
  return cases
