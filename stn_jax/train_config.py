"""The training fields of a classification config: their validation, the run length, the optimizer.

:func:`validate_config` checks the fields :mod:`stn_jax.train` reads before anything is built or written;
:func:`num_steps` turns a length in epochs or steps into steps (the trainer only deals in steps);
:func:`make_optimizer` builds the optimizer of the schedule, with per-parameter learning-rate multipliers.

Schedules (``config.schedule``):

* ``'paper'``: SGD with momentum ``config.momentum``, learning rate ``config.learning_rate`` (default 0.01)
  divided by 10 after 1/3 and 2/3 of the run (the paper's 50k and 100k of 150k steps).
* ``'fast'``: Adam, learning rate (default 1e-3) with linear warm-up over ``config.warmup_steps`` (at most
  10% of the run) then cosine decay to 0 at the last step: converges in far fewer steps, for limited budgets.
"""

from __future__ import annotations

import functools
import math

import jax
import optax

from stn_jax import _checks, rundir

SCHEDULES = ("paper", "fast")


def check_seed(config) -> None:
  """Raises ``rundir.ConfigError`` unless ``config.seed`` is a seed JAX tells apart
  (:func:`stn_jax._checks.seed`). (``data.test_seed`` is checked by the data task, built before the run
  directory is touched.)"""
  try:
    _checks.seed("config.seed", config.get("seed"))
  except (TypeError, ValueError) as e:
    raise rundir.ConfigError(str(e)) from None


def validate_config(config) -> None:
  """Raises ``rundir.ConfigError`` (a ``ValueError``) naming the first field the loop cannot run with."""

  def need(ok: bool, field: str, what: str):
    if not ok:
      raise rundir.ConfigError(f"config.{field} must be {what}, got {config.get(field)!r}.")

  def number(field):
    value = config.get(field)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

  def integer(field, minimum):
    value = config.get(field)
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

  positive_int = functools.partial(integer, minimum=1)
  count = functools.partial(integer, minimum=0)
  need(config.get("schedule") in SCHEDULES, "schedule", f"one of {SCHEDULES}")
  check_seed(config)
  need(positive_int("batch_size"), "batch_size", "an int >= 1")
  if config.get("num_epochs") is None:
    need(positive_int("total_steps"), "total_steps", "an int >= 1")
  else:
    need((number("num_epochs") or 0) > 0 and math.isfinite(config.num_epochs), "num_epochs", "> 0")
    need(positive_int("examples_per_epoch"), "examples_per_epoch", "an int >= 1")
  lr = config.get("learning_rate")
  need(
    lr is None or (number("learning_rate") is not None and 0 < lr < math.inf), "learning_rate", "None or > 0"
  )
  if config.schedule == "paper":
    m = number("momentum")
    need(config.get("momentum") is None or (m is not None and 0 <= m < 1), "momentum", "None or in [0, 1)")
  for field in ("warmup_steps", "log_every", "eval_every", "checkpoint_every", "num_figure_examples"):
    need(count(field), field, "an int >= 0")
  need(positive_int("eval_batch_size"), "eval_batch_size", "an int >= 1")
  keep = config.get("checkpoints_to_keep")
  need(
    keep is None or positive_int("checkpoints_to_keep"), "checkpoints_to_keep", "None (all) or an int >= 1"
  )
  # Fields a config file derived from a data field (e.g. configs/mnist.py's widths from the distortion).
  for key, value in (config.get("built_for") or {}).items():
    current = config.data.get(key)
    if current != value:
      raise rundir.ConfigError(
        f"config.data.{key} is {current!r}, but the config's model fields were derived for {value!r}; choose "
        f"it with the config file's argument instead of --config.data.{key}."
      )


def num_steps(config) -> int:
  """Training length in steps: from ``config.num_epochs`` when set, else ``config.total_steps``."""
  if config.get("num_epochs") is not None:
    return max(1, math.ceil(config.num_epochs * config.examples_per_epoch / config.batch_size))
  return int(config.total_steps)


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (see the module docstring for the schedules)."""
  if config.schedule == "paper":
    lr = 0.01 if config.learning_rate is None else config.learning_rate
    bounds = {max(1, round(total_steps * f)): 0.1 for f in (1 / 3, 2 / 3)}
    return optax.piecewise_constant_schedule(lr, bounds)
  if config.schedule == "fast":
    lr = 1e-3 if config.learning_rate is None else config.learning_rate
    warmup = min(int(config.warmup_steps), total_steps // 10)  # short runs: at most 10% warm-up
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), end_value=0.0)
  raise ValueError(f"unknown schedule {config.schedule!r}; expected one of {SCHEDULES}.")


def make_optimizer(config, lr_multipliers, total_steps: int) -> optax.GradientTransformation:
  """The optimizer of ``config.schedule``, with per-parameter learning-rate multipliers.

  Args:
    config: the run config.
    lr_multipliers: pytree of floats shaped like the params (``layers.lr_multipliers(model)``).
    total_steps: the run's length (sets the schedule).

  Returns:
    The optax transformation. Parameters whose multiplier is not 1 get their updates scaled through
    ``optax.multi_transform`` (one label per distinct multiplier), which equals scaling their learning rate.
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.schedule == "paper":
    base = lambda: optax.sgd(schedule, momentum=config.momentum or None)
  else:
    base = lambda: optax.adam(schedule)
  factors = sorted(set(jax.tree.leaves(lr_multipliers)))
  if factors == [1.0]:
    return base()
  label = lambda m: f"lr_x{m:g}"
  transforms = {label(m): optax.chain(base(), optax.scale(m)) for m in factors}
  return optax.multi_transform(transforms, jax.tree.map(label, lr_multipliers))
