"""Input validation shared by the library core: clear errors naming the argument and the expected shape.

Checks only look at static information (shapes, dtypes, Python values), so they work the same under ``jit``,
``vmap`` and ``grad``. Value checks (singular systems, NaN parameters) need concrete values; ``is_concrete``
tells a caller whether it may inspect them.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The float dtypes the library computes in. Other floats (the 8-bit ``float8_*`` family, ``float4_e2m1fn``)
# pass ``jnp.issubdtype(dtype, jnp.floating)`` but have no implicit promotion and too little range and
# precision for coordinates: they would fail deep inside a sampler or silently give NaN grids.
FLOAT_DTYPES = tuple(jnp.dtype(d) for d in (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64))
_FLOAT_NAMES = ", ".join(d.name for d in FLOAT_DTYPES)


def _float_error(name: str, dtype) -> TypeError:
  if jnp.issubdtype(dtype, jnp.floating):
    return TypeError(
      f"{name} must have one of the floating dtypes {_FLOAT_NAMES}, got {dtype}. Convert it explicitly, "
      "e.g. x.astype(jnp.float32)."
    )
  return TypeError(
    f"{name} must have a floating dtype ({_FLOAT_NAMES}), got {dtype}. "
    "Convert it explicitly, e.g. x.astype(jnp.float32) / 255."
  )


def _from_sequence(name: str, x):
  """A (nested) list or tuple as an array: numbers become the default float, bools stay bool (and are
  rejected like a bool array); ragged nesting or non-numbers raise an error naming the argument."""
  try:
    arr = np.asarray(x)
  except ValueError as e:  # numpy's "setting an array element with a sequence" for ragged nesting
    raise ValueError(f"{name} must be a rectangular (non-ragged) nested list of numbers: {e}") from None
  if arr.dtype == np.bool_ or arr.dtype.kind == "c":
    return arr
  if arr.dtype.kind in "OSUVMm" and not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(f"{name} must be an array or a (nested) list of numbers, got {x!r}.")
  return jnp.asarray(arr.astype(np.float64), dtype=jnp.result_type(float))


def float_array(name: str, x, *, allow_int: bool = False):
  """Returns ``x`` as a jax array, raising ``TypeError`` unless it has one of the floating dtypes
  ``FLOAT_DTYPES`` (float32, bfloat16, float16, float64).

  Python floats and (nested) lists of numbers are accepted (they become float32 unless x64 is on); a ragged
  list is a ``ValueError``. Integer and bool arrays, and lists of bools, are rejected unless ``allow_int``,
  in which case they are cast to float32: silently sampling a uint8 image in integer arithmetic would be a
  wrong answer. Other floats (``float8_*``) are always rejected.
  """
  if isinstance(x, (float, int)) and not isinstance(x, bool):
    x = jnp.asarray(x, dtype=jnp.result_type(float))
  elif isinstance(x, (list, tuple)):
    x = _from_sequence(name, x)
  elif not hasattr(x, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(x).__name__}.")
  dtype = jnp.dtype(x.dtype)
  if dtype not in FLOAT_DTYPES:
    if allow_int and (jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
      return jnp.asarray(x, jnp.float32)
    raise _float_error(name, dtype)
  return jnp.asarray(x)


def rank_at_least(name: str, x, rank: int, shape_hint: str):
  """Raises ``ValueError`` if ``x.ndim < rank``; ``shape_hint`` describes the expected shape."""
  if x.ndim < rank:
    raise ValueError(f"{name} must have shape {shape_hint}, got shape {tuple(x.shape)}.")


def last_dims(name: str, x, expected: Sequence[int], shape_hint: str):
  """Raises ``ValueError`` unless the trailing dims of ``x`` equal ``expected``."""
  expected = tuple(expected)
  if x.ndim < len(expected) or tuple(x.shape[x.ndim - len(expected) :]) != expected:
    raise ValueError(f"{name} must have shape {shape_hint}, got shape {tuple(x.shape)}.")


def size(name: str, value, *, minimum: int = 1) -> int:
  """A static size: a Python or numpy integer (not a bool, float or string) ``>= minimum``, as an int."""
  if isinstance(value, (bool, np.bool_, str)):
    raise TypeError(f"{name} must be an int, got {value!r}.")
  try:
    value = operator.index(value)
  except TypeError:
    raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).") from None
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  return value


SEED_LIMIT = 2**32  # jax.random.key keeps the low 32 bits of a seed (without x64): 2**32 is seed 0 again


def seed(name: str, value) -> int:
  """A PRNG seed: an int in ``[0, 2**32 - 1]``, the seeds :func:`jax.random.key` tells apart. A larger or
  negative one would silently repeat another seed's numbers (or overflow inside JAX past int64)."""
  value = size(name, value, minimum=0)
  if value >= SEED_LIMIT:
    raise ValueError(
      f"{name} must be < 2**32 (JAX keeps 32 bits of a seed, so {value} would repeat seed "
      f"{value % SEED_LIMIT}), got {value}."
    )
  return value


