"""The benchmarks' shared interleaved timer, and the 3D sampler benchmark end to end on a tiny case.

The timer is ``bench_sampler.time_interleaved`` (used by ``bench_sampler``, ``bench_conv`` and
``bench_trilinear``); ``bench_trilinear`` times this tree against the package as of a git commit.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "experiments", "benchmarks"))
import bench_sampler  # noqa: E402
import bench_trilinear  # noqa: E402


def _recorder(calls, name, seconds=0.0):
  def fn():
    calls.append(name)
    time.sleep(seconds)

  return fn


def test_every_round_calls_each_contender_once_in_order():
  calls = []
  fns = {n: _recorder(calls, n) for n in "abc"}
  times, rounds = bench_sampler.time_interleaved(fns, 3)
  assert rounds == 3
  assert calls == list("abc") * 3
  assert set(times) == set("abc") and all(len(v) == 3 for v in times.values())
  assert all(t >= 0 for v in times.values() for t in v)


def test_alternate_reverses_every_other_round_starting_with_the_first():
  calls = []
  bench_sampler.time_interleaved({n: _recorder(calls, n) for n in "ab"}, 4, alternate=True)
  assert calls == list("baabbaab")


def test_times_are_wall_milliseconds_of_each_call():
  calls = []
  times, _ = bench_sampler.time_interleaved(
    {"fast": _recorder(calls, "fast"), "slow": _recorder(calls, "slow", 0.02)}, 2
  )
  assert all(t >= 19 for t in times["slow"])
  assert min(times["fast"]) < min(times["slow"])  # each time is charged to its own contender


def test_time_cap_stops_after_the_minimum_rounds():
  calls = []
  times, rounds = bench_sampler.time_interleaved({"a": _recorder(calls, "a", 0.01)}, 50, max_seconds=0.001)
  assert rounds == 3 and len(times["a"]) == 3
  _, rounds = bench_sampler.time_interleaved({"a": _recorder(calls, "a")}, 5, max_seconds=60)
  assert rounds == 5


def test_trilinear_cases_parse_and_reject_bad_text():
  assert bench_trilinear._parse_cases("2,8,1,6;1,4,3,4") == ((2, 8, 1, 6), (1, 4, 3, 4))
  for bad in ("2,8,1", "2,8,1,0", "2,8,x,6", "2,8,1,6;"):
    with pytest.raises(argparse.ArgumentTypeError, match="four positive integers"):
      bench_trilinear._parse_cases(bad)


def _in_git_checkout():
  if shutil.which("git") is None:
    return False
  done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True)
  return done.returncode == 0


@pytest.mark.skipif(not _in_git_checkout(), reason="needs git and a checkout to build the baseline package")
def test_trilinear_benchmark_runs_against_head(capsys):
  results = bench_trilinear.main(["--baseline=HEAD", "--repeats=2", "--cases=2,6,1,4;1,5,3,4"])
  assert [r["case"] for r in results] == [(2, 6, 1, 4), (1, 5, 3, 4)]
  for r in results:
    assert r["new_ms"] > 0 and r["baseline_ms"] > 0 and r["paired_ratio"] > 0
  out = capsys.readouterr().out
  assert "2 x 6^3 x 1 -> 4^3" in out and "paired new / baseline" in out
