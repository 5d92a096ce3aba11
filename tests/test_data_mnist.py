"""Tests of the MNIST loader: the shipped IDX copy, its checksum and header checks, and the TFDS path."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import sys
import types

import numpy as np
import pytest

from stn_jax.data import mnist

# Canonical MNIST label counts (the same in every copy of the dataset).
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.parametrize("split, n, counts", [("train", 60_000, TRAIN_COUNTS), ("test", 10_000, TEST_COUNTS)])
def test_idx_shapes_dtypes_counts(split, n, counts):
  images, labels = mnist.load(split, source="idx")
  assert images.shape == (n, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (n,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)
  assert images.max() == 255 and images.min() == 0


def test_known_pixels():
  images, labels = mnist.load("test", source="idx")
  # The first test digit is a 7 and the first training digit a 5; MNIST digits are centred with a margin,
  # so the outermost rows are (almost always) empty.
  assert labels[0] == 7 and mnist.load("train", source="idx")[1][0] == 5
  assert (images[:, [0, -1]].max(axis=(1, 2)) == 0).mean() > 0.99
  assert np.isclose(images.astype(np.float64).mean() / 255, 0.1325, atol=5e-4)  # the well-known test-set mean


def test_cached_and_read_only():
  a = mnist.load("test", source="idx")
  b = mnist.load("test", source="idx")
  assert a[0] is b[0] and a[1] is b[1]  # the same arrays, not read again
  with pytest.raises(ValueError):
    a[0][0, 0, 0] = 1


def test_default_source_is_idx_without_tfds(monkeypatch):
  monkeypatch.setattr(mnist, "_tfds_available", lambda: False)  # as on a machine without tensorflow-datasets
  images, _ = mnist.load("test")
  np.testing.assert_array_equal(images, mnist.load("test", source="idx")[0])


def _copy_idx(tmp_path):
  for f in mnist.DEFAULT_IDX_DIR.glob("t10k-*.gz"):
    shutil.copy(f, tmp_path / f.name)
  return tmp_path


def test_data_dir_copy_loads(tmp_path):
  images, labels = mnist.load("test", source="idx", data_dir=_copy_idx(tmp_path))
  np.testing.assert_array_equal(images, mnist.load("test", source="idx")[0])


def _regzip(path, *, edit=None):
  """Rewrites ``path`` in another gzip encoding (level 1, another mtime), optionally editing its contents."""
  raw = bytearray(gzip.decompress(path.read_bytes()))
  if edit is not None:
    edit(raw)
  path.write_bytes(gzip.compress(bytes(raw), compresslevel=1, mtime=1_234_567_890))


def test_regzipped_copy_loads(tmp_path):
  # Other gzip bytes of the same data (e.g. the canonical downloads): the check is on the decompressed bytes.
  _copy_idx(tmp_path)
  for path in tmp_path.glob("*.gz"):
    before = path.read_bytes()
    _regzip(path)
    assert path.read_bytes() != before
  images, labels = mnist.load("test", source="idx", data_dir=tmp_path)
  ref_images, ref_labels = mnist.load("test", source="idx")
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)


def test_checksums_cover_the_decompressed_shipped_files():
  want = mnist._expected_md5()
  assert sorted(want) == sorted(f for files in mnist._FILES.values() for f in files)
  for name, digest in want.items():
    assert hashlib.md5(gzip.decompress((mnist.DEFAULT_IDX_DIR / name).read_bytes())).hexdigest() == digest


def test_changed_contents_fail_the_checksum(tmp_path):
  # One pixel changed, validly re-gzipped: the IDX header is intact, only the checksum can notice.
  _copy_idx(tmp_path)

  def flip_pixel(raw):
    raw[16 + 100 * 784 + 400] ^= 0xFF

  _regzip(tmp_path / "t10k-images-idx3-ubyte.gz", edit=flip_pixel)
  with pytest.raises(ValueError, match="MD5 checksum mismatch.*t10k-images-idx3-ubyte.gz.*corrupt"):
    mnist.load("test", source="idx", data_dir=tmp_path)


def test_corrupt_gzip_names_file(tmp_path):
  _copy_idx(tmp_path)
  path = tmp_path / "t10k-labels-idx1-ubyte.gz"
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(raw))
  with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*corrupt"):
    mnist.load("test", source="idx", data_dir=tmp_path)


def test_truncated_gzip_names_file(tmp_path):
  _copy_idx(tmp_path)
  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is not a valid gzip file.*truncated"):
    mnist.load("test", source="idx", data_dir=tmp_path)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="t10k-images"):
    mnist.load("test", source="idx", data_dir=tmp_path)


def test_bad_header_raises():
  raw = gzip.decompress((mnist.DEFAULT_IDX_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
  labels = mnist.parse_idx(raw, magic=0x801, shape=(10_000,))
  assert labels[0] == 7
  with pytest.raises(ValueError, match="magic"):
    mnist.parse_idx(raw, magic=0x803, shape=(10_000,), name="x")
  with pytest.raises(ValueError, match="dims"):
    mnist.parse_idx(raw, magic=0x801, shape=(60_000,))
  with pytest.raises(ValueError, match="body"):
    mnist.parse_idx(raw[:-1], magic=0x801, shape=(10_000,))
  with pytest.raises(ValueError, match="truncated"):
    mnist.parse_idx(raw[:5], magic=0x801, shape=(10_000,))


def test_bad_arguments():
  with pytest.raises(ValueError, match="split"):
    mnist.load("validation")
  with pytest.raises(ValueError, match="source"):
    mnist.load("test", source="csv")


class _FakeSource:
  """Mimics tfds.data_source: a sequence of {'image': (28, 28, 1) uint8, 'label': int} records."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels
    self.batched_reads = 0

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"image": self.images[i][..., None], "label": np.int64(self.labels[i])}

  def __getitems__(self, keys):
    self.batched_reads += 1
    return [self[i] for i in keys]


