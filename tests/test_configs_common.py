"""Tests of configs/common.py: the shared training fields, as the three supervised configs use them.

``tests/fixtures/config_dicts.json`` holds ``config.to_dict()`` of every variant, model and preset of
``configs/mnist.py``, ``configs/addition.py`` and ``configs/volume3d.py``. It was first written from the
configs as they were before the shared fields moved to ``configs/common.py``, and it keeps any config change
a deliberate one: after changing a config on purpose, rewrite the fixture with

  PYTHONPATH=. python tests/test_configs_common.py

(from the repository root) and review its diff.
"""

import json
import os
import subprocess
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from configs import addition, common, mnist, volume3d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "config_dicts.json")
FAMILIES = {"mnist": mnist, "addition": addition, "volume3d": volume3d}
# Fields read by the training loop (validated in stn_jax/train_config.py) that common.add_training_fields
# sets (the families' quick presets and arguments may change some of their values, never the set of fields).
TRAINING_FIELDS = (
  "seed",
  "batch_size",
  "total_steps",
  "num_epochs",
  "examples_per_epoch",
  "schedule",
  "learning_rate",
  "momentum",
  "warmup_steps",
  "log_every",
  "eval_every",
  "eval_batch_size",
  "checkpoint_every",
  "checkpoints_to_keep",
  "num_figure_examples",
)


def config_args() -> list[tuple[str, str]]:
  """``(family, arg)`` for every variant x model x preset (plus one ``tiny_*`` test model per family)."""
  presets = ("", ",quick")
  args = [
    ("mnist", f"{d},{m}{p}")
    for d in mnist.DISTORTIONS
    for m in mnist.MODEL_NAMES + ("tiny_cnn", "tiny_st_fcn_aff")
    for p in presets
  ]
  args += [("addition", f"{m}{p}") for m in addition.MODEL_NAMES + ("tiny_fcn",) for p in presets]
  args += [("volume3d", f"{m}{p}") for m in volume3d.MODEL_NAMES + ("tiny_st_cnn",) for p in presets]
  return args


def as_json(config) -> dict:
  """``config.to_dict()`` as JSON reads it back (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


def _fixture() -> dict:
  with open(FIXTURE) as f:
    return json.load(f)


@pytest.mark.parametrize("family,arg", config_args())
def test_config_unchanged(family, arg):
  want = _fixture()[f"{family}:{arg}"]
  got = as_json(FAMILIES[family].get_config(arg))
  assert got == want, f"{family}:{arg} differs from {FIXTURE} (if on purpose, rewrite it: see the docstring)"


def test_fixture_covers_exactly_the_tested_configs():
  assert sorted(_fixture()) == sorted(f"{family}:{arg}" for family, arg in config_args())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_the_training_fields_with_typed_placeholders(family):
  config = FAMILIES[family].get_config()
  assert set(TRAINING_FIELDS) <= set(config.keys())
  # Unset fields keep their type, so that --config.learning_rate=0.05 parses as a float.
  for name in ("num_epochs", "learning_rate"):
    assert config[name] is None and config.get_ref(name).get_type() is float


def test_add_training_fields_arguments():
  config = common.add_training_fields(ml_collections.ConfigDict(), eval_batch_size=7, num_figure_examples=0)
  assert (config.eval_batch_size, config.num_figure_examples) == (7, 0)
  assert set(config.keys()) == set(TRAINING_FIELDS)


@pytest.mark.parametrize(
  "path", ["configs/mnist.py:rts,fcn,quick", "configs/addition.py:fcn,quick", "configs/volume3d.py:cnn"]
)
def test_loaded_by_path_in_process(path):
  argv = ["prog", f"--config={os.path.join(ROOT, path)}", "--config.learning_rate=0.05"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  assert values.config.learning_rate == 0.05


def test_loaded_by_path_as_stn_jax_main_loads_it():
  """A fresh interpreter in the repository root, with sys.path as ``python -m stn_jax.main`` has it."""
  script = (
    "from absl import flags\n"
    "from ml_collections import config_flags\n"
    "argv = ['prog', '--config=configs/mnist.py:rts,fcn,quick', '--config.seed=3']\n"
    "config_flags.DEFINE_config_file('config', None, '', lock_config=True, sys_argv=argv)\n"
    "flags.FLAGS(argv)\n"
    "print(flags.FLAGS.config.schedule, flags.FLAGS.config.seed, flags.FLAGS.config.total_steps)\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == ["fast", "3", "600"]


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.foo=1", "unknown config field 'foo' (overrides given: --config.foo)"),
    ("--config.data.varaint=r", "unknown config field 'varaint' (Did you mean \"variant\""),
    ("--config.batch_size=0", "FATAL config error: config.batch_size must be an int >= 1, got 0."),
    ("--config.data.variant=rts", "FATAL config error: config.data.variant is 'rts', but the config's model"),
  ],
)
def test_an_unknown_or_refused_override_is_one_clear_line(tmp_path, override, message):
  cmd = [
    sys.executable,
    "-m",
    "stn_jax.main",
    "--config=configs/mnist.py:e,tiny_fcn",
    f"--workdir={tmp_path}",
  ]
  out = subprocess.run([*cmd, override], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0
  assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
  assert not os.listdir(tmp_path)


if __name__ == "__main__":
  dicts = {f"{family}:{arg}": as_json(FAMILIES[family].get_config(arg)) for family, arg in config_args()}
  with open(FIXTURE, "w") as f:
    json.dump(dicts, f, indent=1)
    f.write("\n")
  print(f"{len(dicts)} configs -> {FIXTURE}")
