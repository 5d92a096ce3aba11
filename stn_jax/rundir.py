"""A run directory belongs to one config: resuming it with a different one is refused, not silently mixed.

A run directory holds ``config.json`` beside its checkpoints and results. When a command points at a
directory that already holds progress (a checkpoint, partial or final results), its config is compared with
the stored one, field by field. Fields that cannot change the numbers (how often to log, evaluate or save, how
many figures to draw) may differ; any other difference raises :class:`ConfigMismatchError` naming the fields,
so that a model trained on one distortion is never scored on another, nor a seed-0 run labelled seed 1.
Fields present in only one of the two (added to or removed from the code since the run began) are reported
in the log and otherwise ignored.
"""

from __future__ import annotations

import json
import os

import jax
from absl import logging

from stn_jax import provenance

CONFIG_FILE = "config.json"
# Fields of the supervised configs that only change bookkeeping, never the trained parameters or the result.
BOOKKEEPING_FIELDS = (
  "log_every",
  "eval_every",
  "checkpoint_every",
  "checkpoints_to_keep",
  "num_figure_examples",
  "eval_batch_size",
)


class ConfigError(ValueError):
  """A config the training loops refuse to run (a bad field value, or one that conflicts with the run dir)."""


class ConfigMismatchError(ConfigError):
  """The config of a command differs from the one its run directory was made with."""


def flatten(tree, prefix: str = "") -> dict:
  """Nested dicts -> ``{'a.b': value}`` (lists stay values)."""
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def _as_json(config) -> dict:
  """The config as ``config.json`` stores it (tuples become lists; other values as ``str``)."""
  return json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config, default=str))


def differences(stored: dict, current: dict, ignore=BOOKKEEPING_FIELDS) -> tuple[dict, list[str]]:
  """Compares two configs as stored in JSON.

  Args:
    stored: the run directory's config (a dict read from ``config.json``).
    current: the new config (a dict or ``ConfigDict``).
    ignore: dotted field names (or their last component) whose values may differ.

  Returns:
    ``(changed, one_sided)``: ``{field: (stored value, new value)}`` for fields in both that differ, and the
    sorted fields present in only one of the two.
  """
  a, b = flatten(_as_json(stored)), flatten(_as_json(current))
  skip = lambda k: k in ignore or k.rsplit(".", 1)[-1] in ignore
  changed = {k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k] and not skip(k)}
  return changed, sorted(a.keys() ^ b.keys())


def claim(workdir: str, config, *, has_progress: bool, ignore=BOOKKEEPING_FIELDS) -> None:
  """Checks ``config`` against the run directory's, then writes it as ``config.json``.

  Call this after the config has been validated (a command that fails its checks must not rewrite the
  directory's config) and before training.

  Args:
    workdir: the run directory (exists).
    config: the command's config.
    has_progress: whether the directory holds results of the stored config (checkpoints, partial or final
      results). Without progress there is nothing to protect and the new config simply replaces the old one.
    ignore: fields that may differ (see :data:`BOOKKEEPING_FIELDS`).

  Raises:
    ConfigMismatchError: if the directory has progress and a stored config that differs in a field that is
      not ignored.
    ConfigError: if the directory has progress and its ``config.json`` cannot be read.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  stored = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        stored = json.load(f)
      if not isinstance(stored, dict):
        raise ValueError(f"it holds a {type(stored).__name__}, not a config")
    except (OSError, ValueError) as e:
      stored = None
      if has_progress:  # the record of what the progress was made with is lost: do not guess
        raise ConfigError(
          f"{path} cannot be read ({e}), and {workdir} holds progress made with the config it recorded. "
          "Restore it (a finished run's results.json holds a copy under 'config') or use a new --workdir."
        ) from e
  elif has_progress:
    logging.warning(
      "%s holds progress but no %s: the config it was made with cannot be checked against this one.",
      workdir,
      CONFIG_FILE,
    )
  if has_progress and stored is not None:
    changed, one_sided = differences(stored, config, ignore)
    if changed:
      lines = "\n".join(f"  {k}: {old!r} in the run, {new!r} now" for k, (old, new) in changed.items())
      raise ConfigMismatchError(
        f"{workdir} holds a run made with a different config:\n{lines}\nResuming would mix the two. Use a "
        "new --workdir for the new config, or rerun with the stored values to resume."
      )
    if one_sided:
      logging.warning("Fields in only one of the stored and the new config (ignored): %s", one_sided)
  if stored == _as_json(config):
    return  # unchanged: leave the file (and its modification time) as it is
  if jax.process_index() == 0:  # one writer in a multi-host run
    provenance.write_json(path, config.to_dict() if hasattr(config, "to_dict") else config)
