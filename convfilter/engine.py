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
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .kernels import Kernel

__all__ = [
    "BorderMode",
    "BORDER_MODES",
    "METHODS",
    "FilterError",
    "correlate",
    "filter_array",
    "border_index",
    "accumulator_dtype",
    "round_to_dtype",
    "SUPPORTED_DTYPES",
]


class BorderMode(str, Enum):
    """How pixels beyond the image edge are made up.

    ====================  ====================================  ==========
    name                  padding of ``a b c d``                 SciPy name
    ====================  ====================================  ==========
    ``nearest``           ``a a a | a b c d | d d d``            nearest
    ``reflect``           ``c b a | a b c d | d c b``            reflect
    ``mirror``            ``d c b | a b c d | c b a``            mirror
    ``wrap``              ``b c d | a b c d | a b c``            grid-wrap
    ``constant``          ``k k k | a b c d | k k k`` (cval=k)   constant
    ``keep``              edge pixels copied unchanged (Pillow)  --
    ``valid``             no padding; output shrinks             --
    ====================  ====================================  ==========
    """

    NEAREST = "nearest"
    REFLECT = "reflect"
    MIRROR = "mirror"
    WRAP = "wrap"
    CONSTANT = "constant"
    KEEP = "keep"
    VALID = "valid"


#: Border mode names, in the order the CLI lists them.
BORDER_MODES: tuple[str, ...] = tuple(m.value for m in BorderMode)

#: Ways of computing a correlation; ``auto`` picks one by a cost model.
METHODS: tuple[str, ...] = ("auto", "direct", "separable", "fft")

#: Array dtypes the engine filters (the Pillow modes L/RGB..., I;16, I, F).
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int32, np.float32, np.float64)

_INT_LIMITS = {
    np.dtype(np.uint8): (0.0, 255.0),
    np.dtype(np.uint16): (0.0, 65535.0),
    np.dtype(np.int32): (0.0, 2147483647.0),  # Pillow clamps mode I at 0, as here
}

#: Rows of output computed together; keeps the float32 working set small.
_STRIP_BYTES = 1 << 20


class FilterError(ValueError):
    """An array, kernel or border combination that cannot be filtered."""


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype sums are computed in: float64 for float64 input, else float32.

    float32 for every integer type is Pillow's choice and is required for
    byte-identical results.

    >>> accumulator_dtype(np.dtype(np.uint8))
    dtype('float32')
    """
    dtype = np.dtype(dtype)
    if dtype not in [np.dtype(t) for t in SUPPORTED_DTYPES]:
        names = ", ".join(np.dtype(t).name for t in SUPPORTED_DTYPES)
        raise FilterError(f"cannot filter {dtype.name} arrays; supported: {names}")
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def round_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert accumulated sums (already holding the +0.5) to ``dtype``.

    The single place where convfilter's dtype policy lives:

    * uint8, uint16, int32: clamp to [0, 255], [0, 65535], [0, 2**31 - 1]
      and truncate, i.e. Pillow's ``trunc(clamp(v + 0.5))``; the caller has
      added the 0.5 (Pillow adds it to the offset before summing).
    * float32, float64: returned as they are, never clamped or rescaled.

    >>> round_to_dtype(np.array([-3.0, 0.49, 1.5, 300.0], np.float32), np.uint8).tolist()
    [0, 0, 1, 255]
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    low, high = _INT_LIMITS[dtype]
    if dtype == np.int32:
        # float32(2**31 - 1) is 2**31: like Pillow, anything at or above it
        # saturates; below it every float32 converts exactly.
        saturated = values >= np.float32(2**31)
        clipped = np.clip(values, 0.0, np.nextafter(np.float32(2**31), np.float32(0)))
        out = clipped.astype(np.int32)
        out[saturated] = np.int32(2**31 - 1)
        return out
    return np.clip(values, low, high, out=values).astype(dtype)


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
    kernel: Kernel,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Cross-correlate every channel of ``array`` with ``kernel.weights``.

    Parameters
    ----------
    array : ndarray
        H x W or H x W x C; uint8, uint16, int32, float32 or float64.
    kernel : Kernel
        Applied as written (see :mod:`convfilter.kernels` for the anchor).
    border : str or BorderMode
        How the edge is extended; see :class:`BorderMode`. With ``keep`` the
        pixels the kernel cannot fully cover hold the input's values.
    cval : float
        Fill value for ``constant``.
    method : str
        One of :data:`METHODS`; ``auto`` chooses the fastest that keeps the
        accuracy contract.
    threads : int or None
        Worker threads; None means one per CPU.

    Returns
    -------
    ndarray
        The sums without offset or rounding: float64 for float64 input,
        float32 otherwise. Same shape as ``array`` except with ``valid``.

    Raises
    ------
    FilterError
        Unsupported dtype or shape, unknown border, or ``valid`` with an
        image smaller than the kernel.

    Examples
    --------
    >>> a = np.arange(25.0).reshape(5, 5)
    >>> correlate(a, Kernel(np.arange(9.0).reshape(3, 3)), border="valid").tolist()
    [[312.0, 348.0, 384.0], [492.0, 528.0, 564.0], [672.0, 708.0, 744.0]]
    """
    array = np.asarray(array)
    result = _run(array, kernel, border, cval, start=0.0, method=method, threads=threads)
    if border == BorderMode.KEEP:
        framed = array.astype(result.dtype)
        return _paste_interior(framed, result, kernel, result.dtype)
    return result


