r"""Sampler speed: stn_jax vs PyTorch grid_sample, Kornia, dm-pix and jax.scipy map_coordinates, one run.

  JAX_PLATFORMS=cpu python experiments/benchmarks/bench_sampler.py --tag=cpu
  python experiments/benchmarks/bench_sampler.py --tag=gpu --repeats=50 --warmup=5 \
    --crop_methods=fused,gather,banded,dense       # on a GPU machine: JAX and torch both on the GPU

Cases (the issue's): ``mnist`` batch 256, 1x60x60 -> 60x60, affine theta; ``cub`` batch 64, 3x448x448 ->
224x224, affine theta; ``cub_crop`` the same CUB shapes with an attention crop (s = 0.5, random translation).
Tasks: ``fwd`` (theta -> grid -> sample), ``bwd_theta`` (forward + gradient to theta), ``bwd_both``
(forward + gradients to image and theta); the loss is ``sum(out * cotangent)`` with a fixed random cotangent.

Every library does the same end-to-end user path:

* ``stn_jax``: ``transforms.affine_grid`` + ``sampling.grid_sample``; for ``cub_crop`` ``warp.warp(...,
  'attention', ...)``, which takes the separable fast path (its ``'fused'`` kernel at this size). Jitted.
* ``torch``: ``F.affine_grid`` + ``F.grid_sample`` (``torch.set_num_threads(2)``), NCHW, on
  ``--torch_device`` (``auto``: CUDA when ``torch.cuda.is_available()``, else the CPU).
* ``kornia``: ``kornia.geometry.transform.warp_affine`` with the pixel-space matrix equivalent to theta.
* ``dm_pix``: ``dm_pix.flat_nd_linear_interpolate`` at the pixel coordinates of the affine grid (vmapped
  over batch and channels; its edge handling differs, the work is the same). Jitted.
* ``map_coordinates``: ``jax.scipy.ndimage.map_coordinates(order=1, mode='constant')``, vmapped. Jitted.
* ``stn_jax/<method>`` (``--crop_methods``, crop case only): ``separable.separable_sample`` with that
  ``method`` on the attention family's axes, to see which separable kernel wins on the machine at hand.

JAX runs on its default backend (the GPU where jax has one). Every timed call waits for its result
(``jax.block_until_ready``; ``torch.cuda.synchronize()`` on CUDA), after ``--warmup`` untimed calls;
``--max_seconds_per_case`` caps the timed repeats of one case (a slow library cannot hold up a GPU lease).
A library that fails to build or warm up is dropped from that case and its error recorded (``errors``).

Timing is interleaved: each repeat runs every library once in turn, so load changes on a shared machine hit
all alike; we report medians and the ratio to torch measured in the same run. ``--baseline=COMMIT`` adds
``baseline``: the same stn_jax path with the package as of that commit (``git show`` into a temporary
directory, imported as a second package), for before/after comparisons in one process. Results go to
``results/sampler_<tag>.json`` and ``.md`` with the hardware, devices, versions, command and load average,
rewritten after every case and task so an interrupted run keeps what finished. Cases ``smoke`` and
``smoke_crop`` are tiny versions of ``mnist`` and ``cub_crop`` for tests of the script itself.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

from stn_jax import separable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)  # for the modules beside this one, also when it is imported from elsewhere
import sampler_libs  # noqa: E402
import sampler_report  # noqa: E402

CASES = {
  "mnist": dict(batch=256, channels=1, in_shape=(60, 60), out_shape=(60, 60), repeats=10),
  "cub": dict(batch=64, channels=3, in_shape=(448, 448), out_shape=(224, 224), repeats=5),
  "cub_crop": dict(batch=64, channels=3, in_shape=(448, 448), out_shape=(224, 224), repeats=5, crop=True),
  "smoke": dict(batch=2, channels=1, in_shape=(12, 12), out_shape=(8, 8), repeats=2),
  "smoke_crop": dict(batch=2, channels=3, in_shape=(16, 16), out_shape=(8, 8), repeats=2, crop=True),
}
TASKS = ("fwd", "bwd_theta", "bwd_both")


def make_inputs(case, seed=0):
  """Image (B, H, W, C), theta (B, 2, 3), attention params (B, 3) or None, cotangent (B, H', W', C)."""
  rng = np.random.default_rng(seed)
  b, c, (h, w), (ho, wo) = case["batch"], case["channels"], case["in_shape"], case["out_shape"]
  image = rng.random((b, h, w, c), dtype=np.float32)
  cot = rng.random((b, ho, wo, c), dtype=np.float32)
  if case.get("crop"):
    params = np.stack([np.full(b, 0.5), rng.uniform(-0.4, 0.4, b), rng.uniform(-0.4, 0.4, b)], -1)
    params = params.astype(np.float32)
    theta = np.zeros((b, 2, 3), np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = params[:, 0]
    theta[:, :, 2] = params[:, 1:]
    return image, theta, params, cot
  angle = rng.uniform(-0.5, 0.5, b)
  scale = rng.uniform(0.8, 1.1, b)
  theta = np.zeros((b, 2, 3), np.float32)
  theta[:, 0, 0], theta[:, 0, 1] = scale * np.cos(angle), -scale * np.sin(angle)
  theta[:, 1, 0], theta[:, 1, 1] = scale * np.sin(angle), scale * np.cos(angle)
  theta[:, :, 2] = rng.uniform(-0.2, 0.2, (b, 2))
  return image, theta, None, cot


def load_baseline(commit):
  """``stn_jax`` as of ``commit``, imported as the package ``stn_jax_baseline``; a namespace of modules."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=True).stdout
  tmp = tempfile.mkdtemp(prefix="stn_jax_baseline_")
  for path in git("ls-tree", "-r", "--name-only", commit, "stn_jax").split():
    if path.endswith(".py"):
      dest = os.path.join(tmp, "stn_jax_baseline", os.path.relpath(path, "stn_jax"))
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      with open(dest, "w") as f:
        f.write(re.sub(r"\bstn_jax\b", "stn_jax_baseline", git("show", f"{commit}:{path}")))
  sys.path.insert(0, tmp)
  return types.SimpleNamespace(
    **{m: importlib.import_module(f"stn_jax_baseline.{m}") for m in ("sampling", "transforms", "warp")}
  )


