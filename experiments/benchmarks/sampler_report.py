"""The results files of ``bench_sampler.py``: the machine it ran on, and the JSON and Markdown it writes.

``hardware`` records the CPU, devices, library versions, commit and load average; ``write`` puts the results
in ``<base>.json`` and renders them as ``<base>.md`` (median ms per library and case, with the ratio to torch
measured in the same run).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import jax
import sampler_libs

_HERE = os.path.dirname(os.path.abspath(__file__))


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


def _shown(results):
  """Libraries with a time in ``results``: the order of :data:`sampler_libs.LIBS`, then the others in turn."""
  seen = [lib for r in results for lib in r["median_ms"]]
  known = [lib for lib in sampler_libs.LIBS if lib in seen]
  return known + list(dict.fromkeys(x for x in seen if x not in sampler_libs.LIBS))


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
