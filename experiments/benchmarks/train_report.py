"""Renders the JSON written by ``bench_train.py`` as a Markdown page (``results/train_<tag>.md``).

  python experiments/benchmarks/train_report.py experiments/benchmarks/results/train_cpu.json

re-renders the page from a results file without re-running the benchmark.
"""

from __future__ import annotations

import json
import sys

_PART_NOTE = (
  "Parts are forward + backward of one piece of the affine ST-CNN, jitted (JAX) or run eagerly (PyTorch) on "
  "their own: `loc_net` = localisation net + regression layer (grads of its parameters), `grid_sampler` = "
  "affine grid + bilinear sampling of the full-size input (grads of theta), `classifier` = the CNN on the "
  "ST output (grads of its parameters). They exclude the optimizer update and do not sum exactly to a step."
)


def _case_table(rows):
  lines = [
    "| variant | framework | model | params | median ms/step | IQR ms | steps/s | timed steps | GFLOP/step |"
    " GFLOP/s |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    params = f"{r['param_count']:,}" if r["param_count"] else ""
    if "error" in r:
      lines.append(
        f"| {r['variant']} | {r['framework']} | {r['model']} | {params} | failed: {r['error']} ||||"
      )
      continue
    lines.append(
      f"| {r['variant']} | {r['framework']} | {r['model']} | {params} | {r['median_ms']:.1f} | "
      f"{r['p25_ms']:.1f}-{r['p75_ms']:.1f} | {r['steps_per_s']:.2f} | {r['timed_steps']} | "
      + (
        f"{r['xla_gflop_per_step']:.1f} | {r['achieved_gflop_per_s']:.1f} |"
        if "xla_gflop_per_step" in r
        else "| |"
      )
    )
  return lines


def _device_lines(env):
  """A line naming the accelerators, for runs that used one (CPU-only pages stay as they were)."""
  jax_platform = env["jax_devices"].get("platform", "cpu")
  torch_device = env.get("torch_device", "cpu")
  if jax_platform == "cpu" and torch_device == "cpu":
    return []
  line = f"- Devices: JAX on {jax_platform} ({env['jax_devices'].get('device_kind')})"
  if torch_device != "cpu":
    line += (
      f"; PyTorch on {torch_device} ({env.get('torch_device_name')}; cudnn.benchmark "
      f"{env.get('cudnn_benchmark')}, TF32 conv {env.get('cudnn_allow_tf32')} / matmul "
      f"{env.get('matmul_allow_tf32')})"
    )
  elif "torch" in env:
    line += "; PyTorch on the CPU"
  return [line + "."]


def markdown(result: dict) -> str:
  """The Markdown page for one ``bench_train.py`` result dict.

  Args:
    result: the dict ``bench_train.main`` writes (``environment``, ``settings``, ``cases``, ``ratios``).

  Returns:
    The page as a string.
  """
  env, settings, rows = result["environment"], result["settings"], result["cases"]
  steps = [r for r in rows if r["kind"] == "step"]
  data = [r for r in rows if r["kind"] == "data"]
  parts = [r for r in rows if r["kind"] == "part"]
  lines = [
    f"# Training-step speed ({settings['tag']})",
    "",
    f"- Hardware: {env['cpu_model']}, {env['cpus']} CPUs; JAX devices: {env['jax_devices']}.",
    *_device_lines(env),
    f"- Versions: Python {env['python']}, jax {env['jax']}, flax {env['flax']}, optax {env['optax']}"
    + (f", torch {env['torch']} ({env['torch_threads']} threads)" if "torch" in env else "")
    + ".",
    f"- Command: `{env['command']}` (git {env['git_commit']}); started {env['start_utc']}, "
    f"wall {env['wall_seconds']} s.",
    f"- Load: before `{env['uptime_before']}`; after `{env['uptime_after']}`.",
    f"- Batch {settings['batch_size']}; {env.get('rounds_completed', settings['repeats'])} of "
    f"{settings['repeats']} interleaved rounds x {settings['steps']} timed "
    f"steps per case (after {settings['warmup']} warm-up and {settings['settle']} settle step per block); "
    "random input tensors; SGD momentum 0.9, lr 0.01 in both frameworks.",
    "",
    "## Training step (forward + backward + update)",
    "",
    "`cnn_st_out` is the CNN an ST-CNN runs after its transformer (the ST-CNN's classifier widths, on the "
    "2x smaller ST output) without the transformer: `st_cnn_* / cnn_st_out` is the transformer's own cost, "
    "while `st_cnn_* / cnn` also includes the saving of classifying a 2x downsampled image. GFLOP/step is "
    "XLA's count (`cost_analysis`) of the compiled JAX step, also shown for the PyTorch port of the same "
    "model; GFLOP/s = that count / median time.",
    "",
    *_case_table(steps),
    "",
    "## Ratios (same run)",
    "",
    "`ratio_of_medians` divides the medians above; `paired` is the median over rounds of the ratio of the "
    "two cases' round medians (robust to load drifting between rounds).",
    "",
    "| variant | ratio | of medians | paired |",
    "|---|---|---:|---:|",
    *(
      f"| {q['variant']} | {q['what']} | {q['ratio_of_medians']:.3f} | {q['paired_ratio']:.3f} |"
      for q in result["ratios"]
    ),
  ]
  if data:
    lines += [
      "",
      "## On-device data generation (`task.sample_train`, one batch)",
      "",
      "The real training loop generates each batch inside the jitted step; add this to a model step.",
      "",
      *_case_table(data),
    ]
  if parts:
    lines += ["", "## Affine ST-CNN parts (forward + backward)", "", _PART_NOTE, "", *_case_table(parts)]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  with open(sys.argv[1]) as f:
    print(markdown(json.load(f)))