def filter_array(
    array: np.ndarray,
    kernel: Kernel,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    absolute: bool = False,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Filter ``array`` with ``kernel``: same shape (except ``valid``) and dtype.

    Integer results are ``trunc(clamp(sum + offset + 0.5))``, summed in
    Pillow's order, so with ``border="keep"`` a Pillow preset gives exactly
    ``Image.filter(ImageFilter.X)``. Float results are ``sum + offset``,
    unclamped. ``absolute=True`` takes ``abs(sum + offset)`` before rounding,
    which shows edges of both signs.

    Examples
    --------
    An impulse returns the kernel rotated 180 degrees (correlation):

    >>> impulse = np.zeros((3, 3), np.uint8); impulse[1, 1] = 10
    >>> filter_array(impulse, Kernel([[1, 2, 0], [0, 0, 0], [0, 0, 0]]), border="constant").tolist()
    [[0, 0, 0], [0, 0, 0], [0, 20, 10]]
    """
    array = np.asarray(array)
    dtype = array.dtype
    acc_dtype = accumulator_dtype(dtype)
    integer_output = dtype.kind in "iu"
    if integer_output and not absolute:
        # Pillow: offset is a C float, and `offset += 0.5` rounds back to float.
        start = float(np.float32(np.float64(np.float32(kernel.offset)) + 0.5))
    else:
        start = float(acc_dtype.type(kernel.offset))
    result = _run(array, kernel, border, cval, start=start, method=method, threads=threads)
    if absolute:
        np.abs(result, out=result)
        if integer_output:
            result += np.float32(0.5)
    if border == BorderMode.KEEP:
        return _paste_interior(array, result, kernel, dtype)
    return round_to_dtype(result, dtype)


def _check(array: np.ndarray, kernel: Kernel, border: str | BorderMode) -> BorderMode:
    if not isinstance(kernel, Kernel):
        raise FilterError(f"kernel must be a Kernel, got {type(kernel).__name__}")
    try:
        mode = BorderMode(border)
    except ValueError:
        raise FilterError(
            f"unknown border mode {border!r}; choose from {', '.join(BORDER_MODES)}"
        ) from None
    if array.ndim not in (2, 3):
        raise FilterError(f"expected an H x W or H x W x C array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1 or (array.ndim == 3 and array.shape[2] < 1):
        raise FilterError(f"cannot filter an empty array of shape {array.shape}")
    accumulator_dtype(array.dtype)
    h, w = kernel.shape
    if mode is BorderMode.VALID and (array.shape[0] < h or array.shape[1] < w):
        raise FilterError(
            f"border 'valid' needs an image at least as large as the kernel: "
            f"image {array.shape[1]}x{array.shape[0]}, kernel {w}x{h} (width x height)"
        )
    return mode


def _run(
    array: np.ndarray,
    kernel: Kernel,
    border: str | BorderMode,
    cval: float,
    *,
    start: float,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    array = np.asarray(array)
    mode = _check(array, kernel, border)
    if method not in METHODS:
        raise FilterError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if threads is not None and threads < 1:
        raise FilterError(f"threads must be at least 1, got {threads}")
    acc_dtype = accumulator_dtype(array.dtype)
    weights = kernel.weights_float32 if acc_dtype == np.float32 else kernel.weights
    h, w = kernel.shape
    ay, ax = kernel.anchor
    rows, cols = array.shape[:2]
    if mode in (BorderMode.VALID, BorderMode.KEEP):
        if mode is BorderMode.KEEP and (rows < h or cols < w):
            # Pillow returns an image smaller than the kernel unchanged.
            return array.astype(acc_dtype)
        row_index = np.arange(rows)
        col_index = np.arange(cols)
    else:
        row_index = border_index(rows, ay, h - 1 - ay, mode.value)
        col_index = border_index(cols, ax, w - 1 - ax, mode.value)
    out_rows = len(row_index) - h + 1
    out_cols = len(col_index) - w + 1
    out = np.empty((out_rows, out_cols) + array.shape[2:], dtype=acc_dtype)
    channels = array.shape[2] if array.ndim == 3 else 1
    strip = max(1, _STRIP_BYTES // max(1, len(col_index) * channels * acc_dtype.itemsize))
    col_fill = col_index < 0
    safe_cols = np.where(col_fill, 0, col_index)
    for y0 in range(0, out_rows, strip):
        y1 = min(out_rows, y0 + strip)
        src_rows = row_index[y0 : y1 + h - 1]
        source = _gather(array, src_rows, safe_cols, col_fill, acc_dtype, cval)
        _accumulate(source, weights, start, out[y0:y1])
    return out


def _gather(
    array: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    col_fill: np.ndarray,
    dtype: np.dtype,
    cval: float,
) -> np.ndarray:
    """The padded strip of the image for ``rows`` x ``cols``, as ``dtype``."""
    row_fill = rows < 0
    block = array[np.where(row_fill, 0, rows)][:, cols].astype(dtype)
    if row_fill.any():
        block[row_fill] = cval
    if col_fill.any():
        block[:, col_fill] = cval
    return block


def _accumulate(source: np.ndarray, weights: np.ndarray, start: float, out: np.ndarray) -> None:
    """out = start + sum of kernel rows (bottom row first), each summed left to right."""
    h, w = weights.shape
    n, m = out.shape[:2]
    out.fill(start)
    row_sum = np.empty_like(out)
    term = np.empty_like(out)
    for r in range(h - 1, -1, -1):
        first = True
        for c in range(w):
            weight = weights[r, c]
            if weight == 0:
                continue  # adding an exact zero changes no sum
            window = source[r : r + n, c : c + m]
            if first:
                np.multiply(window, weight, out=row_sum)
                first = False
            else:
                np.multiply(window, weight, out=term)
                np.add(row_sum, term, out=row_sum)
        if not first:
            np.add(out, row_sum, out=out)


def _paste_interior(
    array: np.ndarray, result: np.ndarray, kernel: Kernel, dtype: np.dtype
) -> np.ndarray:
    """Border ``keep``: the valid part rounded, framed by the input's own pixels."""
    h, w = kernel.shape
    rows, cols = array.shape[:2]
    if rows < h or cols < w:
        return array.copy()
    ay, ax = kernel.anchor
    out = array.copy()
    out[ay : ay + rows - h + 1, ax : ax + cols - w + 1] = round_to_dtype(result, dtype)
    return out
