"""Tests for stn_jax.provenance: what every results.json records about its run."""

import json
import os
import re
import subprocess

import jax.numpy as jnp
import pytest

from stn_jax import provenance


def test_git_commit_is_head_of_this_checkout():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
  if head.returncode:
    pytest.skip(f"not a git checkout that git can read here: {head.stderr.strip()}")
  commit = provenance.git_commit()
  assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
  assert commit.removesuffix("-dirty") == head.stdout.strip()


def test_results_written_into_runs_directories_do_not_make_the_tree_dirty():
  assert not provenance.is_dirty("")
  # What a sweep leaves while it runs: its results, untracked, under experiments/*/runs/.
  assert not provenance.is_dirty(
    "?? experiments/mnist/runs/e/cnn/seed1/\n?? experiments/appendix/runs/x/results.json\n"
  )
  assert provenance.is_dirty(" M stn_jax/train.py\n")  # a changed tracked file
  assert provenance.is_dirty("?? stn_jax/new_module.py\n")  # an untracked file outside runs/
  assert provenance.is_dirty("?? experiments/mnist/runs_helper.py\n")  # 'runs' only as a directory
  assert provenance.is_dirty("?? runs.py\n")
  assert provenance.is_dirty("?? stn_jax/runs/helper.py\n")  # only results under experiments/ are exempt
  assert provenance.is_dirty("M  experiments/mnist/runs/r/cnn/seed0/results.json\n")  # tracked result changed


def test_host_names_the_cpu_and_its_load():
  host = provenance.host()
  assert isinstance(host["cores"], int) and host["cores"] >= 1
  load = host["load_average_1_5_15_min"]
  assert load is None or (len(load) == 3 and all(x >= 0 for x in load))
  assert host["cpu"] is None or (isinstance(host["cpu"], str) and host["cpu"])


def test_environment_fields_are_json_and_complete(tmp_path):
  env = provenance.environment()
  assert set(env) == {"git_commit", "hardware", "host", "versions"}
  assert env["hardware"]["device_count"] >= 1
  assert set(env["versions"]) == {"jax", "flax", "optax"}
  path = tmp_path / "env.json"
  provenance.write_json(str(path), dict(env, dtype=jnp.float32))
  back = json.loads(path.read_text())
  assert back["host"] == json.loads(json.dumps(env["host"]))
  assert back["dtype"] == str(jnp.float32)


def test_command_is_the_process_command_line_quoted(monkeypatch):
  main = os.path.join("/x", "stn_jax", "main.py")
  argv = [main, "--config=configs/mnist.py:tc,cnn", "--config.model.widths=(16, 32)"]
  monkeypatch.setattr("sys.argv", argv)
  cmd = provenance.command()
  assert cmd == "python -m stn_jax.main --config=configs/mnist.py:tc,cnn '--config.model.widths=(16, 32)'"
  monkeypatch.setattr("sys.argv", ["experiments/mnist/sweep.py", "--seeds=3"])
  assert provenance.command() == "python experiments/mnist/sweep.py --seeds=3"


def test_write_json_cut_short_leaves_the_previous_file_whole(tmp_path):
  # A kill while writing partial_results.json or results.json must not leave a file the rerun cannot read.
  class Unprintable:
    def __str__(self):
      raise KeyboardInterrupt  # stands for the kill, in the middle of the dump

  path = tmp_path / "partial_results.json"
  provenance.write_json(str(path), {"t/1": {"success": 1.0}})
  with pytest.raises(KeyboardInterrupt):
    provenance.write_json(str(path), {"t/1": {"success": 1.0}, "t/2": {"success": Unprintable()}})
  assert json.loads(path.read_text()) == {"t/1": {"success": 1.0}}
  assert os.listdir(tmp_path) == ["partial_results.json"]  # no temporary file left behind
