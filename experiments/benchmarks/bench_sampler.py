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
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import coords, sampling, separable, transforms, warp

_HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
  "mnist": dict(batch=256, channels=1, in_shape=(60, 60), out_shape=(60, 60), repeats=10),
  "cub": dict(batch=64, channels=3, in_shape=(448, 448), out_shape=(224, 224), repeats=5),
  "cub_crop": dict(batch=64, channels=3, in_shape=(448, 448), out_shape=(224, 224), repeats=5, crop=True),
  "smoke": dict(batch=2, channels=1, in_shape=(12, 12), out_shape=(8, 8), repeats=2),
  "smoke_crop": dict(batch=2, channels=3, in_shape=(16, 16), out_shape=(8, 8), repeats=2, crop=True),
}
TASKS = ("fwd", "bwd_theta", "bwd_both")
LIBS = ("stn_jax", "baseline", "torch", "kornia", "dm_pix", "map_coordinates")
_JAX_LIBS = ("stn_jax", "baseline", "dm_pix", "map_coordinates")
_CROP_PREFIX = "stn_jax/"  # + a separable method: the crop through separable_sample(..., method=...)


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


def _jax_task(sample, task, image, theta, cot):
  """Compiled JAX callable for ``task`` given ``sample(image, theta) -> (B, H', W', C)``."""
  loss = lambda i, t: jnp.sum(sample(i, t) * cot)
  fn = {
    "fwd": jax.jit(sample),
    "bwd_theta": jax.jit(jax.grad(loss, argnums=1)),
    "bwd_both": jax.jit(jax.grad(loss, argnums=(0, 1))),
  }[task]
  compiled = fn.lower(image, theta).compile()
  return lambda: jax.block_until_ready(compiled(image, theta))


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


def _stn_path(pkg, case):
  """``(f(image, arg), arg)``: the issue's stn_jax path for ``case`` with the modules of ``pkg``."""
  out_shape = case["out_shape"]
  if case.get("crop"):
    return lambda i, p: pkg.warp.warp(i, p, "attention", out_shape), "params"
  return lambda i, t: pkg.sampling.grid_sample(i, pkg.transforms.affine_grid(t, out_shape)), "theta"


def jax_libs(case, task, image, theta, params, cot, libs, baseline=None):
  """The JAX contenders named in ``libs`` as zero-argument callables.

  ``baseline``: a :func:`load_baseline` namespace; ``stn_jax/<method>`` entries of ``libs`` (crop cases
  only) sample the attention crop with ``separable.separable_sample(..., method=<method>)``.
  """
  out_shape = case["out_shape"]
  image, cot = jnp.asarray(image), jnp.asarray(cot)
  current = types.SimpleNamespace(sampling=sampling, transforms=transforms, warp=warp)
  stn, which = _stn_path(current, case)
  arg = jnp.asarray(params if which == "params" else theta)
  in_hw = case["in_shape"]

  def pixel_grid(t):
    grid = transforms.affine_grid(t, out_shape)
    return coords.normalized_to_pixel(grid, in_hw)  # (B, H', W', 2) as (x, y)

  def dm_pix_sample(i, t):
    import dm_pix

    pix = pixel_grid(t)
    yx = jnp.stack([pix[..., 1], pix[..., 0]], axis=0)  # (2, H', W')
    per_channel = lambda img2d, c: dm_pix.flat_nd_linear_interpolate(img2d, c)
    per_image = lambda img, c: jax.vmap(per_channel, in_axes=(-1, None), out_axes=-1)(img, c)
    return jax.vmap(per_image, in_axes=(0, 1))(i, yx)

  def map_coordinates_sample(i, t):
    pix = pixel_grid(t)
    per_channel = lambda img2d, p: jax.scipy.ndimage.map_coordinates(
      img2d, [p[..., 1], p[..., 0]], order=1, mode="constant"
    )
    per_image = lambda img, p: jax.vmap(per_channel, in_axes=(-1, None), out_axes=-1)(img, p)
    return jax.vmap(per_image)(i, pix)

  def separable_method(method):
    family = transforms.get_family("attention")
    return lambda i, p: separable.separable_sample(i, *family.axes(p, out_shape), method=method)

  jt = jnp.asarray(theta)
  builders = {
    "stn_jax": lambda: _jax_task(stn, task, image, arg, cot),
    "baseline": lambda: _jax_task(_stn_path(baseline, case)[0], task, image, arg, cot),
    "dm_pix": lambda: _jax_task(dm_pix_sample, task, image, jt, cot),
    "map_coordinates": lambda: _jax_task(map_coordinates_sample, task, image, jt, cot),
  }
  if case.get("crop"):
    for lib in libs:
      if lib.startswith(_CROP_PREFIX):
        method = lib[len(_CROP_PREFIX) :]
        builders[lib] = lambda m=method: _jax_task(separable_method(m), task, image, arg, cot)
  return {lib: builders[lib]() for lib in libs if lib in builders and (lib != "baseline" or baseline)}


