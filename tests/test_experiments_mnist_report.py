"""Tests of the distorted-MNIST report's tables, bars and page (experiments/mnist/report.py); no training.

``report.py`` is loaded from its path and fed synthetic ``results.json`` files in a temporary directory
(``mnist_runs``). How its ``report_runs`` module refuses runs it cannot tabulate is tested in
``test_experiments_mnist_report_runs.py``.
"""

import os
import subprocess
import sys

import mnist_runs
import pytest

report = mnist_runs.load_report()
report_runs = report.report_runs


# -------------------------------------------------------------------------------------------- tables and bars


def test_our_number_sits_beside_the_papers_cell_labelled_reduced(tmp_path):
  mnist_runs.write(tmp_path, "rts", "st_cnn_aff", 0, 4.0, wall=60.0)
  mnist_runs.write(tmp_path, "rts", "st_cnn_aff", 1, 5.0, wall=120.0)
  section = report.render(report_runs.load_runs(str(tmp_path)))
  rts = section[section.index("### RTS") : section.index("### P ")]
  # Mean 4.5, sample sd of (4, 5) = 0.7071; mean wall 90 s; the paper's RTS ST-CNN Aff cell is 0.5.
  assert mnist_runs.rows(rts, "ST-CNN Aff") == [
    "| ST-CNN Aff | 0.5 | 4.50 ± 0.71 | 2 | 600 | fast | 128 | 1.5 min | 1x cpu | **reduced** |"
  ]
  assert mnist_runs.rows(rts, "CNN") == ["| CNN | 0.8 | not run | | | | | | | |"]
  assert "4.50" not in section.replace(rts, "")  # only in its own cell


def test_each_setting_gets_its_own_row_and_only_the_papers_protocol_is_labelled_paper(tmp_path):
  mnist_runs.write(tmp_path / "a", "tc", "fcn", 0, 40.0)
  mnist_runs.write(
    tmp_path / "b", "tc", "fcn", 0, 13.0, steps=150_000, schedule="paper", batch=256, wall=7200.0
  )
  runs = report_runs.load_runs(str(tmp_path / "a")) + report_runs.load_runs(str(tmp_path / "b"))
  rows = mnist_runs.rows(report.render(runs), "FCN")
  tc_rows = [r for r in rows if "| 13.2 |" in r]
  assert tc_rows == [
    "| FCN | 13.2 | 13.00 | 1 | 150,000 | paper | 256 | 2.0 h | 1x cpu | paper |",
    "| FCN | 13.2 | 40.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |",
  ]


def test_bars_compare_only_runs_at_equal_settings(tmp_path):
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 10.0)
  mnist_runs.write(tmp_path, "rts", "st_cnn_aff", 0, 4.0)
  mnist_runs.write(tmp_path, "tc", "fcn", 0, 30.0)
  mnist_runs.write(tmp_path, "tc", "st_fcn_aff", 0, 35.0)
  mnist_runs.write(tmp_path, "rts", "fcn", 0, 20.0, steps=1000)  # no ST-FCN run at 1000 steps: no bar
  lines = report.bar_checks(report_runs.summarise(report_runs.load_runs(str(tmp_path))))
  bars = [line for line in lines if line.startswith("| RTS") or line.startswith("| TC")]
  assert bars == [
    "| RTS | ST-CNN Aff 4.00 vs CNN 10.00 | 600 steps, fast, batch 128 | yes |",
    "| TC | ST-FCN Aff 35.00 vs FCN 30.00 | 600 steps, fast, batch 128 | **no** |",
  ]
  assert report.bar_checks({}) == ["No pair of runs at equal settings yet.", ""]


def test_a_localisation_lr_multiplier_is_its_own_setting_and_is_paired_with_the_baseline(tmp_path):
  mnist_runs.write(tmp_path, "tc", "cnn", 0, 9.0)
  mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 10.0)
  mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 8.0, loc_lr=10.0, tag="locx10")
  runs = report_runs.load_runs(str(tmp_path))
  groups, tc = report_runs.summarise(runs), report.render(runs)
  assert [row for row in mnist_runs.rows(tc, "ST-CNN Aff") if "| 1.7 |" in row] == [
    "| ST-CNN Aff | 1.7 | 8.00 | 1 | 600 | fast, loc lr x10 | 128 | 1.0 min | 1x cpu | **reduced** |",
    "| ST-CNN Aff | 1.7 | 10.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | **reduced** |",
  ]
  bars = [line for line in report.bar_checks(groups) if line.startswith("| TC")]
  assert bars == [
    "| TC | ST-CNN Aff 10.00 vs CNN 9.00 | 600 steps, fast, batch 128 | **no** |",
    "| TC | ST-CNN Aff 8.00 vs CNN 9.00 | 600 steps, fast, loc lr x10, batch 128 | yes |",
  ]


def test_a_regression_lr_multiplier_is_shown_beside_the_localisation_one(tmp_path):
  mnist_runs.write(tmp_path, "tc", "cnn", 0, 9.0)
  mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 7.0, loc_lr=0.1, regression_lr=10.0, tag="loc0.1_reg10")
  # An explicit regression multiplier equal to the localisation one is the same setting as none.
  mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 0, 8.0, loc_lr=3.0, regression_lr=3.0, tag="locx3")
  mnist_runs.write(tmp_path, "tc", "st_cnn_aff", 1, 10.0, loc_lr=3.0, tag="locx3")
  runs = report_runs.load_runs(str(tmp_path))
  bars = [line for line in report.bar_checks(report_runs.summarise(runs)) if line.startswith("| TC")]
  assert bars == [
    "| TC | ST-CNN Aff 7.00 vs CNN 9.00 | 600 steps, fast, loc lr x0.1, regression lr x10, batch 128 | yes |",
    "| TC | ST-CNN Aff 9.00 vs CNN 9.00 | 600 steps, fast, loc lr x3, batch 128 | **no** |",
  ]


