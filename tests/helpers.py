"""Helpers shared by several test modules (not a test module itself; pytest puts tests/ on sys.path)."""

import jax
import jax.extend

from configs import mnist as mnist_configs
from stn_jax import train


def primitives(jaxpr) -> set[str]:
  """Names of every primitive in ``jaxpr``, nested jaxprs (jit, custom_jvp) included."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      names |= primitives(sub)
  return names


def train_tiny_run(workdir, arg: str, *, test_size: int, checkpoint_every: int = 2) -> None:
  """A finished two-step ``configs/mnist.py:<arg>`` run in ``workdir`` (checkpoints, config, results.json)."""
  config = mnist_configs.get_config(arg)
  config.update(
    batch_size=16, total_steps=2, schedule="fast", warmup_steps=0, log_every=1,
    checkpoint_every=checkpoint_every, eval_every=0, eval_batch_size=32, num_figure_examples=0,
  )  # fmt: skip
  config.data.test_size = test_size
  train.train_and_evaluate(config, str(workdir))