def time_interleaved(fns, repeats, *, alternate=False, max_seconds=0.0, min_repeats=3):
  """Wall times (ms) of zero-argument callables, interleaved: each repeat calls every one of ``fns`` once.

  Interleaving spreads a shared machine's load changes over all contenders alike, so ratios of the medians
  (or per-repeat ratios) are fairer than back-to-back loops. The callables must block until their work is
  done (``jax.block_until_ready``, a CUDA synchronise).

  Args:
    fns: ``{name: callable}``, called in this order (already compiled and warmed up).
    repeats: the number of rounds.
    alternate: reverse the order on every other round (round 0 reversed), so no contender always runs
      right after the same other one.
    max_seconds: 0 for no limit; otherwise no new round starts once this much time has passed and at least
      ``min_repeats`` rounds are done.

  Returns:
    ``(times, rounds)``: ``{name: [ms per round]}`` and the number of rounds done.
  """
  names = list(fns)
  times = {name: [] for name in names}
  t_end = time.perf_counter() + max_seconds
  rounds = 0
  for r in range(repeats):
    if max_seconds and r >= min_repeats and time.perf_counter() > t_end:
      break
    for name in names[::-1] if alternate and r % 2 == 0 else names:
      t0 = time.perf_counter()
      fns[name]()
      times[name].append((time.perf_counter() - t0) * 1e3)
    rounds += 1
  return times, rounds


