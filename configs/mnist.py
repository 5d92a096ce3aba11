r"""Distorted MNIST (paper section 4.1, Table 1 and the cluttered TC experiment).

Pick the distortion and the model with the config argument ``"<distortion>,<model>[,quick]"`` (not with
``--config.data.variant``: the model's widths and ST downsampling are derived from the argument, and a run
whose ``data.variant`` differs from ``built_for.variant`` is refused):

  python -m stn_jax.main --config=configs/mnist.py:rts,st_cnn_aff --workdir=/tmp/stn_rts

Distortions: ``r, rts, p, e, tc``. Models: ``fcn, cnn, st_fcn_aff, st_fcn_proj, st_fcn_tps, st_cnn_aff,
st_cnn_proj, st_cnn_tps`` (and ``tiny_*`` variants for tests). Any field can be overridden, e.g.
``--config.total_steps=3000 --config.seed=1 --config.schedule=fast``.

Defaults are the paper's protocol: SGD (momentum 0.9, our choice), batch 256, 150k steps, learning rate 0.01
divided by 10 after 50k and 100k steps (``schedule='paper'``). ``,quick`` selects the budget preset:
``schedule='fast'`` (Adam + cosine), 600 steps at batch 128; see ``stn_jax/train_config.py`` for both.

Under Adam (``fast``), the TC ST-CNN needs its localisation net's regression layer at 10x the learning rate,
``--config.model.regression_lr_multiplier=10.0``. With it the ST-CNN beats the CNN at 600 steps (7.67% vs
9.04%) and at 1,200 steps (4.47% vs 4.81%), 3 seeds each (``experiments/RESULTS.md``, TC). With every layer
at 1x it loses at both budgets. Adding ``--config.model.lr_multiplier=0.1`` keeps more of the localisation
net's ReLU units alive (7.58% at 600 steps), but learns too slowly by 1,200 steps (5.02%). The defaults (1x)
are what the Table 1 rows used.

Paper test errors (%), Table 1 / TC (RTS column and TC line from the paper, other cells as REFERENCE.md):

  model        R    RTS  P    E    TC
  FCN          2.1  5.2  3.1  3.2  13.2
  CNN          1.2  0.8  1.5  1.4  3.5
  ST-FCN Aff   1.2  0.8  1.5  2.7  2.0
  ST-FCN Proj  1.3  0.9  1.4  2.6
  ST-FCN TPS   1.1  0.8  1.4  2.4
  ST-CNN Aff   0.7  0.5  0.8  1.2  1.7
  ST-CNN Proj  0.8  0.6  0.8  1.3
  ST-CNN TPS   0.7  0.5  0.8  1.1

Runtime seen (shared 2-core AMD EPYC CPU, load 3-8, ``,quick`` = 600 steps at batch 128): rts,st_cnn_aff
307 s (4.14% test error), rts,cnn 879 s (10.83%), rts,fcn 15 s (47.21%); training-step times per model are in
``experiments/benchmarks/results/train_cpu.md``; our number for each cell is in ``experiments/RESULTS.md``.

Model widths: the classifier widths below make every model of a distortion about the same size (exact
counts are checked in ``tests/test_models_mnist.py``): CNN filters ``(32, 64)`` set each distortion's budget
and the other models' widths are the closest fit. Localisation nets are the paper's (FC 32-32-32; conv 20,
conv 20, FC 20); the ST output is 2x downsampled for RTS and TC.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs import common

DISTORTIONS = ("r", "rts", "p", "e", "tc")
ST_DOWNSAMPLE = {"r": 1, "rts": 2, "p": 1, "e": 1, "tc": 2}
# Classifier widths per distortion: FCN hidden sizes / CNN filter counts, plain and under an ST.
WIDTHS = {
  "r": {"fcn": (90, 90), "cnn": (32, 64), "st_fcn": (59, 59), "st_cnn": (25, 50)},
  "rts": {"fcn": (90, 90), "cnn": (32, 64), "st_fcn": (173, 173), "st_cnn": (32, 64)},
  "p": {"fcn": (143, 143), "cnn": (32, 64), "st_fcn": (117, 117), "st_cnn": (28, 56)},
  "e": {"fcn": (143, 143), "cnn": (32, 64), "st_fcn": (117, 117), "st_cnn": (28, 56)},
  "tc": {"fcn": (67, 67), "cnn": (32, 64), "st_fcn": (125, 125), "st_cnn": (34, 68)},
}
MODEL_NAMES = ("fcn", "cnn") + tuple(f"st_{c}_{t}" for c in ("fcn", "cnn") for t in ("aff", "proj", "tps"))


def model_config(distortion: str, name: str) -> ml_collections.ConfigDict:
  """The ``config.model`` block for one model on one distortion (``tiny_*`` names keep their own widths)."""
  model = ml_collections.ConfigDict({"name": name})
  if name.startswith("st_") or name.startswith("tiny_st_"):
    model.st_downsample = ST_DOWNSAMPLE[distortion]
    model.lr_multiplier = 1.0  # the localisation net's
    model.regression_lr_multiplier = config_dict.placeholder(float)  # None: lr_multiplier
  if name in MODEL_NAMES:
    model.widths = WIDTHS[distortion][name[: name.rfind("_")] if name.startswith("st_") else name]
  return model


def get_config(arg: str = "rts,st_cnn_aff") -> ml_collections.ConfigDict:
  """Builds the config for ``"<distortion>,<model>[,quick]"``."""
  parts = [p.strip() for p in arg.split(",")]
  if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "quick"):
    raise ValueError(f"config argument must be '<distortion>,<model>[,quick]', got {arg!r}.")
  distortion, name = parts[:2]
  if distortion not in DISTORTIONS:
    raise ValueError(f"unknown distortion {distortion!r}; expected one of {DISTORTIONS}.")
  if name not in MODEL_NAMES and not name.startswith("tiny_"):
    raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES} or a tiny_* test model.")

  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(
    {
      "name": "mnist",
      "variant": distortion,
      "source": "auto",
      "data_dir": config_dict.placeholder(str),
      "test_seed": 0,
      "test_size": config_dict.placeholder(int),
      # > 0: that fraction of every batch (and of the test set) becomes off-centre copies labelled 10, an
      # eleventh class (stn_jax.data.distortions.add_offcentre_class); used to train configs/coloc.py's e().
      "offcentre_fraction": 0.0,
      "offcentre_shift": (7, 20),  # (min, max) px of the larger of |dx|, |dy|
    }
  )
  config.model = model_config(distortion, name)
  # The model fields above depend on the distortion: stn_jax.train_config refuses a run whose data.variant
  # differs.
  config.built_for = ml_collections.ConfigDict({"variant": distortion})
  common.add_training_fields(config, eval_batch_size=1000, num_figure_examples=8)

  if len(parts) == 3:  # quick: ~5 minutes on a 2-core CPU for rts,st_cnn_aff (4.1% test error seen)
    config.schedule = "fast"
    config.batch_size = 128
    config.total_steps = 600
    config.log_every = 50
    config.eval_every = 0
    config.checkpoint_every = 500
  return config
