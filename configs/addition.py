r"""MNIST addition (paper appendix A.1): two RTS-distorted digits in two channels, predict their sum.

  python -m stn_jax.main --config=configs/addition.py:2xst_fcn_tps --workdir=runs/addition/2xst_fcn_tps

Models (``stn_jax/models/addition.py``, all about 475k parameters): ``fcn``, ``cnn``, ``st_fcn_aff``,
``st_fcn_proj``, ``st_fcn_tps`` (one ST seeing and warping both channels) and ``2xst_fcn_aff``,
``2xst_fcn_proj``, ``2xst_fcn_tps`` (two parallel STs, outputs concatenated to 4 channels). Append ``,quick``
for the CPU budget preset (below); any field can be overridden, e.g. ``--config.total_steps=1000``.

Defaults are the paper's MNIST protocol as REFERENCE.md gives it (SGD, batch 256, 150k steps, lr 0.01 / 10
every 50k); the appendix does not state the addition schedule.

The ``,quick`` preset: Adam, lr 2e-3, 200 warm-up steps, cosine to 0, batch 128, 6000 steps, and the
localisation nets (and regression layers) of the ST models at 0.1x the learning rate. Why the multiplier
(diagnostics in ``experiments/appendix/README.md``, section A.1): Adam moves every weight by about the
learning rate per step whatever the size of its gradient, so the first layer of an FC localisation net on
the 3528 inputs (mean ink 0.054) shifts its pre-activations by up to ``lr * ||x||_1 ~ 190 lr`` per step.
While the classifier is still learning to read distorted digits (a sum label carries little signal per
digit), the transformers' gradients are mostly noise and such steps make them drift off the digits: in a
2xST-FCN at lr 3e-3 and 1x the loss stayed at 2.80 for 2000 steps (the entropy of the sum labels is 2.79);
at lr 3e-3 and 0.1x one transformer zoomed out to 11.7x the canvas within 1500 steps (its output almost
empty). At lr 2e-3 and 0.1x the two transformers settled on one channel each within 6000 steps; at 0.03x
only one had. The loss and zoom figures were printed by a scratch version of ``diagnose.py train``, the
channel-following by ``diagnose.py attention`` (``experiments/appendix/runs/addition/diagnostics/``); neither
output is stored.
REFERENCE.md also gives reduced localisation learning rates for other experiments, both tagged [likely]
there: SVHN 1/10 of the base rate, CUB 1e-4 x the base rate.

Paper test errors (%): FCN 47.7, CNN 14.7, single ST-FCN 18.5, 2xST-FCN 5.8 (per transform [likely]: Aff 9.0,
Proj 5.9, TPS 5.8). Ours at reduced scale (``,quick`` with ``--config.total_steps=24000``, seeds 0-3, 10,000
test pairs in ``experiments/appendix/runs/addition/eval_10k_test_pairs_24k*.json``, 2-core CPU): 2xST-FCN
TPS 10.7-12.3 on 3 of 4 seeds (30.9 on the fourth), 2xST-FCN Aff 12.3-14.3, single ST-FCN Aff 29.8-30.3,
FCN 66.2-67.6; wall time 374-761 s per ST run and 145-221 s per FCN run (1-minute load average 1.6-4.5,
recorded in each run's results.json). At the paper's 150,000 steps (``,quick`` with
``--config.total_steps=150000``, batch 128, seed 0; 5,633 s here): 2xST-FCN TPS 5.53 on 10,000 test pairs
(``experiments/appendix/runs/addition/eval_10k_test_pairs_150k_tps.json``). Every run, its command and
wall time: ``experiments/appendix/README.md``.

The per-run ``transforms.png`` of the generic loop is off (``num_figure_examples = 0``) because these inputs
have two channels; ``experiments/appendix/figures.py addition`` draws both channels, each transformer's grid
on them and its output.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs import common

QUICK_LOC_LR_MULTIPLIER = 0.1  # localisation nets' learning-rate factor in the ,quick preset

MODEL_NAMES = ("fcn", "cnn") + tuple(f"{p}st_fcn_{t}" for p in ("", "2x") for t in ("aff", "proj", "tps"))


def get_config(arg: str = "2xst_fcn_tps") -> ml_collections.ConfigDict:
  """Builds the config for ``"<model>[,quick]"`` (model names above, or a ``tiny_*`` test model)."""
  parts = [p.strip() for p in arg.split(",")]
  if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1] != "quick"):
    raise ValueError(f"config argument must be '<model>[,quick]', got {arg!r}.")
  name = parts[0]
  if name not in MODEL_NAMES and not name.startswith("tiny_"):
    raise ValueError(
      f"unknown addition model {name!r}; expected one of {MODEL_NAMES} or a tiny_* test model."
    )

  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(
    {
      "name": "addition",
      "source": "auto",
      "data_dir": config_dict.placeholder(str),
      "test_seed": 0,
      "test_size": config_dict.placeholder(int),  # None: 10,000 pairs
    }
  )
  # Model names are prefixed in the shared registry (stn_jax.models.MODELS).
  config.model = ml_collections.ConfigDict({"name": name if name.startswith("tiny_") else f"add_{name}"})
  if "st_" in name:
    config.model.lr_multiplier = 1.0  # the localisation nets'
    config.model.regression_lr_multiplier = config_dict.placeholder(float)  # None: lr_multiplier
  common.add_training_fields(config, eval_batch_size=1000, num_figure_examples=0)

  if len(parts) == 2:  # quick: minutes on a 2-core CPU (module docstring)
    config.schedule = "fast"
    config.learning_rate = 2e-3
    config.batch_size = 128
    config.total_steps = 6000
    if "st_" in name:
      config.model.lr_multiplier = QUICK_LOC_LR_MULTIPLIER
    config.log_every = 100
    config.eval_every = 0
    config.checkpoint_every = 1000
  return config
