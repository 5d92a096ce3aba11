"""Tests of how the distorted-MNIST report reads its runs (experiments/mnist/report_runs.py); no training.

Synthetic ``results.json`` files (``mnist_runs``) that are malformed, are not the run their path says, or
cannot share a table row are refused naming the files; fields that cannot change a result do not split a row.
"""

import json
import os

import mnist_runs
import pytest

report = mnist_runs.load_report()
report_runs = report.report_runs

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
  mnist_runs.write(tmp_path, "rts", "fcn", 0, 40.0)  # a good file next to the bad one
  bad = tmp_path / "rts" / "cnn" / "seed0" / "results.json"
  bad.parent.mkdir(parents=True)
  bad.write_text(content)
  with pytest.raises(ValueError, match=match) as info:
    report_runs.load_runs(str(tmp_path))
  assert str(bad) in str(info.value)


def test_runs_of_one_row_that_differ_in_what_they_ran_are_refused_naming_both(tmp_path):
  # Same steps, schedule and batch, but another test set size / learning rate: not one cell.
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 10.0, data={"test_size": None}, learning_rate=None)
  bad = mnist_runs.write(tmp_path, "rts", "cnn", 1, 3.0, data={"test_size": 1000}, learning_rate=0.003)
  with pytest.raises(ValueError, match="cannot share a row") as info:
    report_runs.summarise(report_runs.load_runs(str(tmp_path)))
  message = str(info.value)
  assert "data.test_size None vs 1000" in message and "learning_rate None vs 0.003" in message
  assert os.path.relpath(bad, report_runs.ROOT) in message and "rts/cnn/seed0" in message


def test_bookkeeping_fields_and_fields_only_one_run_records_do_not_split_a_row(tmp_path):
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 10.0, checkpoint_every=25, log_every=25)
  mnist_runs.write(tmp_path, "rts", "cnn", 1, 12.0, checkpoint_every=5000, data={"offcentre_fraction": 0.0})
  rows = [
    r
    for r in mnist_runs.rows(report.render(report_runs.load_runs(str(tmp_path))), "CNN")
    if "not run" not in r
  ]
  assert rows == ["| CNN | 0.8 | 11.00 ± 1.41 | 2 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |"]


def test_the_same_config_and_seed_kept_twice_is_refused_not_counted_twice(tmp_path):
  first = mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 8.0, regression_lr=10.0, tag="reg10")
  second = mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 8.0, regression_lr=10.0, tag="reg10_again")
  with pytest.raises(ValueError, match="counted twice") as info:
    report_runs.summarise(report_runs.load_runs(str(tmp_path)))
  assert os.path.relpath(first, report_runs.ROOT) in str(info.value)
  assert os.path.relpath(second, report_runs.ROOT) in str(info.value)


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
    report_runs.load_runs(str(tmp_path))
  assert str(bad) in str(info.value)