def test_run_directories_at_one_setting_get_their_own_labelled_rows(tmp_path):
  # A tagged run directory is its own row even when steps, schedule and batch agree; the label says which
  # directory and what differs, since the other columns cannot.
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 10.0, learning_rate=None)
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 6.0, tag="lr3e-3", learning_rate=0.003)
  mnist_runs.write(tmp_path, "rts", "st_cnn_aff", 0, 4.0, learning_rate=None)
  runs = report_runs.load_runs(str(tmp_path))
  section = report.render(runs)
  assert [r for r in section.splitlines() if r.startswith("| CNN (")] == [
    "| CNN (`cnn_lr3e-3/`, learning_rate=0.003) | 0.8 | 6.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | "
    "**reduced** |",
    "| CNN (`cnn/`, learning_rate=None) | 0.8 | 10.00 | 1 | 600 | fast | 128 | 1.0 min | 1x cpu | "
    "**reduced** |",
  ]
  # The ST model ran with the default learning rate: it is paired with that baseline only.
  bars = [line for line in report.bar_checks(report_runs.summarise(runs)) if line.startswith("| RTS")]
  assert bars == [
    "| RTS | ST-CNN Aff 4.00 vs CNN (`cnn/`, learning_rate=None) 10.00 | 600 steps, fast, batch 128 | yes |"
  ]


def test_a_row_shows_every_hardware_its_runs_ran_on(tmp_path):
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 10.0)
  mnist_runs.write(tmp_path, "rts", "cnn", 1, 10.0, device="NVIDIA H200")
  mnist_runs.write(tmp_path, "rts", "cnn", 2, 10.0, device="NVIDIA H200")
  (row,) = [
    r
    for r in mnist_runs.rows(report.render(report_runs.load_runs(str(tmp_path))), "CNN")
    if "not run" not in r
  ]
  assert "| 1x cpu (1 run), 1x NVIDIA H200 (2 runs) |" in row


def test_paper_label_needs_every_recorded_field_at_the_paper_protocol(tmp_path):
  # 150k steps, 'paper' schedule and batch 256 but 1,000 test digits or another learning rate: not the paper's
  # protocol, so not comparable to the paper's cell.
  paper = dict(steps=150_000, schedule="paper", batch=256, wall=7200.0)
  mnist_runs.write(tmp_path, "rts", "cnn", 0, 1.0, **paper)
  mnist_runs.write(tmp_path, "rts", "fcn", 0, 2.0, data={"test_size": 1000}, **paper)
  mnist_runs.write(tmp_path, "rts", "st_cnn_aff", 0, 0.9, learning_rate=0.05, **paper)
  mnist_runs.write(tmp_path, "rts", "st_fcn_aff", 0, 1.5, data={"source": "idx", "data_dir": "/x"}, **paper)
  groups = report_runs.summarise(report_runs.load_runs(str(tmp_path)))
  table = [line for line in report.variant_table("rts", groups) if line.count("|") > 5]
  rows = {line.split(" | ")[0][2:]: line for line in table}
  assert rows["CNN"].endswith("| paper |")
  assert rows["ST-FCN Aff"].endswith("| paper |")  # where the data was read from is not the protocol
  assert rows["FCN"].endswith("| **reduced** |")
  assert rows["ST-CNN Aff"].endswith("| **reduced** |")
  assert report_runs.paper_config_differences(groups[next(k for k in groups if k[1] == "fcn")][0]) == {
    "data.test_size": (1000, None)
  }


# --------------------------------------------------------------------------------------------------- the page


def test_update_replaces_only_the_marked_section(tmp_path):
  before = "# Results\n\nIntro written by hand.\n\n"
  after = "\n## Appendix\n\nOther families' text, <!-- not a marker -->.\n"
  path = tmp_path / "RESULTS.md"
  path.write_text(before + f"{report.BEGIN}\nstale table\n{report.END}\n" + after)
  mnist_runs.write(tmp_path / "runs", "r", "fcn", 0, 15.0)
  section = report.render(report_runs.load_runs(str(tmp_path / "runs")))
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
  mnist_runs.write(tmp_path / "runs", "e", "st_fcn_tps", 0, 12.5)
  out = tmp_path / "RESULTS.md"
  out.write_text(f"# Results\n\n{report.BEGIN}\nstale\n")
  args = [sys.executable, mnist_runs.REPORT, f"--runs_dir={tmp_path / 'runs'}", f"--output={out}"]
  proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "found 1 begin and 0 end marker(s)" in proc.stderr and f"{out} left unchanged" in proc.stderr
  assert out.read_text() == f"# Results\n\n{report.BEGIN}\nstale\n"


def test_command_line_writes_the_output_file(tmp_path):
  mnist_runs.write(tmp_path / "runs", "e", "st_fcn_tps", 0, 12.5)
  out = tmp_path / "RESULTS.md"
  args = [sys.executable, mnist_runs.REPORT, f"--runs_dir={tmp_path / 'runs'}", f"--output={out}"]
  proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "1 runs ->" in proc.stdout
  assert "| ST-FCN TPS | 2.4 | 12.50 | 1 | 600 | fast | 128 |" in out.read_text()
