"""Runs the suite on the CPU unless ``JAX_PLATFORMS`` says otherwise (set before any test imports jax).

Its bit-for-bit checks (same seed, same numbers; a resumed run equals an uninterrupted one) are about XLA's
CPU backend; GPU numbers are measured by ``experiments/gpu/device_checks.py``, not by the suite.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
