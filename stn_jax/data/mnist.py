"""MNIST as numpy arrays, from the shipped IDX files or from TFDS, with neither path needing TensorFlow.

``load(split)`` returns ``(images uint8 (N, 28, 28), labels int32 (N,))`` for ``split`` in ``'train'``
(60,000 digits) or ``'test'`` (10,000 digits). Sources:

* ``'idx'``: the original gzipped IDX files. A copy ships in ``stn_jax/data/mnist_idx/`` so the main job runs
  on a machine with no network; ``data_dir`` points at another directory holding the same four ``.gz`` files.
  Every file is checked against the MD5 checksum of its *decompressed* contents
  (``mnist_idx/MD5SUMS.uncompressed``) and its IDX header (magic number, dims) is validated before use. The
  gzip bytes themselves are not checked: the same data compressed by another gzip (level, timestamp, file
  name) differs byte for byte, so a copy re-gzipped elsewhere is as good as the shipped one. The decompressed
  checksums are those other loaders publish for the canonical MNIST files (e.g. ``6bbc9ace...`` for the
  training images), so the canonical downloads pass too.
  (``mnist_idx/MD5SUMS`` lists the MD5 of the shipped ``.gz`` files, for ``md5sum -c`` on this copy only.)
* ``'tfds'``: ``tensorflow_datasets.data_source('mnist')``, the array_record random-access reader, which needs
  no TensorFlow. ``tensorflow_datasets`` is an optional dependency, imported lazily, only on this path.
* ``'auto'`` (default): TFDS when it is importable *and* MNIST is already prepared locally (no download is
  attempted), otherwise the IDX files.

Decoded arrays are cached in memory and returned read-only, so repeated loads are free and a caller cannot
corrupt the cache; copy them before editing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
import pathlib
import zlib

import numpy as np

from stn_jax import _checks

SPLITS = ("train", "test")
SOURCES = ("auto", "idx", "tfds")
NUM_EXAMPLES = {"train": 60_000, "test": 10_000}
IMAGE_SHAPE = (28, 28)

DEFAULT_IDX_DIR = pathlib.Path(__file__).resolve().parent / "mnist_idx"
_FILES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), then the number of dims.
_MAGIC_IMAGES = 0x00000803
_MAGIC_LABELS = 0x00000801


@functools.cache
def _expected_md5() -> dict[str, str]:
  """MD5 of the decompressed contents of each IDX file, by ``.gz`` name, from ``MD5SUMS.uncompressed``."""
  sums = {}
  for line in (DEFAULT_IDX_DIR / "MD5SUMS.uncompressed").read_text().splitlines():
    if line.strip():
      digest, name = line.split()
      sums[name + ".gz"] = digest
  return sums


def parse_idx(raw: bytes, *, magic: int, shape: tuple[int, ...], name: str = "IDX data") -> np.ndarray:
  """Decodes an uncompressed IDX byte string of unsigned bytes, validating its header.

  Args:
    raw: the decompressed file contents.
    magic: expected magic number (``0x803`` for image files, ``0x801`` for label files).
    shape: expected dims, e.g. ``(60000, 28, 28)``.
    name: file name used in error messages.

  Returns:
    uint8 array of ``shape``.
  """
  ndim = len(shape)
  header_len = 4 + 4 * ndim
  if len(raw) < header_len:
    raise ValueError(f"{name}: truncated IDX file ({len(raw)} bytes, header needs {header_len}).")
  got_magic = int.from_bytes(raw[:4], "big")
  if got_magic != magic:
    raise ValueError(f"{name}: bad IDX magic number 0x{got_magic:08x}, expected 0x{magic:08x}.")
  dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  if dims != tuple(shape):
    raise ValueError(f"{name}: IDX header says dims {dims}, expected {tuple(shape)}.")
  body = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
  if body.size != int(np.prod(shape)):
    raise ValueError(f"{name}: IDX body has {body.size} bytes, expected {int(np.prod(shape))}.")
  return body.reshape(shape)


def _read_gz(path: pathlib.Path) -> bytes:
  """Decompresses a ``.gz`` file and checks the MD5 of its contents; returns the decompressed bytes.

  The check is on the decompressed bytes so any gzip encoding of the right data passes (module docstring).
  """
  if not path.is_file():
    raise FileNotFoundError(f"MNIST file not found: {path}.")
  want = _expected_md5().get(path.name)
  if want is None:
    raise ValueError(f"no known MD5 checksum for {path.name}.")
  try:
    raw = gzip.decompress(path.read_bytes())
  except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a truncated file an EOFError.
    raise ValueError(f"{path} is not a valid gzip file ({e}): it is corrupt or truncated.") from e
  got = hashlib.md5(raw).hexdigest()
  if got != want:
    raise ValueError(
      f"MD5 checksum mismatch for the decompressed contents of {path}: got {got}, expected {want} "
      f"(MD5SUMS.uncompressed). The file is corrupt or is not the MNIST file {path.name}."
    )
  return raw


@functools.cache
def _load_idx(split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  image_file, label_file = _FILES[split]
  n = NUM_EXAMPLES[split]
  root = pathlib.Path(data_dir)
  images = parse_idx(
    _read_gz(root / image_file), magic=_MAGIC_IMAGES, shape=(n, *IMAGE_SHAPE), name=image_file
  )
  labels = parse_idx(_read_gz(root / label_file), magic=_MAGIC_LABELS, shape=(n,), name=label_file)
  return _freeze(images.copy()), _freeze(labels.astype(np.int32))


def from_data_source(source, *, name: str = "data source") -> tuple[np.ndarray, np.ndarray]:
  """Converts a TFDS-style random-access data source of MNIST records to arrays.

  Args:
    source: a sequence (``len`` and indexing, ``__getitems__`` used when present) of dicts with ``'image'``
      ``(28, 28, 1)`` or ``(28, 28)`` uint8 and an integer ``'label'``.
    name: used in error messages.

  Returns:
    ``(images uint8 (N, 28, 28), labels int32 (N,))``.
  """
  n = len(source)
  keys = list(range(n))
  # __getitems__ reads many records in one call (array_record batches the disk reads).
  records = source.__getitems__(keys) if hasattr(source, "__getitems__") else [source[i] for i in keys]
  if n == 0:
    raise ValueError(f"{name} is empty.")
  images = np.stack([np.asarray(r["image"]) for r in records])
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
    raise ValueError(
      f"{name}: expected uint8 images of shape (28, 28[, 1]), got {images.dtype} {images.shape[1:]}."
    )
  labels = np.asarray([int(r["label"]) for r in records], dtype=np.int32)
  return _freeze(images), _freeze(labels)


def _tfds_available() -> bool:
  return importlib.util.find_spec("tensorflow_datasets") is not None


@functools.cache
def _load_tfds(split: str, data_dir: str | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
  try:
    import tensorflow_datasets as tfds  # Lazy: optional dependency, heavy import.
  except ImportError as e:
    raise ModuleNotFoundError(
      "source='tfds' needs tensorflow-datasets, an optional dependency, which could not be imported "
      f"({e}). Install it with `pip install tensorflow-datasets`, or use the offline IDX files that ship "
      "with stn_jax: source='idx' (config field data.source; the default 'auto' uses them when TFDS is "
      "missing or MNIST is not prepared for it).",
      name="tensorflow_datasets",
    ) from e
  source = tfds.data_source("mnist", split=split, data_dir=data_dir, download=download)
  images, labels = from_data_source(source, name=f"tfds mnist[{split}]")
  if len(labels) != NUM_EXAMPLES[split]:
    raise ValueError(f"tfds mnist[{split}] has {len(labels)} examples, expected {NUM_EXAMPLES[split]}.")
  return images, labels


def _freeze(x: np.ndarray) -> np.ndarray:
  x.setflags(write=False)
  return x


def load(split: str, *, source: str = "auto", data_dir: str | os.PathLike | None = None):
  """Loads one MNIST split as numpy arrays (cached in memory after the first call).

  Args:
    split: ``'train'`` (60,000 digits) or ``'test'`` (10,000 digits).
    source: ``'auto'``, ``'idx'`` or ``'tfds'``; see the module docstring.
    data_dir: for ``'idx'``, the directory with the four ``.gz`` files (default: the shipped copy); for
      ``'tfds'``, the TFDS data directory (default: TFDS's own default).

  Returns:
    ``(images, labels)``: read-only uint8 ``(N, 28, 28)`` and int32 ``(N,)`` arrays.
  """
  _checks.choice("split", split, SPLITS)
  _checks.choice("source", source, SOURCES)
  tfds_dir = None if data_dir is None else str(data_dir)
  if source == "tfds":
    return _load_tfds(split, tfds_dir, True)
  if source == "auto" and _tfds_available():
    try:
      # download=False: 'auto' only uses a dataset that is already prepared locally.
      return _load_tfds(split, tfds_dir, False)
    except Exception:  # noqa: BLE001 - any TFDS failure (not prepared, wrong file format) means: use IDX.
      pass
  idx_dir = DEFAULT_IDX_DIR if data_dir is None else pathlib.Path(data_dir)
  return _load_idx(split, str(idx_dir.resolve()))