def real(name: str, value, *, minimum: float, strict: bool = False) -> float:
  """A static real number (not a bool, string or array), finite and ``>= minimum`` (``> minimum`` when
  ``strict``), as a Python float: learning-rate factors, gains, pose ranges."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
    raise TypeError(f"{name} must be a real number, got {value!r}.")
  value = float(value)
  if not math.isfinite(value) or value < minimum or (strict and value == minimum):
    raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {minimum}, got {value}.")
  return value


def int_tuple(name: str, shape, layout: str = "(H, W)") -> tuple[int, ...]:
  """A static shape as a tuple of ints; ``TypeError`` for a string, a non-sequence or a non-integer entry.

  ``layout`` describes the expected shape in the error, e.g. ``"(H, W) or (D, H, W)"``.
  """
  if not isinstance(shape, (str, bytes)) and isinstance(shape, (Sequence, np.ndarray)):
    try:
      return tuple(size(name, s, minimum=-(2**62)) for s in shape)
    except TypeError:
      pass
  raise TypeError(f"{name} must be a tuple of ints like {layout}, got {shape!r}.")


def positive_shape(name: str, shape, layouts: Mapping[int, str]) -> tuple[int, ...]:
  """A static shape as a tuple of positive ints whose length is one of ``layouts``' keys.

  Args:
    name: the argument's name in errors.
    shape: a sequence of ints (not a string).
    layouts: each allowed length with its layout for errors, e.g. ``{3: "(H, W, C)"}`` for a model's
      ``input_shape``.

  Returns:
    ``shape`` as a tuple of ints.
  """
  # Name the layout of the length given where there is one: (2.0, 3.0, 4.0) "must be ... like (D, H, W)".
  sized = isinstance(shape, Sequence) and not isinstance(shape, (str, bytes))
  given = len(shape) if sized or (isinstance(shape, np.ndarray) and shape.ndim == 1) else None
  shape = int_tuple(name, shape, layouts.get(given, " or ".join(layouts.values())))
  if len(shape) not in layouts:
    raise ValueError(f"{name} must be {' or '.join(layouts.values())}, got {shape}.")
  if any(s < 1 for s in shape):
    raise ValueError(f"{name} must contain positive sizes, got {shape}.")
  return shape


SPATIAL_LAYOUTS = {2: "(H, W)", 3: "(D, H, W)"}


def spatial_shape(name: str, shape, *, ndims: Sequence[int] = (2, 3)) -> tuple[int, ...]:
  """Validates a static spatial shape such as ``(H', W')`` and returns it as a tuple of ints."""
  return positive_shape(name, shape, {n: SPATIAL_LAYOUTS[n] for n in ndims})


def sizes(name: str, values) -> tuple[int, ...]:
  """A sequence of layer widths / kernel sizes as a tuple of ints >= 1 (errors name ``name[i]``)."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise TypeError(f"{name} must be a sequence of ints, got {values!r}.")
  return tuple(size(f"{name}[{i}]", v) for i, v in enumerate(values))


def ordered_pair(name: str, value, entry: Callable, *, above=None, below=None) -> tuple:
  """A static ``(min, max)`` pair, such as a range to draw from, with each entry checked by ``entry``.

  Args:
    name: the argument's name in errors.
    value: a sequence or 1-D array of two entries (not a string).
    entry: checks and converts one entry, called as ``entry(name, v)``: e.g. :func:`size` for whole
      numbers >= 1, ``functools.partial(real, minimum=0.0)`` for reals.
    above: if given, ``min`` must be greater than it.
    below: if given, ``max`` must be less than it.

  Returns:
    ``(min, max)`` as converted by ``entry``, with ``above < min <= max < below``.
  """
  rule = "min <= max"
  rule = rule if above is None else f"{above} < {rule}"
  rule = rule if below is None else f"{rule} < {below}"
  if (
    isinstance(value, (str, bytes))
    or not isinstance(value, (Sequence, np.ndarray))
    or getattr(value, "ndim", 1) != 1
  ):
    raise TypeError(f"{name} must be a pair (min, max) with {rule}, got {value!r}.")
  if len(value) != 2:
    raise ValueError(f"{name} must be a pair (min, max) with {rule}, got {value!r}.")
  low, high = (entry(name, v) for v in value)
  if not (low <= high and (above is None or above < low) and (below is None or high < below)):
    raise ValueError(f"{name} must be a pair (min, max) with {rule}, got ({low}, {high}).")
  return low, high


