r"""Diagnostics behind the ``,quick`` preset of ``configs/addition.py``: why learning was slow (reduced).

From the repo root (``PYTHONPATH=.`` or the package installed):

  D=experiments/appendix/runs/addition/diagnostics/diagnose.py
  python $D train add_2xst_fcn_aff --lr 3e-3
  python $D attention /tmp/stn_appendix/addition/2xst_fcn_aff

``train``: a bare Adam loop (constant learning rate, no warm-up unless ``--sched cosine``) on the addition
data, printing every ``--every`` steps the mean training loss, the test error on the first 1,000 test pairs
of the seed-0 set and, for the ST models, each transformer's mean ``theta`` over 200 test pairs (affine:
``[a, b, tx, c, d, ty]``; ``a, d`` > 1 means zoomed out). ``--data clean`` pairs undistorted digits centred
in the 42 x 42 canvas (is the sum itself hard?); ``--data rts1`` keeps the RTS pairs but labels them with the
first digit only (do the transformers learn when the label names one digit?). ``--locmult`` scales the
localisation nets' and regression layers' updates; ``--norm`` standardises the inputs (mean 0.054, sd 0.2).

``attention``: for a trained run, per transformer, the correlation of the position its output centre samples
with the ink centre of mass of each channel (near 1 for the channel it follows), and the mean and spread of
``theta``, over the first 500 test pairs.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stn_jax import coloc_train
from stn_jax.data import addition, mnist
from stn_jax.models import addition as addition_models


def _centred(first, second):
  """Two uint8 digit batches ``(B, 28, 28)`` centred, undistorted, in a ``(B, 42, 42, 2)`` canvas."""
  pad = lambda d: jnp.pad(d.astype(jnp.float32) / 255, ((0, 0), (7, 7), (7, 7)))
  return jnp.stack([pad(first), pad(second)], -1)


def _test_data(kind):
  images, sums = addition.test_set(0, num=1000)
  digits, labels = mnist.load("test", source="idx")
  if kind == "clean":
    partner = np.random.RandomState(0).permutation(10_000)[:1000]
    return np.asarray(_centred(jnp.asarray(digits[:1000]), jnp.asarray(digits[partner]))), (
      labels[:1000] + labels[partner]
    )
  if kind == "rts1":
    return images, labels[:1000]  # test pair i starts with test digit i
  return images, sums


def train(args):
  digits, labels = (jnp.asarray(a) for a in mnist.load("train", source="idx"))
  labels = labels.astype(jnp.int32)

  @jax.jit
  def sample(key):
    k_idx, k_img = jax.random.split(key)
    idx = jax.random.randint(k_idx, (2, args.batch), 0, digits.shape[0])
    first, second = digits[idx[0]], digits[idx[1]]
    x = _centred(first, second) if args.data == "clean" else addition.pair(k_img, first, second)
    y = labels[idx[0]] if args.data == "rts1" else labels[idx[0]] + labels[idx[1]]
    return x, y

  test_x, test_y = _test_data(args.data)
  model = addition_models.MODELS[args.model](input_shape=(42, 42, 2), num_classes=19, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  lr = args.lr
  if args.sched == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(200, args.steps // 10), args.steps)
  is_loc = lambda path: any(getattr(k, "key", None) in ("localization", "regression") for k in path)
  labels_tree = jax.tree_util.tree_map_with_path(lambda p, _: "loc" if is_loc(p) else "rest", params)
  tx = optax.multi_transform(
    {"loc": optax.chain(optax.adam(lr), optax.scale(args.locmult)), "rest": optax.adam(lr)}, labels_tree
  )

  def forward(p, x):
    return nnx.merge(graphdef, p)((x - 0.054) / 0.2 if args.norm else x)

  @jax.jit
  def step(p, s, key):
    x, y = sample(key)
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  @jax.jit
  def error(p, x, y):
    return 100 * jnp.mean(jnp.argmax(forward(p, x), -1) != y)

  opt_state, key, losses, t0 = tx.init(params), jax.random.key(1), [], time.time()
  for i in range(1, args.steps + 1):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
    losses.append(loss)
    if i % args.every == 0:
      if "transformers" in params:
        x = jnp.asarray(test_x[:200])
        _, aux = nnx.merge(graphdef, params)((x - 0.054) / 0.2 if args.norm else x, return_aux=True)
        print(
          " ".join(np.array2string(np.asarray(b["theta"]).mean(0), precision=2) for b in aux["transformers"])
        )
      mean_loss = float(np.mean(jax.device_get(losses[-args.every :])))
      err = float(error(params, jnp.asarray(test_x), jnp.asarray(test_y)))
      print(
        f"{args.model} {args.data} step {i} loss {mean_loss:.3f} test err {err:.1f} ({time.time() - t0:.0f}s)"
      )


def attention(args):
  model, _ = coloc_train.load_trained_model(args.workdir)
  images, _ = addition.test_set(0, num=500)
  ys, xs = np.mgrid[0:42, 0:42]
  mass = images.sum((1, 2))
  centres = np.stack(
    [(images * xs[..., None]).sum((1, 2)) / mass, (images * ys[..., None]).sum((1, 2)) / mass], 1
  )
  _, aux = model(jnp.asarray(images), return_aux=True)
  for b, branch in enumerate(aux["transformers"]):
    grid = np.asarray(branch["grid"])
    h, w = grid.shape[1:3]
    sampled = (grid[:, h // 2, w // 2] + 1) * images.shape[1] / 2 - 0.5  # pixel position, (x, y)
    corr = [np.mean([np.corrcoef(sampled[:, a], centres[:, a, c])[0, 1] for a in range(2)]) for c in range(2)]
    theta = np.asarray(branch["theta"])
    print(
      f"ST{b + 1}: corr(sampled centre, ink centre) ch0 {corr[0]:.2f} ch1 {corr[1]:.2f}; "
      f"theta mean {np.round(theta.mean(0), 2)} sd {np.round(theta.std(0), 2)}"
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  t = sub.add_parser("train")
  t.add_argument("model")
  t.add_argument("--data", choices=("rts", "clean", "rts1"), default="rts")
  t.add_argument("--steps", type=int, default=1500)
  t.add_argument("--every", type=int, default=300)
  t.add_argument("--lr", type=float, default=1e-3)
  t.add_argument("--batch", type=int, default=128)
  t.add_argument("--locmult", type=float, default=1.0)
  t.add_argument("--sched", choices=("const", "cosine"), default="const")
  t.add_argument("--norm", action="store_true")
  a = sub.add_parser("attention")
  a.add_argument("workdir")
  args = parser.parse_args()
  train(args) if args.command == "train" else attention(args)


if __name__ == "__main__":
  main()