def torch_libs(case, task, image, theta, cot, libs, device="cpu"):
  """The PyTorch contenders (torch, kornia) named in ``libs`` as zero-argument callables on ``device``."""
  import torch
  import torch.nn.functional as F
  import torch_models

  torch.set_num_threads(2)
  b, c = case["batch"], case["channels"]
  (h, w), (ho, wo) = case["in_shape"], case["out_shape"]
  on = lambda x: torch.tensor(x).contiguous().to(device)
  ti = on(image.transpose(0, 3, 1, 2))
  tt = on(theta)
  tc = on(cot.transpose(0, 3, 1, 2))
  # theta (normalised, target -> source) as a pixel-space matrix source -> target, kornia's convention.
  to_norm = torch.tensor([[2 / wo, 0, 1 / wo - 1], [0, 2 / ho, 1 / ho - 1], [0, 0, 1]], device=device)
  to_pix = torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], device=device)
  bottom = torch.tensor([[0.0, 0.0, 1.0]], device=device).expand(b, 1, 3)

  def torch_sample(i, t):
    grid = F.affine_grid(t, (b, c, ho, wo), align_corners=False)
    return F.grid_sample(i, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

  def kornia_sample(i, t):
    from kornia.geometry.transform import warp_affine

    target_to_source = to_pix @ torch.cat([t, bottom], dim=1) @ to_norm
    m = torch.linalg.inv(target_to_source)[:, :2]
    return warp_affine(i, m, (ho, wo), mode="bilinear", padding_mode="zeros", align_corners=False)

  def runner(sample):
    def run():
      if task == "fwd":
        with torch.no_grad():
          out = sample(ti, tt)
      else:
        i = ti.clone().requires_grad_(task == "bwd_both")
        t = tt.clone().requires_grad_(True)
        (sample(i, t) * tc).sum().backward()
        out = t.grad
      torch_models.synchronize(device)
      return out

    return run

  fns = {"torch": runner(torch_sample), "kornia": runner(kornia_sample)}
  return {k: v for k, v in fns.items() if k in libs}


def _git(*args):
  """``git args`` in the repository, or "" where git or the repository is missing (a copied tree)."""
  root = os.path.dirname(os.path.dirname(_HERE))
  try:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout
  except OSError:
    return ""


def hardware(torch_device="cpu", commit=""):
  """CPU model, cores, devices, library versions and the current load average.

  ``commit``: recorded as the commit when given (a machine without the repository's ``.git``), else read
  with git.
  """
  info = {"platform": platform.platform(), "python": sys.version.split()[0], "jax": jax.__version__}
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
      key, _, value = line.partition(":")
      if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket"):
        info[key.strip()] = value.strip()
  except OSError:
    pass
  info["jax_devices"] = [str(d) for d in jax.devices()]
  for mod in ("torch", "kornia", "dm_pix"):
    try:
      info[mod] = __import__(mod).__version__
    except (ImportError, AttributeError):
      info[mod] = None
  if commit:
    info["commit"] = commit
  else:
    info["commit"] = _git("rev-parse", "--short", "HEAD").strip()
    if _git("status", "--porcelain", "stn_jax").strip():
      info["commit"] += " + uncommitted changes in stn_jax/"
  info["loadavg_start"] = os.getloadavg()
  info["torch_device"] = torch_device
  if jax.default_backend() != "cpu":
    info["jax_device_kind"] = jax.devices()[0].device_kind
  if torch_device != "cpu":
    import torch

    info["torch_device_name"] = torch.cuda.get_device_name(torch.device(torch_device))
  return info


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

  # The order of _JAX_LIBS, then the crop methods; each repeat times the libraries in this order.
  jax_names = [lib for lib in _JAX_LIBS if lib in libs] + [x for x in libs if x.startswith(_CROP_PREFIX)]
  for lib in jax_names:  # one at a time, so one library's failure leaves the others
    build([lib], lambda lib=lib: jax_libs(case, task, image, theta, params, cot, [lib], baseline))
  torch_names = [lib for lib in libs if lib in ("torch", "kornia")]
  if torch_names:
    build(torch_names, lambda: torch_libs(case, task, image, theta, cot, torch_names, torch_device))
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


def _shown(results):
  """Libraries with a time in ``results``: the order of :data:`LIBS`, then the others as they come."""
  seen = [lib for r in results for lib in r["median_ms"]]
  return [lib for lib in LIBS if lib in seen] + list(dict.fromkeys(x for x in seen if x not in LIBS))


def markdown(results, info, command):
  shown = _shown(results)
  lines = [
    "# Sampler benchmark",
    "",
    f"Command: `{command}`  ",
    f"Date (UTC): {info['date']}  ",
    f"Commit: {info.get('commit')}; baseline: {info.get('baseline') or 'none'}  ",
    f"Hardware: {info.get('Model name')}, {info.get('CPU(s)')} CPUs; jax {info['jax']},"
    f" torch {info['torch']}, kornia {info['kornia']}, dm-pix {info['dm_pix']}  ",
  ]
  if info.get("torch_device", "cpu") != "cpu" or "jax_device_kind" in info:
    lines.append(
      f"Devices: JAX {info['jax_devices']} ({info.get('jax_device_kind', 'cpu')}); torch on"
      f" {info['torch_device']} ({info.get('torch_device_name', 'cpu')})  "
    )
  lines += [
    f"Load average at start / end: {info['loadavg_start']} / {info['loadavg_end']} (shared machine)",
    "",
    "Median ms over interleaved repeats; ratio = library / torch in the same run (lower is faster).",
    "",
    "| case | task | " + " | ".join(f"{lib} ms (ratio)" for lib in shown) + " |",
    "|---|---|" + "---|" * len(shown),
  ]
  for r in results:
    med = r["median_ms"]
    cells = []
    for lib in shown:
      if lib in med:
        ratio = med[lib] / med["torch"] if "torch" in med else float("nan")
        cells.append(f"{med[lib]:.1f} ({ratio:.2f})")
      else:
        cells.append("-")
    lines.append(f"| {r['case']} | {r['task']} | " + " | ".join(cells) + " |")
  failed = [(r["case"], r["task"], lib, e) for r in results for lib, e in r.get("errors", {}).items()]
  if failed:
    lines += ["", "Failed (left out above):", ""]
    lines += [f"- {c} {t} {lib}: `{e.splitlines()[0][:300]}`" for c, t, lib, e in failed]
  return "\n".join(lines) + "\n"


def write(base, command, info, results):
  """Writes ``base.json`` and ``base.md`` (the load average at the end is taken now)."""
  info = dict(info, loadavg_end=os.getloadavg())
  with open(base + ".json", "w") as f:
    json.dump(dict(command=command, hardware=info, results=results), f, indent=1)
  with open(base + ".md", "w") as f:
    f.write(markdown(results, info, command))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default="mnist,cub,cub_crop")
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--libs", default=",".join(lib for lib in LIBS if lib != "baseline"))
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
  libs += [_CROP_PREFIX + m for m in args.crop_methods.split(",") if m]
  baseline = load_baseline(args.baseline) if args.baseline else None
  if baseline:
    libs.append("baseline")
  torch_device = "cpu"
  if any(lib in libs for lib in ("torch", "kornia")):
    sys.path.insert(0, _HERE)
    import torch_models

    torch_device = torch_models.resolve_device(args.torch_device)
  info = hardware(torch_device, args.commit)
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
      write(base, command, info, results)  # after every case and task: an interrupted run keeps them
  print(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
  main()