def flag(name: str, value) -> bool:
  """A static boolean option such as ``align_corners``: Python or numpy True/False, else ``TypeError``.

  Truthiness is not enough: ``align_corners="False"`` would silently mean ``True``.
  """
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
      f"{name} must be a Python bool, got a traced value: it selects the computation, so pass it as a "
      "static argument (e.g. jax.jit(..., static_argnames=...))."
    )
  raise TypeError(f"{name} must be True or False, got {value!r}.")


def float_dtype(name: str, dtype):
  """Returns ``jnp.dtype(dtype)``, raising ``TypeError`` unless it is one of ``FLOAT_DTYPES``."""
  dtype = jnp.dtype(dtype)
  if dtype not in FLOAT_DTYPES:
    raise TypeError(f"{name} must be a floating dtype ({_FLOAT_NAMES}), got {dtype}.")
  return dtype


def finite(name: str, x):
  """Raises ``ValueError`` if the concrete array ``x`` holds NaN or +-inf (no check on traced values).

  Parameters that reach a grid generator or an estimator as NaN would otherwise give an all-NaN grid (which
  samples 0) or a LAPACK failure; eager callers get this error instead. Under ``jit`` nothing can be
  inspected and the NaN propagates (the training loop stops on a non-finite loss).
  """
  if not is_concrete(x):
    return
  values = np.asarray(x)
  if not np.issubdtype(values.dtype, np.floating):
    values = values.astype(np.float64)
  bad = ~np.isfinite(values)
  if bad.any():
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape))
    raise ValueError(f"{name} contains non-finite values (NaN or inf), first at index {where}.")


def float_batch(name: str, x, example_shape: Sequence[int]):
  """Raises unless ``x`` is a floating batch ``(B, *example_shape)``, the input a model was built for.

  A model built for one input shape would otherwise accept another that happens to flatten or convolve
  (an FCN takes any image with the same number of pixels, a CNN any size), and an integer (e.g. uint8) image
  would be used on the 0-255 scale. Only static information is read, so this works under ``jit``.
  """
  want = tuple(int(s) for s in example_shape)
  if not hasattr(x, "dtype") or jnp.dtype(x.dtype) not in FLOAT_DTYPES:
    raise TypeError(
      f"{name} must be a floating batch (e.g. float32 images in [0, 1]), got "
      f"{getattr(x, 'dtype', type(x).__name__)}."
    )
  if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
    raise ValueError(f"{name} must have shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}.")


def broadcast_batch(names: tuple[str, str], a_batch: tuple[int, ...], b_batch: tuple[int, ...]):
  """Broadcasts two leading (batch) shapes, raising a ``ValueError`` that names both arguments."""
  try:
    return tuple(np.broadcast_shapes(tuple(a_batch), tuple(b_batch)))
  except ValueError as e:
    raise ValueError(
      f"leading (batch) dims of {names[0]} {tuple(a_batch)} and {names[1]} {tuple(b_batch)} do not broadcast."
    ) from e


def choice(name: str, value: str, options: Sequence[str]) -> str:
  """Raises ``ValueError`` unless ``value`` is one of ``options``."""
  if value not in options:
    raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}.")
  return value


def regularization(value):
  """A TPS ``lambda``: a scalar, finite and ``>= 0`` when concrete (returned as a Python float then).

  A traced value is returned as is (only its shape can be checked: it must be a scalar).
  """
  if isinstance(value, jax.core.Tracer):
    if value.ndim != 0:
      raise ValueError(f"regularization must be a scalar, got shape {tuple(value.shape)}.")
    return value
  not_a_number = TypeError(f"regularization must be a number >= 0, got {value!r}.")
  if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
    raise not_a_number
  try:
    arr = np.asarray(value)
  except (TypeError, ValueError):
    raise not_a_number from None
  # Only real numbers: np.asarray(None, float) would be NaN, a bool array 0/1.
  if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise not_a_number
  arr = arr.astype(np.float64)
  if arr.ndim != 0:
    raise ValueError(f"regularization must be a scalar, got shape {arr.shape}.")
  if not np.isfinite(arr) or arr < 0:
    raise ValueError(f"regularization must be >= 0 and finite, got {float(arr)}.")
  return float(arr)


def solve_dtype(dtype):
  """The dtype a linear solve runs in for inputs of ``dtype``: at least float32 (LAPACK has no f16/bf16)."""
  return jnp.promote_types(dtype, jnp.float32)


def is_concrete(*xs) -> bool:
  """True when every argument is a concrete value (not a tracer), so its values may be inspected."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)