def bench(case_name, task, libs, repeats, baseline=None, *, torch_device="cpu", warmup=1, max_seconds=0.0):
  """Interleaved medians (ms) of every library for one case and task.

  ``max_seconds`` (0: no limit): the timed repeats stop once they have taken this long (after 3 at least).

  Returns:
    ``(medians, raw times, errors)``: ``errors`` maps a library that failed to build or warm up to its
    error message (it is left out of the timings).
  """
  case = CASES[case_name]
  image, theta, params, cot = make_inputs(case)
  fns, errors = {}, {}

  def build(names, make):
    try:
      fns.update(make())
    except Exception as e:  # noqa: BLE001 (reported; the other libraries still run)
      errors.update({lib: f"{type(e).__name__}: {e}" for lib in names})

  # The order of sampler_libs.JAX_LIBS, then the crop methods; each repeat times the libraries in this order.
  crop_names = [x for x in libs if x.startswith(sampler_libs.CROP_PREFIX)]
  jax_names = [lib for lib in sampler_libs.JAX_LIBS if lib in libs] + crop_names
  for lib in jax_names:  # one at a time, so one library's failure leaves the others
    make = lambda lib=lib: sampler_libs.jax_libs(case, task, image, theta, params, cot, [lib], baseline)
    build([lib], make)
  torch_names = [lib for lib in libs if lib in ("torch", "kornia")]
  if torch_names:
    make = lambda: sampler_libs.torch_libs(case, task, image, theta, cot, torch_names, torch_device)
    build(torch_names, make)
  for name, fn in list(fns.items()):  # warm up (compile, allocator, autotuning)
    try:
      for _ in range(warmup):
        fn()
    except Exception as e:  # noqa: BLE001
      errors[name] = f"{type(e).__name__}: {e}"
      del fns[name]
  for name, message in errors.items():
    print(f"  {case_name} {task}: {name} failed: {message.splitlines()[0][:300]}", flush=True)
  times, done = time_interleaved(fns, repeats, max_seconds=max_seconds)
  if done < repeats:
    print(f"  {case_name} {task}: stopped after {done} of {repeats} repeats (time cap)", flush=True)
  return {k: float(np.median(v)) for k, v in times.items()}, times, errors


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default="mnist,cub,cub_crop")
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--libs", default=",".join(lib for lib in sampler_libs.LIBS if lib != "baseline"))
  parser.add_argument("--baseline", default="", help="a commit: also time stn_jax as of that commit")
  parser.add_argument("--repeats", type=int, default=0, help="0: the case's default")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each library first")
  parser.add_argument("--max_seconds_per_case", type=float, default=0, help="cap on timed repeats (0: none)")
  parser.add_argument(
    "--crop_methods",
    default="",
    help=f"separable methods ({','.join(separable.METHODS[1:])}) also timed on crop cases (stn_jax/<method>)",
  )
  parser.add_argument("--torch_device", default="auto", choices=("auto", "cpu", "cuda"))
  parser.add_argument("--commit", default="", help="recorded as the commit (default: read with git)")
  parser.add_argument("--tag", default="cpu")
  parser.add_argument("--out_dir", default=os.path.join(_HERE, "results"))
  args = parser.parse_args(argv)
  libs = args.libs.split(",")
  libs += [sampler_libs.CROP_PREFIX + m for m in args.crop_methods.split(",") if m]
  baseline = load_baseline(args.baseline) if args.baseline else None
  if baseline:
    libs.append("baseline")
  torch_device = "cpu"
  if any(lib in libs for lib in ("torch", "kornia")):
    import torch_models

    torch_device = torch_models.resolve_device(args.torch_device)
  info = sampler_report.hardware(torch_device, args.commit)
  info["baseline"] = args.baseline
  info["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  platforms = os.environ.get("JAX_PLATFORMS")
  command = " ".join(
    [*([f"JAX_PLATFORMS={platforms}"] if platforms else []), "python experiments/benchmarks/bench_sampler.py"]
    + (sys.argv[1:] if argv is None else list(argv))
  )
  print(f"devices: JAX {info['jax_devices']}; torch {torch_device} {info.get('torch_device_name', '')}")
  os.makedirs(args.out_dir, exist_ok=True)
  base = os.path.join(args.out_dir, f"sampler_{args.tag}")
  results = []
  for case_name in args.cases.split(","):
    tasks = ["bwd_theta"] if CASES[case_name].get("crop") else args.tasks.split(",")
    for task in tasks:
      t0 = time.time()
      med, raw, errors = bench(
        case_name,
        task,
        libs,
        args.repeats or CASES[case_name]["repeats"],
        baseline,
        torch_device=torch_device,
        warmup=args.warmup,
        max_seconds=args.max_seconds_per_case,
      )
      results.append(dict(case=case_name, task=task, median_ms=med, raw_ms=raw))
      if errors:
        results[-1]["errors"] = errors
      ratios = {k: round(v / med["torch"], 2) for k, v in med.items()} if "torch" in med else {}
      print(
        f"{case_name:9s} {task:9s} " + "  ".join(f"{k} {v:.1f}" for k, v in med.items()),
        "ratios",
        ratios,
        f"({time.time() - t0:.0f} s)",
        flush=True,
      )
      # After every case and task: an interrupted run keeps them.
      sampler_report.write(base, command, info, results)
  print(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
  main()
