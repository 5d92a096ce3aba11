"""Tests of the distorted-MNIST sweep runner (experiments/mnist/sweep.py); no training.

``sweep.py`` runs as the command a user types, with ``--dry_run``: it only prints the training commands,
which are then parsed the way ``stn_jax.main`` parses its flags. Kept runs are synthetic ``results.json``
files (``mnist_runs``).
"""

import os
import shlex
import subprocess
import sys

import mnist_runs
import pytest
from absl import flags
from ml_collections import config_flags


def _sweep(*args, runs_dir, workdir_root):
  argv = [sys.executable, mnist_runs.SWEEP, "--dry_run", f"--runs_dir={runs_dir}"]
  argv += [f"--workdir_root={workdir_root}"]
  return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=120, check=False)


def _parse_main_flags(command):
  """The config ``stn_jax.main`` would build from ``command`` (its --config and --config.* flags)."""
  args = shlex.split(command)
  assert args[:3] == ["python", "-m", "stn_jax.main"]
  argv = ["prog"] + [a for a in args[3:] if a.startswith("--config")]
  argv = [a.replace("--config=configs/", f"--config={mnist_runs.ROOT}/configs/", 1) for a in argv]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
  return values.config, workdir


def test_sweep_dry_run_prints_one_command_per_cell_and_seed(tmp_path):
  proc = _sweep(
    "--variants=rts,tc",
    "--models=cnn,st_cnn_aff",
    "--seeds=2",
    "--first_seed=3",
    "--steps=10",
    "--schedule=fast",
    "--set=batch_size=128",
    runs_dir=tmp_path / "kept",
    workdir_root=tmp_path / "scratch",
  )
  assert proc.returncode == 0, proc.stderr
  commands = proc.stdout.splitlines()
  cells = [(v, m, s) for v in ("rts", "tc") for m in ("cnn", "st_cnn_aff") for s in (3, 4)]
  assert len(commands) == len(cells)
  for command, (variant, model, seed) in zip(commands, cells, strict=True):
    config, workdir = _parse_main_flags(command)
    assert (config.data.variant, config.model.name, config.seed) == (variant, model, seed)
    assert (config.total_steps, config.schedule, config.batch_size) == (10, "fast", 128)
    assert workdir == str(tmp_path / "scratch" / variant / model / f"seed{seed}")
  assert not (tmp_path / "kept").exists() and not (tmp_path / "scratch").exists()  # nothing ran


def test_sweep_tag_keeps_runs_in_their_own_directory(tmp_path):
  mnist_runs.write(tmp_path / "kept", "tc", "st_cnn_aff", 0, 10.0)  # the untagged run does not count
  proc = _sweep(
    "--variants=tc",
    "--models=st_cnn_aff",
    "--tag=locx10",
    "--set=model.lr_multiplier=10.0",
    runs_dir=tmp_path / "kept",
    workdir_root=tmp_path / "scratch",
  )
  assert proc.returncode == 0, proc.stderr
  (command,) = proc.stdout.splitlines()
  config, workdir = _parse_main_flags(command)
  assert config.model.lr_multiplier == 10.0
  assert workdir == str(tmp_path / "scratch" / "tc" / "st_cnn_aff_locx10" / "seed0")


def test_sweep_skips_cells_whose_results_are_kept(tmp_path):
  mnist_runs.write(tmp_path / "kept", "rts", "cnn", 0, 10.0)  # 600 steps, fast, batch 128
  proc = _sweep(
    "--variants=rts",
    "--models=cnn,fcn",
    "--steps=600",
    "--schedule=fast",
    "--set=batch_size=128",
    runs_dir=tmp_path / "kept",
    workdir_root=tmp_path,
  )
  assert proc.returncode == 0, proc.stderr
  assert [_parse_main_flags(c)[0].model.name for c in proc.stdout.splitlines()] == ["fcn"]
  assert "skip rts/cnn/seed0" in proc.stderr


@pytest.mark.parametrize("cells,count", [("table1", 32), ("tc", 4), ("all", 36), ("tc,table1", 36)])
def test_sweep_cell_groups_match_the_papers_tables(tmp_path, cells, count):
  # Table 1: 4 distortions x 8 models; TC: FCN, CNN, ST-FCN Aff, ST-CNN Aff.
  proc = _sweep(f"--cells={cells}", runs_dir=tmp_path, workdir_root=tmp_path)
  assert proc.returncode == 0, proc.stderr
  commands = proc.stdout.splitlines()
  assert len(commands) == len(set(commands)) == count


def test_sweep_rejects_an_unknown_cell_group(tmp_path):
  proc = _sweep("--cells=table2", runs_dir=tmp_path, workdir_root=tmp_path)
  assert proc.returncode != 0 and "unknown cell group 'table2'" in proc.stderr


@pytest.mark.parametrize(
  "args,message",
  [
    (["--variants=rts,xyz"], "unknown distortion(s) 'xyz'"),
    (["--models=cnn,resnet"], "unknown model(s) 'resnet'"),
    (["--cells=tc", "--variants=r"], "no cell of ['tc'] has distortion in ['r']"),
    (["--seeds=0"], "--seeds=0: 0 is not a positive integer"),
  ],
)
def test_sweep_refuses_a_selection_that_runs_nothing(tmp_path, args, message):
  proc = _sweep(*args, runs_dir=tmp_path, workdir_root=tmp_path)
  assert proc.returncode != 0 and message in proc.stderr
  assert proc.stdout == ""


@pytest.mark.parametrize(
  "args,message",
  [
    (["--steps=1000", "--set=batch_size=128"], "steps 600, not 1000"),
    (["--steps=600", "--set=batch_size=128", "--schedule=paper"], "schedule 'fast', not 'paper'"),
    (["--steps=600"], "batch_size 128, not 256"),  # the kept run set a batch size this request does not
    (
      ["--steps=600", "--set=batch_size=128", "--set=model.lr_multiplier=10.0"],
      "lr_multiplier 1.0, not 10.0",
    ),
  ],
)
def test_sweep_refuses_to_skip_a_kept_run_of_another_setting(tmp_path, args, message):
  kept = mnist_runs.write(
    tmp_path / "kept", "tc", "st_cnn_aff", 0, 10.0
  )  # 600 steps, fast, batch 128, loc lr 1
  before = open(kept).read()
  proc = _sweep("--variants=tc", "--models=st_cnn_aff", "--schedule=fast", *args, runs_dir=tmp_path / "kept",
                workdir_root=tmp_path / "scratch")  # fmt: skip
  assert proc.returncode != 0, proc.stdout
  assert message in proc.stderr and os.path.join("tc", "st_cnn_aff", "seed0") in proc.stderr
  assert proc.stdout == "" and open(kept).read() == before  # nothing ran, nothing rewritten
