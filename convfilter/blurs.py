"""Box blur, Gaussian blur and unsharp mask: Pillow's, on NumPy arrays.

On uint8 data :func:`box_blur`, :func:`gaussian_blur` and
:func:`unsharp_mask` give the bytes of Pillow's ``ImageFilter.BoxBlur``,
``GaussianBlur`` and ``UnsharpMask``; they also take other dtypes and
border modes, which Pillow does not.

A box pass of radius r averages, along one axis, the 2*floor(r) + 1 samples
centred on each sample, and adds the two at distance floor(r) + 1 at the
fraction r - floor(r) of a whole weight. A blur makes all its horizontal
passes, then all its vertical ones: one each way for a box blur, three of
radius :func:`gaussian_box_radius` for a Gaussian. Each pass pads its own
input by the border mode, as Pillow clamps in every pass.

Dtypes (the results keep the input's dtype):

* uint8: Pillow's fixed-point arithmetic, weights in units of 2**-24 taken
  from the radius in float32 (see :func:`box_reach`); every pass is
  rounded to uint8.
* uint16, int32: the exact weights 1/(2r+1) and (r - floor r)/(2r+1),
  computed in float64; every pass is rounded half up (a weighted mean
  never leaves the type's range, so nothing needs clipping).
* float32, float64: the same weights in float64, never rounded or
  clipped; float32 is converted back once, at the end.

Borders: ``keep`` is Pillow's own rule, clamping to the edge, so the same
as ``nearest``. ``constant`` pads every pass with ``cval``, rounded half
up and clipped to the type for integer arrays. ``valid`` computes only
the samples no padding reaches: each pass crops, on each side, the larger
of :func:`box_reach` and ceil(r), so the shape does not depend on the dtype.

Unsharp mask: ``diff = input - blurred``; where ``abs(diff) > threshold``
the output is ``input + diff * percent / 100``, else the input. On uint8
this is Pillow's C int arithmetic (the product wraps at 32 bits, the
division truncates towards zero, the sum is clipped to 0..255); other
integer types truncate the same way and clip to their range; float types
neither truncate nor clip. ``threshold`` is in sample units.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .engine import SUPPORTED_DTYPES, FilterError, border_index, run_pieces, worker_count
from .options import BorderMode

__all__ = ["box_blur", "box_reach", "gaussian_blur", "gaussian_box_radius", "unsharp_mask"]

#: Pillow's fixed-point unit: a weight of 1.0 is 2**24.
_ONE = 1 << 24

#: Radii at or above this are refused: Pillow converts the whole part to a C int.
_MAX_RADIUS = 2.0**30

#: Samples in one strip of work, small enough for its temporaries to stay in cache.
_STRIP_SAMPLES = 1 << 16

#: A vertical pass's strips have at least this many times the rows it reads beyond them.
_HALO_TIMES = 4

#: What Python spends on one row of a running sum, in samples' worth of additions.
_ROW_OVERHEAD = 4000

#: The shortest row for which an 8-bit vertical pass keeps running sums.
_RUNNING_ROW = 256

#: An 8-bit vertical pass widens rows into a buffer this many times the rows one chunk reads.
_WIDE_TIMES = 4

#: Rough cost of one pass over one sample, for choosing the number of threads:
#: in Pillow's 8-bit arithmetic, and in float64.
_PILLOW_PASS_SECONDS = 2.5e-9
_EXACT_PASS_SECONDS = 8e-9

#: The range of a C int: Pillow's type for the unsharp mask's percent and threshold.
_C_INT = (-(2**31), 2**31 - 1)


def box_blur(array, radius, *, border="nearest", cval=0.0, threads=None, progress=None) -> np.ndarray:
    """Average each sample with its neighbours within ``radius``: Pillow's ``BoxBlur``.

    Parameters
    ----------
    array : H x W or H x W x C array of uint8, uint16, int32, float32 or float64
        Channels are blurred independently (alpha too, as Pillow does).
    radius : number or (x, y) pair
        Finite and >= 0; x is horizontal. 0 on an axis leaves that axis alone.
    border, cval
        How the edges are padded (a :class:`~convfilter.options.BorderMode`
        or its name) and the fill of ``constant``.
    threads, progress
        Threads to use (None: one per CPU) and a ``progress(done, total)`` callback.

    Returns
    -------
    numpy.ndarray
        The input's dtype and shape; ``valid`` crops the samples the border reaches.

    Raises
    ------
    FilterError
        For another dtype or shape, an unknown border, a bad radius, or a
        ``valid`` crop that leaves nothing.

    Examples
    --------
    >>> box_blur(np.array([[0, 0, 90, 0, 0]], np.uint8), (1, 0)).tolist()
    [[0, 30, 30, 30, 0]]
    >>> box_blur(np.array([[0, 0, 90, 0, 0]], np.float64), (0.5, 0)).tolist()
    [[0.0, 22.5, 45.0, 22.5, 0.0]]
    """
    x, y = _radii(radius)
    return _blur(array, [x], [y], border, cval, threads, progress, None)


def gaussian_blur(array, radius, *, border="nearest", cval=0.0, threads=None, progress=None) -> np.ndarray:
    """Pillow's ``GaussianBlur``: three box passes each way approximating a Gaussian
    of standard deviation ``radius`` (a number or an (x, y) pair).

    Parameters, result and errors as :func:`box_blur`; each pass has the box
    radius :func:`gaussian_box_radius` gives.

    >>> gaussian_blur(np.array([[0, 0, 0, 255, 0, 0, 0]], np.uint8), (1, 0)).tolist()
    [[1, 14, 60, 103, 60, 14, 1]]
    """
    x, y = (gaussian_box_radius(r) for r in _radii(radius))
    return _blur(array, [x] * 3, [y] * 3, border, cval, threads, progress, None)


def unsharp_mask(
    array, radius=2.0, percent=150, threshold=3, *, border="nearest", cval=0.0, threads=None, progress=None
) -> np.ndarray:
    """Pillow's ``UnsharpMask``: push each sample away from its Gaussian blur.

    Where ``abs(input - blurred) > threshold`` the result is ``input +
    (input - blurred) * percent / 100``, elsewhere the input (the module
    docstring has the rounding for each dtype). ``radius`` is the Gaussian's,
    as in :func:`gaussian_blur`; ``percent`` and ``threshold`` are C ints,
    as in Pillow. Other parameters, result and errors as :func:`box_blur`;
    a bad ``percent`` or ``threshold`` is a FilterError too.

    >>> unsharp_mask(np.array([[10, 10, 10, 40, 40, 40]], np.uint8), (1, 0)).tolist()
    [[10, 10, 0, 53, 40, 40]]
    """
    percent = _c_int(percent, "percent")
    threshold = _c_int(threshold, "threshold")
    x, y = (gaussian_box_radius(r) for r in _radii(radius))

    def sharpen(original: np.ndarray, blurred: np.ndarray) -> None:
        _sharpen(original, blurred, percent, threshold)

    return _blur(array, [x] * 3, [y] * 3, border, cval, threads, progress, sharpen)


def box_reach(radius: float) -> int:
    """How far one 8-bit box pass of ``radius`` reaches, as Pillow weighs it: the
    distance of its farthest tap with a non-zero weight.

    Pillow's weights are ``ww = int(2**24 / (2r + 1))`` (in float32) for the
    2*floor(r) + 1 inner taps and ``(2**24 - (2*floor(r) + 1) * ww) // 2``
    for the two at floor(r) + 1. That second weight is not always zero for
    a whole radius: radius 5 gives it 2.

    >>> [box_reach(r) for r in (0, 0.5, 1, 2, 2.5, 5)]
    [0, 1, 1, 2, 3, 6]
    """
    box = _PillowBox.of(_radius(radius))
    return box.half + 1 if box.outer else box.half


def gaussian_box_radius(radius: float) -> float:
    """The radius of each of the three box passes Pillow's ``GaussianBlur`` makes
    for a Gaussian of standard deviation ``radius``.

    Pillow's extended-box formula (Gwosdek et al., 2011), in its float32
    arithmetic, with the square root and the floor in double precision.

    >>> gaussian_box_radius(2)
    1.375
    >>> gaussian_box_radius(0)
    0.0
    """
    sigma = np.float32(_radius(radius))
    one, two, three, six = (np.float32(k) for k in (1, 2, 3, 6))
    variance = sigma * sigma / three
    box_length = np.float32(math.sqrt(12.0 * float(variance) + 1.0))
    whole = np.float32(math.floor((float(box_length) - 1.0) / 2.0))
    fraction = (two * whole + one) * (whole * (whole + one) - three * variance)
    fraction = fraction / (six * (variance - (whole + one) * (whole + one)))
    box = float(whole + fraction)
    if not box < _MAX_RADIUS:
        raise FilterError(f"Gaussian radius {radius!r} is too large")
    return box + 0.0  # -0.0 (radius 0) reads better as 0.0


# -- One box pass ------------------------------------------------------------


@dataclass(frozen=True)
class _PillowBox:
    """One box pass in Pillow's 8-bit arithmetic: the taps within ``half`` weigh
    ``inner``, the two at ``half + 1`` weigh ``outer``, in units of 2**-24;
    each sum plus one half is truncated to uint8."""

    half: int
    inner: int
    outer: int

    #: The dtype of the padded samples and of the pass's result.
    work_dtype = np.dtype(np.uint8)
    #: What :func:`_fold` adds to the inner sums in.
    fold_dtype = np.dtype(np.int64)

    @classmethod
    def of(cls, radius: float) -> _PillowBox:
        radius32 = np.float32(radius)
        half = int(radius32)
        inner = int(np.float32(_ONE) / (radius32 * np.float32(2) + np.float32(1)))
        # as C computes it, in unsigned 32-bit arithmetic
        outer = ((_ONE - (2 * half + 1) * inner) % 2**32) // 2
        return cls(half, inner, outer)

    def weigh(self, padded: np.ndarray, axis: int, half: int, extra, out: np.ndarray) -> None:
        """The pass's result into ``out`` from ``padded``, which holds ``half + 1``
        more samples on each side; ``extra`` is added to every inner sum."""
        length = 2 * half + 1
        if self.inner:
            dtype = np.uint16 if 255 * length < 2**16 else np.uint32
            total = _window_sums(padded, axis, 1, length, out.shape[axis], dtype)
            if extra is not None:
                total = (total + extra).astype(np.uint32)
        for rows in _chunks(out):
            if self.inner:
                bulk = np.multiply(total[rows], self.inner, dtype=np.uint32)
            else:  # radii from about 2**23: only the far taps weigh anything
                bulk = np.zeros(out[rows].shape, np.uint32)
            if self.outer:
                far = np.add(*_far_taps(padded, axis, length, out.shape[axis], rows), dtype=np.uint32)
                far *= self.outer
                bulk += far
            bulk += _ONE // 2
            np.right_shift(bulk, 24, out=out[rows], casting="unsafe")


@dataclass(frozen=True)
class _ExactBox:
    """One box pass with real weights, in float64: ``(inner sum + fraction * far
    sum) / divisor``, rounded half up if ``rounded``. The weights are positive
    and sum to 1, so a rounded result is always in the type's range."""

    half: int
    fraction: float
    divisor: float
    rounded: bool

    work_dtype = np.dtype(np.float64)
    fold_dtype = np.dtype(np.float64)

    @classmethod
    def of(cls, radius: float, rounded: bool) -> _ExactBox:
        half = math.floor(radius)
        return cls(half, radius - half, 2.0 * radius + 1.0, rounded)

    def weigh(self, padded: np.ndarray, axis: int, half: int, extra, out: np.ndarray) -> None:
        """As :meth:`_PillowBox.weigh`, in float64."""
        length = 2 * half + 1
        total = _window_sums(padded, axis, 1, length, out.shape[axis], np.float64)
        if extra is not None:
            total += extra
        for rows in _chunks(out):
            part = total[rows]
            if self.fraction:
                far = np.add(*_far_taps(padded, axis, length, out.shape[axis], rows), dtype=np.float64)
                far *= self.fraction
                part += far
            part /= self.divisor
            if self.rounded:
                part += 0.5
                np.floor(part, out=part)
            np.copyto(out[rows], part, casting="unsafe")


