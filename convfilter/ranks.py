"""Rank and mode filters on NumPy arrays: Pillow's ``RankFilter``, ``MedianFilter``,
``MinFilter``, ``MaxFilter`` and ``ModeFilter``, exactly, on more borders and dtypes.

:func:`rank_filter` picks the ``rank``-th smallest sample (0-based) of each
``size`` x ``size`` window; :func:`median_filter`, :func:`min_filter` and
:func:`max_filter` are its three usual ranks. :func:`mode_filter` picks the
most frequent sample. Each channel of an H x W x C array is filtered by
itself, as Pillow filters band by band, and with the default borders the
results are Pillow's for every 8-bit mode and for modes I and F (Pillow's
mode filter takes 8-bit modes only).

How they are fast. A window's answer is computed by a fixed circuit of
minimum and maximum calls (:mod:`convfilter.circuits`), each run by NumPy
over a whole tile of the image at once. The mode sorts the window with the
same kind of circuit and reads the longest run of equal samples off the
result.

Large windows of 8-bit samples are counted instead (:class:`_CountingJob`):
for each value in a tile, a sum over each window of where the samples are
below it (rank) or equal to it (mode), chosen tile by tile when it takes
fewer calls. Other samples in windows larger than circuits are built for
fall back on ``np.partition`` or a sort of each window.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import engine
from .circuits import MAX, MIN, Circuit, extreme_circuit, selection_circuit, sorting_circuit
from .options import BorderMode

__all__ = ["max_filter", "median_filter", "min_filter", "mode_filter", "rank_filter"]


def rank_filter(
    array: np.ndarray,
    size: int,
    rank: int,
    *,
    border: str | BorderMode = BorderMode.NEAREST,
    cval: float = 0.0,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> np.ndarray:
    """The ``rank``-th smallest sample (0-based) of each ``size`` x ``size`` window.

    Parameters
    ----------
    array : ndarray
        H x W, or H x W x C with each channel filtered by itself; any dtype
        :func:`convfilter.engine.check_dtype` accepts (bool, integers, float16
        to float64).
    size : int
        The window's width and height: odd, 1 or more (1 returns a copy).
    rank : int
        0 (the minimum) to ``size * size - 1`` (the maximum).
    border : str or BorderMode
        How the window is filled beyond the image's edge: ``nearest``,
        ``reflect``, ``mirror``, ``wrap``, ``constant`` (with ``cval``), or
        ``valid`` (no padding; the result is ``size - 1`` smaller each way).
        ``keep`` is Pillow's rule, which pads with the edge pixels: the same
        as ``nearest``.
    cval : float
        The fill of ``constant``. For an integer dtype it is rounded half up
        and clipped to the dtype's range first, which picks what ranking in
        a wider type and clipping the result would.
    threads : int or None
        Worker threads at most (None: one per CPU).
    progress : callable or None
        Called as ``progress(done, total)`` on the calling thread, as by
        :func:`convfilter.engine.correlate`.

    Returns
    -------
    ndarray
        The input's dtype (in native byte order) and shape (smaller with
        ``valid``). NaN counts as
        larger than every number, as in ``np.sort``: a window's minimum is
        NaN only if all its samples are, its maximum is NaN if any is.
        ``-0.0`` and ``0.0`` are equal, and either may be returned for a
        zero. Pillow's own selection gives answers that depend on the
        samples' order when NaN is in a window; without NaN the results are
        Pillow's, infinities included.

    Raises
    ------
    ValueError
        For an even or non-positive ``size``, or a ``rank`` out of range.
    FilterError
        For a dtype or shape that cannot be filtered, or ``valid`` with an
        image smaller than the window.
    SettingsError
        For an unknown border.

    Examples
    --------
    >>> a = np.array([[1, 9, 2], [8, 3, 7], [4, 6, 5]], np.uint8)
    >>> rank_filter(a, 3, 4, border="valid").tolist()
    [[5]]
    >>> rank_filter(a, 3, 0, border="constant", cval=-1).tolist()  # -1 clips to 0 in uint8
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    """
    size = _checked_size(size)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise ValueError(f"rank must be a whole number, got {rank!r}")  # noqa: TRY004 - one error for any bad rank
    if not 0 <= rank < size * size:
        raise ValueError(f"rank must be 0 to {size * size - 1} for a {size}x{size} window, got {rank}")
    rank = int(rank)
    mode = BorderMode.parse(border, "--border")
    if mode is BorderMode.KEEP:
        mode = BorderMode.NEAREST  # Pillow pads with the edge pixels (ImagingExpand)
    samples = _Samples.of(array)
    _check_valid(samples.work, size, mode)
    if size == 1 or samples.work.size == 0:
        return samples.restore(_crop_valid(samples.work, size, mode).copy())
    job = _rank_job(size, rank, samples.work.dtype)
    region = _Region.padded(samples.work, size, mode, samples.fill(cval), job)
    _run([region], size, threads, progress)
    return samples.restore(region.out)


def median_filter(array: np.ndarray, size: int, **options) -> np.ndarray:
    """The median of each ``size`` x ``size`` window: rank ``size * size // 2`` of
    :func:`rank_filter`, whose keyword options it takes; Pillow's ``MedianFilter``.

    >>> median_filter(np.array([[0, 0, 9], [0, 9, 9], [9, 9, 9]], np.uint8), 3).tolist()
    [[0, 0, 9], [0, 9, 9], [9, 9, 9]]
    """
    size = _checked_size(size)
    return rank_filter(array, size, size * size // 2, **options)


def min_filter(array: np.ndarray, size: int, **options) -> np.ndarray:
    """The smallest sample of each ``size`` x ``size`` window: rank 0 of
    :func:`rank_filter`, whose keyword options it takes; Pillow's ``MinFilter``."""
    size = _checked_size(size)
    return rank_filter(array, size, 0, **options)


