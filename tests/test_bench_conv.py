"""The convolution benchmark's candidate kernel gradient equals XLA's, and the script runs end to end.

The benchmark is ``experiments/benchmarks/bench_conv.py``.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "benchmarks"))
import bench_conv  # noqa: E402


@pytest.mark.parametrize("k", [1, 3, 4, 5])
def test_kernel_grad_scan_matches_autodiff(k):
  rng = np.random.default_rng(k)
  x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
  w = rng.standard_normal((k, k, 3, 5)).astype(np.float32)
  g = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
  want = jax.vjp(lambda w: bench_conv.conv(x, w), w)[1](g)[0]
  got = bench_conv.kernel_grad_scan(x, g, k)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_main_writes_results(tmp_path):
  args = ["--variants=rts", "--batch=2", "--repeats=1", "--no_torch", "--tag=t", f"--out_dir={tmp_path}"]
  bench_conv.main(args)
  result = json.loads((tmp_path / "conv_t.json").read_text())
  assert set(result["median_ms"]) == {
    "rts conv1 9x9 1->32 at 42x42",
    "rts conv2 7x7 32->64 at 21x21",
  }
  for per in result["median_ms"].values():
    assert set(per) == {"jax fwd", "jax input_grad", "jax kernel_grad", "jax kernel_grad_scan"}
    assert all(t > 0 for t in per.values())
  assert max(result["kernel_grad_scan_rel_error"].values()) < 1e-4
  assert (tmp_path / "conv_t.md").read_text().startswith("# Convolution passes")


def test_unknown_variant_is_an_error(capsys):
  with pytest.raises(SystemExit):
    bench_conv.main(["--variants=svhn"])
  assert "unknown variants ['svhn']" in capsys.readouterr().err