@pytest.fixture
def fake_tfds(monkeypatch):
  images, labels = mnist.load("test", source="idx")
  calls = []

  def data_source(name, *, split, data_dir=None, download=True):
    calls.append((name, split, data_dir, download))
    if split != "test":
      raise FileNotFoundError("not prepared")
    # TFDS shuffles examples when preparing: reverse the order so the test sees the conversion, not a copy.
    return _FakeSource(images[::-1], labels[::-1])

  monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(data_source=data_source))
  monkeypatch.setattr(mnist, "_tfds_available", lambda: True)
  mnist._load_tfds.cache_clear()
  yield calls
  mnist._load_tfds.cache_clear()


def test_tfds_path_converts_records(fake_tfds):
  images, labels = mnist.load("test", source="tfds", data_dir="/somewhere")
  ref_images, ref_labels = mnist.load("test", source="idx")
  assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int32
  np.testing.assert_array_equal(images, ref_images[::-1])
  np.testing.assert_array_equal(labels, ref_labels[::-1])
  assert fake_tfds == [("mnist", "test", "/somewhere", True)]


def test_auto_uses_prepared_tfds_without_download_else_idx(fake_tfds):
  images, _ = mnist.load("test")  # 'auto': the fake says 'test' is prepared.
  np.testing.assert_array_equal(images, mnist.load("test", source="idx")[0][::-1])
  assert fake_tfds[-1] == ("mnist", "test", None, False)
  train, _ = mnist.load("train")  # Not prepared: falls back to the IDX files.
  assert train is mnist.load("train", source="idx")[0]


def test_from_data_source_rejects_bad_records():
  bad = _FakeSource(np.zeros((3, 32, 32), np.uint8), np.zeros(3, np.int64))
  with pytest.raises(ValueError, match="shape"):
    mnist.from_data_source(bad)


def test_missing_tfds_says_how_to_install_and_what_else_to_use(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes `import tensorflow_datasets` fail
  mnist._load_tfds.cache_clear()
  with pytest.raises(ModuleNotFoundError, match=r"optional.*pip install tensorflow-datasets.*source='idx'"):
    mnist.load("test", source="tfds")
  # 'auto' needs no TFDS: it falls back to the IDX files.
  assert mnist.load("test")[0] is mnist.load("test", source="idx")[0]
