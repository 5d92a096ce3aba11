"""What a run records about where its numbers come from: code version, hardware, library versions.

Every ``results.json`` written by a training loop carries these fields, so that a reported number can be
traced to the commit, the machines and the software stack that produced it. JSON files of a run are written
by :func:`write_json` (indented, with non-JSON values such as dtypes or placeholders written as strings).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys

import flax
import jax
import optax

from stn_jax import parallel


def is_dirty(porcelain: str) -> bool:
  """Whether ``git status --porcelain`` output shows local changes that could change a run's numbers.

  Untracked paths inside a ``runs/`` directory under ``experiments/`` do not count: they are the results that
  the sweeps write into the repository while they run, and would otherwise mark every run of a sweep after its
  first as ``-dirty``. Any change to a tracked file, and any other untracked file, counts.
  """
  for line in porcelain.splitlines():
    if not line.strip():
      continue
    parts = line[3:].strip().strip('"').split("/")
    if line.startswith("?? ") and parts[0] == "experiments" and "runs" in parts[1:-1]:
      continue
    return True
  return False


def git_commit() -> str | None:
  """The repository's HEAD commit (with ``-dirty`` when there are local changes, see :func:`is_dirty`),
  or None outside git."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    if head.returncode:
      return None
    dirty = subprocess.run(
      ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10
    )
    return head.stdout.strip() + ("-dirty" if is_dirty(dirty.stdout) else "")
  except (OSError, subprocess.SubprocessError):
    return None


def cpu_model() -> str | None:
  """The host CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), or None."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def host() -> dict:
  """``{'cpu', 'cores', 'load_average_1_5_15_min'}`` of this host now.

  On a shared machine the load average says how much of the CPU a run had, which wall times need beside
  them; it is None where the OS has no load average.
  """
  try:
    load = list(os.getloadavg())
  except OSError:
    load = None
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1_5_15_min": load}


def command() -> str:
  """This process's command line as one would type it again (shell-quoted; ``python -m stn_jax.main ...``
  when it runs the package's entry point)."""
  argv = list(sys.argv)
  if argv and argv[0].endswith(os.path.join("stn_jax", "main.py")):
    argv[0:1] = ["python", "-m", "stn_jax.main"]
  elif argv and argv[0].endswith(".py"):
    argv[0:0] = ["python"]
  return shlex.join(argv)


def environment() -> dict:
  """``{'git_commit', 'hardware', 'host', 'versions'}`` of this process, for ``results.json``.

  Returns:
    The commit of :func:`git_commit`, :func:`stn_jax.parallel.describe_devices`, :func:`host` (taken when
    called: a loop calls this at the end of a run) and the versions of jax, flax and optax.
  """
  return {
    "git_commit": git_commit(),
    "hardware": parallel.describe_devices(),
    "host": host(),
    "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
  }


def write_json(path: str, obj) -> None:
  """Writes ``obj`` to ``path`` as indented JSON; values JSON cannot hold are written as ``str(value)``.

  The file is written beside ``path`` and renamed over it, so a process killed mid-write leaves the previous
  file (or none), never a truncated one that a rerun could not read.
  """
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, default=str)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
