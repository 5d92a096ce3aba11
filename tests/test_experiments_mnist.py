"""Tests of the distorted-MNIST sweep runner and report (experiments/mnist/{sweep,report}.py); no training.

``report.py`` is loaded from its path and fed synthetic ``results.json`` files in a temporary directory.
``sweep.py`` runs as the command a user types, with ``--dry_run``: it only prints the training commands,
which are then parsed the way ``stn_jax.main`` parses its flags. (Both scripts define a ``--runs_dir`` flag
on absl's global flags, so only one of them is imported into this process.)
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "experiments", "mnist", "sweep.py")
REPORT = os.path.join(ROOT, "experiments", "mnist", "report.py")


def _load_report():
  spec = importlib.util.spec_from_file_location("mnist_report", REPORT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


report = _load_report()


def _write_run(
  runs_dir, variant, model, seed, error, *, steps=600, schedule="fast", batch=128, wall=60.0, loc_lr=1.0,
  regression_lr=None, tag="", device="cpu", **config,
):  # fmt: skip
  """A results.json with the fields train.py and sweep.py write that the report reads.

  ``config`` holds further config fields (``data={"test_size": 1000}``, ``learning_rate=0.003``).
  """
  path = os.path.join(runs_dir, variant, f"{model}_{tag}" if tag else model, f"seed{seed}", "results.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  run = {
    "test_error": error,
    "steps": steps,
    "seed": seed,
    "variant": variant,
    "model": model,
    "schedule": schedule,
    "batch_size": batch,
    "wall_seconds": wall,
    "hardware": {"device_count": 1, "device_kind": device},
    "config": {"batch_size": batch, "model": {"name": model}, **config},
  }
  if model.startswith("st_"):
    run["config"]["model"]["lr_multiplier"] = loc_lr
    if regression_lr is not None:
      run["config"]["model"]["regression_lr_multiplier"] = regression_lr
  with open(path, "w") as f:
    json.dump(run, f)
  return path


def _row(section, title):
  """The table rows of the section that start with ``| <title> |``."""
  return [line for line in section.splitlines() if line.startswith(f"| {title} |")]


# ----------------------------------------------------------------------------------------------- report


def test_our_number_sits_beside_the_papers_cell_labelled_reduced(tmp_path):
  _write_run(tmp_path, "rts", "st_cnn_aff", 0, 4.0, wall=60.0)
  _write_run(tmp_path, "rts", "st_cnn_aff", 1, 5.0, wall=120.0)
  section = report.render(report.load_runs(str(tmp_path)))
  rts = section[section.index("### RTS") : section.index("### P ")]
  # Mean 4.5, sample sd of (4, 5) = 0.7071; mean wall 90 s; the paper's RTS ST-CNN Aff cell is 0.5.
  assert _row(rts, "ST-CNN Aff") == [
    "| ST-CNN Aff | 0.5 | 4.50 ± 0.71 | 2 | 600 | fast | 128 | 1.5 min | 1x cpu | **reduced** |"
  ]
  assert _row(rts, "CNN") == ["| CNN | 0.8 | not run | | | | | | | |"]
  assert "4.50" not in section.replace(rts, "")  # only in its own cell


def test_each_setting_gets_its_own_row_and_only_the_papers_protocol_is_labelled_paper(tmp_path):
  _write_run(tmp_path / "a", "tc", "fcn", 0, 40.0)
  _write_run(tmp_path / "b", "tc", "fcn", 0, 13.0, steps=150_000, schedule="paper", batch=256, wall=7200.0)
  runs = report.load_runs(str(tmp_path / "a")) + report.load_runs(str(tmp_path / "b"))
  rows = _row(report.render(runs), "FCN")
  tc_rows = [r for r in rows if "| 13.2 |" in r]
  assert tc_rows == [
    "| FCN | 13.2 | 13.00 | 1 | 150,000 | paper | 256 | 2.0 h | 1x cpu | paper |",
    "| FCN | 13.2 | 40.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |",
  ]


def test_bars_compare_only_runs_at_equal_settings(tmp_path):
  _write_run(tmp_path, "rts", "cnn", 0, 10.0)
  _write_run(tmp_path, "rts", "st_cnn_aff", 0, 4.0)
  _write_run(tmp_path, "tc", "fcn", 0, 30.0)
  _write_run(tmp_path, "tc", "st_fcn_aff", 0, 35.0)
  _write_run(tmp_path, "rts", "fcn", 0, 20.0, steps=1000)  # no ST-FCN run at 1000 steps: no bar
  lines = report.bar_checks(report.summarise(report.load_runs(str(tmp_path))))
  bars = [line for line in lines if line.startswith("| RTS") or line.startswith("| TC")]
  assert bars == [
    "| RTS | ST-CNN Aff 4.00 vs CNN 10.00 | 600 steps, fast, batch 128 | yes |",
    "| TC | ST-FCN Aff 35.00 vs FCN 30.00 | 600 steps, fast, batch 128 | **no** |",
  ]
  assert report.bar_checks({}) == ["No pair of runs at equal settings yet.", ""]


def test_a_localisation_lr_multiplier_is_its_own_setting_and_is_paired_with_the_baseline(tmp_path):
  _write_run(tmp_path, "tc", "cnn", 0, 9.0)
  _write_run(tmp_path, "tc", "st_cnn_aff", 0, 10.0)
  _write_run(tmp_path, "tc", "st_cnn_aff", 0, 8.0, loc_lr=10.0, tag="locx10")
  runs = report.load_runs(str(tmp_path))
  groups, tc = report.summarise(runs), report.render(runs)
  assert [row for row in _row(tc, "ST-CNN Aff") if "| 1.7 |" in row] == [
    "| ST-CNN Aff | 1.7 | 8.00 | 1 | 600 | fast, loc lr x10 | 128 | 1.0 min | 1x cpu | **reduced** |",
    "| ST-CNN Aff | 1.7 | 10.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |",
  ]
  bars = [line for line in report.bar_checks(groups) if line.startswith("| TC")]
  assert bars == [
    "| TC | ST-CNN Aff 10.00 vs CNN 9.00 | 600 steps, fast, batch 128 | **no** |",
    "| TC | ST-CNN Aff 8.00 vs CNN 9.00 | 600 steps, fast, loc lr x10, batch 128 | yes |",
  ]


def test_a_regression_lr_multiplier_is_shown_beside_the_localisation_one(tmp_path):
  _write_run(tmp_path, "tc", "cnn", 0, 9.0)
  _write_run(tmp_path, "tc", "st_cnn_aff", 0, 7.0, loc_lr=0.1, regression_lr=10.0, tag="loc0.1_reg10")
  # An explicit regression multiplier equal to the localisation one is the same setting as none.
  _write_run(tmp_path, "tc", "st_cnn_aff", 0, 8.0, loc_lr=3.0, regression_lr=3.0, tag="locx3")
  _write_run(tmp_path, "tc", "st_cnn_aff", 1, 10.0, loc_lr=3.0, tag="locx3")
  runs = report.load_runs(str(tmp_path))
  bars = [line for line in report.bar_checks(report.summarise(runs)) if line.startswith("| TC")]
  assert bars == [
    "| TC | ST-CNN Aff 7.00 vs CNN 9.00 | 600 steps, fast, loc lr x0.1, regression lr x10, batch 128 | yes |",
    "| TC | ST-CNN Aff 9.00 vs CNN 9.00 | 600 steps, fast, loc lr x3, batch 128 | **no** |",
  ]


def test_update_replaces_only_the_marked_section(tmp_path):
  before = "# Results\n\nIntro written by hand.\n\n"
  after = "\n## Appendix\n\nOther families' text, <!-- not a marker -->.\n"
  path = tmp_path / "RESULTS.md"
  path.write_text(before + f"{report.BEGIN}\nstale table\n{report.END}\n" + after)
  _write_run(tmp_path / "runs", "r", "fcn", 0, 15.0)
  section = report.render(report.load_runs(str(tmp_path / "runs")))
  report.update(str(path), section)
  text = path.read_text()
  assert text == before + section + after
  assert "stale table" not in text and "| FCN | 2.1 | 15.00 |" in text
  report.update(str(path), section)  # idempotent
  assert path.read_text() == text


def test_update_appends_the_section_when_there_are_no_markers(tmp_path):
  path = tmp_path / "RESULTS.md"
  path.write_text("# Results\n\nSomething else.\n")
  section = report.render([])
  report.update(str(path), section)
  assert path.read_text() == "# Results\n\nSomething else.\n\n" + section
  new = tmp_path / "new.md"
  report.update(str(new), section)
  assert new.read_text() == "# Results\n\n" + section


# Every field the report reads except batch_size.
_RUN = dict(variant="rts", model="cnn", seed=0, steps=1, schedule="fast", test_error=1.0, wall_seconds=9.0)


@pytest.mark.parametrize(
  "content,match",
  [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({**_RUN, "batch_size": 8, "test_error": None}), "test_error must be a number"),
    (json.dumps({k: v for k, v in _RUN.items() if k != "test_error"}), "missing test_error, batch_size"),
    (json.dumps({**_RUN, "model": "resnet", "batch_size": 8}), "no paper cell for distortion 'rts' and"),
    (json.dumps({**_RUN, "config": {"batch_size": 8}, "wall_seconds": "1 min"}), "wall_seconds must be a"),
    (json.dumps({**_RUN, "batch_size": 8, "test_error": float("nan")}), "test_error must be finite"),
    (json.dumps({**_RUN, "batch_size": 8, "test_error": float("inf")}), "test_error must be finite"),
    (json.dumps({**_RUN, "batch_size": 8, "test_error": -0.5}), "test_error must be finite and non-neg"),
    (json.dumps({**_RUN, "batch_size": 8, "test_error": 100.5}), r"test_error is a percentage.*> 100"),
    (json.dumps({**_RUN, "batch_size": 8, "wall_seconds": float("nan")}), "wall_seconds must be finite"),
    (json.dumps({**_RUN, "batch_size": 8, "seed": "0"}), "seed must be an integer"),
  ],
)
def test_malformed_results_fail_naming_the_file(tmp_path, content, match):
  _write_run(tmp_path, "rts", "fcn", 0, 40.0)  # a good file next to the bad one
  bad = tmp_path / "rts" / "cnn" / "seed0" / "results.json"
  bad.parent.mkdir(parents=True)
  bad.write_text(content)
  with pytest.raises(ValueError, match=match) as info:
    report.load_runs(str(tmp_path))
  assert str(bad) in str(info.value)


def test_runs_of_one_row_that_differ_in_what_they_ran_are_refused_naming_both(tmp_path):
  # Same steps, schedule and batch, but another test set size / learning rate: not one cell.
  _write_run(tmp_path, "rts", "cnn", 0, 10.0, data={"test_size": None}, learning_rate=None)
  bad = _write_run(tmp_path, "rts", "cnn", 1, 3.0, data={"test_size": 1000}, learning_rate=0.003)
  with pytest.raises(ValueError, match="cannot share a row") as info:
    report.summarise(report.load_runs(str(tmp_path)))
  message = str(info.value)
  assert "data.test_size None vs 1000" in message and "learning_rate None vs 0.003" in message
  assert os.path.relpath(bad, report.ROOT) in message and "rts/cnn/seed0" in message


def test_bookkeeping_fields_and_fields_only_one_run_records_do_not_split_a_row(tmp_path):
  _write_run(tmp_path, "rts", "cnn", 0, 10.0, checkpoint_every=25, log_every=25)
  _write_run(tmp_path, "rts", "cnn", 1, 12.0, checkpoint_every=5000, data={"offcentre_fraction": 0.0})
  rows = [r for r in _row(report.render(report.load_runs(str(tmp_path))), "CNN") if "not run" not in r]
  assert rows == ["| CNN | 0.8 | 11.00 ± 1.41 | 2 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |"]


def test_run_directories_at_one_setting_get_their_own_labelled_rows(tmp_path):
  # A tagged run directory is its own row even when steps, schedule and batch agree; the label says which
  # directory and what differs, since the other columns cannot.
  _write_run(tmp_path, "rts", "cnn", 0, 10.0, learning_rate=None)
  _write_run(tmp_path, "rts", "cnn", 0, 6.0, tag="lr3e-3", learning_rate=0.003)
  _write_run(tmp_path, "rts", "st_cnn_aff", 0, 4.0, learning_rate=None)
  runs = report.load_runs(str(tmp_path))
  section = report.render(runs)
  assert [r for r in section.splitlines() if r.startswith("| CNN (")] == [
    "| CNN (`cnn_lr3e-3/`, learning_rate=0.003) | 0.8 | 6.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | "
    "**reduced** |",
    "| CNN (`cnn/`, learning_rate=None) | 0.8 | 10.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | "
    "**reduced** |",
  ]
  # The ST model ran with the default learning rate: it is paired with that baseline only.
  bars = [line for line in report.bar_checks(report.summarise(runs)) if line.startswith("| RTS")]
  assert bars == [
    "| RTS | ST-CNN Aff 4.00 vs CNN (`cnn/`, learning_rate=None) 10.00 | 600 steps, fast, batch 128 | yes |"
  ]


def test_the_same_config_and_seed_kept_twice_is_refused_not_counted_twice(tmp_path):
  first = _write_run(tmp_path, "tc", "st_cnn_aff", 0, 8.0, regression_lr=10.0, tag="reg10")
  second = _write_run(tmp_path, "tc", "st_cnn_aff", 0, 8.0, regression_lr=10.0, tag="reg10_again")
  with pytest.raises(ValueError, match="counted twice") as info:
    report.summarise(report.load_runs(str(tmp_path)))
  assert os.path.relpath(first, report.ROOT) in str(info.value)
  assert os.path.relpath(second, report.ROOT) in str(info.value)


@pytest.mark.parametrize(
  "where,fields,match",
  [
    (
      ("rts", "cnn", "seed1"),
      dict(variant="rts", model="cnn", seed=0),
      "seed 0 is not its directory 'seed1'",
    ),
    (("rts", "fcn", "seed0"), dict(variant="rts", model="cnn", seed=0), "model 'cnn' does not name its dir"),
    (
      ("r", "cnn", "seed0"),
      dict(variant="rts", model="cnn", seed=0),
      "variant 'rts' is not its directory 'r'",
    ),
    (
      ("rts", "cnn", "seed0"),
      dict(variant="rts", model="cnn", seed=0, config={"seed": 3, "batch_size": 8}),
      "config.seed 3 is not the recorded seed 0",
    ),
  ],
)
def test_a_run_that_is_not_the_one_its_path_says_fails_naming_the_file(tmp_path, where, fields, match):
  bad = tmp_path.joinpath(*where, "results.json")
  bad.parent.mkdir(parents=True)
  run = {**_RUN, "batch_size": 8, **fields}
  bad.write_text(json.dumps(run))
  with pytest.raises(ValueError, match=match) as info:
    report.load_runs(str(tmp_path))
  assert str(bad) in str(info.value)


def test_a_row_shows_every_hardware_its_runs_ran_on(tmp_path):
  _write_run(tmp_path, "rts", "cnn", 0, 10.0)
  _write_run(tmp_path, "rts", "cnn", 1, 10.0, device="NVIDIA H200")
  _write_run(tmp_path, "rts", "cnn", 2, 10.0, device="NVIDIA H200")
  (row,) = [r for r in _row(report.render(report.load_runs(str(tmp_path))), "CNN") if "not run" not in r]
  assert "| 1x cpu (1 run), 1x NVIDIA H200 (2 runs) |" in row


@pytest.mark.parametrize(
  "markers",
  [
    ["BEGIN"],
    ["END"],
    ["BEGIN", "END", "BEGIN"],
    ["BEGIN", "END", "END"],
    ["END", "BEGIN"],
    ["BEGIN", "BEGIN", "END", "END"],
  ],
)
def test_unbalanced_markers_are_refused_and_the_page_is_left_as_it_was(tmp_path, markers):
  path = tmp_path / "RESULTS.md"
  text = "# Results\n\n" + "".join(f"{getattr(report, m)}\nhand-written text\n" for m in markers)
  path.write_text(text)
  with pytest.raises(ValueError, match="expected one <!-- mnist:begin --> line followed by one"):
    report.update(str(path), report.render([]))
  assert path.read_text() == text
  assert sorted(os.listdir(tmp_path)) == ["RESULTS.md"]


def test_command_line_refuses_unbalanced_markers_with_a_message(tmp_path):
  _write_run(tmp_path / "runs", "e", "st_fcn_tps", 0, 12.5)
  out = tmp_path / "RESULTS.md"
  out.write_text(f"# Results\n\n{report.BEGIN}\nstale\n")
  args = [sys.executable, REPORT, f"--runs_dir={tmp_path / 'runs'}", f"--output={out}"]
  proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "found 1 begin and 0 end marker(s)" in proc.stderr and f"{out} left unchanged" in proc.stderr
  assert out.read_text() == f"# Results\n\n{report.BEGIN}\nstale\n"


def test_command_line_writes_the_output_file(tmp_path):
  _write_run(tmp_path / "runs", "e", "st_fcn_tps", 0, 12.5)
  out = tmp_path / "RESULTS.md"
  args = [sys.executable, REPORT, f"--runs_dir={tmp_path / 'runs'}", f"--output={out}"]
  proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "1 runs ->" in proc.stdout
  assert "| ST-FCN TPS | 2.4 | 12.50 | 1 | 600 | fast | 128 |" in out.read_text()


# ------------------------------------------------------------------------------------------------ sweep


def _sweep(*args, runs_dir, workdir_root):
  argv = [sys.executable, SWEEP, "--dry_run", f"--runs_dir={runs_dir}", f"--workdir_root={workdir_root}"]
  return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=120, check=False)


def _parse_main_flags(command):
  """The config ``stn_jax.main`` would build from ``command`` (its --config and --config.* flags)."""
  args = shlex.split(command)
  assert args[:3] == ["python", "-m", "stn_jax.main"]
  argv = ["prog"] + [a for a in args[3:] if a.startswith("--config")]
  argv = [a.replace("--config=configs/", f"--config={ROOT}/configs/", 1) for a in argv]
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
  _write_run(tmp_path / "kept", "tc", "st_cnn_aff", 0, 10.0)  # the untagged run does not count
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
  _write_run(tmp_path / "kept", "rts", "cnn", 0, 10.0)  # 600 steps, fast, batch 128
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
  kept = _write_run(tmp_path / "kept", "tc", "st_cnn_aff", 0, 10.0)  # 600 steps, fast, batch 128, loc lr 1
  before = open(kept).read()
  proc = _sweep("--variants=tc", "--models=st_cnn_aff", "--schedule=fast", *args, runs_dir=tmp_path / "kept",
                workdir_root=tmp_path / "scratch")  # fmt: skip
  assert proc.returncode != 0, proc.stdout
  assert message in proc.stderr and os.path.join("tc", "st_cnn_aff", "seed0") in proc.stderr
  assert proc.stdout == "" and open(kept).read() == before  # nothing ran, nothing rewritten


def test_paper_label_needs_every_recorded_field_at_the_paper_protocol(tmp_path):
  # 150k steps, 'paper' schedule and batch 256 but 1,000 test digits or another learning rate: not the paper's
  # protocol, so not comparable to the paper's cell.
  paper = dict(steps=150_000, schedule="paper", batch=256, wall=7200.0)
  _write_run(tmp_path, "rts", "cnn", 0, 1.0, **paper)
  _write_run(tmp_path, "rts", "fcn", 0, 2.0, data={"test_size": 1000}, **paper)
  _write_run(tmp_path, "rts", "st_cnn_aff", 0, 0.9, learning_rate=0.05, **paper)
  _write_run(tmp_path, "rts", "st_fcn_aff", 0, 1.5, data={"source": "idx", "data_dir": "/x"}, **paper)
  groups = report.summarise(report.load_runs(str(tmp_path)))
  table = [line for line in report.variant_table("rts", groups) if line.count("|") > 5]
  rows = {line.split(" | ")[0][2:]: line for line in table}
  assert rows["CNN"].endswith("| paper |")
  assert rows["ST-FCN Aff"].endswith("| paper |")  # where the data was read from is not the protocol
  assert rows["FCN"].endswith("| **reduced** |")
  assert rows["ST-CNN Aff"].endswith("| **reduced** |")
  assert report.paper_config_differences(groups[next(k for k in groups if k[1] == "fcn")][0]) == {
    "data.test_size": (1000, None)
  }
