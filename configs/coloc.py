r"""Co-localisation (paper appendix A.2): an attention ST trained with no labels, per digit class.

First train the embedding, a digit classifier on 28 x 28 digits (the 'p' distortion of configs/mnist.py: mild
projective distortions, scale 0.75-1, so the embedding tolerates crops that are a little off):

  python -m stn_jax.main --config=configs/mnist.py:p,cnn,quick --workdir=runs/mnist_p_cnn

then co-localise every class, in both variants (T: digit only; TC: plus 16 clutter patches):

  python -m stn_jax.coloc_train --config=configs/coloc.py --workdir=runs/coloc \
      --config.embedding.workdir=runs/mnist_p_cnn

``configs/coloc.py:t`` or ``:tc`` runs one variant; ``--config.data.classes='(3,)'`` a subset of classes.

Paper: IoU > 0.5 with the true box for 100% of the images of every class in T, and 75-93% (depending on the
class) in TC. Ours: see ``experiments/appendix/README.md`` (runtime there too).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def get_config(arg: str = "t,tc") -> ml_collections.ConfigDict:
  """The co-localisation config; ``arg`` lists the variants, e.g. ``'t'``, ``'tc'`` or ``'t,tc'``."""
  variants = tuple(v.strip() for v in arg.split(","))
  for v in variants:
    if v not in ("t", "tc"):
      raise ValueError(f"unknown co-localisation variant {v!r}; expected 't' and/or 'tc'.")
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(
    {"variants": variants, "classes": tuple(range(10)), "num_images": 100, "canvas_size": 84}
  )
  config.model = ml_collections.ConfigDict({"name": "coloc", "init_scale": 28 / 84, "downsample": 4})
  # The classifier run whose logits are the embedding e(); None = a tiny random CNN (tests only).
  # 'probs' (softmax of the logits) bounds the squared distances by 2, on the scale of the margin of 1.
  config.embedding = ml_collections.ConfigDict({"workdir": config_dict.placeholder(str), "output": "probs"})
  config.margin = 1.0
  # Scale of the random negative crops: the digit's size (28 / 84).
  config.negative_scale = 28 / 84
  config.learning_rate = 1e-3
  config.total_steps = 300
  config.seed = 0
  config.log_every = 10
  config.num_figure_examples = 8
  return config
