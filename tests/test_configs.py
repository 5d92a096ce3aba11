"""Tests of configs/mnist.py and the command-line override path (ml_collections config_flags)."""

import os

import pytest
from absl import flags
from ml_collections import config_flags

from configs import mnist as mnist_configs

_CONFIG_FILE = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "mnist.py"
)


def _parse(*overrides, arg="rts,st_cnn_aff"):
  argv = ["prog", f"--config={_CONFIG_FILE}:{arg}", *overrides]
  values = flags.FlagValues()
  # The --config.* override flags are read from sys_argv (sys.argv in stn_jax.main).
  config_flags.DEFINE_config_file(
    "config", None, "config", flag_values=values, lock_config=True, sys_argv=argv
  )
  values(argv)
  return values.config


@pytest.mark.parametrize("distortion", mnist_configs.DISTORTIONS)
def test_every_cell_builds(distortion):
  for name in mnist_configs.MODEL_NAMES:
    config = mnist_configs.get_config(f"{distortion},{name}")
    assert config.data.variant == distortion and config.model.name == name
    assert (
      config.model.get("st_downsample") == (2 if distortion in ("rts", "tc") else 1)
    ) == name.startswith("st_")


def test_paper_defaults_and_quick_preset():
  config = mnist_configs.get_config("rts,st_cnn_aff")
  assert (config.schedule, config.batch_size, config.total_steps, config.learning_rate) == (
    "paper",
    256,
    150_000,
    None,
  )
  assert config.model.widths == (32, 64) and config.model.st_downsample == 2
  quick = mnist_configs.get_config("rts,st_cnn_aff,quick")
  assert quick.schedule == "fast" and quick.total_steps < 10_000


def test_command_line_overrides():
  config = _parse(
    "--config.total_steps=7",
    "--config.seed=3",
    "--config.learning_rate=0.05",
    "--config.model.widths=(8,16)",
    "--config.data.test_size=100",
    "--config.schedule=fast",
  )
  assert (config.total_steps, config.seed, config.learning_rate) == (7, 3, 0.05)
  assert tuple(config.model.widths) == (8, 16) and config.data.test_size == 100 and config.schedule == "fast"


def test_unknown_fields_are_errors():
  with pytest.raises(AttributeError, match='Did you mean "total_steps"'):
    _parse("--config.totl_steps=7")
  config = _parse()
  with pytest.raises(AttributeError):
    config.totl_steps = 7  # locked: a typo cannot add a field


@pytest.mark.parametrize("arg", ["rts", "rts,st_cnn_aff,slow", "xyz,cnn", "rts,resnet"])
def test_bad_arguments(arg):
  with pytest.raises(ValueError):
    mnist_configs.get_config(arg)
