"""The GPU measurement driver ``experiments/gpu/device_checks.py``: time budget, skips, the summary's ratios,
and (slow) a whole ``--smoke`` run on the CPU, every stage end to end."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "experiments", "gpu"))
import device_checks  # noqa: E402


def _run(tmp_path, *flags):
  rc = device_checks.main([f"--out={tmp_path / 'out'}", f"--work_dir={tmp_path / 'work'}", *flags])
  with open(tmp_path / "work" / "stages.json") as f:
    return rc, json.load(f)["stages"]


def test_stage_past_its_limit_is_stopped_and_the_run_still_writes_its_files(tmp_path, monkeypatch):
  # Each stage gets 1.5 s: far too little to import jax and compile. (A budget that leaves 1.5 s would also
  # count the driver's own git calls, and skip the stage on a loaded machine instead of stopping it.)
  commands = device_checks.stage_commands
  monkeypatch.setattr(
    device_checks,
    "stage_commands",
    lambda *args: {name: (argv, 1, 1.5) for name, (argv, _, _) in commands(*args).items()},
  )
  budget = device_checks.BUNDLE_RESERVE_S + 120
  rc, stages = _run(
    tmp_path, "--smoke", "--stages=sampler", f"--time_budget_s={budget}", "--torch_device=cpu"
  )
  assert rc == 1
  assert stages["sampler"]["status"].startswith("stopped at its")
  assert stages["sampler"]["wall_s"] < 15
  assert {"summary.md", "device_checks.log", "results.tar.gz"} <= set(os.listdir(tmp_path / "out"))
  assert "| sampler | stopped" in (tmp_path / "out" / "summary.md").read_text()


def test_full_run_skips_benchmarks_without_a_gpu_and_stages_that_do_not_fit(tmp_path):
  (tmp_path / "work").mkdir()
  (tmp_path / "work" / "env.json").write_text(json.dumps({"devices": {"jax_backend": "cpu"}}))
  rc, stages = _run(tmp_path, "--stages=sampler,train", "--time_budget_s=600")
  assert rc == 1
  assert all(s["status"].startswith("skipped: JAX has no GPU") for s in stages.values())
  assert "Warning: JAX or torch ran off the GPU" in (tmp_path / "out" / "summary.md").read_text()
  # With no env.json (JAX backend unknown) the budget decides: 10 s left, the sampler needs its minimum.
  os.remove(tmp_path / "work" / "env.json")
  rc, stages = _run(tmp_path, "--stages=sampler", f"--time_budget_s={device_checks.BUNDLE_RESERVE_S + 10}")
  assert stages["sampler"]["status"].startswith("skipped: ") and "needs 60 s" in stages["sampler"]["status"]
  assert len(os.listdir(tmp_path / "out")) <= device_checks.MAX_OUT_FILES


def test_summary_ratios_and_bars():
  result = {
    "results": [
      {
        "case": "mnist",
        "task": "fwd",
        "median_ms": {"stn_jax": 3.0, "torch": 2.0},
        "raw_ms": {"stn_jax": [1.0, 4.0, 3.0], "torch": [2.0, 2.0, 4.0]},
        "errors": {"kornia": "ImportError: no kornia"},
      }
    ]
  }
  row, failed = device_checks.sampler_rows(result)
  assert (row["lib"], row["ratio"], row["paired"], row["met"]) == ("stn_jax", 1.5, 0.75, False)
  assert failed == {"case": "mnist", "task": "fwd", "lib": "kornia", "error": "ImportError: no kornia"}
  train = {
    "cases": [
      {"variant": "rts", "framework": fw, "model": "cnn", "kind": "step", "median_ms": ms}
      for fw, ms in (("jax", 2.0), ("torch", 4.0))
    ],
    "ratios": [
      {"variant": "rts", "what": "cnn: jax / torch", "ratio_of_medians": 0.5, "paired_ratio": 0.6},
      {"variant": "rts", "what": "jax: st_cnn_aff / cnn", "ratio_of_medians": 0.2, "paired_ratio": 0.2},
    ],
  }
  (row,) = device_checks.train_rows(train)
  assert row == dict(variant="rts", model="cnn", jax_ms=2.0, torch_ms=4.0, ratio=0.5, paired=0.6, met=True)


def test_source_digest_follows_the_code(tmp_path):
  (tmp_path / "stn_jax").mkdir()
  (tmp_path / "stn_jax" / "a.py").write_text("x = 1\n")
  first = device_checks.source_digest(str(tmp_path))
  (tmp_path / "stn_jax" / "a.py").write_text("x = 2\n")
  assert device_checks.source_digest(str(tmp_path)) != first
  assert len(first) == 16


@pytest.mark.slow
@pytest.mark.torch
def test_smoke_run_end_to_end(tmp_path):
  """Every stage on tiny shapes (~1.5 min on 2 loaded cores): the code paths the GPU run takes."""
  pytest.importorskip("torch")
  out, work = tmp_path / "out", tmp_path / "work"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "experiments/gpu/device_checks.py", "--smoke", "--torch_device=cpu"]
  proc = subprocess.run(
    [*cmd, f"--out={out}", f"--work_dir={work}"], cwd=_ROOT, env=env, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  stages = json.loads((work / "stages.json").read_text())["stages"]
  assert list(stages) == list(device_checks.STAGES)
  assert all(s["status"] == "ok" for s in stages.values())
  files = set(os.listdir(out))
  assert len(files) <= device_checks.MAX_OUT_FILES
  assert {"summary.md", "device_checks.log", "results.tar.gz", "sampler_smoke.md", "train_smoke.md"} <= files
  with tarfile.open(out / "results.tar.gz") as tar:
    names = {os.path.basename(n) for n in tar.getnames()}
  assert {"env.json", "sampler_smoke.json", "train_smoke.json", "train_smoke_extra.json"} <= names
  assert json.loads((work / "env.json").read_text())["parity_ok"] is True
  sampler = json.loads((work / "sampler_smoke.json").read_text())
  crop = [r for r in sampler["results"] if r["case"] == "smoke_crop"][0]
  assert set(crop["median_ms"]) == {"stn_jax", "torch"} | {
    f"stn_jax/{m}" for m in ("fused", "gather", "banded", "dense")
  }
  assert sampler["hardware"]["torch_device"] == "cpu"
  train = json.loads((work / "train_smoke.json").read_text())
  assert {r["what"] for r in train["ratios"]} >= {"st_cnn_aff: jax / torch", "cnn_st_out: jax / torch"}
  summary = (out / "summary.md").read_text()
  assert "| rts | st_cnn_aff |" in summary and "| smoke_crop | bwd_theta | stn_jax/fused |" in summary
