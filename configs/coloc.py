r"""Co-localisation (paper appendix A.2): an attention ST trained with no labels, per digit class.

First train the embedding, a digit classifier on 28 x 28 digits (the 'e' distortion of configs/mnist.py:
scale 0.75-1 and a mild elastic warp, so it tolerates crops that are a little off) with an eleventh class
"no digit centred here" (30% of its training images are shifted 7-20 px, digit partly or wholly out of
the frame, ``stn_jax.data.distortions.add_offcentre_class``), into the directory that ``EMBEDDING_RUN``
names (relative to the repository root; a run is kept there):

  python -m stn_jax.main --config=configs/mnist.py:e,cnn,quick \
      --workdir=experiments/appendix/runs/coloc/embedding_e_cnn_offcentre_3000steps \
      --config.total_steps=3000 --config.checkpoint_every=3000 --config.checkpoints_to_keep=1 \
      --config.log_every=100 --config.data.test_size=2000 "--config.model.widths=(16, 32)" \
      --config.data.offcentre_fraction=0.3

The extra class is ours, not the paper's (its e() is a plain digit classifier): without it, e() calls a
fragment of a digit in a crop's corner (the lower bowl of a "5") more confidently by its class than the
centred digit, and the loss picks those crops. The plain classifier (the same command without the last
flag) is kept as ``experiments/appendix/runs/coloc/embedding_e_cnn_3000steps``; pass it as
``--config.embedding.workdir`` for the paper's setting. Then co-localise every class, in both variants
(T: digit only; TC: plus 16 clutter patches):

  python -m stn_jax.main --config=configs/coloc.py --workdir=runs/coloc

``configs/coloc.py:t`` or ``:tc`` runs one variant; ``--config.data.classes='(3,)'`` a subset of classes;
``--config.embedding.workdir=DIR`` another classifier run.

Paper: IoU > 0.5 with the true box for 100% of the images of every class in T, and 75-93% (depending on the
class) in TC. Ours (reduced scale, 50 steps; two data seeds, 0 and 1): T 100% for every class on both, TC
95-100% (mean 98.7%) and 93-100% (mean 98.6%); about 160 s for all 20 runs on a shared 2-core CPU (load
average ~2). With the plain classifier as e(): T 93-100% (mean 97.7%), TC 78-100% (mean 93.5%) on seed 0.
Details, per-class tables and the earlier settings' results: ``experiments/appendix/README.md``.
"""

from __future__ import annotations

import ml_collections

# The classifier run used as e() (relative to the repository root): see the module docstring.
EMBEDDING_RUN = "experiments/appendix/runs/coloc/embedding_e_cnn_offcentre_3000steps"


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
  config.trainer = "coloc"  # stn_jax.main dispatches on it
  # 10 x 10 restarts on a grid of translations (spacing 6.1 px), so every digit has a restart within 3 px
  # per axis (stn_jax/models/colocalisation.py). They start barely larger than the digit (s = 0.35, a
  # 29.4 px crop, the digit at scale 0.95 in it; a perfectly centred crop has IoU 0.91): a larger crop lets
  # a thin digit sit off-centre and still be whole, and such crops are what the loss then picks (a '1' at
  # the side of a 34 px crop, which the classifier calls '6', in 79 of the 100 images of TC class 1).
  config.model = ml_collections.ConfigDict(
    {"name": "coloc", "init_scale": 0.35, "restarts_per_axis": 10, "downsample": 4}
  )
  # The classifier run whose softmax(logits / temperature) is the embedding e() (required). Temperature 3
  # keeps the probabilities of a well-centred digit and of a fragment of it that the classifier also calls
  # confidently apart (at temperature 1 both are one-hot) while leaving the classes well separated; at 12
  # the largest probability is ~0.17, the squared distances are ~0.01 against the margin of 1, and the loss
  # prefers crops of any consistent kind that random crops rarely resemble over the digit itself when the
  # clutter looks like the digit (TC class 1). 'logits' and 'features' (unit penultimate activations) are
  # the alternatives.
  config.embedding = ml_collections.ConfigDict(
    {"workdir": EMBEDDING_RUN, "output": "probs", "temperature": 3.0}
  )
  config.margin = 1.0
  # Scale of the random negative crops: the digit's size (28 / 84).
  config.negative_scale = 28 / 84
  # Adam on the localisation net after the restarts are chosen. Its weights multiply unnormalised image
  # features, so 1e-3 moves crops by pixels per step; 1e-4 refines them.
  config.learning_rate = 1e-4
  config.total_steps = 50
  # Choosing each image's restart (stn_jax.models.colocalisation.select_restarts): random negatives per
  # image, prototypes tried, seeds kept and coordinate-descent sweeps per seed.
  config.num_selection_negatives = 8
  config.selection_candidates = 2000
  config.selection_seeds = 8
  config.selection_iterations = 4
  config.seed = 0
  config.log_every = 5
  config.num_figure_examples = 8
  return config
