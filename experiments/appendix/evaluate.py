"""Re-evaluates finished runs on a larger fixed test set (to separate models whose errors are close).

  python experiments/appendix/evaluate.py WORKDIR [WORKDIR ...] --test_size=10000 [--out=FILE.json]

Each ``WORKDIR`` is a finished ``stn_jax.main`` run (it holds ``config.json`` and ``checkpoints/``). The model
is restored from its newest checkpoint and evaluated on the first ``test_size`` examples of its task's fixed
test set (the same generator and seed as in training, only more examples). Prints a markdown table with the
step of the checkpoint evaluated (the config's total steps only if the run kept its last checkpoint), the
test error and its binomial standard error, and writes the numbers, the command, the commit and the host to
``--out`` when given.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

from flax import nnx  # noqa: E402

from stn_jax import checkpoint, data, parallel, provenance, train_steps  # noqa: E402
from stn_jax.coloc_train import load_trained_model  # noqa: E402


def newest_step(workdir: str) -> int:
  """The step of the newest complete checkpoint of the run in ``workdir``."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):  # the Checkpointer would create it
    raise ValueError(f"{workdir}: no checkpoints/ directory (not a stn_jax.main run directory?).")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=None)  # reads only
  try:
    step = ckpt.latest_step()
  finally:
    ckpt.close()
  if step is None:
    raise ValueError(f"{workdir}: no complete checkpoint in {directory}.")
  return step


def evaluate(workdir: str, test_size: int, batch: int = 500) -> dict:
  """Test error (%) and its standard error of the run in ``workdir`` on ``test_size`` test examples.

  ``steps`` in the result is the step of the checkpoint evaluated, the newest one kept.
  """
  step = newest_step(workdir)
  model, config = load_trained_model(workdir, step=step)
  config.data.test_size = int(test_size)
  images, labels = data.get_task(config.data).test_set()
  if len(images) < test_size:
    raise ValueError(f"{workdir}: the test set has only {len(images)} examples, asked for {test_size}.")
  mesh = parallel.make_mesh()
  graphdef, params = nnx.split(model, nnx.Param)
  params = parallel.replicate(nnx.to_pure_dict(params), mesh)
  metrics = train_steps.evaluate(
    graphdef, params, images[:test_size], labels[:test_size], batch_size=batch, mesh=mesh
  )  # the same evaluation as the training loop's
  p = metrics["test_error"] / 100.0
  return {
    "model": config.model.name,
    "lr_multiplier": config.model.get("lr_multiplier"),
    "steps": int(step),
    "test_size": int(test_size),
    "test_error": metrics["test_error"],
    "standard_error": 100.0 * math.sqrt(p * (1 - p) / test_size),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--test_size", type=int, default=10_000)
  parser.add_argument("--out", default=None, help="also write the results as JSON here")
  args = parser.parse_args()
  rows = []
  print("| run | model | loc lr x | steps | test examples | test error % | standard error |")
  print("|---|---|---:|---:|---:|---:|---:|")
  for workdir in args.workdirs:
    r = evaluate(workdir, args.test_size)
    r["workdir"] = os.path.basename(os.path.normpath(workdir))
    rows.append(r)
    print(
      f"| {r['workdir']} | {r['model']} | {r['lr_multiplier']} | {r['steps']} | {r['test_size']:,} | "
      f"{r['test_error']:.2f} | {r['standard_error']:.2f} |",
      flush=True,
    )
  if args.out:
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    provenance.write_json(args.out, {"command": command, "runs": rows, **provenance.environment()})


if __name__ == "__main__":
  main()
