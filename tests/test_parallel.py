"""Tests of the data-parallel path: 8 fake CPU devices give the same training run as 1 device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from stn_jax import parallel

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: the fake device count must be set before JAX initialises.
_SCRIPT = textwrap.dedent(
  """
  import json
  import jax, numpy as np
  from configs import mnist as mnist_configs
  from stn_jax import parallel, train_steps

  assert jax.device_count() == 8, jax.devices()
  config = mnist_configs.get_config("e,tiny_st_fcn_aff")
  config.update(dict(batch_size=32, total_steps=3, schedule="fast", learning_rate=1e-2, warmup_steps=0))
  config.data.test_size = 100
  out = {}
  for n in (8, 1):
    mesh = parallel.make_mesh(jax.devices()[:n])
    setup = train_steps.create_setup(config, mesh=mesh)
    state, losses = setup.state, []
    out[f"replicated{n}"] = all(p.sharding.is_fully_replicated for p in jax.tree.leaves(state["params"]))
    for _ in range(3):
      state, step_metrics = setup.step_fn(state, setup.train_data)
      losses.append(float(step_metrics["loss"]))
    out[f"losses{n}"] = losses
    images, labels = setup.task.test_set()
    params = state["params"]
    out[f"eval{n}"] = train_steps.evaluate(setup.graphdef, params, images, labels, batch_size=40, mesh=mesh)
  batch = parallel.shard_host_batch(np.arange(32.0).reshape(32, 1), parallel.make_mesh())
  out["shards"] = sorted(int(s.data.shape[0]) for s in batch.addressable_shards)
  print("RESULT" + json.dumps(out))
  """
)


def test_eight_fake_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
    [sys.executable, "-c", _SCRIPT], cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  out = json.loads(lines[-1][len("RESULT") :])
  assert out["replicated8"] and out["replicated1"]
  assert out["shards"] == [4] * 8  # the batch really is split over the 8 devices
  # Same data, same parameters: only the order of the gradient sums differs.
  np.testing.assert_allclose(out["losses8"], out["losses1"], rtol=1e-5)
  np.testing.assert_allclose(out["eval8"]["test_loss"], out["eval1"]["test_loss"], rtol=1e-4)
  assert out["eval8"]["test_error"] == out["eval1"]["test_error"]


def test_mesh_and_shardings_on_this_host():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
  x = parallel.shard_host_batch(np.ones((jax.device_count() * 2, 3)), mesh)
  assert x.shape == (jax.device_count() * 2, 3)
  assert parallel.replicate({"a": np.zeros(2)}, mesh)["a"].sharding.is_fully_replicated
  info = parallel.describe_devices()
  assert info["device_count"] == jax.device_count() and info["platform"] == jax.devices()[0].platform


def test_batch_must_split_over_devices():
  mesh = parallel.make_mesh(jax.devices()[:1])
  parallel.check_batch_size(7, mesh)
  fake = type("FakeMesh", (), {"shape": {"data": 8}})()
  with pytest.raises(ValueError, match="divisible"):
    parallel.check_batch_size(12, fake)


def test_multi_host_detection(monkeypatch):
  for name in (
    "JAX_COORDINATOR_ADDRESS",
    "COORDINATOR_ADDRESS",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "TPU_WORKER_HOSTNAMES",
  ):
    monkeypatch.delenv(name, raising=False)
  assert not parallel._multi_process_env()
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert not parallel._multi_process_env()
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert parallel._multi_process_env()
  monkeypatch.delenv("SLURM_NTASKS")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
  assert parallel._multi_process_env()
  parallel_init_calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda: parallel_init_calls.append(1))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  parallel.initialize()
  assert parallel_init_calls == [1]