def _chunks(out: np.ndarray) -> list[slice]:
    """Slices of the rows of ``out`` of about :data:`_STRIP_SAMPLES` samples each: the
    last steps of a pass are taken a cache-sized chunk at a time."""
    step = max(1, _STRIP_SAMPLES // (out[0].size or 1))
    return [slice(row, min(row + step, len(out))) for row in range(0, len(out), step)]


def _far_taps(padded: np.ndarray, axis: int, length: int, count: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """The two samples at distance ``(length + 1) / 2`` from each output sample of
    ``rows``, where ``padded`` starts one sample before its window."""
    if axis == 0:
        return padded[rows.start : rows.stop], padded[rows.start + length + 1 : rows.stop + length + 1]
    return padded[rows, :count], padded[rows, length + 1 : length + 1 + count]


def _window_sums(values: np.ndarray, axis: int, start: int, length: int, count: int, dtype) -> np.ndarray:
    """``sums[i] = values[start + i] + ... + values[start + i + length - 1]`` along
    ``axis``, for i < count, in ``dtype``, by the cheapest of three ways:
    :func:`_sliding_sums`, :func:`_doubling_sums`, :func:`_running_sums`.

    Each way's cost is counted in array operations over ``count`` samples.
    """
    span = (count + length - 1) / count
    costs = {
        _sliding_sums: length - 1,
        _doubling_sums: (length.bit_length() - 1) * span + length.bit_count() - 1,
    }
    if axis == 0 and np.dtype(dtype).kind == "u" and count > 1:
        costs[_running_sums] = 2 + length / count + 2 * _ROW_OVERHEAD / (values[0].size or 1)
    way = min(costs, key=costs.get)
    return way(values, axis, start, length, count, dtype)


def _sliding_sums(values, axis, start, length, count, dtype) -> np.ndarray:
    """Window sums by adding ``length`` shifted slices."""
    if length == 1:
        return _along(values, axis, start, start + count).astype(dtype)
    sums = np.add(_along(values, axis, start, start + count), _along(values, axis, start + 1, start + 1 + count),
                  dtype=dtype)  # fmt: skip
    for shift in range(2, length):
        sums += _along(values, axis, start + shift, start + shift + count)
    return sums


def _doubling_sums(values, axis, start, length, count, dtype) -> np.ndarray:
    """Window sums from sums of 1, 2, 4, 8, ... samples, one for each bit of ``length``."""
    blocks = _along(values, axis, start, start + count + length - 1)  # sums of `size` samples
    size, used, sums, left = 1, 0, None, length
    while True:
        if left & 1:
            part = _along(blocks, axis, used, used + count)
            sums = part.astype(dtype) if sums is None else np.add(sums, part, out=sums)
            used += size
        left >>= 1
        if not left:
            return sums
        span = blocks.shape[axis] - size
        blocks = np.add(_along(blocks, axis, 0, span), _along(blocks, axis, size, size + span), dtype=dtype)
        size *= 2


def _running_sums(values, axis, start, length, count, dtype) -> np.ndarray:
    """Window sums down axis 0, each row's from the one before by adding the row
    entering the window and taking away the one leaving it. Only for unsigned
    integer ``dtype``: its wrap-around arithmetic is exact whenever the sums fit."""
    sums = np.empty((count,) + values.shape[1:], dtype)
    values[start : start + length].sum(axis=0, dtype=dtype, out=sums[0])
    for row in range(1, count):
        np.add(sums[row - 1], values[start + row + length - 1], out=sums[row])
        np.subtract(sums[row], values[start + row - 1], out=sums[row])
    return sums


def _along(values: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    """``values[start:stop]`` along ``axis`` (0 or 1), a view."""
    return values[start:stop] if axis == 0 else values[:, start:stop]


def _extended(values: np.ndarray, axis: int, start: int, stop: int, border: str, fill, dtype) -> np.ndarray:
    """The samples at positions ``start .. stop - 1`` along ``axis``, those outside
    the array made up by ``border``: a view when there are none, else a copy
    in ``dtype``."""
    n = values.shape[axis]
    if start >= 0 and stop <= n:
        return _along(values, axis, start, stop)
    shape = list(values.shape)
    shape[axis] = stop - start
    out = np.empty(shape, dtype)
    inside_start = min(max(start, 0), stop)
    inside_stop = max(min(stop, n), inside_start)
    _along(out, axis, inside_start - start, inside_stop - start)[...] = _along(values, axis, inside_start, inside_stop)
    before = max(0, -start)  # the index's first entry is position -before
    index = None if border == "constant" else _border_index(n, before, max(0, stop - n), border)
    for first, last in ((start, inside_start), (inside_stop, stop)):  # positions outside
        if first == last:
            continue
        part = _along(out, axis, first - start, last - start)
        part[...] = fill if index is None else np.take(values, index[first + before : last + before], axis=axis)
    return out


@functools.lru_cache(maxsize=64)
def _border_index(n: int, before: int, after: int, border: str) -> np.ndarray:
    """:func:`~convfilter.engine.border_index`, kept: every strip of a pass asks for the same."""
    index = border_index(n, before, after, border)
    index.flags.writeable = False
    return index


def _fold(values: np.ndarray, axis: int, half: int, border: str, fill, dtype) -> tuple[int, np.ndarray | None]:
    """A window too wide for the lines along ``axis``, made narrower: ``(smaller
    half, what to add to every inner sum)``, or ``(half, None)`` when it fits.

    Widening a window beyond the whole line by one sample on each side adds
    the two border samples there: the edge samples (``nearest``), ``fill``
    (``constant``), or for the periodic borders one period for every period
    it grows by. The far taps land on the same values either way.
    """
    n = values.shape[axis]
    if half < _period(n, border):
        return half, None
    if border in ("nearest", "constant"):
        edges = _extended(values, axis, -1, 0, border, fill, dtype).astype(dtype) + _extended(
            values, axis, n, n + 1, border, fill, dtype
        )
        return n - 1, edges * (half - (n - 1))
    period = _period(n, border)
    smaller = half % period
    one_period = _extended(values, axis, 0, period, border, fill, dtype).sum(axis=axis, keepdims=True, dtype=dtype)
    return smaller, one_period * (2 * (half - smaller) // period)


def _period(n: int, border: str) -> int:
    """The half-width from which :func:`_fold` narrows a window along a line of
    ``n``: the period of ``border``'s samples, or ``n`` for ``nearest`` and ``constant``."""
    return {"wrap": n, "reflect": 2 * n, "mirror": max(2 * n - 2, 1)}.get(border, n)


def _box_pass(values, axis, start, box, border, fill, fold, out) -> None:
    """Positions ``start`` onwards of one box pass along ``axis`` of ``values``,
    as many as ``out`` holds, into ``out``; ``fold`` is what :func:`_fold`
    gave for these lines."""
    half, extra = fold
    stop = start + out.shape[axis]
    padded = _extended(values, axis, start - half - 1, stop + half + 1, border, fill, box.work_dtype)
    box.weigh(padded, axis, half, extra, out)


# -- A whole blur --------------------------------------------------------------


def _blur(array, x_radii, y_radii, border, cval, threads, progress, finish) -> np.ndarray:
    """Box passes of ``x_radii`` along rows, then of ``y_radii`` along columns (radius
    0: no pass); ``finish(original, blurred)``, if given, turns the blur into the
    output in place, strip by strip."""
    lines, dtype = _lines(array)
    mode = _border(border)
    fill = _fill(cval, dtype)
    crop = mode is BorderMode.VALID
    pad = "nearest" if mode in (BorderMode.VALID, BorderMode.KEEP) else mode.value
    if dtype == np.uint8:
        make = _PillowBox.of
    else:

        def make(radius):
            return _ExactBox.of(radius, dtype.kind != "f")

    def plan(radii):
        return [(make(r), _valid_reach(r) if crop else 0) for r in radii if r != 0]

    x_passes, y_passes = plan(x_radii), plan(y_radii)
    height, width, channels = lines.shape
    x_reach, y_reach = sum(r for _, r in x_passes), sum(r for _, r in y_passes)
    out_height, out_width = height - 2 * y_reach, width - 2 * x_reach
    if out_height < 1 or out_width < 1:
        raise FilterError(
            f"border 'valid' leaves nothing of a {width}x{height} image: the blur reaches "
            f"{x_reach} pixels across and {y_reach} down on each side"
        )
    if not x_passes and not y_passes:
        out = lines.copy()
        if finish is not None:
            finish(lines, out)
        return _shaped(out, array)

    # One stage for all horizontal passes, whose rows are independent, then one
    # for each vertical pass, which needs the whole of the previous one.
    stages = [_Stage(x_passes, height, out_width, False)] if x_passes else []
    rows_left = height
    for one in y_passes:
        rows_left -= 2 * one[1]
        stages.append(_Stage([one], rows_left, out_width, True))
    work = (x_passes or y_passes)[0][0].work_dtype
    flat = dtype == np.uint8 and not crop and _flat_passes_fit(lines, x_passes, y_passes, pad, fill)
    pass_seconds = _PILLOW_PASS_SECONDS if dtype == np.uint8 else _EXACT_PASS_SECONDS
    seconds = lines.size * (len(x_passes) + len(y_passes)) * pass_seconds
    workers = worker_count(threads, seconds)
    report = _StagesProgress(progress, [len(stage.pieces(channels)) for stage in stages])

    def original(rows: slice) -> np.ndarray:  # the input under these rows of the output
        return lines[rows.start + y_reach : rows.stop + y_reach, x_reach : x_reach + out_width]

    source, spare = lines, None
    for number, stage in enumerate(stages):
        last = number == len(stages) - 1
        shape, kind = (stage.rows, stage.columns, channels), (dtype if last else work)
        if spare is not None and spare.shape == shape and spare.dtype == kind:
            target = spare  # the stage before last's output, no longer needed
        else:
            target = np.empty(shape, kind)
        make_filter = _FILTERS[stage.vertical, flat]
        filter_piece = make_filter(source, target, stage.passes, pad, fill)
        if last and finish is not None:
            filter_piece = _finishing(filter_piece, target, finish, original)
        run_pieces(filter_piece, stage.pieces(channels), workers, report.stage(number))
        source, spare = target, (None if source is lines else source)
    return _shaped(source, array)


@dataclass(frozen=True)
class _Stage:
    """Box passes along one axis (vertical or not), and the shape of their output."""

    passes: list
    rows: int
    columns: int
    vertical: bool

    def pieces(self, channels: int) -> list[tuple[int, int]]:
        """Strips of output rows, ``(first, stop)``: about :data:`_STRIP_SAMPLES`
        samples, and for a vertical pass several times the rows it reads
        beyond the strip, which it sums again for the next one."""
        step = _STRIP_SAMPLES // (self.columns * channels)
        if self.vertical:
            step = max(step, _HALO_TIMES * (2 * self.passes[0][0].half + 2))
        step = max(1, step)
        return [(y, min(self.rows, y + step)) for y in range(0, self.rows, step)]


def _row_filter(source, target, passes, border, fill) -> Callable:
    """Work on a strip of rows: every horizontal pass, one after the other."""

    def filter_piece(piece, checkpoint) -> None:
        y0, y1 = piece
        rows = source[y0:y1]
        for number, (box, reach) in enumerate(passes):
            width = rows.shape[1] - 2 * reach
            last = number == len(passes) - 1
            out = target[y0:y1] if last else np.empty((y1 - y0, width, rows.shape[2]), box.work_dtype)
            _box_pass(rows, 1, reach, box, border, fill, _fold(rows, 1, box.half, border, fill, box.fold_dtype), out)
            rows = out
            checkpoint()

    return filter_piece


def _column_filter(source, target, passes, border, fill) -> Callable:
    """Work on a strip of output rows: one vertical pass."""
    [(box, reach)] = passes
    fold = _fold(source, 0, box.half, border, fill, box.fold_dtype)  # once, for every strip

    def filter_piece(piece, checkpoint) -> None:
        y0, y1 = piece
        _box_pass(source, 0, reach + y0, box, border, fill, fold, target[y0:y1])

    return filter_piece


def _finishing(filter_piece, target, finish, original) -> Callable:
    """``filter_piece`` followed by ``finish`` on its rows of ``target``, while they are in cache."""

    def finished_piece(piece, checkpoint) -> None:
        filter_piece(piece, checkpoint)
        rows = slice(*piece)
        finish(original(rows), target[rows])

    return finished_piece


class _StagesProgress:
    """One ``progress(done, total)`` over the stages, each a call of ``run_pieces``,
    counting pieces."""

    def __init__(self, progress, counts: list[int]) -> None:
        self.progress = progress
        self.counts = counts

    def stage(self, number: int):
        """The callback to give ``run_pieces`` for stage ``number``."""
        if self.progress is None:
            return None
        before, total = sum(self.counts[:number]), sum(self.counts)

        def report(done: int, _stage_total: int) -> None:
            self.progress(before + done, total)

        return report


def _valid_reach(radius: float) -> int:
    """What border ``valid`` crops on each side for one pass: the farthest tap
    weighing anything in Pillow's arithmetic or with the exact weights."""
    return max(box_reach(radius), math.ceil(radius))


# -- 8-bit passes on flat lines ----------------------------------------------


def _flat_passes_fit(lines, x_passes, y_passes, border, fill) -> bool:
    """Whether :func:`_flat_row_filter` and :func:`_flat_column_filter` can make
    these 8-bit passes: each window fits its lines (:func:`_fold` would leave
    it alone) and has inner taps."""
    for axis, passes in ((1, x_passes), (0, y_passes)):
        for box, _ in passes:
            if not box.inner or box.half >= _period(lines.shape[axis], border):
                return False
    return True


def _flat_row_filter(source, target, passes, border, fill) -> Callable:
    """Work on a strip of rows: every horizontal 8-bit pass, between two uint32
    buffers of the strip's rows padded by the border, so that each pass's
    result is laid out as the next one's input and the strip stays in cache
    (uint32 throughout: NumPy's mixed-type loops are several times slower)."""
    width, channels = source.shape[1], source.shape[2]
    pad = max(box.half for box, _ in passes) + 1
    index = _border_index(width, pad, pad, border)

    buffers = _ThreadBuffers()

    def filter_piece(piece, checkpoint) -> None:
        y0, y1 = piece
        shape = (y1 - y0, width + 2 * pad, channels)
        size = (y1 - y0) * (width + 2 * pad) * channels
        here, there, sums, scratch = buffers.get(shape, shape, (size - 2 * pad * channels,), (2 * size,))
        here[:, pad : pad + width] = source[y0:y1]
        _pad_rows(here, pad, index, border, fill)
        inside = slice(pad * channels, size - pad * channels)  # the first and last rows' outside left alone
        for number, (box, _) in enumerate(passes):
            first_tap = (pad - box.half - 1) * channels
            _flat_pass(here.reshape(-1)[first_tap:], channels, box, there.reshape(-1)[inside], sums, scratch)
            here, there = there, here
            if number < len(passes) - 1:
                _pad_rows(here, pad, index, border, fill)
            checkpoint()
        target[y0:y1] = here[:, pad : pad + width]

    return filter_piece


class _ThreadBuffers:
    """uint32 work buffers for each thread, kept from one piece to the next: fresh
    ones would cost the operating system's page faults every time."""

    def __init__(self) -> None:
        self.local = threading.local()

    def get(self, *shapes: tuple) -> list[np.ndarray]:
        """This thread's buffers of these shapes."""
        kept = getattr(self.local, "kept", None)
        if kept is None or kept[0] != shapes:
            kept = (shapes, [np.empty(shape, np.uint32) for shape in shapes])
            self.local.kept = kept
        return kept[1]


def _pad_rows(rows: np.ndarray, pad: int, index: np.ndarray, border: str, fill) -> None:
    """Fill the ``pad`` columns on each side of ``rows`` by ``border`` from the
    columns between them; ``index`` is the border's source column for each."""
    width = rows.shape[1] - 2 * pad
    for outside, edge in ((slice(0, pad), pad), (slice(pad + width, None), pad + width - 1)):
        if border == "constant":
            rows[:, outside] = fill
        elif border == "nearest":
            rows[:, outside] = rows[:, edge : edge + 1]
        else:
            rows[:, outside] = rows[:, pad + index[outside]]


def _flat_column_filter(source, target, passes, border, fill) -> Callable:
    """Work on a strip of output rows: one vertical 8-bit pass, a few rows at a
    time, from the strip's rows widened to uint32 once each in a buffer several
    times the rows a chunk reads (when it fills up, the rows still needed go back
    to its start)."""
    [(box, _)] = passes
    length = 2 * box.half + 1
    stride = source[0].size
    running = length > 3 and stride >= _RUNNING_ROW
    step = max(1, _STRIP_SAMPLES // stride)  # rows at a time

    buffers = _ThreadBuffers()

    def filter_piece(piece, checkpoint) -> None:
        y0, y1 = piece
        rows = _extended(source, 0, y0 - box.half - 1, y1 + box.half + 1, border, fill, np.uint8)
        rows = rows.reshape(len(rows), stride)
        chunk = min(step, y1 - y0)
        reads = chunk + length + 1  # rows a chunk reads
        wide, scratch, sums, result = buffers.get((_WIDE_TIMES * reads, stride), (2 * reads * stride,),
                                                  *[(chunk * stride,)] * 2)  # fmt: skip
        base = have = 0  # wide[0] holds rows[base]; rows[base:have] are in wide
        for first in range(0, y1 - y0, chunk):
            n = min(chunk, y1 - y0 - first)
            need = first + n + length + 1
            if need - base > len(wide):
                np.copyto(wide[: have - first], wide[first - base : have - base])
                base = first
            np.copyto(wide[have - base : need - base], rows[have:need])
            have = need
            window = wide[first - base : need - base].reshape(-1)
            _flat_pass(window, stride, box, result[: n * stride], sums, scratch, running, carry=first > 0)
            target[y0 + first : y0 + first + n].reshape(-1)[...] = result[: n * stride]

    return filter_piece


#: The strip loops, by (vertical, 8-bit on flat lines).
_FILTERS = {(False, False): _row_filter, (True, False): _column_filter,
            (False, True): _flat_row_filter, (True, True): _flat_column_filter}  # fmt: skip


def _flat_pass(taps, stride, box, out, sums, scratch, running=False, carry=False) -> None:
    """One 8-bit box pass over uint32 samples ``stride`` apart in the 1-D ``taps``
    into the 1-D uint32 ``out``: ``out[i]`` weighs ``taps[i + k * stride]`` for
    k = 0 .. 2 * half + 2, the first and last by ``box.outer``, the others by
    ``box.inner``. Samples that are not on one line mix in some ``out[i]``:
    the caller lays its lines out so that those are the ones it throws away.

    ``sums`` and ``scratch`` are uint32 and at least ``out.size`` long;
    ``scratch`` twice the size of ``taps`` if the window is long and not
    ``running``. ``running`` (``stride`` a row, ``out`` whole rows): inner
    sums by :func:`_running_flat_sums`, which with ``carry`` goes on from the
    last row of ``sums``, where the call before left it.
    """
    length = 2 * box.half + 1
    n = out.size
    if running:
        _running_flat_sums(taps, stride, length, sums, n, carry)
    else:
        _flat_window_sums(taps[stride:], stride, length, sums[:n], scratch)
    np.multiply(sums[:n], np.uint32(box.inner), out=out)
    if box.outer:
        far = scratch[:n]
        np.add(taps[:n], taps[(length + 1) * stride : (length + 1) * stride + n], out=far)
        far *= np.uint32(box.outer)
        out += far
    out += np.uint32(_ONE // 2)
    out >>= np.uint32(24)


def _flat_window_sums(taps: np.ndarray, stride: int, length: int, sums: np.ndarray, scratch: np.ndarray) -> None:
    """``sums[i] = taps[i] + taps[i + stride] + ... + taps[i + (length - 1) * stride]``
    for an odd ``length``, by adding shifted slices or, when fewer additions,
    from sums of 2, 4, 8, ... taps, made in turn in the two halves of
    ``scratch`` (twice the size of ``taps``)."""
    n = sums.size
    if length == 1:
        np.copyto(sums, taps[:n])
        return
    if length - 1 <= length.bit_length() + length.bit_count() - 2:  # additions, one way and the other
        np.add(taps[:n], taps[stride : stride + n], out=sums)
        for k in range(2, length):
            sums += taps[k * stride : k * stride + n]
        return
    halves = scratch[: taps.size], scratch[taps.size : 2 * taps.size]
    blocks, size, used, left = taps, 1, 1, length >> 1  # blocks[i]: the sum of `size` taps from i
    while left:
        span = blocks.size - size * stride
        into = halves[size.bit_length() % 2][:span]  # not the half `blocks` is in
        blocks = np.add(blocks[:span], blocks[size * stride : size * stride + span], out=into)
        size *= 2
        if left & 1:
            part = blocks[used * stride : used * stride + n]
            np.add(taps[:n] if used == 1 else sums, part, out=sums)
            used += size
        left >>= 1


def _running_flat_sums(taps: np.ndarray, stride: int, length: int, sums: np.ndarray, n: int, carry: bool) -> None:
    """The inner sums of :func:`_flat_pass` where ``stride`` is a row, into
    ``sums[:n]``: each row's is the one before plus the row entering the
    window minus the one leaving it (unsigned arithmetic wraps around,
    exactly, as the sums fit). ``taps`` starts at the far tap before the
    first row; with ``carry``, the row before the first is the last row of
    ``sums``."""
    rows = sums[:n].reshape(-1, stride)
    lines = taps.reshape(-1, stride)
    if carry:
        np.add(sums[-stride:], lines[length], out=rows[0])
        rows[0] -= lines[0]
    else:
        np.add(lines[1], lines[2], out=rows[0])
        for k in range(3, length + 1):
            rows[0] += lines[k]
    for row in range(1, len(rows)):
        np.add(rows[row - 1], lines[row + length], out=rows[row])
        rows[row] -= lines[row]


# -- Unsharp mask ------------------------------------------------------------


def _sharpen(original: np.ndarray, blurred: np.ndarray, percent: int, threshold: int) -> None:
    """The unsharp mask's rule for each sample (see the module docstring), written over ``blurred``."""
    dtype = original.dtype
    if dtype == np.uint8:  # a table of every (input, blurred) pair
        pair = np.left_shift(original, 8, dtype=np.uint16)
        pair |= blurred
        np.take(_sharpened_pairs(percent, threshold), pair, out=blurred, mode="clip")
        return
    limits = None if dtype.kind == "f" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    blurred[...] = _sharpened(original, blurred, percent, threshold, limits, wrap=False)


@functools.lru_cache(maxsize=16)
def _sharpened_pairs(percent: int, threshold: int) -> np.ndarray:
    """Pillow's unsharp result for input ``i`` and blur ``b`` at index ``256 * i + b``."""
    original, blurred = np.divmod(np.arange(1 << 16), 256)
    return _sharpened(original, blurred, percent, threshold, (0, 255), wrap=True).astype(np.uint8)


def _sharpened(original, blurred, percent, threshold, limits, *, wrap: bool) -> np.ndarray:
    """The rule, in float64 for ``limits`` None, else in C's integer arithmetic
    computed in int64: the product ``diff * percent`` wraps to 32 bits if
    ``wrap`` (Pillow's C int; for other types it cannot overflow int64, as
    |diff| < 2**32), the division truncates towards zero, and the sum is
    clipped to ``limits``."""
    if limits is None:
        diff = np.subtract(original, blurred, dtype=np.float64)
        sharp = original + diff * percent / 100
    else:
        diff = np.subtract(original, blurred, dtype=np.int64)
        product = diff * percent
        if wrap:
            product = (product + 2**31) % 2**32 - 2**31
        change = np.sign(product) * (np.abs(product) // 100)
        sharp = np.clip(original + change, *limits)
    return np.where(np.abs(diff) > threshold, sharp, original)


# -- Checks ------------------------------------------------------------------


def _lines(array) -> tuple[np.ndarray, np.dtype]:
    """``array`` as H x W x C in native byte order, and its dtype (native)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in [np.dtype(t) for t in SUPPORTED_DTYPES]:
        names = ", ".join(np.dtype(t).name for t in SUPPORTED_DTYPES)
        raise FilterError(f"the blurs take {names} arrays, not {array.dtype.name}; convert the array first")
    if array.ndim not in (2, 3):
        raise FilterError(f"expected an H x W or H x W x C array, got shape {array.shape}")
    if 0 in array.shape:
        raise FilterError(f"cannot blur an empty array of shape {array.shape}")
    array = array.astype(dtype, copy=False)
    return (array[:, :, np.newaxis] if array.ndim == 2 else array), dtype


def _shaped(out: np.ndarray, array) -> np.ndarray:
    """``out`` (H x W x C) in the shape and dtype ``array`` came in."""
    array = np.asarray(array)
    if array.ndim == 2:
        out = out[:, :, 0]
    return out.astype(array.dtype, copy=False)


def _border(border) -> BorderMode:
    try:
        return BorderMode.parse(border, "--border")
    except ValueError:
        raise FilterError(f"unknown border mode {border!r}; choose from {', '.join(BorderMode.names())}") from None


def _fill(cval, dtype: np.dtype):
    """The ``constant`` border's fill: a sample of ``dtype``, integers rounded half up and clipped."""
    try:
        value = float(cval)
    except (TypeError, ValueError):
        raise FilterError(f"cval must be a number, got {cval!r}") from None
    if not math.isfinite(value):
        raise FilterError(f"cval must be finite, got {cval!r}")
    if dtype.kind == "f":
        return value
    info = np.iinfo(dtype)
    return int(min(max(math.floor(value + 0.5), info.min), info.max))


def _radius(radius) -> float:
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
        raise FilterError(f"a radius must be a number, got {radius!r}")
    value = float(radius)
    if not (0 <= value < _MAX_RADIUS):
        raise FilterError(f"a radius must be finite, >= 0 and below 2**30, got {radius!r}")
    return value


def _radii(radius) -> tuple[float, float]:
    """``(x, y)`` from a number or a pair."""
    if np.ndim(radius) != 0:
        if np.ndim(radius) != 1 or len(radius) != 2:
            raise FilterError(f"a radius is a number or an (x, y) pair, got {radius!r}")
        return _radius(radius[0]), _radius(radius[1])
    return _radius(radius), _radius(radius)


def _c_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not _C_INT[0] <= value <= _C_INT[1]:
        raise FilterError(f"{name} must be an integer from -2**31 to 2**31 - 1 (a C int, as in Pillow), got {value!r}")
    return int(value)