def max_filter(array: np.ndarray, size: int, **options) -> np.ndarray:
    """The largest sample of each ``size`` x ``size`` window: rank ``size * size - 1``
    of :func:`rank_filter`, whose keyword options it takes; Pillow's ``MaxFilter``."""
    size = _checked_size(size)
    return rank_filter(array, size, size * size - 1, **options)


def mode_filter(
    array: np.ndarray,
    size: int,
    *,
    border: str | BorderMode = BorderMode.KEEP,
    cval: float = 0.0,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> np.ndarray:
    """The most frequent sample of each ``size`` x ``size`` window, by Pillow's rule.

    The value found most often in the window wins, the smallest of equally
    frequent ones; but if it is found only once or twice, the pixel keeps
    its own value. Samples are counted as equal by ``==``: a NaN never
    equals anything, so it is never the mode (a NaN pixel stays NaN where
    no value occurs three times), and ``-0.0`` counts as ``0.0``.

    ``border`` ``keep`` (the default) is Pillow's ``ModeFilter``: near the
    edge the window is cut off, only pixels inside the image counting. The
    other borders (as in :func:`rank_filter`) fill the whole window, and the
    filled samples count like any other; ``cval`` is rounded and clipped to
    the dtype first. ``array``, ``size``, ``threads``, ``progress``, the
    result and the errors raised are as for :func:`rank_filter`. Pillow has
    this filter for 8-bit images only; here every dtype follows its rule.

    >>> a = np.array([[1, 1, 2], [5, 1, 2], [6, 7, 2]], np.uint8)
    >>> mode_filter(a, 3, border="valid").tolist()  # 1 and 2 occur 3 times; 1 is smaller
    [[1]]
    >>> mode_filter(a, 3).tolist()  # the window cut at the edge: 6 and 7 see no value 3 times
    [[1, 1, 2], [1, 1, 2], [6, 7, 2]]
    """
    size = _checked_size(size)
    mode = BorderMode.parse(border, "--border")
    samples = _Samples.of(array)
    _check_valid(samples.work, size, mode)
    if size == 1 or samples.work.size == 0:  # one sample is never found three times
        return samples.restore(_crop_valid(samples.work, size, mode).copy())
    job = _mode_job(size, samples.work.dtype)
    if mode is not BorderMode.KEEP:
        region = _Region.padded(samples.work, size, mode, samples.fill(cval), job)
        _run([region], size, threads, progress)
        return samples.restore(region.out)
    out = np.empty_like(samples.work)
    regions, finish = _cut_regions(samples.work, size, job, out)
    _run(regions, size, threads, progress)
    finish()
    return samples.restore(out)


# ---------------------------------------------------------------------------
# Arguments and dtypes

#: The widest windows built as circuits, for a rank and for the mode.
_CIRCUIT_SIZES = 15
_SORTING_SIZES = 11

#: Circuits worth trying counting instead of on 8-bit tiles (by calls).
_COUNTING_WORTH = 500


def _rank_job(size: int, rank: int, dtype: np.dtype):
    """How to find the rank-th sample: the fastest way for the size, rank and dtype."""
    if rank in (0, size * size - 1):
        return _CircuitJob(extreme_circuit(size, MIN if rank == 0 else MAX), dtype)
    circuit = _CircuitJob(selection_circuit(size, rank), dtype) if size <= _CIRCUIT_SIZES else None
    if dtype == np.uint8 and size < 256 and (circuit is None or circuit.calls > _COUNTING_WORTH):
        return _EitherJob(circuit, _CountingJob(size, rank))
    return circuit or _PartitionJob(size, rank)


def _mode_job(size: int, dtype: np.dtype):
    """How to find the mode: the fastest way for the size and dtype."""
    circuit = _ModeJob(sorting_circuit(size), dtype) if size <= _SORTING_SIZES else None
    if dtype == np.uint8 and size < 256 and (circuit is None or circuit.calls > _COUNTING_WORTH):
        return _EitherJob(circuit, _CountingJob(size, None))
    return circuit or _SortedModeJob(size, dtype)


def _checked_size(size) -> int:
    """``size`` as an int, or ValueError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be a whole number, got {size!r}")  # noqa: TRY004 - one error for any bad size
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be odd and 1 or more (3, 5, 7, ...), got {size}")
    return int(size)


def _check_valid(work: np.ndarray, size: int, mode: BorderMode) -> None:
    if mode is BorderMode.VALID and min(work.shape[:2]) < size:
        height, width = work.shape[:2]
        raise engine.FilterError(f"border valid needs an image of {size}x{size} or more, not {width}x{height}")


def _crop_valid(work: np.ndarray, size: int, mode: BorderMode) -> np.ndarray:
    """The pixels that have a result: all, or those with a whole window (``valid``)."""
    reach = size // 2
    if mode is not BorderMode.VALID:
        return work
    return work[reach : work.shape[0] - reach, reach : work.shape[1] - reach]


@dataclass(frozen=True)
class _Samples:
    """The array as the filters work on it: H x W x C, native byte order, and
    float16 as float32, bool as uint8 (both hold the same values)."""

    work: np.ndarray
    dtype: np.dtype
    planar: bool

    @classmethod
    def of(cls, array) -> _Samples:
        array = np.asarray(array)
        dtype = engine.check_dtype(array.dtype)
        if array.ndim not in (2, 3):
            raise engine.FilterError(f"expected an H x W or H x W x C array, got {array.ndim} dimensions")
        work = array if array.dtype.isnative else array.astype(dtype.newbyteorder("="))
        if dtype.kind == "b":
            work = work.view(np.uint8)
        elif dtype == np.float16:
            work = work.astype(np.float32)
        planar = array.ndim == 2
        return cls(work[:, :, None] if planar else work, dtype.newbyteorder("="), planar)

    def fill(self, cval: float):
        """``cval`` as a sample: rounded half up and clipped for integers."""
        if self.work.dtype.kind == "f":
            with np.errstate(over="ignore"):
                return self.work.dtype.type(cval)
        return engine.round_to_dtype(np.array([float(cval) + 0.5]), self.dtype).astype(self.work.dtype)[0]

    def restore(self, result: np.ndarray) -> np.ndarray:
        result = result[:, :, 0] if self.planar else result
        if self.dtype.kind == "b":
            return result.view(np.bool_)
        return result.astype(self.dtype, copy=False)


# ---------------------------------------------------------------------------
# Tiles: where a circuit's values live in memory


@dataclass(frozen=True)
class _Tile:
    """A tile of ``rows`` x ``cols`` output pixels of ``channels`` samples, and
    the block of input it reads (``reach`` more on every side), held flat.

    A value at every output pixel is a flat array of ``span`` samples, from
    output pixel (0, 0) to the last: row by row, each row followed by
    ``2 * reach`` pixels whose values are never used. Read at a shift
    (dy, dx), it starts ``flat((dy, dx))`` samples further on.
    """

    rows: int
    cols: int
    channels: int
    reach: int

    @property
    def row_length(self) -> int:
        return (self.cols + 2 * self.reach) * self.channels

    @property
    def block_shape(self) -> tuple[int, int, int]:
        return (self.rows + 2 * self.reach, self.cols + 2 * self.reach, self.channels)

    @property
    def span(self) -> int:
        return (self.rows - 1) * self.row_length + self.cols * self.channels

    @property
    def start(self) -> int:
        """Where output pixel (0, 0) is in the flat block."""
        return self.reach * (self.row_length + self.channels)

    def flat(self, shift: tuple[int, int]) -> int:
        return shift[0] * self.row_length + shift[1] * self.channels

    def pixels(self, values: np.ndarray) -> np.ndarray:
        """The rows x cols x channels samples of a flat value (a view)."""
        size = values.itemsize
        return np.lib.stride_tricks.as_strided(
            values, (self.rows, self.cols, self.channels), (self.row_length * size, self.channels * size, size)
        )


class _Scratch(threading.local):
    """Each thread's own buffers: made on first use, big enough for the
    ``largest`` tile, and reused by its later tiles (which may come in any order)."""

    def __init__(self, largest: _Tile) -> None:
        self.largest = largest
        self.items: dict = {}

    def get(self, key, make: Callable[[], object]):
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = make()
        return item


# ---------------------------------------------------------------------------
# Jobs: what is done to each tile. A job has ``arrays``, how many tile-sized
# arrays of samples its buffers come to (it sizes the tiles), and
# ``seconds_per_sample``, a rough cost (it decides whether threads are
# worth starting). Called as ``job(block, tile, scratch, checkpoint)`` with
# the tile's padded input flat in ``block``, it returns the tile's results
# as a rows x cols x channels view, good until its thread's next tile.


def _seconds_per_call(dtype: np.dtype) -> float:
    """About how long one minimum or maximum takes per sample, in cache."""
    return (0.04 + 0.03 * dtype.itemsize) * 1e-9


class _CircuitJob:
    """A tile's values by a :class:`Circuit` with one output."""

    def __init__(self, circuit: Circuit, dtype: np.dtype) -> None:
        self.circuit = circuit
        floating = dtype.kind == "f"
        # fmin returns the number of a number and NaN: NaN sorts last.
        self.ufuncs = (np.fmin if floating else np.minimum, np.maximum)
        self.arrays = circuit.slot_count + 1
        self.calls = len(circuit.steps)
        self.seconds_per_sample = (self.calls + 2) * _seconds_per_call(dtype)

    def __call__(self, block: np.ndarray, tile: _Tile, scratch: _Scratch, checkpoint) -> np.ndarray:
        _, outputs = self.run(block, tile, scratch, checkpoint)
        return tile.pixels(outputs[0])

    def run(self, block, tile, scratch, checkpoint) -> tuple[list, list]:
        groups, outputs = scratch.get((id(self), tile), lambda: self._bind(block, tile, scratch))
        for group in groups:
            checkpoint()
            for ufunc, a, b, out in group:
                ufunc(a, b, out=out)
        return groups, outputs

    def _bind(self, block: np.ndarray, tile: _Tile, scratch: _Scratch) -> tuple[list, list]:
        """The circuit's calls on this thread's buffers, for tiles of this shape:
        groups of (ufunc, a, b, out), and a flat view of each output."""
        circuit = self.circuit
        starts, lengths = self._extents(tile)
        longest = max(self._extents(scratch.largest)[1], default=0)
        buffers = scratch.get((id(self), "buffers"), lambda: np.empty((circuit.slot_count, longest), block.dtype))

        def source(step: int, at: int, length: int) -> np.ndarray:
            if step < 0:
                return block[tile.start + at : tile.start + at + length]
            offset = at - starts[step]
            return buffers[circuit.slots[step], offset : offset + length]

        calls = []
        for k, (op, a, b, shift) in enumerate(circuit.steps):
            length = lengths[k]
            out = buffers[circuit.slots[k], :length]
            calls.append((self.ufuncs[op], source(a, starts[k], length),
                          source(b, starts[k] + tile.flat(shift), length), out))  # fmt: skip
        groups = [calls[i : i + _CALLS_PER_CHECK] for i in range(0, len(calls), _CALLS_PER_CHECK)]
        outputs = [source(step, tile.flat(shift), tile.span) for step, shift in circuit.outputs]
        return groups, outputs

    def _extents(self, tile: _Tile) -> tuple[list[int], list[int]]:
        """Where each step's values start (relative to output pixel (0, 0)) and
        how many there are: enough for every shift it is read at."""
        starts = [tile.flat((top, left)) for top, _, left, _ in self.circuit.boxes]
        lengths = [tile.span + tile.flat((bottom, right)) - start
                   for (_, bottom, _, right), start in zip(self.circuit.boxes, starts)]  # fmt: skip
        return starts, lengths


#: Calls between two checks for an interruption.
_CALLS_PER_CHECK = 200


class _ModeJob(_CircuitJob):
    """Pillow's mode rule for a tile, from its windows sorted by a circuit."""

    def __init__(self, circuit: Circuit, dtype: np.dtype) -> None:
        super().__init__(circuit, dtype)
        self.arrays += 5
        self.calls += 9 * len(circuit.outputs)
        self.seconds_per_sample += 9 * len(circuit.outputs) * _seconds_per_call(dtype)

    def __call__(self, block: np.ndarray, tile: _Tile, scratch: _Scratch, checkpoint) -> np.ndarray:
        _, ranked = self.run(block, tile, scratch, checkpoint)
        span = tile.span
        buffers = scratch.get((id(self), "scan"),
                              lambda: _ScanBuffers(scratch.largest.span, block.dtype, len(ranked)))
        checkpoint()
        value = _mode_of_sorted(ranked, block[tile.start : tile.start + span], buffers.cut(span))
        return tile.pixels(value)


class _ScanBuffers:
    """Flat arrays for :func:`_mode_of_sorted`: the value, counts (uint8 up to
    256 samples a window), a mask and flags."""

    def __init__(self, span: int, dtype: np.dtype, samples: int) -> None:
        self.value = np.empty(span, dtype)
        self.counts = np.empty((2, span), np.uint8 if samples <= 256 else np.uint16)
        self.mask = np.empty(span, np.uint8)
        self.same = np.empty(span, np.bool_)

    def cut(self, span: int) -> tuple:
        return self.value[:span], *self.counts[:, :span], self.mask[:span], self.same[:span]


def _mode_of_sorted(ranked: list, center: np.ndarray, buffers: tuple) -> np.ndarray:
    """Pillow's mode rule for windows given as their samples in increasing
    order (``ranked``, flat arrays) and their centres; ``buffers`` from
    :class:`_ScanBuffers`. Returns the ``value`` buffer.

    A value found k times is a run of k equal samples; the first of the
    longest runs holds the smallest of the most frequent values. Only a run
    longer than 2 replaces the centre.
    """
    value, run, best, mask, same = buffers
    # uint8 (Pillow's samples) is kept with bit masks, faster than np.copyto's where=.
    masked = value.dtype == np.uint8 and run.dtype == np.uint8
    np.equal(ranked[1], ranked[0], out=same)
    np.copyto(run, same)  # how many samples before this one equal it: 0 starts a run
    best.fill(1)
    value.fill(0) if masked else np.copyto(value, center)
    for k in range(2, len(ranked)):
        np.equal(ranked[k], ranked[k - 1], out=same)
        run += 1
        if masked:
            run &= np.negative(same.view(np.uint8), out=mask)
            # All ones where this run is longer than every one before it. The
            # samples increase with k, so the last one kept is the largest.
            np.greater(run, best, out=same)
            np.negative(same.view(np.uint8), out=mask)
            mask &= ranked[k]
            np.maximum(value, mask, out=value)
        else:
            np.multiply(run, same, out=run)
            np.greater(run, best, out=same)
            np.copyto(value, ranked[k], where=same)
        np.maximum(best, run, out=best)
    if masked:
        np.less(best, 2, out=same)
        np.copyto(value, center, where=same)
    return value


class _StackedJob:
    """Jobs that copy each window of a tile out as a row: (span, size * size)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = size * size
        self.arrays = 2 * self.count

    def windows(self, block: np.ndarray, tile: _Tile, scratch: _Scratch) -> np.ndarray:
        span, count, reach = tile.span, self.count, self.size // 2
        rows = scratch.get((id(self), "rows"), lambda: np.empty(scratch.largest.span * count, block.dtype))
        windows = rows[: span * count].reshape(span, count)
        shifts = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
        for k, shift in enumerate(shifts):
            at = tile.start + tile.flat(shift)
            windows[:, k] = block[at : at + span]
        return windows


class _PartitionJob(_StackedJob):
    """A tile's rank-th smallest samples by ``np.partition`` of each window (NaN last)."""

    def __init__(self, size: int, rank: int) -> None:
        super().__init__(size)
        self.rank = rank
        self.seconds_per_sample = self.count * 4e-9

    def __call__(self, block, tile, scratch, checkpoint) -> np.ndarray:
        windows = self.windows(block, tile, scratch)
        checkpoint()
        windows.partition(self.rank, axis=1)
        return tile.pixels(np.ascontiguousarray(windows[:, self.rank]))


class _SortedModeJob(_StackedJob):
    """Pillow's mode rule for a tile, by sorting each window."""

    def __init__(self, size: int, dtype: np.dtype) -> None:
        super().__init__(size)
        # The sort's order, run numbers and counts: about 48 bytes a sample more.
        self.arrays = self.count * (2 + 48 // dtype.itemsize)
        self.seconds_per_sample = self.count * 30e-9

    def __call__(self, block, tile, scratch, checkpoint) -> np.ndarray:
        windows = self.windows(block, tile, scratch)
        checkpoint()
        center = block[tile.start : tile.start + tile.span]
        return tile.pixels(_mode_of_windows(windows, center))


class _CountingJob:
    """Rank or mode of 8-bit samples, counting: for each value v found in the
    tile, how many samples of each window are below v (rank) or equal to v
    (mode). Each count is a sum over the window of a 0/1 image, along the
    rows, then the columns, from spans of 1, 2, 4, ... pixels. The work
    grows with the number of values in the tile, barely with the size.
    """

    def __init__(self, size: int, rank: int | None) -> None:
        self.size, self.rank = size, rank
        self.spans = size.bit_length()
        self.arrays = 2 + 3 * self.spans
        # Calls per value: the 0/1 image, a sum per span and per bit each way, and the update.
        self.calls_per_value = 2 * (self.spans + size.bit_count()) + 6
        self.seconds_per_sample = self.calls(_TYPICAL_VALUES) * _COUNTING_CALL * _seconds_per_call(np.dtype(np.uint8))

    def calls(self, values: int) -> int:
        return values * self.calls_per_value

    def __call__(self, block, tile, scratch, checkpoint, values=None) -> np.ndarray:
        if values is None:
            values = _values_in(block, tile)
        span, length = tile.span, math.prod(tile.block_shape)
        buffers = scratch.get((id(self), "counting"),
                              lambda: self._buffers(math.prod(scratch.largest.block_shape)))
        flags, sums, (best, mask, result) = buffers[0][:length], buffers[1:5], buffers[5:]
        best, mask, result = best[:span], mask[:span], result[:span]
        center = block[tile.start : tile.start + span]
        mode = self.rank is None
        result.fill(0 if mode else values[0])
        if mode:
            best.fill(2)
        for k, value in enumerate(values if mode else values[1:]):
            if k % 16 == 0:
                checkpoint()
            (np.equal if mode else np.less)(block[:length], value, out=flags)
            count = self._window_counts(flags.view(np.uint8), tile, sums)
            if mode:
                np.greater(count, best, out=flags[:span])
                np.maximum(best, count, out=best)
            else:
                np.less_equal(count, self.rank, out=flags[:span])
                if not flags[:span].any():  # no window has this value or a larger one
                    break
            # Values come in increasing order: the last one kept is the largest.
            np.negative(flags[:span].view(np.uint8), out=mask)
            mask &= value
            np.maximum(result, mask, out=result)
        if mode:
            np.less_equal(best, 2, out=flags[:span])
            np.copyto(result, center, where=flags[:span])
        return tile.pixels(result)

    def _buffers(self, length: int) -> tuple:
        spans = self.spans
        return (np.empty(length, np.bool_), np.empty((spans, length), np.uint8), np.empty(length, np.uint16),
                np.empty((spans, length), np.uint16), np.empty(length, np.uint16), np.empty(length, np.uint16),
                np.empty(length, np.uint8), np.empty(length, np.uint8))  # fmt: skip

    def _window_counts(self, ones: np.ndarray, tile: _Tile, buffers: tuple) -> np.ndarray:
        """Sums of ``ones`` (0 or 1, flat over the block) over each window."""
        across, row_sums, down, counts = buffers
        size, row = self.size, tile.row_length
        # Along the rows (at most size, so uint8 holds every partial sum), as
        # far down as the sums along the columns will read.
        rows = _window_sums(ones, tile.channels, size, tile.span + (size - 1) * row, across, row_sums)
        return _window_sums(rows, row, size, tile.span, down, counts)


class _EitherJob:
    """8-bit samples: a circuit job (None: none), or counting where a tile holds
    so few values that counting them takes fewer calls."""

    def __init__(self, circuit_job: _CircuitJob | None, counting: _CountingJob) -> None:
        self.circuit_job, self.counting = circuit_job, counting
        self.arrays = max(counting.arrays, circuit_job.arrays if circuit_job else 0)
        self.seconds_per_sample = (circuit_job or counting).seconds_per_sample

    def __call__(self, block, tile, scratch, checkpoint) -> np.ndarray:
        values = _values_in(block, tile)
        if self.circuit_job is None or self.counting.calls(len(values)) * _COUNTING_CALL < self.circuit_job.calls:
            return self.counting(block, tile, scratch, checkpoint, values)
        return self.circuit_job(block, tile, scratch, checkpoint)


#: Values in a tile of an 8-bit photograph, for cost estimates.
_TYPICAL_VALUES = 200

#: A counting call's time over a circuit call's (measured: on larger arrays,
#: in part 8-bit where a circuit's are the samples' type).
_COUNTING_CALL = 0.5


def _window_sums(values: np.ndarray, step: int, count: int, length: int, spans: np.ndarray,
                 out: np.ndarray) -> np.ndarray:  # fmt: skip
    """``sum(values[p + j * step] for j in range(count))`` for p below ``length``,
    in ``out[:length]``. The rows of ``spans`` hold the sums over 1, 2, 4, ...
    steps on the way; the result adds those that make up ``count``."""
    power = [values]
    while 2 ** len(power) <= count:
        width = 2 ** (len(power) - 1)
        shorter = len(values) - (2 * width - 1) * step
        doubled = spans[len(power) - 1, :shorter]
        np.add(power[-1][:shorter], power[-1][width * step : width * step + shorter], out=doubled)
        power.append(doubled)
    parts, at = [], 0
    for bit in range(len(power) - 1, -1, -1):
        if count >> bit & 1:
            parts.append(power[bit][at : at + length])
            at += 2**bit * step
    out = out[:length]
    if len(parts) == 1:
        np.copyto(out, parts[0])
    else:
        np.add(parts[0], parts[1], out=out)
        for part in parts[2:]:
            out += part
    return out


def _values_in(block: np.ndarray, tile: _Tile) -> np.ndarray:
    """The distinct samples below 256 of a block, in increasing order, as uint8."""
    flat = block[: math.prod(tile.block_shape)]
    return np.flatnonzero(np.bincount(flat, minlength=256)[:256]).astype(np.uint8)


def _mode_of_windows(windows: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Pillow's mode rule for each row of ``windows`` (one window's samples per
    row), whose pixels' own values are ``center``."""
    ranked = np.sort(windows, axis=1)  # NaN last
    rows, count = ranked.shape
    starts = np.ones((rows, count), bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]  # NaN != NaN: each NaN is a run by itself
    run = np.cumsum(starts, axis=1) - 1
    found = np.bincount((run + np.arange(rows)[:, None] * count).ravel(), minlength=rows * count)
    found = found.reshape(rows, count)
    winner = np.argmax(found, axis=1)  # the first, smallest, of the most frequent
    first = np.argmax(run == winner[:, None], axis=1)
    mode = ranked[np.arange(rows), first]
    return np.where(found[np.arange(rows), winner] > 2, mode, center)


# ---------------------------------------------------------------------------
# Regions of the image, cut into tiles and run on threads


#: Bytes of tile-sized arrays a job keeps at once: about what stays in a core's cache.
_TILE_BYTES = 2 << 20

#: Samples in a tile at least (NumPy spends about a microsecond on each
#: call), unless its arrays would take more than _MAX_TILE_BYTES.
_MIN_TILE_SAMPLES = 1 << 15
_MAX_TILE_BYTES = 16 << 20


@dataclass(frozen=True)
class _Region:
    """Output pixels ``out`` computed by ``job`` from ``work``, read through
    ``rows`` and ``cols``: the source row and column of each padded row and
    column (-1: ``fill``). Output pixel (y, x) has its window at padded rows
    y to y + size - 1 and columns x to x + size - 1."""

    work: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    fill: object
    out: np.ndarray
    job: object

    @classmethod
    def padded(cls, work: np.ndarray, size: int, mode: BorderMode, fill, job) -> _Region:
        """All of ``work``, extended by ``mode`` (``valid``: not at all), into a new array."""
        reach = size // 2
        height, width, channels = work.shape
        if mode is BorderMode.VALID:
            rows, cols = np.arange(height), np.arange(width)
        else:
            rows = engine.border_index(height, reach, reach, mode.value)
            cols = engine.border_index(width, reach, reach, mode.value)
        out = np.empty((len(rows) - 2 * reach, len(cols) - 2 * reach, channels), work.dtype)
        return cls(work, rows, cols, fill, out, job)


def _cut_regions(work: np.ndarray, size: int, job, out: np.ndarray) -> tuple[list[_Region], Callable[[], None]]:
    """Pillow's ModeFilter into ``out``: regions for the pixels whose window
    lies inside the image (by ``job``), and for those near the edge, whose
    window the edge cuts off. Those are read in a type that has a fill no
    sample equals, so that only the samples inside count; the function
    returned puts their results in ``out`` once the regions have run."""
    reach = size // 2
    height, width = work.shape[:2]
    top, bottom, left, right = reach, height - reach, reach, width - reach
    regions: list[_Region] = []
    if top < bottom and left < right:
        inside = out[top:bottom, left:right]
        regions.append(_Region(work, np.arange(height), np.arange(width), 0, inside, job))
        edges = [(0, top, 0, width), (bottom, height, 0, width), (top, bottom, 0, left), (top, bottom, right, width)]
    else:
        edges = [(0, height, 0, width)]
    results = []
    for y0, y1, x0, x1 in edges:
        # The part of the image these pixels' windows reach; -1 past its edge.
        first_row, first_col = max(0, y0 - reach), max(0, x0 - reach)
        near = work[first_row : y1 + reach, first_col : x1 + reach]
        rows, cols = np.arange(y0 - reach, y1 + reach), np.arange(x0 - reach, x1 + reach)
        rows = np.where((rows >= 0) & (rows < height), rows - first_row, -1)
        cols = np.where((cols >= 0) & (cols < width), cols - first_col, -1)
        coded, fill, decode = _with_uncounted_fill(near, size)
        edge_job = _CountingJob(size, None) if decode is None else _mode_job(size, coded.dtype)
        result = np.empty((y1 - y0, x1 - x0, work.shape[2]), np.uint8 if decode is None else coded.dtype)
        regions.append(_Region(coded, rows, cols, fill, result, edge_job))
        results.append((out[y0:y1, x0:x1], result, decode))

    def finish() -> None:
        for target, result, decode in results:
            target[...] = result if decode is None else decode(result)

    return regions, finish


def _with_uncounted_fill(samples: np.ndarray, size: int):
    """``samples`` in a type with a fill value that no sample equals, the
    fill, and how to turn results back into samples (None: the results are
    uint8 samples already).

    Floats keep their type, with NaN (never equal to anything); other
    integers become floats (64-bit ones by the order of their distinct
    values). uint8 becomes uint16 with 256 for windows of ``_COUNTED_EDGES``
    or more, whose mode is counted (:class:`_CountingJob`).
    """
    dtype = samples.dtype
    if dtype == np.uint8 and size >= _COUNTED_EDGES:
        return samples.astype(np.uint16), 256, None
    if dtype.kind == "f":
        return samples, np.nan, lambda result: result
    if dtype.itemsize <= 2:
        return samples.astype(np.float32), np.nan, lambda result: result.astype(dtype)
    if dtype.itemsize == 4:
        return samples.astype(np.float64), np.nan, lambda result: result.astype(dtype)
    values, codes = np.unique(samples, return_inverse=True)
    return codes.reshape(samples.shape).astype(np.float64), np.nan, lambda result: values[result.astype(np.intp)]


#: From this size on, the mode of 8-bit samples near the edge is counted
#: (as uint16): sorting them as float32 would take longer.
_COUNTED_EDGES = 7


def _run(regions: list[_Region], size: int, threads, progress) -> None:
    """Compute every region's output, tile by tile, on threads (as
    :func:`convfilter.engine.run_pieces` runs them, ``progress`` included)."""
    reach = size // 2
    pieces: list = []
    scratches: list = []
    seconds = 0.0
    for index, region in enumerate(regions):
        rows, cols = region.out.shape[:2]
        largest = _tile_shape(region.out.shape, reach, region.job.arrays * region.work.dtype.itemsize)
        scratches.append(_Scratch(largest))
        if region.out.size:
            pieces += [(index, y, min(y + largest.rows, rows), x, min(x + largest.cols, cols))
                       for y in range(0, rows, largest.rows) for x in range(0, cols, largest.cols)]  # fmt: skip
            seconds += region.out.size * region.job.seconds_per_sample

    def filter_piece(piece, checkpoint) -> None:
        index, y0, y1, x0, x1 = piece
        region, scratch = regions[index], scratches[index]
        largest = scratch.largest
        tile = _Tile(y1 - y0, x1 - x0, largest.channels, reach)
        flat = scratch.get("block", lambda: np.empty(math.prod(largest.block_shape), region.work.dtype))
        block = flat[: math.prod(tile.block_shape)].reshape(tile.block_shape)
        _gather(region.work, region.rows[y0 : y1 + 2 * reach], region.cols[x0 : x1 + 2 * reach], region.fill, block)
        region.out[y0:y1, x0:x1] = region.job(flat, tile, scratch, checkpoint)

    engine.run_pieces(filter_piece, pieces, engine.worker_count(threads, seconds), progress)


def _tile_shape(shape: tuple[int, int, int], reach: int, bytes_per_sample: int) -> _Tile:
    """The tiles to cut an output of ``shape`` into: about square, and small
    enough that a job's arrays of ``bytes_per_sample`` fit :data:`_TILE_BYTES`
    (but not so small that NumPy's cost per call dominates, if memory allows)."""
    rows, cols, channels = shape
    channels = max(channels, 1)
    samples = max(_TILE_BYTES // bytes_per_sample, min(_MIN_TILE_SAMPLES, _MAX_TILE_BYTES // bytes_per_sample))
    tile_cols = min(cols, max(32, math.isqrt(samples // channels)))
    tile_rows = min(rows, max(1, samples // (channels * tile_cols)))
    return _Tile(tile_rows, tile_cols, channels, reach)


def _gather(work: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill, block: np.ndarray) -> None:
    """``block[i, j] = work[rows[i], cols[j]]``, or ``fill`` where either index is -1."""
    low_row, low_col = max(int(rows.min()), 0), max(int(cols.min()), 0)
    near = work[low_row : int(rows.max()) + 1, low_col : int(cols.max()) + 1]
    row_index, col_index = np.maximum(rows, 0) - low_row, np.maximum(cols, 0) - low_col
    row_run, col_run = _as_slice(row_index), _as_slice(col_index)
    if row_run is not None and col_run is not None:
        block[...] = near[row_run, col_run]
    elif col_run is not None:
        np.take(near[:, col_run], row_index, axis=0, out=block, mode="clip")
    elif row_run is not None:
        np.take(near[row_run], col_index, axis=1, out=block, mode="clip")
    else:
        np.take(near.take(row_index, axis=0), col_index, axis=1, out=block, mode="clip")
    if rows.min() < 0:
        block[rows < 0] = fill
    if cols.min() < 0:
        block[:, cols < 0] = fill


def _as_slice(index: np.ndarray) -> slice | None:
    """``index`` as a slice if it counts up by one, else None."""
    first = int(index[0])
    if int(index[-1]) - first == len(index) - 1 and (len(index) < 2 or bool(np.all(np.diff(index) == 1))):
        return slice(first, first + len(index))
    return None
