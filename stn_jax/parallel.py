"""Mesh and sharding helpers: the one file that touches JAX's distribution APIs.

Data parallelism, one code path from 1 CPU to a GPU node to a TPU pod: a 1D mesh over every device with the
axis ``'data'``; the batch is sharded over it and parameters / optimizer state are replicated. Under ``jit``
XLA inserts the gradient all-reduce itself, so no ``shard_map`` or ``pmap`` is needed.

Multi-host: :func:`initialize` calls ``jax.distributed.initialize()`` when the environment says this process
is one of several (a coordinator address, or a SLURM / Open MPI / TPU-pod job of more than one process);
``jax.devices()`` then lists the devices of every host and the same mesh spans them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


def _multi_process_env() -> bool:
  """True when environment variables say this job has more than one process."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS") or env.get("COORDINATOR_ADDRESS"):
    return True
  for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
    if env.get(name, "1").isdigit() and int(env.get(name, "1")) > 1:
      return True
  return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def initialize() -> None:
  """Initialises multi-host JAX when running as one of several processes; a no-op otherwise.

  Must run before anything else touches the devices. Safe to call twice.
  """
  if _multi_process_env() and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1D data-parallel mesh with axis ``'data'``.

  Args:
    devices: the devices to use (default: all of them, across hosts).

  Returns:
    The mesh.
  """
  # Auto axes: jit propagates shardings from the constraints we place (the classic GSPMD mode).
  auto = (jax.sharding.AxisType.Auto,)
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=auto)
  return jax.sharding.Mesh(np.asarray(list(devices)), (DATA_AXIS,), axis_types=auto)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device (parameters, optimizer state, small constants)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over ``'data'``."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """Raises ``ValueError`` unless ``batch_size`` splits evenly over the mesh's data axis."""
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices on 'data' ({n}).")


def replicate(tree, mesh: jax.sharding.Mesh):
  """Places every array of ``tree`` on all devices of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def shard_host_batch(array: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
  """Builds a global array sharded over ``'data'`` from a host array every process holds in full.

  Works multi-host: each process only materialises the shards of its own devices.

  Args:
    array: ``(B, ...)`` numpy array, identical on every process; ``B`` divisible by the data axis size.
    mesh: the mesh.

  Returns:
    A ``jax.Array`` of the same shape, sharded over the leading axis.
  """
  array = np.asarray(array)
  check_batch_size(array.shape[0], mesh)
  return jax.make_array_from_callback(array.shape, batch_sharded(mesh), lambda index: array[index])


def describe_devices() -> dict:
  """Hardware description for logs and ``results.json``."""
  devices = jax.devices()
  return {
    "platform": devices[0].platform,
    "device_kind": devices[0].device_kind,
    "device_count": jax.device_count(),
    "local_device_count": jax.local_device_count(),
    "process_count": jax.process_count(),
    "devices": [str(d) for d in devices[:16]],
    "host_cpu_count": os.cpu_count(),
  }
