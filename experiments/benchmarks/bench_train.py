r"""Training-step speed: CNN vs ST-CNN, stn_jax vs PyTorch, on the distorted-MNIST RTS and TC shapes.

  JAX_PLATFORMS=cpu python experiments/benchmarks/bench_train.py --tag=cpu
  python experiments/benchmarks/bench_train.py --tag=gpu      # a GPU machine: JAX and PyTorch on the GPU

measures the median wall time of one training step (forward, backward, SGD-momentum update; batch 256) for
every case, interleaved (all cases run a block of steps, then all again, ``--repeats`` times) so that load
changes on a shared machine hit every case alike, and writes ``results/train_<tag>.json`` and ``.md``.

* JAX steps are ``stn_jax.train_steps.train_step`` itself, jitted as ``train_steps.create_setup`` does, with
  the optimizer of ``train_config.make_optimizer`` ('paper' schedule: SGD, momentum 0.9). Its data sampler is
  swapped for a task that returns a fixed random batch, so the model step is timed alone.
* ``data`` cases time the on-device distortion generator (``task.sample_train`` of the real MNIST task, the
  call the real step makes inside ``jit``) per batch.
* PyTorch steps are the ports of ``torch_models.py`` with ``torch.optim.SGD`` (same learning rate, momentum),
  on ``--torch_device`` (``auto``: CUDA where ``torch.cuda.is_available()``, else the CPU); on CUDA with
  ``torch.backends.cudnn.benchmark`` on (cuDNN picks its fastest kernels, as XLA autotunes its own) and a
  ``torch.cuda.synchronize()`` ending every timed step.
* JAX runs on its default backend (the GPU where jax has one); every timed step blocks until it is done.
* ``--breakdown`` also times the parts of the affine ST-CNN (localisation net, grid + sampler, classifier)
  forward + backward in both frameworks (the PyTorch parts on the CPU only: with a CUDA torch device they
  are left out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import jax
import numpy as np
import optax
from flax import nnx

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, for configs/

from stn_jax import parallel  # noqa: E402

sys.path.insert(0, _HERE)
import train_cases  # noqa: E402
import train_report  # noqa: E402


def measure(cases, *, warmup: int, repeats: int, steps: int, settle: int, on_round=None):
  """Times every case, interleaved: per case and round, the list of per-step milliseconds.

  Args:
    cases: ``[(key, run, param_count)]``; ``run()`` performs one step and blocks until it is done.
    warmup: untimed calls of each case first (compilation, allocator warm-up); the first one's time is kept.
    repeats: rounds over all cases; the case order rotates each round.
    steps: timed calls per case per round.
    settle: untimed calls at the start of each block (caches after switching case).
    on_round: optional ``on_round((times, first_call_s, errors), rounds_done)`` after every round.

  Returns:
    ``(times, first_call_s, errors)``: ``times[i][r]`` the step times (ms) of case i in round r;
    ``errors[i]`` the message of the exception case i raised while warming up (it is then skipped), or None.
  """
  first_call, errors = [], []
  for key, run, _ in cases:
    t0 = time.perf_counter()
    try:
      run()
      for _ in range(warmup - 1):
        run()
      errors.append(None)
    except Exception as e:  # noqa: BLE001 (a broken case is reported, the others still run)
      errors.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
      print(f"case {key} failed: {errors[-1]}", flush=True)
    first_call.append(time.perf_counter() - t0)
  times = [[[] for _ in range(repeats)] for _ in cases]
  live = [i for i, e in enumerate(errors) if e is None]
  for r in range(repeats):
    order = live[r % len(live) :] + live[: r % len(live)]
    for i in order:
      run = cases[i][1]
      for _ in range(settle):
        run()
      for _ in range(steps):
        t0 = time.perf_counter()
        run()
        times[i][r].append(1e3 * (time.perf_counter() - t0))
    print(f"round {r + 1}/{repeats} done, load {os.getloadavg()}", flush=True)
    if on_round is not None and r + 1 < repeats:
      on_round((times, first_call, errors), r + 1)
  return times, first_call, errors


def _summary(key, per_round, param_count, first_call_s, error):
  if error:
    return {**key, "param_count": param_count, "error": error}
  flat = np.concatenate([np.asarray(t) for t in per_round])
  med = float(np.median(flat))
  return {
    **key,
    "param_count": param_count,
    "median_ms": med,
    "p25_ms": float(np.percentile(flat, 25)),
    "p75_ms": float(np.percentile(flat, 75)),
    "min_ms": float(flat.min()),
    "round_medians_ms": [float(np.median(t)) for t in per_round],
    "steps_per_s": 1e3 / med,
    "timed_steps": int(flat.size),
    "first_call_s": first_call_s,
  }


def _find(rows, **key):
  hits = [r for r in rows if all(r.get(k) == v for k, v in key.items()) and "error" not in r]
  return hits[0] if hits else None


def ratios(rows):
  """Step-time ratios within the run: ST-CNN / CNN and ST-CNN / :data:`train_cases.ST_BASELINE` per
  framework, and JAX / PyTorch per model.

  Each comes as the ratio of the two medians and as the paired ratio: the median over rounds of (round
  median of A) / (round median of B); A and B ran minutes apart at most, so slow drifts of the load cancel.
  """

  def pair(a, b):
    ra, rb = np.asarray(a["round_medians_ms"]), np.asarray(b["round_medians_ms"])
    return {"ratio_of_medians": a["median_ms"] / b["median_ms"], "paired_ratio": float(np.median(ra / rb))}

  out = []
  for row in rows:
    if row["kind"] != "step" or "error" in row:
      continue
    variant, framework, model = row["variant"], row["framework"], row["model"]
    if model.startswith("st_"):
      for base_name in ("cnn", train_cases.ST_BASELINE):
        base = _find(rows, variant=variant, framework=framework, model=base_name, kind="step")
        if base:
          out.append({"variant": variant, "what": f"{framework}: {model} / {base_name}", **pair(row, base)})
    if framework == "jax":
      other = _find(rows, variant=variant, framework="torch", model=model, kind="step")
      if other:
        out.append({"variant": variant, "what": f"{model}: jax / torch", **pair(row, other)})
  return out


def _output(*command):
  """The stdout of ``command`` (run in this directory), or "" where the program is missing."""
  try:
    return subprocess.run(command, capture_output=True, text=True, cwd=_HERE).stdout
  except OSError:
    return ""


def environment(argv, torch_device="cpu", commit=""):
  """Hardware, devices, versions, load and the command, for the results files.

  ``commit``: recorded as the git commit when given (a machine without the repository's ``.git``).
  """
  lscpu = _output("lscpu")
  field = lambda name: next(
    (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith(name)), None
  )
  try:
    import torch  # noqa: PLC0415

    torch_info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch_device != "cpu":
      torch_info.update(
        torch_device_name=torch.cuda.get_device_name(torch.device(torch_device)),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
      )
  except ImportError:
    torch_info = {}
  platforms = os.environ.get("JAX_PLATFORMS")
  return {
    "cpu_model": field("Model name"),
    "cpus": os.cpu_count(),
    "cores_per_socket": field("Core(s) per socket"),
    "jax_devices": parallel.describe_devices(),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "flax": nnx.__name__ and __import__("flax").__version__,
    "optax": optax.__version__,
    **torch_info,
    "torch_device": torch_device,
    "git_commit": commit or _output("git", "rev-parse", "--short", "HEAD").strip() or None,
    "command": (f"JAX_PLATFORMS={platforms} " if platforms else "") + "python " + " ".join(argv),
    "uptime_before": _output("uptime").strip(),
  }


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  csv = lambda s: [x for x in s.split(",") if x]
  p.add_argument("--variants", type=csv, default=["rts", "tc"])
  st_baseline = train_cases.ST_BASELINE
  models_help = f"model names of configs/mnist.py, or {st_baseline} (see ST_BASELINE)"
  jax_models = ["cnn", st_baseline, "st_cnn_aff", "st_cnn_proj", "st_cnn_tps"]
  p.add_argument("--jax_models", type=csv, default=jax_models, help=models_help)
  p.add_argument("--torch_models", type=csv, default=["cnn", st_baseline, "st_cnn_aff"], help=models_help)
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--repeats", type=int, default=4, help="interleaved rounds over all cases")
  p.add_argument("--steps", type=int, default=5, help="timed steps per case per round")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--settle", type=int, default=0, help="untimed steps at the start of each block")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  p.add_argument("--torch_device", default="auto", choices=("auto", "cpu", "cuda"))
  p.add_argument("--commit", default="", help="recorded as the git commit (default: read with git)")
  p.add_argument("--no_data", dest="data", action="store_false", help="skip the sample_train cases")
  p.add_argument("--breakdown", action="store_true", help="also time the parts of the affine ST-CNN")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tag", default="cpu", help="results go to results/train_<tag>.{json,md}")
  p.add_argument("--out_dir", default=os.path.join(_HERE, "results"))
  return p.parse_args(argv)


def write_results(args, env, cases, measured, flops, rounds_done):
  """Summarises the first ``rounds_done`` rounds and writes ``train_<tag>.json`` and ``.md``; returns the
  Markdown."""
  times, first_call, errors = measured
  rows = [
    _summary(key, t[:rounds_done], n, f, e)
    for (key, _, n), t, f, e in zip(cases, times, first_call, errors, strict=True)
  ]
  for row in rows:  # XLA's count for the JAX step of the same model; the PyTorch port does the same maths.
    step_flops = flops.get((row["variant"], row["model"])) if row["kind"] == "step" else None
    if step_flops and "error" not in row:
      row["xla_gflop_per_step"] = step_flops / 1e9
      row["achieved_gflop_per_s"] = step_flops / 1e6 / row["median_ms"]
  env = dict(
    env,
    uptime_after=_output("uptime").strip(),
    wall_seconds=round(time.time() - env["start_time"], 1),
    rounds_completed=rounds_done,
  )
  result = {"environment": env, "settings": vars(args), "cases": rows, "ratios": ratios(rows)}
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, f"train_{args.tag}")
  with open(path + ".json", "w") as f:
    json.dump(result, f, indent=2)
  text = train_report.markdown(result)
  with open(path + ".md", "w") as f:
    f.write(text)
  return text


def main(argv):
  args = parse_args(argv[1:])
  torch_device = "cpu"
  if args.torch_models:
    import torch  # noqa: PLC0415
    import torch_models  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    torch_device = torch_models.resolve_device(args.torch_device)
    if torch_device != "cpu":
      torch.backends.cudnn.benchmark = True
  env = environment(argv, torch_device, args.commit)
  print(f"devices: JAX {env['jax_devices']['devices']}; torch {torch_device}", flush=True)
  env["start_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  env["start_time"] = time.time()
  mesh = parallel.make_mesh()
  flops = {}
  cases = train_cases.build_cases(args, mesh, flops, torch_device)
  # Results are rewritten after every round, so an interrupted run still leaves its finished rounds.
  on_round = lambda measured, r: write_results(args, env, cases, measured, flops, r)
  measured = measure(
    cases, warmup=args.warmup, repeats=args.repeats, steps=args.steps, settle=args.settle, on_round=on_round
  )
  print(write_results(args, env, cases, measured, flops, args.repeats))


if __name__ == "__main__":
  main(sys.argv)
