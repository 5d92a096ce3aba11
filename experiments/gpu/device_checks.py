r"""The GPU measurements of the benchmarks as one command, for a short lease of a GPU machine.

  python3 experiments/gpu/device_checks.py --out=$OUT --time_budget_s=450 --commit=COMMIT     # on the GPU
  JAX_PLATFORMS=cpu python3 experiments/gpu/device_checks.py --out=/tmp/dc --smoke            # here: tiny
  python3 experiments/gpu/device_checks.py --digest       # the source digest a run records, for this checkout

Run from the repository root (README.md beside this file has the device tool's exact call). Stages, each a
subprocess so that a crash or a hang costs only itself; their output is echoed with a ``[stage]`` prefix:

* ``env``: ``env_check.py``: nvidia-smi, versions, devices, and stn_jax vs torch parity on the benchmark's
  inputs (output and gradient to theta).
* ``sampler``: ``bench_sampler.py`` on the issue's cases (``mnist``, ``cub``, ``cub_crop``; ``fwd``,
  ``bwd_theta``, ``bwd_both``), stn_jax vs torch, plus the separable kernels on the crop
  (``stn_jax/fused``, ``gather``, ``banded``, ``dense``) -> ``sampler_<tag>.{json,md}``.
* ``train``: ``bench_train.py`` on RTS and TC, ``cnn``, ``cnn_st_out``, ``st_cnn_aff`` in JAX and PyTorch,
  batch 256 -> ``train_<tag>``.
* ``train_extra``: ``bench_train.py``, JAX only: ``st_cnn_proj``, ``st_cnn_tps`` (and ``cnn_st_out`` for their
  ratio) and the on-device data generator -> ``train_<tag>_extra``.
* ``sampler_all``: ``bench_sampler.py`` with Kornia, dm-pix and ``map_coordinates`` too ->
  ``sampler_<tag>_all``.

Time: a stage starts only when its minimum fits in what is left of ``--time_budget_s`` and is stopped
(SIGTERM to its process group, SIGKILL 10 s later) when the budget runs out; the benchmarks rewrite their
results after every case or round, so a stopped stage keeps what finished. After every stage ``--out`` is
rewritten: ``summary.md`` (stages, devices, parity, the GPU bars of the issues with their ratios; also
printed at the end), ``device_checks.log`` (all output), ``results.tar.gz`` (every file of the run) and
copies of the stages' Markdown pages: at most 8 files, flat, as the device tool returns them.

A full run whose JAX has no GPU (``env`` reports backend ``cpu``) skips the benchmark stages: their numbers
would not answer the GPU bars (``--allow_cpu`` runs them anyway). ``--smoke`` runs every stage on tiny
shapes (cases ``smoke``/``smoke_crop``, batch 4, one round) to test this script itself.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(_HERE))
_BENCH = os.path.join("experiments", "benchmarks")
STAGES = ("env", "sampler", "train", "train_extra", "sampler_all")
CROP_METHODS = "fused,gather,banded,dense"
BUNDLE_RESERVE_S = 15  # kept back from the budget for the last summary and bundle
MAX_OUT_FILES = 8  # the device tool returns at most 8 files from $OUT


def source_digest(root: str = ROOT) -> str:
  """SHA-256 (first 16 hex digits) of the code a run executes: stn_jax, configs, the benchmarks and this
  folder (``*.py``, sorted by path). Identifies the code where the copied tree has no ``.git``."""
  h = hashlib.sha256()
  for pattern in ("stn_jax/**/*.py", "configs/*.py", f"{_BENCH}/*.py", "experiments/gpu/*.py"):
    for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
      h.update(os.path.relpath(path, root).encode() + b"\0")
      with open(path, "rb") as f:
        h.update(f.read())
  return h.hexdigest()[:16]


def git_commit() -> str:
  """``git rev-parse --short HEAD`` (+ ``-dirty``), or "" without git or ``.git``."""
  try:
    run = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10)
    head = run("rev-parse", "--short", "HEAD")
    if head.returncode:
      return ""
    return head.stdout.strip() + ("-dirty" if run("status", "--porcelain").stdout.strip() else "")
  except (OSError, subprocess.SubprocessError):
    return ""


def stage_commands(args, tag: str) -> dict:
  """``{stage: (argv, min_s, cap_s)}``: the command, the least time worth starting it with, its own limit."""
  py, device = sys.executable, f"--torch_device={args.torch_device}"
  env = [py, "experiments/gpu/env_check.py", f"--out={os.path.join(args.work, 'env.json')}", device]
  sampler = [py, f"{_BENCH}/bench_sampler.py", f"--out_dir={args.work}", device, f"--commit={args.commit}"]
  train = [py, f"{_BENCH}/bench_train.py", f"--out_dir={args.work}", device, f"--commit={args.commit}"]
  crop = f"--libs=stn_jax,torch --crop_methods={CROP_METHODS}"
  all_libs = "--libs=stn_jax,torch,kornia,dm_pix,map_coordinates"
  if args.smoke:
    train += "--variants=rts --batch_size=4 --repeats=1 --steps=1 --warmup=1".split()
    plan = {
      "env": ("--cases=smoke,smoke_crop", 1, 120),
      "sampler": (f"--cases=smoke,smoke_crop {crop} --repeats=2", 1, 180),
      "train": ("--jax_models=cnn_st_out,st_cnn_aff --torch_models=cnn_st_out,st_cnn_aff --no_data", 1, 240),
      "train_extra": ("--jax_models=st_cnn_proj --torch_models=", 1, 240),
      "sampler_all": (f"--cases=smoke --tasks=fwd {all_libs} --repeats=2", 1, 180),
    }
  else:
    train += "--variants=rts,tc --batch_size=256 --repeats=5 --steps=20 --warmup=5 --settle=2".split()
    models = "cnn,cnn_st_out,st_cnn_aff"
    cap = "--max_seconds_per_case=15"  # a pathologically slow library must not eat the later stages
    plan = {
      "env": ("--cases=mnist,cub_crop", 20, 90),
      "sampler": (f"--cases=mnist,cub,cub_crop {crop} --repeats=100 --warmup=5 {cap}", 60, 180),
      "train": (f"--jax_models={models} --torch_models={models} --no_data", 90, 240),
      "train_extra": ("--jax_models=cnn_st_out,st_cnn_proj,st_cnn_tps --torch_models=", 60, 150),
      "sampler_all": (f"--cases=mnist,cub,cub_crop {all_libs} --repeats=30 --warmup=3 {cap}", 60, 150),
    }
  tags = {"sampler": tag, "train": tag, "train_extra": f"{tag}_extra", "sampler_all": f"{tag}_all"}
  bases = {"env": env, "sampler": sampler, "train": train, "train_extra": train, "sampler_all": sampler}
  return {
    name: ([*bases[name], *([f"--tag={tags[name]}"] if name in tags else []), *flags.split()], min_s, cap_s)
    for name, (flags, min_s, cap_s) in plan.items()
  }


class Log:
  """Prints and appends to ``device_checks.log`` (thread-safe: stage output arrives from a reader thread)."""

  def __init__(self, path):
    self._f = open(path, "a")  # noqa: SIM115 (open for the whole run)
    self._lock = threading.Lock()

  def __call__(self, text: str):
    with self._lock:
      print(text, flush=True)
      self._f.write(text + "\n")
      self._f.flush()


def run_stage(name, argv, timeout_s, work, log) -> dict:
  """Runs one stage in its own process group; returns ``{'status', 'rc', 'wall_s', 'command'}``."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  log(f"== stage {name} (limit {timeout_s:.0f} s): {' '.join(argv)}")
  t0 = time.time()
  with open(os.path.join(work, f"{name}.log"), "w") as stage_log:
    proc = subprocess.Popen(
      argv,
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      errors="replace",
      start_new_session=True,
    )

    def pump():
      for line in proc.stdout:
        stage_log.write(line)
        stage_log.flush()
        log(f"[{name}] {line.rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
      rc = proc.wait(timeout=timeout_s)
      status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
      for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
          os.killpg(proc.pid, sig)
        except ProcessLookupError:
          break
        try:
          proc.wait(timeout=10)
          break
        except subprocess.TimeoutExpired:
          continue
      rc, status = proc.returncode, f"stopped at its {timeout_s:.0f} s limit (partial results kept)"
    reader.join(timeout=10)
  wall = time.time() - t0
  log(f"== stage {name}: {status}, {wall:.0f} s")
  return {"status": status, "rc": rc, "wall_s": round(wall, 1), "command": " ".join(argv)}


def _load(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _fmt(x, spec=".2f"):
  return "-" if x is None else format(x, spec)


def sampler_rows(result) -> list[dict]:
  """Per case and task of a bench_sampler result: every library's median and its ratio to torch, the
  paired ratio (median over repeats of the per-repeat ratio), and whether stn_jax / torch <= 1.0."""
  rows = []
  for r in result["results"]:
    med, raw = r["median_ms"], r["raw_ms"]
    torch_ms = med.get("torch")
    for lib, ms in med.items():
      if lib == "torch":
        continue
      ratio = ms / torch_ms if torch_ms else None
      paired = float(np.median(np.asarray(raw[lib]) / np.asarray(raw["torch"]))) if torch_ms else None
      row = {"case": r["case"], "task": r["task"], "lib": lib, "ms": ms, "torch_ms": torch_ms}
      rows.append(dict(row, ratio=ratio, paired=paired, met=None if ratio is None else ratio <= 1.0))
    for lib, error in r.get("errors", {}).items():
      rows.append(dict(case=r["case"], task=r["task"], lib=lib, error=error))
  return rows


def train_rows(result) -> list[dict]:
  """The JAX / PyTorch step-time ratios of a bench_train result, with both medians and the bar (<= 1.0)."""
  cases = {(c["variant"], c["framework"], c["model"]): c for c in result["cases"] if c["kind"] == "step"}
  rows = []
  for q in result["ratios"]:
    if not q["what"].endswith(": jax / torch"):
      continue
    model = q["what"].split(":")[0]
    jax_ms = cases[(q["variant"], "jax", model)]["median_ms"]
    torch_ms = cases[(q["variant"], "torch", model)]["median_ms"]
    ratio = q["ratio_of_medians"]
    row = {"variant": q["variant"], "model": model, "jax_ms": jax_ms, "torch_ms": torch_ms}
    rows.append(dict(row, ratio=ratio, paired=q["paired_ratio"], met=ratio <= 1.0))
  return rows


def summary(args, tag, stages, started) -> str:
  """The Markdown summary of the run so far."""
  env = _load(os.path.join(args.work, "env.json")) or {}
  dev, ver = env.get("devices", {}), env.get("versions", {})
  smi = env.get("nvidia_smi") or ""
  parity = env.get("parity") or {}
  parity = {"error": parity["error"]} if "error" in parity else parity  # the traceback is in env.json
  driver = next((ln.strip(" |") for ln in smi.splitlines() if "Driver Version" in ln), "no nvidia-smi")
  lines = [
    f"# Device checks ({tag})",
    "",
    f"- Started {started} UTC; wall {time.time() - args.t0:.0f} s of a {args.time_budget_s:.0f} s budget.",
    f"- Code: commit {args.commit or 'unknown'}; source digest {source_digest()} "
    "(`python3 experiments/gpu/device_checks.py --digest` in a checkout prints its own).",
    f"- JAX: backend {dev.get('jax_backend')}, {dev.get('jax_devices')} ({dev.get('jax_device_kind')}); "
    f"torch on {dev.get('torch_device')} ({dev.get('torch_device_name', 'cpu')}); nvidia-smi: {driver}.",
    "- Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".",
    f"- Parity stn_jax vs torch (relative errors): {json.dumps(parity)}.",
    f"- Parity within {env.get('parity_tolerance')}: {env.get('parity_ok')}.",
  ]
  if not args.smoke and dev and (dev.get("jax_backend") != "gpu" or dev.get("torch_device") != "cuda"):
    lines.append("- **Warning: JAX or torch ran off the GPU; these ratios do not answer the GPU bars.**")
  lines += [
    "",
    "| stage | status | wall s |",
    "|---|---|---:|",
    *(f"| {n} | {s['status']} | {s.get('wall_s', '')} |" for n, s in stages.items()),
  ]
  sampler = _load(os.path.join(args.work, f"sampler_{tag}.json"))
  if sampler:
    rows = sampler_rows(sampler)
    repeats = "/".join(map(str, sorted({len(t) for r in sampler["results"] for t in r["raw_ms"].values()})))
    lines += [
      "",
      "## Sampler (the issue's GPU bar: every ratio stn_jax / torch <= 1.0)",
      "",
      f"`sampler_{tag}.md`; medians over {repeats} interleaved repeats; paired = the median of the per-repeat"
      " ratios. `stn_jax/<method>`: the crop through that separable kernel (`stn_jax` takes `auto`'s).",
      "",
      "| case | task | library | ms | torch ms | ratio | paired | <= 1.0? |",
      "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
      if "error" in r:
        lines.append(f"| {r['case']} | {r['task']} | {r['lib']} | failed: {r['error'][:120]} |||||")
        continue
      met = "-" if r["met"] is None else ("**yes**" if r["met"] else "**no**")
      lines.append(
        f"| {r['case']} | {r['task']} | {r['lib']} | {_fmt(r['ms'], '.3f')} | {_fmt(r['torch_ms'], '.3f')} | "
        f"{_fmt(r['ratio'])} | {_fmt(r['paired'])} | {met if r['lib'] == 'stn_jax' else ''} |"
      )
  train = _load(os.path.join(args.work, f"train_{tag}.json"))
  if train:
    lines += [
      "",
      "## Training step (the issue's GPU bar: the JAX step no slower than the PyTorch step)",
      "",
      f"`train_{tag}.md`; {train['environment'].get('rounds_completed')} of {train['settings']['repeats']}"
      " rounds.",
      "",
      "| variant | model | JAX ms | PyTorch ms | JAX / PyTorch | paired | <= 1.0? |",
      "|---|---|---:|---:|---:|---:|---|",
      *(
        f"| {r['variant']} | {r['model']} | {r['jax_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} | "
        f"{r['paired']:.2f} | {'**yes**' if r['met'] else '**no**'} |"
        for r in train_rows(train)
      ),
    ]
    overhead = [q for q in train["ratios"] if not q["what"].endswith(": jax / torch")]
    lines += ["", "| variant | step-time ratio | of medians | paired |", "|---|---|---:|---:|"]
    lines += [
      f"| {q['variant']} | {q['what']} | {q['ratio_of_medians']:.2f} | {q['paired_ratio']:.2f} |"
      for q in overhead
    ]
    failed = [c for c in train["cases"] if "error" in c]
    lines += [f"- failed: {c['framework']} {c['variant']} {c['model']}: {c['error']}" for c in failed]
  return "\n".join(lines) + "\n"


def bundle(args, tag, stages, started, log) -> str:
  """Writes summary.md into the work folder and refreshes ``--out`` (at most :data:`MAX_OUT_FILES` files)."""
  text = summary(args, tag, stages, started)
  with open(os.path.join(args.work, "summary.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.work, "stages.json"), "w") as f:
    json.dump(
      dict(commit=args.commit, source_digest=source_digest(), started_utc=started, stages=stages), f, indent=1
    )
  os.makedirs(args.out, exist_ok=True)
  tmp = os.path.join(args.out, ".results.tar.gz.tmp")
  with tarfile.open(tmp, "w:gz") as tar:
    tar.add(args.work, arcname=f"device_checks_{tag}")
  os.replace(tmp, os.path.join(args.out, "results.tar.gz"))
  pages = [f"sampler_{tag}.md", f"train_{tag}.md", f"train_{tag}_extra.md", f"sampler_{tag}_all.md"]
  copies = ["summary.md", "device_checks.log", *pages]
  for name in copies[: MAX_OUT_FILES - 1]:
    if os.path.exists(os.path.join(args.work, name)):
      shutil.copy(os.path.join(args.work, name), os.path.join(args.out, name))
  return text


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", help="folder for the results (the device tool's $OUT)")
  p.add_argument("--time_budget_s", type=float, default=450, help="the whole run, bundling included")
  p.add_argument("--stages", default=",".join(STAGES), help=f"a subset of {','.join(STAGES)}, run in order")
  p.add_argument("--smoke", action="store_true", help="tiny shapes, to test this script (any machine)")
  p.add_argument("--torch_device", default="auto", choices=("auto", "cpu", "cuda"))
  p.add_argument("--commit", default="", help="the commit being measured (default: git, where there is one)")
  p.add_argument("--allow_cpu", action="store_true", help="run the benchmarks even if JAX has no GPU")
  p.add_argument("--work_dir", help="where the stages write (default: a new temporary folder)")
  p.add_argument("--digest", action="store_true", help="print the source digest of this checkout and exit")
  args = p.parse_args(argv)
  if args.digest:
    print(source_digest())
    return 0
  if not args.out:
    p.error("--out is required")
  args.t0 = time.time()
  deadline = args.t0 + args.time_budget_s
  args.commit = args.commit or git_commit()
  args.work = args.work_dir or tempfile.mkdtemp(prefix="device_checks_")
  os.makedirs(args.work, exist_ok=True)
  tag = "smoke" if args.smoke else "gpu"
  started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  log = Log(os.path.join(args.work, "device_checks.log"))
  log(
    f"device_checks: started {started} UTC, budget {args.time_budget_s:.0f} s, commit {args.commit or '?'}, "
    f"source digest {source_digest()}, python {sys.version.split()[0]}, work {args.work}, out {args.out}"
  )
  commands = stage_commands(args, tag)
  wanted = [s for s in args.stages.split(",") if s]
  unknown = set(wanted) - set(STAGES)
  if unknown:
    p.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
  stages = {}
  for name in wanted:
    argv_, min_s, cap_s = commands[name]
    left = deadline - time.time() - BUNDLE_RESERVE_S
    backend = ((_load(os.path.join(args.work, "env.json")) or {}).get("devices") or {}).get("jax_backend")
    if name != "env" and backend == "cpu" and not (args.smoke or args.allow_cpu):
      stages[name] = {"status": "skipped: JAX has no GPU here (env stage: backend cpu); --allow_cpu runs it"}
    elif left < min_s:
      stages[name] = {"status": f"skipped: {left:.0f} s left of the budget, needs {min_s} s"}
    else:
      try:
        stages[name] = run_stage(name, argv_, min(cap_s, left), args.work, log)
      except Exception as e:  # noqa: BLE001 (the driver itself must survive to write what it has)
        stages[name] = {"status": f"driver error: {type(e).__name__}: {e}"}
    if "skipped" in stages[name]["status"]:
      log(f"== stage {name}: {stages[name]['status']}")
    try:
      bundle(args, tag, stages, started, log)
    except Exception as e:  # noqa: BLE001
      log(f"bundling failed after stage {name}: {type(e).__name__}: {e}")
  text = bundle(args, tag, stages, started, log)
  log(text)
  bundle(args, tag, stages, started, log)  # once more, so the copied log ends with the summary
  return 0 if all(s["status"] == "ok" for s in stages.values()) else 1


if __name__ == "__main__":
  sys.exit(main())
