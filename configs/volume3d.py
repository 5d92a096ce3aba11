r"""3D spatial transformers (paper appendix A.3): a digit card at a random 3D pose in a volume.

  python -m stn_jax.main --config=configs/volume3d.py:st_cnn --workdir=runs/volume3d/st_cnn
  python -m stn_jax.main --config=configs/volume3d.py:cnn --workdir=runs/volume3d/cnn

Models (``stn_jax/models/volume3d.py``): ``st_cnn`` (3D affine ST with a 3D CNN localisation net, mean
projection along depth, 2D CNN) and ``cnn`` (the baseline: the same projection of the raw volume, 2D CNN with
wider layers for about the same parameter count). The pose ranges are fields of ``config.data``
(``stn_jax/data/volume.py``). Append ``,quick`` for the CPU budget preset: 32^3 volumes, Adam + cosine, 1500
steps, batch 64, 500 test volumes. Such runs are reduced-scale and labelled so.

The volume side (paper: 60, the default; 32 with ``,quick``) is chosen with ``,size=N`` in the config
argument, e.g. ``--config=configs/volume3d.py:cnn,quick,size=24``: the baseline's widths and the ST's
localisation downsampling are derived from it (``BASELINE_WIDTHS``). ``--config.data.size=N`` alone changes
the data but keeps the widths derived for the preset's side, so the two models' parameter counts no longer
match; use it only on purpose.

Paper: no number is reported (qualitative figure only). Ours at 60^3, 1000 steps of batch 64 (reduced in
steps only): ST 7.0% vs baseline 12.8% test error, 5104 s vs 689 s of wall time for the 1000 steps (5.1 s
vs 0.69 s per step) on a shared 2-core CPU, the ST run beside other jobs (1-minute load average 1.6 at the
baseline's start, 4.9 between the runs, 2.0 at the ST run's end), as recorded in
``experiments/appendix/runs/volume3d/{st_cnn,cnn}_60cubed_1000steps/results.json``. At 32^3 (``,quick``
with ``--config.total_steps=1000``, not the preset's 1500 steps; same folder, ``{st_cnn,cnn}_1000steps/``)
8.4% vs 15.4%. Commands and details: ``experiments/appendix/README.md``. The
generic ``transforms.png`` figure is off (``num_figure_examples = 0``, it draws 2D grids);
``python experiments/appendix/figures.py volume3d WORKDIR OUT.png`` draws the input projections, the ST
output projection and the predicted labels.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs import common

MODEL_NAMES = ("cnn", "st_cnn")
# 2D CNN widths per volume side: the ST model keeps (16, 32); the baseline's second width is the multiple of 8
# whose parameter count is closest to the ST model's (tests/test_volume3d*.py check it and the counts).
# A side not listed here is refused: add it with the closest fit rather than guess.
ST_WIDTHS = (16, 32)
BASELINE_WIDTHS = {24: (16, 48), 32: (16, 56), 40: (16, 72), 48: (16, 40), 60: (16, 40)}


def loc_downsample(size: int) -> int:
  """The ST localisation net's input pooling for a volume side (keeps its 3D convolutions cheap)."""
  return 2 if size < 48 else 4


def _parse(arg: str) -> tuple[str, bool, int | None]:
  """``"<model>[,quick][,size=N]"`` -> (model, quick, size or None)."""
  usage = f"config argument must be '<model>[,quick][,size=N]', got {arg!r}."
  name, *options = [p.strip() for p in arg.split(",")]
  quick, size = False, None
  for option in options:
    if option == "quick" and not quick:
      quick = True
    elif option.startswith("size=") and size is None:
      value = option[len("size=") :]
      if not value.isdigit() or int(value) not in BASELINE_WIDTHS:
        raise ValueError(f"{usage} The size must be one of {sorted(BASELINE_WIDTHS)}, got {value!r}.")
      size = int(value)
    else:
      raise ValueError(usage)
  return name, quick, size


def get_config(arg: str = "st_cnn") -> ml_collections.ConfigDict:
  """Builds the config for ``"<model>[,quick][,size=N]"`` (``cnn``, ``st_cnn`` or a ``tiny_*`` test model)."""
  name, quick, size = _parse(arg)
  if name not in MODEL_NAMES and not name.startswith("tiny_"):
    raise ValueError(f"unknown 3D model {name!r}; expected one of {MODEL_NAMES} or a tiny_* test model.")
  if size is None:
    size = 32 if quick else 60

  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(
    {
      "name": "volume3d",
      "size": size,
      "max_angle": 45.0,
      "scale_range": (0.8, 1.2),
      "max_shift": 0.15,
      "thickness": 10,
      "source": "auto",
      "data_dir": config_dict.placeholder(str),
      "test_seed": 0,
      "test_size": 500 if quick else 1000,
    }
  )
  config.model = ml_collections.ConfigDict({"name": name if name.startswith("tiny_") else f"vol_{name}"})
  if name == "cnn":
    config.model.widths = BASELINE_WIDTHS[size]
  elif name == "st_cnn":
    config.model.widths = ST_WIDTHS
    config.model.loc_downsample = loc_downsample(size)
  common.add_training_fields(config, eval_batch_size=250, num_figure_examples=0)

  if quick:
    config.schedule = "fast"
    config.batch_size = 64
    config.total_steps = 1500
    config.log_every = 50
    config.eval_every = 0
    config.checkpoint_every = 500
  return config
