"""Training-loop fields shared by the supervised configs (``mnist.py``, ``addition.py``, ``volume3d.py``).

The fields are the ones the training loop reads (``stn_jax/train_config.py`` validates them), at the
paper's MNIST protocol: SGD (momentum 0.9, our choice), batch 256, 150k steps, learning rate 0.01 divided by
10 after 50k and 100k steps. Each family's ``get_config`` adds them after its ``data`` and ``model`` blocks,
then applies its own ``,quick`` preset.

Config files are loaded by path (``--config=configs/mnist.py``), so their ``from configs import common``
needs the repository root on ``sys.path``. It is there when commands run from the root, as every command in
this repository does (``python -m stn_jax.main ...``, ``python -m pytest``).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def add_training_fields(
  config: ml_collections.ConfigDict, *, eval_batch_size: int = 1000, num_figure_examples: int = 8
) -> ml_collections.ConfigDict:
  """Adds the seed, optimizer, schedule, length, logging, evaluation and checkpoint fields to ``config``.

  Args:
    config: the config being built (modified in place).
    eval_batch_size: examples per evaluation batch.
    num_figure_examples: test examples drawn in the run's ``transforms.png`` (0: no figure).

  Returns:
    ``config``.
  """
  config.seed = 0
  config.batch_size = 256
  # Length: total_steps, or num_epochs (if set) over examples_per_epoch; the trainer only sees steps.
  config.total_steps = 150_000
  config.num_epochs = config_dict.placeholder(float)
  config.examples_per_epoch = 60_000
  config.schedule = "paper"  # 'paper' | 'fast' (see stn_jax/train_config.py)
  config.learning_rate = config_dict.placeholder(float)  # None: 0.01 (paper) / 1e-3 (fast)
  config.momentum = 0.9  # paper schedule only
  config.warmup_steps = 200  # fast schedule only
  config.log_every = 100
  config.eval_every = 10_000  # 0: evaluate at the end only
  config.eval_batch_size = eval_batch_size
  config.checkpoint_every = 5_000
  config.checkpoints_to_keep = 2
  config.num_figure_examples = num_figure_examples
  return config
