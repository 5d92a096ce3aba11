"""Helpers shared by several test modules (not a test module itself; pytest puts tests/ on sys.path)."""

import contextlib
import json
import os
import signal
import struct

import jax
import jax.extend
from tensorboardX.proto import event_pb2

from configs import mnist as mnist_configs
from stn_jax import metrics, train


def primitives(jaxpr) -> set[str]:
  """Names of every primitive in ``jaxpr``, nested jaxprs (jit, custom_jvp) included."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      names |= primitives(sub)
  return names


@contextlib.contextmanager
def default_stop_signals():
  """SIGINT and SIGTERM at Python's defaults for the block, whatever the launcher set (a suite started with
  ``&`` from a script inherits SIGINT ignored), and put back as they were after it."""
  before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  signal.signal(signal.SIGINT, signal.default_int_handler)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    yield
  finally:
    for s, h in before.items():
      signal.signal(s, h)


def train_tiny_run(workdir, arg: str, *, test_size: int, checkpoint_every: int = 2) -> None:
  """A finished two-step ``configs/mnist.py:<arg>`` run in ``workdir`` (checkpoints, config, results.json)."""
  config = mnist_configs.get_config(arg)
  config.update(
    batch_size=16, total_steps=2, schedule="fast", warmup_steps=0, log_every=1,
    checkpoint_every=checkpoint_every, eval_every=0, eval_batch_size=32, num_figure_examples=0,
  )  # fmt: skip
  config.data.test_size = test_size
  train.train_and_evaluate(config, str(workdir))


def records(workdir) -> list[tuple[int, str]]:
  """``(step, 'train' | 'eval')`` of every line of the run's metrics.jsonl, in file order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [(r["step"], "eval" if any(k.startswith("eval/") for k in r) else "train") for r in records]


def tensorboard_steps(workdir) -> dict[str, list[int]]:
  """``{tag: [step, ...]}`` of the run's TensorBoard scalars as TensorBoard shows them.

  Reads the event files in name order, as TensorBoard does, and applies its rule for restarts (the
  ``purge_orphaned_data`` of its ``EventAccumulator``, on by default): a ``SessionLog.START`` event at step
  ``s`` (what tensorboardX writes for ``purge_step=s``) hides every event read before it at a step >= ``s``.
  """
  steps = {}
  directory = os.path.join(workdir, "tensorboard")
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      buffer = f.read()
    pos = 0
    while pos < len(buffer):  # TFRecords: length (uint64), its CRC, the event, the event's CRC
      (length,) = struct.unpack("<Q", buffer[pos : pos + 8])
      event = event_pb2.Event.FromString(buffer[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      if event.session_log.status == event_pb2.SessionLog.START:
        steps = {tag: [s for s in points if s < event.step] for tag, points in steps.items()}
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  return steps


def jsonl_steps(workdir) -> dict[str, list[int]]:
  """``{name: [step, ...]}`` of the run's ``metrics.jsonl`` (one step per record, the last record winning)."""
  series = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {name: [step for step, _ in points] for name, points in series.items()}
