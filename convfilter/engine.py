"""The NumPy correlation engine: border modes, Pillow-exact accumulation, rounding.

``correlate`` returns the raw weighted sums; ``filter_array`` adds the
kernel's offset and converts back to the input's dtype the way Pillow does.
Everything here works on NumPy arrays (H x W or H x W x C, every channel
filtered alike) and knows nothing of files, Pillow or the command line.

Accumulation order. For integer images the sum is computed in float32 in
Pillow's order: it starts at ``offset + 0.5``, then adds one kernel row at a
time from the bottom row of the (correlation-oriented) matrix to the top,
each row summed left to right, with weights ``float32(matrix) /
float32(scale)``. Float addition is not associative, so this order is what
makes the ten Pillow presets byte-identical to ``Image.filter``.

Speed. The image is worked on in pieces, each padded by itself and small
enough to stay in cache: strips of rows, or tiles for FFTs. A pool of
threads takes them in turn (NumPy releases the GIL) while the calling
thread waits and reports progress. Strips are cut to about 0.1 s of work;
the slowest kernels are checked between kernel rows and large FFT tiles
between passes of a few milliseconds. So a KeyboardInterrupt gets through
within a fraction of a second, and the workers stop soon after it. Four
methods (:data:`METHODS`) compute the sums, see :mod:`convfilter.methods`:
``direct`` (one array operation per distinct weight), ``separable`` (two
1-D passes), ``fft`` (overlap-save tiles) and ``auto``, which asks the
cost model :func:`estimate_seconds`. For an integer matrix on an 8- or
16-bit image the sum is computed exactly in int16 or int32 and Pillow's
float32 result is recovered from it with integer arithmetic; where that
cannot be proved identical (see ``_IntegerRule``) the float32 order above
is used instead.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from . import methods
from .kernels import Kernel, as_kernel
from .options import BorderMode, Method

__all__ = [
    "BorderMode",
    "BORDER_MODES",
    "METHODS",
    "FilterError",
    "RowSource",
    "correlate",
    "filter_array",
    "filter_mode_i",
    "border_index",
    "run_pieces",
    "worker_count",
    "accumulator_dtype",
    "check_dtype",
    "round_to_dtype",
    "SUPPORTED_DTYPES",
    "MAX_SECONDS",
    "estimate_seconds",
    "choose_method",
    "fft_sums_are_exact",
]


#: Border mode names, in the order the CLI lists them (see :class:`BorderMode`).
BORDER_MODES: tuple[str, ...] = BorderMode.names()

#: Ways of computing a correlation (see :class:`Method`); ``auto`` picks one by a cost model.
METHODS: tuple[str, ...] = Method.names()

#: The sample types of Pillow's filterable modes (L, RGB..., I;16, I, F) and
#: float64: these the engine sums itself, in Pillow's order; every other
#: real dtype is converted to one of them (see :func:`filter_array`).
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int32, np.float32, np.float64)

#: What Pillow clamps each integer sample type to; mode I (int32) stops at 0.
_INT_LIMITS = {
    np.dtype(np.uint8): (0.0, 255.0),
    np.dtype(np.uint16): (0.0, 65535.0),
    np.dtype(np.int32): (0.0, 2147483647.0),
}


class FilterError(ValueError):
    """An array, kernel or border combination that cannot be filtered."""


@runtime_checkable
class RowSource(Protocol):
    """Pixels the engine reads a strip at a time instead of as one array: an
    image held elsewhere (a decoded Pillow image, say), so that it is never
    copied whole. :func:`filter_array` takes one of uint8 or uint16 samples
    wherever it takes such an array (without ``out_dtype``).

    ``shape``, ``ndim`` and ``dtype`` are those of the array it stands for;
    ``rows(index, columns)`` returns the rows ``index`` (a slice, or an
    array of row numbers in any order) and the ``columns`` slice of them, as
    a rows x columns x channels array. It is called from the engine's
    worker threads, several at a time.
    """

    shape: tuple[int, ...]
    ndim: int
    dtype: np.dtype

    def rows(self, index: np.ndarray | slice, columns: slice) -> np.ndarray: ...


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the engine sums a Pillow sample type in: float64 for float64,
    else float32 (Pillow's choice, required for byte-identical results).

    >>> accumulator_dtype(np.dtype(np.uint8))
    dtype('float32')
    """
    dtype = np.dtype(dtype)
    if dtype not in [np.dtype(t) for t in SUPPORTED_DTYPES]:
        names = ", ".join(np.dtype(t).name for t in SUPPORTED_DTYPES)
        raise FilterError(f"the engine sums {names} arrays, not {dtype.name}")
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def check_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` if convfilter filters it (bool, every integer, float16 to float64).

    Raises
    ------
    FilterError
        For complex, text, object, date and extended-precision arrays.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return dtype
    raise FilterError(
        f"cannot filter {dtype.name} arrays; give real numbers: bool, int8 to int64, "
        "uint8 to uint64, or float16 to float64"
    )


def round_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert results that already hold the +0.5 of rounding to ``dtype``.

    The single place where convfilter's dtype policy lives:

    * integers and bool: ``floor(v)`` clipped to the type's range (bool is
      0 to 1), i.e. round half up of the result before the 0.5 was added.
      On 8- and 16-bit samples this is Pillow's ``trunc(clamp(v + 0.5))``.
    * floats: converted as they are, never clipped or rescaled (float16
      overflows to infinity, as NumPy's conversion does).

    NaN becomes 0 in an integer type; infinities clip to its ends.

    >>> round_to_dtype(np.array([-3.0, 0.49, 1.5, 300.0]), np.uint8).tolist()
    [0, 0, 1, 255]
    >>> round_to_dtype(np.array([-2.5, -2.0, 127.9, 1e9]), np.int8).tolist()
    [-3, -2, 127, 127]
    """
    dtype = check_dtype(dtype)
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            return np.asarray(values).astype(dtype)
    values = np.floor(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=np.inf,
                                    neginf=-np.inf))  # fmt: skip
    low, high = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    top = float(high)
    saturated = values >= top  # float(2**63 - 1) is 2**63, which int64 cannot hold
    np.clip(values, float(low), top if top <= high else np.nextafter(top, 0.0), out=values)
    out = values.astype(dtype)
    out[saturated] = high
    return out


def _round_into(values: np.ndarray, target: np.ndarray) -> None:
    """Pillow's rounding of a strip's sums (holding the +0.5) into ``target``, a
    Pillow sample type: clamped to :data:`_INT_LIMITS`; may overwrite ``values``."""
    dtype = target.dtype
    if dtype.kind == "f":
        np.copyto(target, values, casting="unsafe")
        return
    low, high = _INT_LIMITS[dtype]
    if dtype == np.int32:
        # float32(2**31 - 1) is 2**31: like Pillow, anything at or above it
        # saturates; below it every float32 converts exactly.
        saturated = values >= np.float32(2**31)
        np.clip(values, 0.0, np.nextafter(np.float32(2**31), np.float32(0)), out=values)
        np.copyto(target, values, casting="unsafe")
        target[saturated] = np.int32(2**31 - 1)
        return
    np.clip(values, low, high, out=values)
    np.copyto(target, values, casting="unsafe")


def border_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index for each position -before .. n+after-1 along one axis.

    -1 marks a position filled with ``cval`` (mode ``constant``).

    >>> border_index(4, 3, 3, "reflect").tolist()
    [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    >>> border_index(4, 3, 3, "mirror").tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    i = np.arange(-before, n + after)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        j = np.mod(i, 2 * n)
        return np.where(j < n, j, 2 * n - 1 - j)
    if mode == "mirror":
        if n == 1:
            return np.zeros_like(i)
        j = np.mod(i, 2 * n - 2)
        return np.where(j < n, j, 2 * n - 2 - j)
    if mode == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    raise FilterError(f"no padding rule for border mode {mode!r}")


def correlate(
    array: np.ndarray,
    kernel: Kernel | str | np.ndarray,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    method: str | Method = Method.AUTO,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> np.ndarray:
    """Cross-correlate every channel of ``array`` with ``kernel.weights``.

    Parameters
    ----------
    array : ndarray
        H x W or H x W x C, of any dtype :func:`check_dtype` accepts.
    kernel : Kernel, str or array_like
        A :class:`Kernel`, a spec (``"gaussian:2"``) or a 2-D matrix,
        applied as written (see :mod:`convfilter.kernels` for the anchor).
    border : str or BorderMode
        How the edge is extended; see :class:`BorderMode`. With ``keep`` the
        pixels the kernel cannot fully cover hold the input's values.
    cval : float
        Fill value for ``constant``.
    method : str or Method
        ``auto`` chooses the fastest that keeps the accuracy contract (see
        :func:`choose_method`), and ``direct`` for a float image holding NaN
        or infinity: ``fft`` and the matrix products of ``separable`` would
        spread one such value over a whole tile or column of sums.
    threads : int or None
        Worker threads at most; None means one per CPU. Work the cost model
        estimates under 20 ms runs on one thread, as starting more costs
        more than it saves.
    progress : callable or None
        Called as ``progress(done, total)`` on the calling thread, never on
        a worker: ``total`` pieces of work (strips of rows, or FFT tiles),
        the same in every call, of which ``done`` are finished. ``done``
        grows from call to call; calls come about every 0.1 s (no more
        often) and once at the end, with ``done == total``. Not called when
        there is nothing to filter. None, the default, costs nothing.

    Returns
    -------
    ndarray
        The sums without offset or rounding: float64 for float64 and for
        32- and 64-bit integers, float32 otherwise. Same shape as ``array``
        except with ``valid``.

    Raises
    ------
    FilterError
        Unsupported dtype or shape, unknown border or method, ``valid`` with
        an image smaller than the kernel, ``separable`` for a kernel that is
        not, or a method that would take unreasonably long.

    Examples
    --------
    >>> a = np.arange(25.0).reshape(5, 5)
    >>> correlate(a, np.arange(9).reshape(3, 3), border="valid").tolist()
    [[312.0, 348.0, 384.0], [492.0, 528.0, 564.0], [672.0, 708.0, 744.0]]
    """
    kernel = as_kernel(kernel)
    if not isinstance(kernel, Kernel):
        raise FilterError(f"{kernel.name} is not a kernel: it has no sums to return; use filter_array")
    array = _native(np.asarray(array))
    mode = _check(array, kernel, border)
    if array.dtype not in _SUMMED:
        wide = array.dtype.kind in "iu" and array.dtype.itemsize >= 4
        array = array.astype(np.float64 if wide else np.float32)
    return _filter(array, kernel, mode, cval, method, threads, progress, raw=True,
                   absolute=False)  # fmt: skip


#: Dtypes the engine sums as they are in :func:`correlate`.
_SUMMED = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


def filter_array(
    array: np.ndarray,
    kernel: Kernel | str | np.ndarray,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    abs: bool = False,  # noqa: A002 - the name of the --abs option
    method: str | Method = Method.AUTO,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    out_dtype: np.dtype | type | str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Filter ``array`` with ``kernel``: same shape (except ``valid``) and dtype.

    The result is ``sum + offset`` (its absolute value with ``abs=True``,
    which shows edges of both signs), converted to ``out_dtype`` (default:
    the input's dtype) by :func:`round_to_dtype`: integers and bool are
    rounded half up and clipped to the type's range, floats are kept as
    they are. ``border``, ``cval``, ``method``, ``threads`` and ``progress``
    are as for :func:`correlate`.

    ``kernel`` may also be a filter that is not one matrix, or its spec
    (``"median:3"``, ``"unsharp"``; see :mod:`convfilter.neighbourhood`):
    it computes the result by its own rule in the input's dtype, which
    ``out_dtype`` then converts; ``abs`` and ``method`` do not apply to it.

    ``out``, an array of the result's shape and dtype, receives the result
    and is returned. It may be ``array`` itself: a kernel then filters the
    image in place, keeping copies of only the rows that one strip reads
    and another overwrites (the kernel's reach at each strip's edges), not
    a second image. Other filters, and an ``out`` that overlaps ``array``
    in any other way, are computed beside it and copied in.

    Accuracy, by input type:

    * uint8, uint16, float32: summed in float32 in Pillow's order, so with
      ``border="keep"`` a Pillow preset gives exactly
      ``Image.filter(ImageFilter.X)`` on an L, RGB or I;16 image. On 8-bit
      images every method gives Pillow's bytes for Pillow's presets
      (``auto`` does on every type, as it takes ``direct`` for them);
      otherwise 8-bit results are within 1 of the exactly rounded ones.
    * every other integer type and bool, with an integer matrix: the sums
      are exact integers wherever they fit in int64 (beyond 2**53 with a
      scale or a fractional offset the division is float64's), so the
      result is exactly rounded. Other kernels: summed in float64.
    * float16 is summed in float32, float64 in float64; float results are
      within 1e-4 of the exact sums relative to their scale,
      ``sum(|weights|) * max(|image|)``.

    Raises
    ------
    FilterError
        As :func:`correlate`, and for an ``out_dtype`` that is not a real
        number type.
    KernelSpecError
        For a kernel spec or matrix that is not a kernel.

    Examples
    --------
    An impulse returns the kernel rotated 180 degrees (correlation):

    >>> impulse = np.zeros((3, 3), np.uint8); impulse[1, 1] = 10
    >>> filter_array(impulse, [[1, 2, 0], [0, 0, 0], [0, 0, 0]], border="constant").tolist()
    [[0, 0, 0], [0, 0, 0], [0, 20, 10]]

    Integers of any width, summed exactly:

    >>> filter_array(np.arange(25).reshape(5, 5), np.arange(9).reshape(3, 3), border="valid").tolist()
    [[312, 348, 384], [492, 528, 564], [672, 708, 744]]

    In place (``smooth`` weighs the centre 5 and each neighbour 1, over 13:
    90 / 13 rounds to 7, 450 / 13 to 35):

    >>> image = np.array([[0, 0, 0], [0, 90, 0], [0, 0, 0]], np.uint8)
    >>> filter_array(image, "smooth", border="constant", out=image) is image
    True
    >>> image.tolist()
    [[7, 7, 7], [7, 35, 7], [7, 7, 7]]
    """
    absolute = abs
    kernel = as_kernel(kernel)
    if out is not None and not isinstance(out, np.ndarray):
        raise FilterError(f"out must be a NumPy array, got {type(out).__name__}")
    if not isinstance(kernel, Kernel):  # a median, an unsharp mask, ...: its own arithmetic
        array = _native(np.asarray(array))
        check_dtype(array.dtype)
        result = kernel.apply(array, border=border, cval=_fill_value(cval), threads=threads, progress=progress)
        result = result if out_dtype is None else _convert_samples(result, check_dtype(out_dtype))
        return result if out is None else _copy_into(out, result)
    array = array if _is_row_source(array) else _native(np.asarray(array))
    mode = _check(array, kernel, border)
    target = array.dtype if out_dtype is None else check_dtype(out_dtype)
    if _is_row_source(array) and not (array.dtype == target and array.dtype.kind == "u"):
        raise FilterError(f"a RowSource of {array.dtype.name} samples is filtered into its own dtype only")
    if array.dtype == target and array.dtype in _SUMMED:
        return _filter(array, kernel, mode, cval, method, threads, progress, raw=False,
                       absolute=absolute, out=out)  # fmt: skip
    result = _filter_converted(array, kernel, mode, cval, method, threads, progress, absolute, target)
    return result if out is None else _copy_into(out, result)


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if out.shape != shape or out.dtype != dtype:
        raise FilterError(f"out must be a {dtype.name} array of shape {shape}, "
                          f"got {out.dtype.name} of shape {out.shape}")  # fmt: skip
    if not out.flags.writeable:
        raise FilterError("out is read-only")


def _copy_into(out: np.ndarray, result: np.ndarray) -> np.ndarray:
    _check_out(out, result.shape, result.dtype)
    np.copyto(out, result)
    return out


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays are the same elements in the same places (a view of the other)."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])  # fmt: skip


def filter_mode_i(
    array: np.ndarray,
    kernel: Kernel,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    abs: bool = False,  # noqa: A002 - the name of the --abs option
    method: str | Method = Method.AUTO,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> np.ndarray:
    """Filter the int32 samples of a Pillow mode I image as Pillow does: summed
    in float32 and clamped to 0 .. 2**31 - 1 (negative results become 0).

    :func:`filter_array` instead keeps int32 arrays' full range, exactly.
    """
    array = _native(np.asarray(array))
    if array.dtype != np.int32:
        raise FilterError(f"mode I samples are int32, not {array.dtype.name}")
    mode = _check(array, kernel, border)
    return _filter(array, kernel, mode, cval, method, threads, progress, raw=False, absolute=abs)


def _filter_converted(array, kernel, mode, cval, method, threads, progress, absolute, target) -> np.ndarray:
    """filter_array for input or output types the engine does not sum as they are."""
    cval = _fill_value(cval)
    method = _method(method)
    values = None
    if array.dtype.kind in "biu" and kernel.is_integer():
        sums = _exact_integer_sums(array, kernel, mode, cval, method, threads, progress)
        if sums is not None:
            values = _integer_result(sums, kernel, absolute, target)
    if values is None:
        work = np.float32 if array.dtype.kind == "f" and array.dtype.itemsize <= 4 else np.float64
        sums = _filter(array.astype(work), kernel, mode, cval, method, threads, progress, raw=False,
                       absolute=absolute)  # fmt: skip
        values = sums.astype(target) if target.kind == "f" else round_to_dtype(sums + 0.5, target)
    if mode is BorderMode.KEEP:
        _keep_frame(values, array, kernel, target)
    return values


def _keep_frame(values: np.ndarray, array: np.ndarray, kernel: Kernel, target: np.dtype) -> None:
    """Border ``keep``: the pixels the kernel cannot cover hold the input's samples in ``target``."""
    h, w = kernel.shape
    ay, ax = kernel.anchor
    rows, cols = array.shape[:2]
    out_rows, out_cols = max(0, rows - h + 1), max(0, cols - w + 1)
    inner = values[ay : ay + out_rows, ax : ax + out_cols].copy()
    values[...] = _convert_samples(array, target)
    values[ay : ay + out_rows, ax : ax + out_cols] = inner


def _convert_samples(array: np.ndarray, target: np.dtype) -> np.ndarray:
    """Samples as ``target``: unchanged where it holds them, else by the dtype policy."""
    if target.kind == "f" or array.dtype.kind == "f":
        return array.astype(target) if target.kind == "f" else round_to_dtype(array + 0.5, target)
    source = (0, 1) if array.dtype.kind == "b" else (np.iinfo(array.dtype).min, np.iinfo(array.dtype).max)
    wanted = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
    low, high = max(source[0], wanted[0]), min(source[1], wanted[1])
    kind = array.dtype.type if array.dtype.kind != "b" else np.uint8
    return np.clip(array.astype(kind, copy=False), kind(low), kind(high)).astype(target)


#: Largest magnitude float64 sums of integers hold exactly, in any order.
_EXACT_FLOAT64 = 2.0**53


def _exact_integer_sums(array, kernel, mode, cval, method, threads, progress) -> np.ndarray | None:
    """The exact integer sums S of ``kernel.matrix`` (not divided by the scale),
    as float64 (below 2**53) or int64 (below 2**63). None when they do not fit,
    when ``cval`` is fractional, or when exact sums would need a method other
    than the one asked for (direct sums, or 1-D passes of integer factors)."""
    if mode is BorderMode.CONSTANT and not cval.is_integer():
        return None
    magnitude = max(-float(array.min(initial=0)), float(array.max(initial=0)), abs(cval))
    bound = float(np.abs(kernel.matrix).sum()) * magnitude
    if bound >= 2.0**63:
        return None
    factors = _integer_factors(kernel.matrix)
    unscaled = Kernel(kernel.matrix, factors=factors)
    exact = ["direct"] + (["separable"] if factors is not None else [])
    candidates = exact if method == "auto" else [m for m in exact if m == method]
    if not candidates:
        return None
    if bound >= _EXACT_FLOAT64:
        sums = _int64_sums(array, unscaled, mode, int(cval))
        if progress is not None:
            progress(1, 1)
        return sums
    costs = {m: estimate_seconds(m, array.shape, unscaled, dtype=np.float64) for m in candidates}
    chosen = min(candidates, key=costs.__getitem__)
    if costs[chosen] > MAX_SECONDS:
        return None
    return _filter(array.astype(np.float64), unscaled, mode, cval, chosen, threads, progress, raw=True,
                   absolute=False)  # fmt: skip


def _int64_sums(array: np.ndarray, kernel: Kernel, mode: BorderMode, cval: int) -> np.ndarray:
    """Exact int64 sums, one shifted copy of the image per non-zero weight
    (under border ``keep`` the frame is left to the caller)."""
    h, w = kernel.shape
    if mode is BorderMode.KEEP and (array.shape[0] < h or array.shape[1] < w):
        return np.zeros(array.shape, np.int64)  # all frame
    layout = _layout(array.shape, kernel, mode)
    padded = array.astype(np.int64)[np.maximum(layout.rows, 0)][:, np.maximum(layout.cols, 0)]
    padded[layout.rows < 0] = cval
    padded[:, layout.cols < 0] = cval
    sums = np.zeros((layout.out_rows, layout.out_cols) + array.shape[2:], np.int64)
    for (y, x), weight in np.ndenumerate(kernel.matrix.astype(np.int64)):
        if weight:
            sums += weight * padded[y : y + layout.out_rows, x : x + layout.out_cols]
    if mode is BorderMode.KEEP:
        ay, ax = kernel.anchor
        whole = np.zeros(array.shape, np.int64)
        whole[ay : ay + layout.out_rows, ax : ax + layout.out_cols] = sums
        return whole
    return sums


def _integer_result(sums: np.ndarray, kernel: Kernel, absolute: bool, target: np.dtype) -> np.ndarray:
    """Exact sums -> ``target``: divided by the scale, offset added, rounded by the policy."""
    if sums.dtype == np.int64 and kernel.scale == 1 and kernel.offset.is_integer():
        values = sums + int(kernel.offset)
        if absolute:
            values = np.abs(values)
        if target.kind == "f":
            return values.astype(target)
        low, high = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
        return np.clip(values, max(low, -(2**63)), min(high, 2**63 - 1)).astype(target)
    values = sums.astype(np.float64) / kernel.scale + kernel.offset
    if absolute:
        np.abs(values, out=values)
    return values.astype(target) if target.kind == "f" else round_to_dtype(values + 0.5, target)


def _method(method) -> str:
    """A method's name, or FilterError."""
    try:
        return Method.parse(method, "method").value
    except ValueError:
        raise FilterError(f"unknown method {method!r}; choose from {', '.join(METHODS)}") from None


def _fill_value(cval) -> float:
    try:
        value = float(cval)
    except (TypeError, ValueError):
        raise FilterError(f"cval must be a number, got {cval!r}") from None
    if not math.isfinite(value):
        raise FilterError(f"cval must be finite, got {cval!r}")
    return value


def _native(array: np.ndarray) -> np.ndarray:
    """The array in the machine's byte order (big-endian 16-bit data, say), values unchanged."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _check(array: np.ndarray, kernel: Kernel, border: str | BorderMode) -> BorderMode:
    try:
        mode = BorderMode.parse(border, "border")
    except ValueError:
        raise FilterError(
            f"unknown border mode {border!r}; choose from {', '.join(BORDER_MODES)}"
        ) from None
    if array.ndim not in (2, 3):
        raise FilterError(f"expected an H x W or H x W x C array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1 or (array.ndim == 3 and array.shape[2] < 1):
        raise FilterError(f"cannot filter an empty array of shape {array.shape}")
    check_dtype(array.dtype)
    h, w = kernel.shape
    if mode is BorderMode.VALID and (array.shape[0] < h or array.shape[1] < w):
        raise FilterError(
            f"border 'valid' needs an image at least as large as the kernel: "
            f"image {array.shape[1]}x{array.shape[0]}, kernel {w}x{h} (width x height)"
        )
    return mode


# ---------------------------------------------------------------------------
# Exact integer arithmetic for integer kernels on 8- and 16-bit images
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _IntegerRule:
    """How to get Pillow's float32 result from the exact integer sum S.

    Pillow computes ``v = S / D + start`` (D the scale) in float32 and
    stores ``clamp(floor(v))``. In integers, ``v = N / Q`` with
    ``N = multiplier * S + constant`` (``abs(...) + Q // 2`` when absolute)
    and ``Q = multiplier * D``, so ``floor(v) = N // Q`` exactly. Pillow's
    float32 value differs from v by at most ``error``; when ``exact`` it is
    v itself. Otherwise ``error < 1 / (2 Q)`` while a v that is not an
    integer is at least ``1 / Q`` from one, so the floors agree everywhere
    except where v is an integer (a tie), and those pixels are computed
    again in Pillow's float32 order.
    """

    matrix: np.ndarray  # the integer matrix, negated for a negative scale
    multiplier: int
    constant: int
    denominator: int
    absolute: bool
    exact: bool
    ties: bool
    dtype: np.dtype  # int16 or int32, holds every partial sum and N
    high: int
    clip: bool  # whether N // Q can fall outside 0..high
    start: float  # Pillow's starting value, for recomputing ties
    error: float


def _integer_rule(
    kernel: Kernel, dtype: np.dtype, *, start: float, absolute: bool, cval: float | None
) -> _IntegerRule | None:
    """The rule for this kernel and image dtype, or None to use float32.

    ``cval`` is the fill value when the border mode uses one, else None.
    Cached: small images would otherwise spend more time planning than
    filtering.
    """
    return _cached_rule(kernel, np.dtype(dtype), start, absolute, cval)


@functools.lru_cache(maxsize=64)
def _cached_rule(kernel, dtype, start, absolute, cval) -> _IntegerRule | None:
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)) or not kernel.is_integer():
        return None
    matrix = kernel.matrix
    scale = float(np.float32(kernel.scale))  # what Pillow divides by
    if scale != round(scale) or not 0 < abs(scale) <= 2**24 or np.abs(matrix).max() >= 2**24:
        return None
    high = int(_INT_LIMITS[dtype][1])
    if cval is not None and not (float(cval).is_integer() and 0 <= cval <= high):
        return None
    denominator = int(abs(scale))
    total = float(np.abs(matrix).sum())
    for power in range(31):
        multiplier = 2**power
        if (start * denominator * multiplier).is_integer() and (
            not absolute or (0.5 * denominator * multiplier).is_integer()
        ):
            break
    else:
        return None
    constant = int(start * denominator * multiplier)
    q = multiplier * denominator
    largest = multiplier * total * high + abs(constant) + q
    if largest < 2**15:
        int_dtype = np.dtype(np.int16)
    elif largest < 2**31:
        int_dtype = np.dtype(np.int32)
    else:
        return None
    bound = abs(start) + high * total / denominator + (0.5 if absolute else 0.0)
    exact = False
    if denominator & (denominator - 1) == 0 and high * np.abs(matrix).max() < 2**24:
        # Every weight, product and partial sum is a multiple of `unit`.
        unit = min(1.0 / denominator, 0.5 if absolute else 1.0)
        while not (start / unit).is_integer():
            unit /= 2
        exact = bound / unit < 2**24
    error = 0.0
    if not exact:
        ops = matrix.size + 4  # roundings any one term goes through, generously
        u = 2.0**-24
        error = ops * u / (1 - ops * u) * bound
        if not error < 0.5 / q:
            return None
    ties = not exact and (absolute or (start * denominator).is_integer())
    sign = 1 if scale > 0 else -1
    signed = sign * matrix
    lowest = multiplier * high * float(signed[signed < 0].sum()) + constant
    highest = multiplier * high * float(signed[signed > 0].sum()) + constant
    if absolute:
        lowest, highest = q // 2, max(-lowest, highest) + q // 2
    clip = not (lowest >= 0 and highest // q <= high)
    return _IntegerRule(
        matrix=(sign * matrix).astype(np.int64),
        multiplier=multiplier,
        constant=constant,
        denominator=q,
        absolute=absolute,
        exact=exact,
        ties=ties,
        dtype=int_dtype,
        high=high,
        clip=clip,
        start=start,
        error=error,
    )


def _integer_factors(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer ``(column, row)`` with ``outer(column, row) == matrix``, if any."""
    if not matrix.any():
        return np.zeros(matrix.shape[0], np.int64), np.zeros(matrix.shape[1], np.int64)
    r, c = np.unravel_index(np.argmax(np.abs(matrix)), matrix.shape)
    row = matrix[r].astype(np.int64)
    row = row // int(np.gcd.reduce(np.abs(row)))
    column = matrix[:, c] / row[c]
    if not np.all(column == np.round(column)):
        return None
    column = column.astype(np.int64)
    if not np.array_equal(np.outer(column, row), matrix):
        return None
    return column, row


def _separable_factors(kernel: Kernel) -> tuple[np.ndarray, np.ndarray] | None:
    """Float64 ``(column, row)`` with ``outer(column, row)`` = the weights, if rank 1.

    ``Kernel.factors`` when given; otherwise a rank-1 test: the outer
    product of the row and column through the largest weight, divided by
    it, reproduces every rank-1 matrix and must match to 1e-9 relative.
    """
    weights = kernel.weights
    peak = float(np.abs(weights).max())
    if kernel.factors is not None:
        column, row = kernel.factors
        return column / kernel.scale, row.copy()
    if peak == 0:
        return np.zeros(weights.shape[0]), np.zeros(weights.shape[1])
    r, c = np.unravel_index(np.argmax(np.abs(weights)), weights.shape)
    column, row = weights[:, c] / weights[r, c], weights[r].copy()
    if np.abs(np.outer(column, row) - weights).max() > 1e-9 * peak:
        return None
    return column, row


# ---------------------------------------------------------------------------
# The cost model
# ---------------------------------------------------------------------------

#: Whole-array operations every method pays per element: gather, convert, round, store.
_FIXED_OPS = 5

#: Seconds one core spends per element of one array operation, by item
#: size (int16, int32/float32, float64), and per element and log2(tile
#: area) of an FFT round trip; matrix-product flops per second. Measured on
#: the development machine (a 2-core Intel Xeon) with whole 12 MP images,
#: so they include the memory traffic of images larger than any cache.
#: ``python3 benchmarks/cost_model.py`` compares estimates with the clock:
#: there, every method's estimate on jobs of a tenth of a second or more
#: came within a factor of 1.5 of its measured single-thread time (small
#: jobs run slower than estimated: fixed costs the model leaves out).
_OP_SECONDS = {2: 0.2e-9, 4: 0.3e-9, 8: 0.6e-9}
_FFT_SECONDS = {"scipy": {4: 1.25e-9, 8: 2e-9}, "numpy": {4: 3e-9, 8: 5e-9}}
_GEMM_FLOPS = 25e9
_TIE_SECONDS = 20e-9  # per tap of one tie recomputed in float32

#: Estimated single-core seconds above which a method is refused.
MAX_SECONDS = 300.0
#: ``auto`` keeps ``direct`` unless another method is estimated to save at
#: least this many seconds and to take less than this fraction of its time.
#: Measured on one core: gaussian:1 on 640 x 480 RGB took 60 ms by direct
#: sums and 7 ms by separable passes, which a rule keeping direct sums for
#: any job estimated under 50 ms left unused.
_SMALL_SAVING = 0.002
_PREFER_DIRECT = 0.7
#: Kernel shapes Pillow's ImageFilter.Kernel applies: on integer images,
#: auto sums fractional weights of these by ``direct`` only, in Pillow's
#: float32 order, which other methods reproduce only to within 1.
_PILLOW_SHAPES = ((3, 3), (5, 5))
#: Estimated single-core seconds below which one thread does the work
#: (the rank filters and blurs, whose estimates are their own).
_THREAD_SECONDS = 0.05
#: The same for kernels, by this module's estimates. Measured on two cores
#: (edge_enhance, sharpen, smooth_more, box:7 and gaussian:2 on L and RGB
#: images of 0.3 to 1.2 MP): a second thread lost time below an estimate of
#: about 5 ms (up to 2.5x as long on a 640x480 L image); from about 10 ms
#: it saved 1 to 48%.
_KERNEL_THREAD_SECONDS = 0.01


def estimate_seconds(
    method: str, image_shape: tuple[int, ...], kernel: Kernel, *, dtype=np.uint8
) -> float:
    """Rough seconds one core needs to filter ``image_shape`` with ``method``.

    The engine's cost model, which each method states for itself (see
    :data:`_REGISTRY`): array operations per output element (``direct``,
    ``separable``), matrix-product flops, or the FFT tiles' ``n log n``,
    times per-element times measured on the development machine. ``inf``
    when the method does not apply (``separable`` for a kernel of rank > 1).

    >>> big = Kernel(np.ones((301, 301)))
    >>> estimate_seconds("direct", (3000, 4000, 3), big) > MAX_SECONDS
    True
    >>> estimate_seconds("fft", (3000, 4000, 3), big) < 10
    True
    """
    return _REGISTRY[_method(method)].seconds(_Job.of(image_shape, kernel, dtype))


@dataclass(frozen=True)
class _Job:
    """What every method's cost and set-up look at: the image, the kernel, the sums' types."""

    shape: tuple[int, ...]
    kernel: Kernel
    dtype: np.dtype
    channels: int
    samples: int
    work: np.dtype  # the accumulator dtype
    rule: _IntegerRule | None  # the integer rule with the usual start, for costs

    @classmethod
    def of(cls, shape: tuple[int, ...], kernel: Kernel, dtype) -> _Job:
        dtype = np.dtype(dtype)
        channels = shape[2] if len(shape) == 3 else 1
        start = 0.5 if dtype.kind in "iu" else 0.0
        rule = _integer_rule(kernel, dtype, start=start, absolute=False, cval=None)
        return cls(tuple(shape), kernel, dtype, channels, shape[0] * shape[1] * channels,
                   accumulator_dtype(dtype), rule)  # fmt: skip

    @property
    def per_op(self) -> float:
        return _OP_SECONDS[self.work.itemsize]


class _DirectMethod:
    """One array operation per distinct weight (or exact integer sums), in Pillow's order."""

    def seconds(self, job: _Job) -> float:
        return job.samples * min(_direct_seconds(job.kernel, job.rule, job.channels, job.work.itemsize))

    def strategy(self, job: _Job, layout: _Layout, rule: _IntegerRule | None, start: float,
                 wide_fft: bool) -> _Strategy:  # fmt: skip
        if rule is not None:
            integers, floats = _direct_seconds(job.kernel, rule, layout.channels, job.work.itemsize)
            if integers <= floats:
                return _DirectInteger(job.kernel, rule, layout.channels)
        weights = job.kernel.weights_float32 if job.work == np.float32 else job.kernel.weights
        return _DirectFloat(weights, start, layout.channels, job.work)


class _SeparableMethod:
    """Two 1-D passes: weighted views, or banded matrix products for long factors."""

    def seconds(self, job: _Job) -> float:
        factors = _separable_factors(job.kernel)
        if factors is None:
            return math.inf
        fixed = _FIXED_OPS
        integer_factors = _integer_factors(job.rule.matrix) if job.rule is not None else None
        if integer_factors is not None:
            column, row = integer_factors
            ops = methods.pass_ops(column) + methods.pass_ops(row)
            return job.samples * (ops + fixed) * _OP_SECONDS[job.rule.dtype.itemsize]
        column, row = factors
        ops = methods.pass_ops(column) + methods.pass_ops(row)
        if ops <= _GEMM_MIN_OPS:
            return job.samples * (ops + fixed) * job.per_op
        h, w = job.kernel.shape
        gemm = methods.SeparableGemm
        flops = 2 * (gemm.batch + h - 1) + 2 * (gemm.block + w - 1)
        return job.samples * (flops * job.work.itemsize / 4 / _GEMM_FLOPS + (fixed + 3) * job.per_op)

    def strategy(self, job: _Job, layout: _Layout, rule: _IntegerRule | None, start: float,
                 wide_fft: bool) -> _Strategy:  # fmt: skip
        c, work = layout.channels, job.work
        if rule is not None:
            factors = _integer_factors(rule.matrix)
            if factors is not None:
                return _SeparableDirect(*factors, c, rule.dtype, integer=True)
        column, row = _separable_factors(job.kernel)
        if methods.pass_ops(column) + methods.pass_ops(row) > _GEMM_MIN_OPS:
            return _SeparableGemm(column, row, c, layout.out_cols, work)
        kind = work.type
        return _SeparableDirect([kind(v) for v in column], [kind(v) for v in row], c, work,
                                integer=False)  # fmt: skip


class _FourierMethod:
    """Overlap-save FFT tiles; exact for integer kernels whose sums float64 holds."""

    def seconds(self, job: _Job) -> float:
        h, w = job.kernel.shape
        fh, fw = methods.fft_tile((h, w), (job.shape[0] + h - 1, job.shape[1] + w - 1))
        overlap = fh * fw / (max(1, fh - h + 1) * max(1, fw - w + 1))
        exact = job.rule is not None and _fft_is_exact(job.rule, fh * fw)
        transform = _FFT_SECONDS[methods.fft_library()][8 if exact else _fft_dtype(job.dtype).itemsize]
        per_sample = overlap * math.log2(fh * fw) * transform + _FIXED_OPS * job.per_op
        return job.samples * per_sample + methods.fft_start_seconds()

    def strategy(self, job: _Job, layout: _Layout, rule: _IntegerRule | None, start: float,
                 wide_fft: bool) -> _Strategy:  # fmt: skip
        h, w = job.kernel.shape
        extent = (layout.out_rows + h - 1, layout.out_cols + w - 1)
        c = layout.channels
        if rule is not None:
            fh, fw = methods.fft_tile((h, w), extent)
            if _fft_is_exact(rule, fh * fw):
                return _Fourier(rule.matrix, c, np.float64, exact=True, extent=extent,
                                sum_dtype=rule.dtype)  # fmt: skip
        fft_dtype = np.dtype(np.float64) if wide_fft else _fft_dtype(job.dtype)
        return _Fourier(job.kernel.weights, c, fft_dtype, exact=False, extent=extent,
                        sum_dtype=job.work)  # fmt: skip


#: Every method but ``auto``: what it costs, and how it is set up for one job.
_REGISTRY = {"direct": _DirectMethod(), "separable": _SeparableMethod(), "fft": _FourierMethod()}


def _direct_seconds(kernel: Kernel, rule: _IntegerRule | None, channels: int, item: int):
    """Seconds per output element of direct sums: (integer path, Pillow's float order).

    The integer path pays for recomputing ties in float32: about one pixel
    in D (the scale) for every tap, which makes DETAIL (D = 6) cheaper in
    float32 while SMOOTH_MORE (D = 100) is cheaper in integers.
    """
    h, w = kernel.shape
    fixed = _FIXED_OPS
    taps = int(np.count_nonzero(kernel.matrix))
    floats = (2 * taps + h + fixed) * _OP_SECONDS[item]
    if rule is None:
        return math.inf, floats
    ops = _integer_direct(kernel, channels, _max_weight_sum(rule)).ops() + fixed
    integers = ops * _OP_SECONDS[rule.dtype.itemsize]
    if rule.ties:
        share = rule.multiplier / rule.denominator
        integers += 4 * _OP_SECONDS[rule.dtype.itemsize] + share * h * w * _TIE_SECONDS
    return integers, floats


@functools.lru_cache(maxsize=64)
def _integer_direct(kernel: Kernel, channels: int, max_weight_sum: int) -> methods.IntegerDirect:
    """The integer plan of an integer kernel (negated for a negative scale), cached."""
    sign = 1 if kernel.scale > 0 else -1
    return methods.IntegerDirect(sign * np.round(kernel.matrix).astype(np.int64), channels,
                                 max_weight_sum=max_weight_sum)  # fmt: skip


def _max_weight_sum(rule: _IntegerRule) -> int:
    """The most absolute weight a partial sum may carry in the rule's dtype."""
    return int(np.iinfo(rule.dtype).max) // rule.high


def choose_method(
    image_shape: tuple[int, ...], kernel: Kernel, *, dtype=np.uint8, method: str = "auto"
) -> str:
    """The method the engine uses: ``method`` itself, or the cheapest for ``auto``.

    Raises
    ------
    FilterError
        For an unknown method, ``separable`` with a kernel of rank > 1, or
        a method estimated to need more than :data:`MAX_SECONDS` (a
        301 x 301 kernel on 12 megapixels by ``direct``, say); the message
        suggests a method that would finish.

    >>> choose_method((3000, 4000, 3), Kernel(np.ones((301, 301))))
    'fft'
    """
    return _choose(image_shape, kernel, np.dtype(dtype), method)[0]


def fft_sums_are_exact(image_shape: tuple[int, ...], kernel: Kernel, *, dtype=np.uint8) -> bool:
    """Whether method ``fft`` rounds its sums of ``kernel`` on an image of
    ``image_shape`` and ``dtype`` to the exact integer sums, as it does for
    integer matrices on 8- and 16-bit images within a bound. Exact sums do
    not depend on how the image is cut into tiles (or bands, or chunks);
    other FFT sums differ in their last bits with the tiles.

    >>> fft_sums_are_exact((3000, 4000, 3), Kernel(np.ones((31, 31)))), fft_sums_are_exact(
    ...     (3000, 4000), Kernel(np.ones((31, 31))), dtype=np.float32)
    (True, False)
    """
    job = _Job.of(image_shape, kernel, np.dtype(dtype))
    h, w = kernel.shape
    fh, fw = methods.fft_tile((h, w), (image_shape[0] + h - 1, image_shape[1] + w - 1))
    return job.rule is not None and _fft_is_exact(job.rule, fh * fw)


def _choose(image_shape, kernel, dtype, method) -> tuple[str, float]:
    """choose_method, also returning the chosen method's estimated seconds."""
    method = _method(method)
    job = _Job.of(image_shape, kernel, dtype)
    candidates = list(_REGISTRY)
    costs = {m: _REGISTRY[m].seconds(job) for m in candidates}
    best = min(candidates, key=lambda m: costs[m])
    if (
        costs["direct"] - costs[best] < _SMALL_SAVING
        or costs[best] > _PREFER_DIRECT * costs["direct"]
        or _sums_in_pillow_order(job)
    ):
        best = "direct"  # Pillow's order, exact for integer weights
    chosen = best if method == "auto" else method
    if chosen == "separable" and math.isinf(costs["separable"]):
        raise FilterError(
            f"kernel {kernel.name!r} is not separable (its matrix has rank > 1); "
            "use method 'direct' or 'fft'"
        )
    if costs[chosen] > MAX_SECONDS:
        h, w = kernel.shape
        advice = (
            f"use method {best!r} (about {costs[best]:.0f} s) or a smaller kernel"
            if costs[best] <= MAX_SECONDS
            else "use a smaller kernel or a smaller image"
        )
        raise FilterError(
            f"a {w}x{h} kernel on a {image_shape[1]}x{image_shape[0]} image by method "
            f"{chosen!r} would take about {costs[chosen] / 60:.0f} minutes; {advice}"
        )
    return chosen, costs[chosen]


def _sums_in_pillow_order(job: _Job) -> bool:
    """Whether only direct sums give Pillow's bytes for ``job``: a 3x3 or 5x5
    kernel on an integer image, without exact integer sums (whose rounding
    ties every method recomputes in Pillow's order)."""
    return job.dtype.kind in "iu" and job.kernel.shape in _PILLOW_SHAPES and job.rule is None


def _fft_is_exact(rule: _IntegerRule, tile_area: int) -> bool:
    """Whether float64 FFT sums round to the exact integer sums (error < 1/4)."""
    total = float(np.abs(rule.matrix).sum())
    eps = 2.0**-53
    return 16 * math.log2(max(tile_area, 2)) * eps * tile_area * rule.high * total < 0.25


# ---------------------------------------------------------------------------
# Strategies: one padded strip in, its sums out
# ---------------------------------------------------------------------------

#: Bytes of padded strip worked on at once. Smaller strips stay in L2 but
#: spend more time in Python (holding the GIL, which threads then wait
#: for); 2 MiB (85 rows of a 4000-pixel RGB image in int16) measured best.
_STRIP_BYTES = 1 << 21
#: Array operations of the two 1-D passes above which they become matrix products.
_GEMM_MIN_OPS = 16


class _Strategy:
    """One method, set up for one kernel, image layout and dtype."""

    work_dtype: np.dtype  # dtype of the padded strip
    sum_dtype: np.dtype  # dtype of the sums
    integer = False  # the sums are the exact integer S of the rule
    has_start = False  # the sums already include the start value
    # Strip heights are a multiple of this, counted from the image's top:
    # the sums of a tile (FFT) depend on which rows it holds, and matrix
    # products work in whole batches of rows. Any height will do when 1.
    row_step = 1

    def strip_rows(self, width: int) -> int:
        return max(8, _STRIP_BYTES // max(1, width * self.work_dtype.itemsize))

    def piece_cols(self, out_cols: int) -> int:
        """Output columns of one piece of work."""
        return out_cols

    def pitch(self, width: int) -> int:
        return width

    def buffer_rows(self, n: int, h: int) -> int:
        """Rows of the strip buffer for ``n`` output rows of a kernel ``h`` high."""
        return n + h - 1

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        """Sums of the strip: an iterable of (first row, n' x m or n' x cols x C sums).

        ``checkpoint()`` may be called between parts of long work; it
        raises when the work is to be abandoned.
        """
        raise NotImplementedError


class _DirectInteger(_Strategy):
    integer = True

    def __init__(self, kernel: Kernel, rule: _IntegerRule, channels: int) -> None:
        self.plan = _integer_direct(kernel, channels, _max_weight_sum(rule))
        self.work_dtype = self.sum_dtype = rule.dtype

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        out = scratch.get("sums", (n, m), self.sum_dtype)
        self.plan.run(src, out, scratch, checkpoint)
        return [(0, out)]


class _DirectFloat(_Strategy):
    has_start = True

    def __init__(self, weights: np.ndarray, start: float, channels: int, dtype) -> None:
        self.weights = weights
        self.start = start
        self.channels = channels
        self.work_dtype = self.sum_dtype = np.dtype(dtype)

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        out = scratch.get("sums", (n, m), self.sum_dtype)
        methods.pillow_direct(src, self.weights, self.start, out, self.channels, scratch,
                              checkpoint)  # fmt: skip
        return [(0, out)]


class _SeparableDirect(_Strategy):
    def __init__(self, column, row, channels: int, dtype, *, integer: bool) -> None:
        self.column, self.row = column, row
        self.channels = channels
        self.integer = integer
        self.work_dtype = self.sum_dtype = np.dtype(dtype)

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        out = scratch.get("sums", (n, m), self.sum_dtype)
        methods.separable_direct(src, self.column, self.row, out, self.channels, scratch)
        return [(0, out)]


class _SeparableGemm(_Strategy):
    def __init__(self, column, row, channels: int, out_cols: int, dtype) -> None:
        self.work_dtype = self.sum_dtype = np.dtype(dtype)
        self.plan = methods.SeparableGemm(column, row, channels, out_cols, dtype)
        self.row_step = self.plan.batch

    def strip_rows(self, width):
        return self.plan.rows

    def pitch(self, width):
        return self.plan.pitch(width)

    def buffer_rows(self, n, h):
        return self.plan.buffer_rows(n)

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        return self.plan.run(buffer, n, scratch)


class _Fourier(_Strategy):
    def __init__(self, weights, channels, dtype, *, exact, extent, sum_dtype) -> None:
        self.plan = methods.FourierTiles(weights, channels, dtype, exact=exact, extent=extent)
        self.integer = exact
        self.work_dtype = self.sum_dtype = np.dtype(sum_dtype)
        self.row_step = self.plan.rows

    def strip_rows(self, width):
        return self.plan.rows

    def piece_cols(self, out_cols):
        return self.plan.cols * self.plan.tiles_per_run

    def compute(self, src, buffer, n, m, scratch, checkpoint):
        cols = m // self.plan.channels
        return [(0, self.plan.run(src, n, cols, self.sum_dtype, scratch, checkpoint))]


def _fft_dtype(dtype: np.dtype) -> np.dtype:
    """FFT precision: float32 keeps 8-bit and float32 images within the contract;
    16- and 32-bit integers have too many significant bits for it."""
    if dtype in (np.dtype(np.uint8), np.dtype(np.float32)):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


# ---------------------------------------------------------------------------
# Running the strips
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Which image rows and columns make up the padded image, and its output size."""

    rows: np.ndarray  # source row of each padded row; -1 means cval
    cols: np.ndarray  # source column of each padded column; -1 means cval
    left: int  # padded columns before the image's first column
    out_rows: int
    out_cols: int
    channels: int
    pads: tuple  # (slice of padded columns, source columns or None for cval)

    @property
    def width(self) -> int:
        """Elements in one padded row."""
        return len(self.cols) * self.channels


def _layout(shape: tuple[int, ...], kernel: Kernel, mode: BorderMode) -> _Layout:
    rows, cols = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    h, w = kernel.shape
    ay, ax = kernel.anchor
    if mode in (BorderMode.VALID, BorderMode.KEEP):
        row_index, col_index, left = np.arange(rows), np.arange(cols), 0
    else:
        row_index = border_index(rows, ay, h - 1 - ay, mode.value)
        col_index = border_index(cols, ax, w - 1 - ax, mode.value)
        left = ax
    pads = []
    for pad in (slice(0, left), slice(left + cols, len(col_index))):
        index = col_index[pad]
        if index.size:
            pads.append((pad, None if index[0] < 0 else index))
    return _Layout(row_index, col_index, left, len(row_index) - h + 1,
                   len(col_index) - w + 1, channels, tuple(pads))  # fmt: skip


def _filter(
    array: np.ndarray,
    kernel: Kernel,
    mode: BorderMode,
    cval: float,
    method: str,
    threads: int | None,
    progress: Callable[[int, int], object] | None,
    *,
    raw: bool,
    absolute: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Shared body of :func:`correlate` (``raw``) and :func:`filter_array`,
    into ``out`` when given (which may be ``array``: see :func:`filter_array`)."""
    method = _method(method)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise FilterError(f"threads must be a whole number of at least 1, got {threads!r}")
    cval = _fill_value(cval)
    dtype = array.dtype
    work = accumulator_dtype(dtype)
    out_dtype = work if raw else dtype
    integer_output = out_dtype.kind in "iu"
    if raw:
        start = 0.0
    elif integer_output and not absolute:
        # Pillow: offset is a C float, and `offset += 0.5` rounds back to float.
        start = float(np.float32(np.float64(np.float32(kernel.offset)) + 0.5))
    else:
        start = float(work.type(kernel.offset))
    h, w = kernel.shape
    rows, cols = array.shape[:2]
    if mode is BorderMode.KEEP and (rows < h or cols < w):
        # As Pillow does: the image unchanged.
        unfiltered = _rows(array, slice(None), slice(None)).reshape(array.shape).astype(out_dtype)
        return unfiltered if out is None else _copy_into(out, unfiltered)
    layout = _layout(array.shape, kernel, mode)
    extra = array.shape[2:]
    if out is not None:
        _check_out(out, array.shape if mode is BorderMode.KEEP else (layout.out_rows, layout.out_cols) + extra,
                   out_dtype)  # fmt: skip
    chosen, seconds = _choose(array.shape, kernel, dtype, method)
    planned = chosen
    wide_fft = False
    if dtype.kind == "f" and chosen in ("fft", "separable"):
        # Matrix products and FFTs mix every value of a tile or column into
        # every sum: one NaN or infinity would spoil them all, and values
        # near float32's limit overflow an FFT's intermediate sums.
        if not np.isfinite(array).all():
            if method == "auto" and estimate_seconds("direct", array.shape, kernel,
                                                     dtype=dtype) <= MAX_SECONDS:  # fmt: skip
                chosen = "direct"
        elif float(np.abs(array).max(initial=0)) > 1e30:
            # Near float32's limit the float32 passes of `separable` overflow;
            # `auto` then takes direct sums, or float64 FFT tiles.
            if chosen == "separable" and method == "auto":
                affordable = estimate_seconds("direct", array.shape, kernel, dtype=dtype) <= MAX_SECONDS
                chosen = "direct" if affordable else "fft"
            wide_fft = chosen == "fft"
    if chosen != planned:
        seconds = estimate_seconds(chosen, array.shape, kernel, dtype=dtype)
    rule = None
    if not raw:
        uses_cval = mode is BorderMode.CONSTANT
        rule = _integer_rule(kernel, dtype, start=start, absolute=absolute,
                             cval=cval if uses_cval else None)  # fmt: skip
    strategy = _REGISTRY[chosen].strategy(_Job.of(array.shape, kernel, dtype), layout, rule, start, wide_fft)
    if not strategy.integer:
        rule = None

    workers = worker_count(threads, seconds, alone_below=_KERNEL_THREAD_SECONDS)
    pieces = _pieces(strategy, layout, seconds, workers)
    ay, ax = kernel.anchor
    image = array if _is_row_source(array) else _with_channel_axis(array)
    in_place = final = None
    if out is not None and not _is_row_source(array) and np.may_share_memory(out, array):
        if _same_view(out, array) and all(x0 == 0 and x1 == layout.out_cols for _, _, x0, x1 in pieces):
            in_place = _InPlaceRows(image, layout, pieces, h, top=ay if mode is BorderMode.KEEP else 0)
        else:  # computed beside it, then copied in
            final, out = out, None
    if out is None:
        out = np.empty(array.shape if mode is BorderMode.KEEP else (layout.out_rows, layout.out_cols) + extra,
                       out_dtype)  # fmt: skip
    # Border keep: each piece also copies the input's pixels beside its
    # rows (in place, they are there already). On a new array that is the
    # first touch of every row, so its page faults are shared by the threads.
    frame = mode is BorderMode.KEEP and in_place is None
    if mode is BorderMode.KEEP:
        dest = out[ay : ay + layout.out_rows, ax : ax + layout.out_cols]
    else:
        dest = out
    dest = _with_channel_axis(dest)
    weights32 = kernel.weights_float32
    channels = layout.channels
    local = threading.local()

    def filter_piece(piece: tuple[int, int, int, int], checkpoint: Callable[[], None]) -> None:
        # Float images near float32's limit overflow to infinity, as IEEE
        # arithmetic says; NumPy's warning about it is noise. Set per piece:
        # pool threads do not inherit the caller's error state.
        with np.errstate(over="ignore", invalid="ignore"):
            scratch = getattr(local, "scratch", None)
            if scratch is None:
                scratch = local.scratch = methods.Scratch()
            y0, y1, x0, x1 = piece
            n = y1 - y0
            width = (x1 - x0 + w - 1) * channels  # elements of one padded row
            buffer = scratch.get("strip", (strategy.buffer_rows(n, h), strategy.pitch(width)),
                                 strategy.work_dtype, zeros=True)  # fmt: skip
            src = buffer[: n + h - 1, :width]
            _gather(image, layout, layout.rows[y0 : y1 + h - 1], x0, src, cval)
            if in_place is not None:
                in_place.restore(y0, y1, x0, src, cval)
            m = (x1 - x0) * channels
            if frame:
                _copy_frame(out, array, (ay, ax), (layout.out_rows, layout.out_cols), piece)
            for first, sums in strategy.compute(src, buffer, n, m, scratch, checkpoint):
                target = dest[y0 + first : y0 + first + sums.shape[0], x0:x1]
                if rule is not None:
                    _finish_integer(sums, rule, buffer[first:], channels, weights32, target,
                                    scratch)  # fmt: skip
                else:
                    _finish_float(sums, target, start=0.0 if strategy.has_start else start,
                                  absolute=absolute, integer_output=integer_output)  # fmt: skip

    run_pieces(filter_piece, pieces, min(workers, len(pieces)), progress)
    if final is not None:
        np.copyto(final, out)
        return final
    return out


def _with_channel_axis(array: np.ndarray) -> np.ndarray:
    """An H x W x C view of an H x W or H x W x C array (never a copy)."""
    return array[:, :, np.newaxis] if array.ndim == 2 else array


class _InPlaceRows:
    """Filtering an image into itself: copies of the rows that one piece of
    work reads and another overwrites, taken before any is written.

    Every piece gathers its padded rows before it writes its own output
    rows; what it gathered from rows another piece owns (the kernel's reach
    beyond its edges, and for ``wrap`` the far edge) may already be
    filtered, so :meth:`restore` puts the saved copies back in its strip.
    """

    def __init__(self, image: np.ndarray, layout: _Layout, pieces: list, h: int, *, top: int) -> None:
        """``pieces`` as :func:`_pieces` gives them, whole rows each, for a
        kernel ``h`` rows high; output row y is image row ``y + top``."""
        owner = np.full(image.shape[0], -1)
        for number, (y0, y1, _, _) in enumerate(pieces):
            owner[y0 + top : y1 + top] = number
        foreign = np.zeros(image.shape[0], bool)
        for number, (y0, y1, _, _) in enumerate(pieces):
            read = layout.rows[y0 : y1 + h - 1]
            read = read[read >= 0]
            foreign[read[(owner[read] >= 0) & (owner[read] != number)]] = True
        self.layout, self.h = layout, h
        self.is_saved = foreign
        self.saved = np.flatnonzero(foreign)
        self.copies = image[self.saved].copy()

    def restore(self, y0: int, y1: int, first: int, src: np.ndarray, cval) -> None:
        """Put the saved rows back into the strip ``src`` of output rows ``y0:y1``."""
        rows = self.layout.rows[y0 : y1 + self.h - 1]
        positions = np.flatnonzero(self.is_saved[rows] & (rows >= 0))
        if not positions.size:
            return
        for run in np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1):
            a, b = int(run[0]), int(run[-1]) + 1
            _gather(self, self.layout, rows[a:b], first, src[a:b], cval)

    def rows(self, index: np.ndarray | slice, columns: slice) -> np.ndarray:
        """Saved rows by their image row numbers (the engine's RowSource)."""
        if isinstance(index, slice):
            index = np.arange(index.start, index.stop)
        # Rows not saved are asked for only as stand-ins for cval rows, which the gather overwrites.
        at = np.minimum(np.searchsorted(self.saved, index), len(self.saved) - 1)
        return self.copies[at, columns]


#: Estimated single-core seconds of one strip at most: some 0.1 s of work
#: between two counts of progress. Short strips also stay in cache.
_PIECE_SECONDS = 0.08
#: Output elements of one strip at least. Array operations on fewer spend
#: their time handing the GIL from thread to thread: strips of one row of
#: a 4000-pixel RGB image took five times as long on two threads. Strips
#: of slow kernels therefore take longer than the above, and their
#: methods check for cancellation between kernel rows.
_MIN_STRIP_ELEMENTS = 100_000
#: Seconds between calls of a progress callback, at least.
_PROGRESS_SECONDS = 0.1
#: Seconds the calling thread waits for workers before looking again.
_WAIT_SECONDS = 0.05


def _pieces(
    strategy: _Strategy, layout: _Layout, seconds: float, workers: int
) -> list[tuple[int, int, int, int]]:
    """The pieces of work, as output rows and columns ``(y0, y1, x0, x1)``, in order."""
    out_rows, out_cols = layout.out_rows, layout.out_cols
    rows = strategy.strip_rows(layout.width)
    if seconds > 0:
        fewest = -(-_MIN_STRIP_ELEMENTS // (out_cols * layout.channels))
        rows = min(rows, max(fewest, int(_PIECE_SECONDS * out_rows / seconds)))
    if workers > 1:  # at least two strips each, so that one slow thread cannot hold all back
        rows = min(rows, -(-out_rows // (2 * workers)))
    step = strategy.row_step
    rows = max(step, rows // step * step)
    cols = strategy.piece_cols(out_cols)
    return [(y0, min(out_rows, y0 + rows), x0, min(out_cols, x0 + cols))
            for y0 in range(0, out_rows, rows) for x0 in range(0, out_cols, cols)]  # fmt: skip


class _Stopped(Exception):
    """Raised in a worker, at a checkpoint, once the call has been abandoned."""


def run_pieces(filter_piece, pieces: list, workers: int, progress=None) -> None:
    """Call ``filter_piece(piece, checkpoint)`` for every piece, on ``workers`` threads.

    With one worker the calling thread does the work, and a
    KeyboardInterrupt arrives between two NumPy calls of a piece. With
    more, the calling thread waits in short, interruptible waits; on any
    exception there (a KeyboardInterrupt, a worker's error, the progress
    callback's) it cancels the pieces not started, tells the running ones
    to stop at their next checkpoint, and re-raises at once.
    """
    report = _ProgressReport(progress, len(pieces))
    if workers == 1:
        for done, piece in enumerate(pieces, 1):
            filter_piece(piece, methods.carry_on)
            report(done)
        return
    stop = threading.Event()

    def checkpoint() -> None:
        if stop.is_set():
            raise _Stopped

    def work(piece) -> None:
        if not stop.is_set():
            filter_piece(piece, checkpoint)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = [pool.submit(work, piece) for piece in pieces]
        while pending:
            finished, pending = wait(pending, timeout=_WAIT_SECONDS, return_when=FIRST_EXCEPTION)
            for future in finished:
                future.result()  # a worker's exception is raised here
            report(len(pieces) - len(pending))
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


class _ProgressReport:
    """Passes ``(done, total)`` on to a progress callback, at most every
    :data:`_PROGRESS_SECONDS`, and always when all is done."""

    def __init__(self, progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.reported = 0
        self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        if self.progress is None or done <= self.reported:
            return
        now = time.monotonic()
        if done == self.total or now - self.last >= _PROGRESS_SECONDS:
            self.progress(done, self.total)
            self.reported, self.last = done, now


def worker_count(threads: int | None, seconds: float, *, alone_below: float | None = None) -> int:
    """Threads to use: as asked (None: one per CPU), but one for work the
    cost model puts under ``alone_below`` seconds (default
    :data:`_THREAD_SECONDS`): starting threads and handing the GIL between
    them costs a few milliseconds."""
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on every platform
            threads = os.cpu_count() or 1
    return 1 if seconds < (_THREAD_SECONDS if alone_below is None else alone_below) else threads


def _copy_frame(out, array, anchor, interior, piece) -> None:
    """Border ``keep``: the input's pixels outside the interior, next to
    one piece's output rows (the rows above and below with the first and
    last pieces at the left edge). ``interior`` is (rows, columns)."""
    (ay, ax), (out_rows, out_cols), (y0, y1, x0, x1) = anchor, interior, piece
    every, rows = slice(None), slice(ay + y0, ay + y1)
    parts = []
    if x0 == 0:
        parts.append((rows, slice(None, ax)))
        if y0 == 0:
            parts.append((slice(None, ay), every))
        if y1 == out_rows:
            parts.append((slice(ay + out_rows, None), every))
    if x1 == out_cols:
        parts.append((rows, slice(ax + out_cols, None)))
    for part_rows, part_cols in parts:
        part = out[part_rows, part_cols]
        part[...] = _rows(array, part_rows, part_cols).reshape(part.shape)


def _is_row_source(array) -> bool:
    """Whether ``array`` is a :class:`RowSource` (checked by its ``rows``
    method: ``isinstance`` against a Protocol costs far more per call)."""
    return not isinstance(array, np.ndarray) and callable(getattr(array, "rows", None))


def _rows(image, rows: np.ndarray | slice, cols: slice) -> np.ndarray:
    """``image[rows, cols]`` of an array (a view for slices), or those rows of a
    :class:`RowSource` as an array (rows x columns x channels)."""
    return image[rows, cols] if isinstance(image, np.ndarray) else image.rows(rows, cols)


#: Runs of consecutive rows in a strip above which _gather copies rows through an index instead.
_MAX_RUNS = 16


def _gather(
    image: np.ndarray, layout: _Layout, rows: np.ndarray, first: int, src: np.ndarray, cval
) -> None:
    """Fill ``src`` with the padded image's rows ``rows``, from padded column
    ``first`` on, as many columns as ``src`` holds (cast to src's dtype)."""
    count = len(rows)
    top, bottom = int(rows[0]), int(rows[-1])
    # Padding only ever steps back or stays at the edge, and cval rows lie
    # at the ends: so these rows are consecutive exactly when this holds.
    plain = top >= 0 and bottom >= 0 and bottom - top == count - 1
    if not plain and count > 1:
        # Padded rows at the image's top or bottom: each run of consecutive
        # rows is copied from a view, rather than all of them through an index.
        breaks = np.flatnonzero((np.diff(rows) != 1) | (rows[1:] < 0) | (rows[:-1] < 0)) + 1
        if 0 < len(breaks) < _MAX_RUNS:
            for a, b in zip([0, *breaks], [*breaks, count]):
                _gather(image, layout, rows[a:b], first, src[a:b], cval)
            return
    span = src.shape[1] // layout.channels
    target = src.reshape(count, span, layout.channels)
    end = first + span
    if plain:
        block, skipped = _rows(image, slice(top, bottom + 1), slice(None)), 0
    else:  # a copy of the rows, so only of the image columns these padded columns use
        used = layout.cols[first:end]
        used = used[used >= 0]
        skipped = int(used.min()) if used.size else 0
        block = _rows(image, np.maximum(rows, 0), slice(skipped, int(used.max(initial=0)) + 1))
    left = layout.left + skipped  # padded column of block's first column
    lo, hi = max(first, left), min(end, left + block.shape[1])  # the image's own columns
    if lo < hi:
        np.copyto(target[:, lo - first : hi - first], block[:, lo - left : hi - left],
                  casting="unsafe")  # fmt: skip
    for pad, index in layout.pads:
        lo, hi = max(first, pad.start), min(end, pad.stop)
        if lo >= hi:
            continue
        part = target[:, lo - first : hi - first]
        if index is None:
            part[...] = cval
        else:
            source = index[lo - pad.start : hi - pad.start] - skipped
            np.copyto(part, block[:, source], casting="unsafe")
    if not plain:
        fill = rows < 0
        if fill.any():
            target[fill] = cval


def _finish_float(sums, target, *, start, absolute, integer_output) -> None:
    """Float sums -> target (n x cols x C): add start, abs, round by the policy."""
    values = sums.reshape(target.shape)
    if start:
        np.add(values, values.dtype.type(start), out=values)
    if absolute:
        np.abs(values, out=values)
        if integer_output:
            np.add(values, values.dtype.type(0.5), out=values)
    _round_into(values, target)


def _finish_integer(sums, rule, buffer, channels, weights32, target, scratch) -> None:
    """Exact sums S -> Pillow's result, by the integer rule (see _IntegerRule)."""
    sums = sums.reshape(target.shape)
    kind = sums.dtype.type
    if rule.multiplier != 1:
        np.multiply(sums, kind(rule.multiplier), out=sums)
    if rule.constant:
        np.add(sums, kind(rule.constant), out=sums)
    if rule.absolute:
        np.abs(sums, out=sums)
        np.add(sums, kind(rule.denominator // 2), out=sums)
    q = rule.denominator
    # Each step writes into target (8 or 16 bits) as it casts: one pass
    # over the strip fewer than a separate copy.
    direct = not rule.ties and not rule.clip  # the quotient is the result
    if not rule.ties and q & (q - 1) == 0:
        quotient = np.right_shift(sums, kind(q.bit_length() - 1), out=target if direct else sums,
                                  casting="unsafe")  # fmt: skip
    else:
        quotient = target if direct else scratch.get("quotient", target.shape, sums.dtype)
        np.floor_divide(sums, kind(q), out=quotient, casting="unsafe")
    if direct:
        return
    if rule.ties:
        check = scratch.get("check", target.shape, sums.dtype)
        np.multiply(quotient, kind(q), out=check)
        mask = scratch.get("mask", target.shape, np.bool_)
        np.equal(check, sums, out=mask)
        positions = np.flatnonzero(mask)
        if positions.size:
            values = quotient.reshape(-1)[positions]
            positions = positions[(values >= 1) & (values <= rule.high)]
        if positions.size:
            m = target.shape[1] * target.shape[2]
            base = positions // m * buffer.shape[1] + positions % m
            exact = methods.pillow_at(buffer.reshape(-1), base, buffer.shape[1], channels,
                                      weights32, rule.start)  # fmt: skip
            if rule.absolute:
                exact = np.abs(exact) + np.float32(0.5)
            rounded = np.clip(exact, 0, rule.high).astype(sums.dtype)
            quotient.reshape(-1)[positions] = rounded
    if rule.clip:
        np.clip(quotient, 0, rule.high, out=target, casting="unsafe")
    else:
        np.copyto(target, quotient, casting="unsafe")
