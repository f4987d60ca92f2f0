"""Ways of computing one strip of a correlation, for :mod:`convfilter.engine`.

Everything here works on a *padded strip*: a 2-D array ``src`` of ``n + h - 1``
rows holding the image rows that ``n`` output rows need, border padding
included, with the channels of each row interleaved. One pixel to the right
is therefore ``channels`` elements to the right, and the tap ``(r, c)`` of an
h x w kernel, for all ``n`` output rows at once, is the view
``src[r : r + n, c * channels : c * channels + m]`` where ``m`` is the number
of output columns times ``channels``. Each strategy produces the ``n`` x
``m`` sums (some as n x columns x channels views of their own buffers).
Buffers are allocated once per worker thread by :class:`Scratch` and reused
strip after strip.

The strategies:

* :func:`lincomb` -- the building block: a weighted sum of views, grouping
  equal weights so that each distinct weight costs one multiply and every
  other term one add or subtract.
* :class:`IntegerDirect` -- exact integer sums for integer matrices
  (int16 or int32), rows with the same pattern of weights combined first.
* :func:`pillow_direct` -- float sums in Pillow's order (see the engine's
  module docstring); :func:`pillow_at` repeats that arithmetic for a few
  chosen pixels.
* :func:`separable_direct` and :class:`SeparableGemm` -- two 1-D passes, as
  weighted views (box factors summed by doubling) or as banded matrix
  products.
* :class:`FourierTiles` -- overlap-save FFTs on tiles; a large tile in
  passes of 1-D FFTs, each a bounded call, with a checkpoint between them.

This module needs nothing but NumPy; it uses ``scipy.fft`` for the FFTs
when SciPy is installed (same results, several times faster).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

# Optional: scipy's FFT transforms many rows at once, several times faster;
# numpy.fft does the same job without it. Imported on first use only, since
# importing scipy.fft costs a few hundred milliseconds that most runs never need.
_NOT_LOADED = object()
_scipy_fft: object = _NOT_LOADED
_scipy_available: bool | None = None


def scipy_fft():
    """``scipy.fft``, imported on first call, or None when SciPy is not installed."""
    global _scipy_fft
    if _scipy_fft is _NOT_LOADED:
        try:
            import scipy.fft as module
        except ImportError:
            module = None
        _scipy_fft = module
    return _scipy_fft


def fft_library() -> str:
    """Which library will do the FFTs, decided without importing SciPy."""
    global _scipy_available
    if _scipy_fft is None:
        return "numpy"
    if _scipy_fft is not _NOT_LOADED:
        return "scipy"
    if _scipy_available is None:
        _scipy_available = importlib.util.find_spec("scipy") is not None
    return "scipy" if _scipy_available else "numpy"


#: Seconds a process spends importing scipy.fft before its first FFT
#: (measured 0.17-0.25 s): more than a small image's whole filtering.
SCIPY_FFT_IMPORT_SECONDS = 0.2


def fft_start_seconds() -> float:
    """What the first FFT of this process costs before any work: importing
    scipy.fft when it will be used and is not loaded yet, else nothing."""
    if _scipy_fft is _NOT_LOADED and fft_library() == "scipy":
        return SCIPY_FFT_IMPORT_SECONDS
    return 0.0


class Scratch:
    """Named buffers of one worker thread, grown on demand and reused.

    ``get(name, shape, dtype)`` returns a C-contiguous array of that shape,
    a view of the largest buffer of that name asked for so far. Contents
    are whatever the last user left, except for buffers created by
    ``zeros``, which start zeroed.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype, *, zeros: bool = False) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.size < size:
            buffer = (np.zeros if zeros else np.empty)(max(size, 1), dtype)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)


def carry_on() -> None:
    """The default checkpoint: never stops.

    A checkpoint is called between the parts of a long piece of work and
    raises to abandon it.
    """


# ---------------------------------------------------------------------------
# Weighted sums of views
# ---------------------------------------------------------------------------


def lincomb(out: np.ndarray, terms, scratch: np.ndarray, *, accumulate: bool = False) -> None:
    """``out = sum(coef * view)`` (``+=`` with ``accumulate``), in out's dtype.

    Terms with equal ``abs(coef)`` are added (or subtracted) first and then
    multiplied once; terms of weight 1 are plain adds. Zero weights are
    skipped. ``scratch`` has out's shape and must not overlap any view.

    >>> a = np.arange(4.0); out = np.empty(3); tmp = np.empty(3)
    >>> lincomb(out, [(2, a[:3]), (-1, a[1:]), (2, a[1:])], tmp); out.tolist()
    [1.0, 4.0, 7.0]
    """
    groups: dict[float, list[tuple[bool, np.ndarray]]] = {}
    for coef, view in terms:
        if coef != 0:
            groups.setdefault(abs(coef), []).append((coef > 0, view))
    fresh = not accumulate
    if not groups:
        if fresh:
            out.fill(0)
        return
    kind = out.dtype.type
    # Weight-1 groups go last: out is then first written by a multiply,
    # which absorbs any sign, and the unit terms become plain adds.
    for magnitude in sorted(groups, key=lambda m: m == 1):
        members = sorted(groups[magnitude], key=lambda member: not member[0])
        if magnitude == 1 and not fresh:
            for positive, view in members:
                (np.add if positive else np.subtract)(out, view, out=out)
            continue
        if magnitude == 1:  # the only group, and out is still unwritten
            if _signed_sum(out, members) < 0:
                np.negative(out, out=out)
            fresh = False
            continue
        if len(members) == 1:
            positive, total = members[0]
            sign = 1 if positive else -1
        else:
            sign = _signed_sum(scratch, members)
            total = scratch
        factor = kind(sign * magnitude)
        if fresh:
            np.multiply(total, factor, out=out)
            fresh = False
        else:
            np.multiply(total, factor, out=scratch)
            np.add(out, scratch, out=out)


def _signed_sum(target: np.ndarray, members) -> int:
    """target = +-sum of the members' views; returns the sign still to apply."""
    (first_positive, first), rest = members[0], members[1:]
    sign = 1 if first_positive else -1
    if not rest:
        np.copyto(target, first)
        return sign
    positive, second = rest[0]
    (np.add if positive == first_positive else np.subtract)(first, second, out=target)
    for positive, view in rest[1:]:
        (np.add if positive == first_positive else np.subtract)(target, view, out=target)
    return sign


def count_lincomb_ops(coefs) -> int:
    """Array operations :func:`lincomb` spends on these weights (for the cost model)."""
    magnitudes = [abs(c) for c in coefs if c != 0]
    distinct = {m for m in magnitudes if m != 1}
    return max(1, len(magnitudes) - 1 + 2 * len(distinct))


# ---------------------------------------------------------------------------
# Exact integer sums
# ---------------------------------------------------------------------------


class IntegerDirect:
    """Exact sums for an integer matrix, in an integer dtype.

    Rows whose weights are multiples of one pattern (``[-1, -1, -1]`` and
    ``[1, 1, 1]``, say) are combined vertically first, then the pattern is
    applied across once: an h x w kernel with few distinct rows costs far
    fewer than h * w operations.

    A matrix that is mostly one weight may instead be summed as nested
    boxes: that weight times the box sum of the window, plus, around the
    taps that still differ, the weight most of those have (or that their
    whole edge has: concentric rings) times their box sum, and so on; the
    few taps left are row groups as above. Each row is
    added down once, each column across once. edge_enhance is -1 x 3x3 +
    11 x centre, 6 array operations instead of 8; smooth_more is
    1 x 5x5 + 4 x 3x3 + 39 x centre, 12 instead of 21. Boxes are used where
    they take fewer operations and the partial sums, which carry
    ``|weight| * area`` for each box plus the taps left, stay within
    ``max_weight_sum`` (None: never).
    """

    def __init__(self, matrix: np.ndarray, channels: int, *, max_weight_sum: int | None = None) -> None:
        matrix = np.asarray(matrix, dtype=np.int64)
        self.shape = matrix.shape
        self.channels = channels
        #: Nested boxes ``(weight, top, bottom, left, right)``, outermost
        #: first (bottom and right exclusive), and the row groups of the rest.
        self.boxes: list[tuple[int, int, int, int, int]] = []
        self._columns: list[list[int]] = []  # per box, see _columns_by_box
        self.groups = _row_groups(matrix)
        if max_weight_sum is None:
            return
        fewest = self.ops()
        for boxes, rest in _nested_boxes(matrix):
            carried = sum(abs(v) * (b - t) * (r - l) for v, t, b, l, r in boxes) + int(np.abs(rest).sum())
            if carried > max_weight_sum:
                break  # another box never carries less
            groups = _row_groups(rest)
            ops = _groups_ops(groups) + _boxes_ops(boxes, alone=not groups)
            if ops < fewest:
                fewest, self.boxes, self.groups = ops, boxes, groups
        self._columns = _columns_by_box(self.boxes)

    def ops(self) -> int:
        """Array operations per strip (for the cost model)."""
        ops = _groups_ops(self.groups)
        return ops + _boxes_ops(self.boxes, alone=not self.groups) if self.boxes else ops

    def run(self, src: np.ndarray, out: np.ndarray, scratch: Scratch, checkpoint=carry_on) -> None:
        """out = the sums of ``src``; ``checkpoint()`` is called between row patterns."""
        n, m = out.shape
        c = self.channels
        if not self.groups and not self.boxes:
            out.fill(0)
            return
        wide = scratch.get("integer-wide", (n, src.shape[1]), out.dtype)
        tmp = scratch.get("integer-tmp", (n, src.shape[1]), out.dtype)
        for index, (vertical, across) in enumerate(self.groups):
            if len(vertical) == 1 and vertical[0][0] == 1:
                rows = src[vertical[0][1] : vertical[0][1] + n]
            else:
                lincomb(wide, [(a, src[r : r + n]) for a, r in vertical], tmp)
                rows = wide
            terms = [(p, rows[:, j * c : j * c + m]) for j, p in enumerate(across)]
            lincomb(out, terms, tmp[:, :m], accumulate=index > 0)
            checkpoint()
        if self.boxes:
            self._add_boxes(src, out, scratch, tmp, accumulate=bool(self.groups))
            checkpoint()

    def _add_boxes(self, src, out, scratch: Scratch, tmp, *, accumulate: bool) -> None:
        """out (+)= the boxes' sums; ``tmp`` is out's rows by src's width."""
        n, m = out.shape
        c = self.channels
        kind = out.dtype.type
        downs = _box_rows_summed(self.boxes, src, n, scratch, out.dtype)
        # Column j of the window is weighted by every box holding it, so
        # across runs from the outermost columns in: `current` is the sign
        # times the sum of weight x rows of the boxes holding them.
        sign = 1 if self.boxes[0][0] > 0 else -1
        summed = scratch.get("integer-box-sum", tmp.shape, out.dtype)
        current = downs[0]
        for i, (weight, *_) in enumerate(self.boxes):
            factor = weight * sign
            if i == 0:
                if factor != 1:
                    current = np.multiply(current, kind(factor), out=summed)
            elif abs(factor) == 1:
                current = (np.add if factor > 0 else np.subtract)(current, downs[i], out=summed)
            else:
                np.multiply(downs[i], kind(factor), out=tmp)
                current = np.add(current, tmp, out=summed)
            columns = self._columns[i]
            if columns:
                terms = [(sign, current[:, j * c : j * c + m]) for j in columns]
                lincomb(out, terms, tmp[:, :m], accumulate=accumulate)
                accumulate = True


def _box_rows_summed(boxes, src: np.ndarray, n: int, scratch: Scratch, dtype) -> list[np.ndarray]:
    """Per box, the sum of its rows (views of ``src``, n rows each): the
    innermost box's rows first, then each outer box adds the rows it has
    beyond the one inside it (a box with the same rows shares the sum)."""
    downs: list[np.ndarray] = []
    inside = None
    for index in range(len(boxes) - 1, -1, -1):
        _, top, bottom, _, _ = boxes[index]
        if inside is None:
            terms = [(1, src[r : r + n]) for r in range(top, bottom)]
        else:
            rows, (inner_top, inner_bottom) = downs[-1], inside
            extra = [*range(top, inner_top), *range(inner_bottom, bottom)]
            terms = [(1, rows)] + [(1, src[r : r + n]) for r in extra] if extra else []
        if inside is not None and not terms:
            total = downs[-1]
        elif len(terms) == 1:
            total = terms[0][1]
        else:
            # The row groups are done with "integer-wide" by now.
            name = "integer-wide" if inside is None else f"integer-box-{index}"
            total = scratch.get(name, (n, src.shape[1]), dtype)
            _signed_sum(total, [(True, view) for _, view in terms])
        downs.append(total)
        inside = (top, bottom)
    downs.reverse()
    return downs


def _nested_boxes(matrix: np.ndarray):
    """Yields ``(boxes, rest)`` with one more box each time: the box
    around the taps of ``rest`` (the matrix less the boxes so far) that
    are not zero, weighted by the weight most of its taps have or else the
    weight of every tap on its edge (concentric rings); stops when there is
    neither."""
    rest = matrix.copy()
    boxes: list[tuple[int, int, int, int, int]] = []
    while True:
        rows = np.flatnonzero(rest.any(axis=1))
        cols = np.flatnonzero(rest.any(axis=0))
        if rows.size == 0:
            return
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        region = rest[top:bottom, left:right]
        if region.size < 2:
            return
        weight = _weight_of_most_taps(region) or _weight_of_the_edge(region)
        if not weight:
            return
        region -= weight
        boxes = boxes + [(weight, top, bottom, left, right)]
        yield boxes, rest.copy()


def _weight_of_the_edge(matrix: np.ndarray) -> int:
    """The weight of every tap in the first and last rows and columns, or 0."""
    edge = np.concatenate([matrix[0], matrix[-1], matrix[:, 0], matrix[:, -1]])
    return int(edge[0]) if (edge == edge[0]).all() else 0


def _weight_of_most_taps(matrix: np.ndarray) -> int:
    """The nonzero weight of more than half the taps, or 0 if none is."""
    counts: dict[int, int] = {}
    for weight in matrix.flat:  # not np.unique, which imports numpy.ma (16 ms)
        counts[int(weight)] = counts.get(int(weight), 0) + 1
    weight, count = max(counts.items(), key=lambda item: item[1])
    return weight if weight and 2 * count > matrix.size else 0


def _row_groups(matrix: np.ndarray) -> list[tuple[list[tuple[int, int]], list[int]]]:
    """``(vertical, across)`` for each pattern of rows: rows ``r`` weighted
    ``a`` (``vertical``) share the pattern ``across``, each row being
    ``a * across``."""
    patterns: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for r, row in enumerate(matrix):
        nonzero = row[row != 0]
        if nonzero.size == 0:
            continue
        step = int(np.gcd.reduce(np.abs(nonzero))) * (1 if nonzero[0] > 0 else -1)
        patterns.setdefault(tuple(int(v) for v in row // step), []).append((step, r))
    groups = []
    for pattern, rows in patterns.items():
        steps = [s for s, _ in rows]
        common = int(np.gcd.reduce(np.abs(steps))) * (1 if steps[0] > 0 else -1)
        groups.append(([(s // common, r) for s, r in rows], [common * p for p in pattern]))
    # Start with a group whose first write needs no negation: one with
    # a weight other than +-1 (a multiply absorbs the sign) or a +1.
    groups.sort(key=lambda g: not any(abs(a) != 1 or a == 1 for a in g[1] if a))
    return groups


def _groups_ops(groups) -> int:
    total = 0
    for vertical, across in groups:
        if len(vertical) > 1 or vertical[0][0] != 1:
            total += count_lincomb_ops([a for a, _ in vertical])
        total += count_lincomb_ops(across)
    return total + max(0, len(groups) - 1)


def _boxes_ops(boxes, *, alone: bool) -> int:
    """Operations of :meth:`IntegerDirect._add_boxes` (``alone``: no row
    groups were summed before it, so the first columns start the sums)."""
    weight, top, bottom, _, _ = boxes[0]
    ops = bottom - top - 1 + (abs(weight) != 1)  # rows down, the first weight
    ops += sum(1 if abs(v) == 1 else 2 for v, *_ in boxes[1:])  # the weights inside
    for columns in _columns_by_box(boxes):  # across
        if columns and alone:  # the first write: a copy or an add, and any negation
            ops += max(1, len(columns) - 1) + (weight < 0)
            alone = False
        else:
            ops += len(columns)
    return ops


def _columns_by_box(boxes) -> list[list[int]]:
    """Per box, its window columns that the box inside it does not hold."""
    stages = []
    for i, (_, _, _, left, right) in enumerate(boxes):
        inner_left, inner_right = boxes[i + 1][3:] if i + 1 < len(boxes) else (0, 0)
        stages.append([j for j in range(left, right) if not inner_left <= j < inner_right])
    return stages


# ---------------------------------------------------------------------------
# Pillow's float order
# ---------------------------------------------------------------------------


def pillow_direct(
    src: np.ndarray,
    weights: np.ndarray,
    start: float,
    out: np.ndarray,
    channels: int,
    scratch: Scratch,
    checkpoint=carry_on,
) -> None:
    """out = start + kernel rows bottom-first, each summed left to right.

    The same float operations, in the same order, as Pillow's C loops, so
    the rounding is identical. Zero weights are skipped (adding an exact
    zero changes nothing) and weights of +-1 become adds and subtracts
    (``x * -1 == -x`` and ``a + -x == a - x`` exactly). ``checkpoint()``
    is called after each kernel row.
    """
    h, w = weights.shape
    n, m = out.shape
    kind = out.dtype.type
    row_sum = scratch.get("row-sum", out.shape, out.dtype)
    term = scratch.get("term", out.shape, out.dtype)
    started = False
    for r in range(h - 1, -1, -1):
        acc = None
        for c in range(w):
            weight = weights[r, c]
            if weight == 0:
                continue
            window = src[r : r + n, c * channels : c * channels + m]
            if acc is None:
                if weight == 1:
                    acc = window
                else:
                    if weight == -1:
                        np.negative(window, out=row_sum)
                    else:
                        np.multiply(window, kind(weight), out=row_sum)
                    acc = row_sum
                continue
            if weight == 1:
                np.add(acc, window, out=row_sum)
            elif weight == -1:
                np.subtract(acc, window, out=row_sum)
            else:
                np.multiply(window, kind(weight), out=term)
                np.add(acc, term, out=row_sum)
            acc = row_sum
        if acc is None:
            continue
        if started:
            np.add(out, acc, out=out)
        else:
            np.add(acc, kind(start), out=out)
            started = True
        checkpoint()
    if not started:
        out.fill(start)


def pillow_at(
    flat_src: np.ndarray,
    base: np.ndarray,
    pitch: int,
    channels: int,
    weights: np.ndarray,
    start: float,
) -> np.ndarray:
    """:func:`pillow_direct`'s float32 result for chosen pixels only.

    ``base`` holds, per pixel, the index in ``flat_src`` (the strip
    flattened, ``pitch`` elements a row) of the value under tap (0, 0).
    Every tap is gathered for all pixels at once (tap-major, so each tap's
    values are contiguous); then the same float32 operations in the same
    order as :func:`pillow_direct`. Zero weights are included: adding an
    exact zero changes no sum.
    """
    h, w = weights.shape
    kind = np.float32
    offsets = np.arange(h)[:, None, None] * pitch + np.arange(w)[None, :, None] * channels
    weights = weights.astype(kind)[:, :, None]
    result = np.empty(base.shape, kind)
    step = max(1, (1 << 20) // (h * w))
    for i in range(0, base.size, step):
        chunk = base[i : i + step]
        products = np.take(flat_src, offsets + chunk).astype(kind)
        products *= weights
        rows = products[:, 0].copy()
        for c in range(1, w):
            rows += products[:, c]
        total = np.full(chunk.shape, start, kind)
        for r in range(h - 1, -1, -1):
            total += rows[r]
        result[i : i + step] = total
    return result


# ---------------------------------------------------------------------------
# Separable kernels
# ---------------------------------------------------------------------------


def separable_direct(
    src: np.ndarray,
    column: np.ndarray,
    row: np.ndarray,
    out: np.ndarray,
    channels: int,
    scratch: Scratch,
) -> None:
    """out = row-pass(column-pass(src)) with weighted views (exact for integers)."""
    n, m = out.shape
    width = src.shape[1]
    wide = scratch.get("separable-wide", (n, width), out.dtype)
    factor_pass(wide, src, column, 0, scratch)
    factor_pass(out.reshape(n, -1, channels), wide.reshape(n, -1, channels), row, 1, scratch)


def _cut(array: np.ndarray, axis: int, start: int, count: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, start + count)
    return array[tuple(index)]


def box_run(coefs) -> tuple[int, int, float] | None:
    """``(first, length, weight)`` when the non-zero weights are one run of
    at least 4 equal values (a box factor), else None.

    >>> box_run([0, 2, 2, 2, 2, 0]), box_run([1, 2, 1])
    ((1, 4, 2), None)
    """
    nonzero = [i for i, c in enumerate(coefs) if c != 0]
    if len(nonzero) < 4 or nonzero[-1] - nonzero[0] + 1 != len(nonzero):
        return None
    weight = coefs[nonzero[0]]
    if any(coefs[i] != weight for i in nonzero):
        return None
    return nonzero[0], len(nonzero), weight


def pass_ops(coefs) -> int:
    """Array operations :func:`factor_pass` spends on a factor (for the cost model)."""
    run = box_run(coefs)
    if run is None:
        return count_lincomb_ops(coefs)
    length = run[1]
    return length.bit_length() + bin(length).count("1") + (run[2] != 1)


def factor_pass(out: np.ndarray, source: np.ndarray, coefs, axis: int, scratch: Scratch) -> None:
    """One 1-D pass: out = sum(coefs[k] * source shifted by k along ``axis``).

    A box factor (equal weights in a run) is summed by doubling, in about
    2 log2(length) operations whatever its length; any other by
    :func:`lincomb`.
    """
    count = out.shape[axis]
    run = box_run(list(coefs))
    if run is None:
        tmp = scratch.get("pass-tmp", out.shape, out.dtype)
        lincomb(out, [(c, _cut(source, axis, k, count)) for k, c in enumerate(coefs)], tmp)
        return
    first, length, weight = run
    current = _cut(source, axis, first, count + length - 1)
    extent = current.shape[axis]
    buffers = [scratch.get(name, current.shape, out.dtype) for name in ("slide-a", "slide-b")]
    span, offset, fresh = 1, 0, True
    while span <= length:
        if length & span:  # add the sums of `span` values starting at `offset`
            piece = _cut(current, axis, offset, count)
            if fresh:
                np.copyto(out, piece)
                fresh = False
            else:
                np.add(out, piece, out=out)
            offset += span
        if 2 * span <= length:  # sums of `span` values -> sums of 2 * `span`
            extent -= span
            doubled = _cut(buffers[0], axis, 0, extent)
            np.add(_cut(current, axis, 0, extent), _cut(current, axis, span, extent), out=doubled)
            current = doubled
            buffers.reverse()
        span *= 2
    if weight != 1:
        np.multiply(out, out.dtype.type(weight), out=out)


def _toeplitz(n: int, taps: np.ndarray, dtype) -> np.ndarray:
    """The n x (n + k - 1) matrix whose row i holds ``taps`` from column i."""
    k = len(taps)
    matrix = np.zeros((n, n + k - 1), dtype)
    for i in range(n):
        matrix[i, i : i + k] = taps
    return matrix


class SeparableGemm:
    """Two 1-D passes as batches of small matrix products, for long factors.

    The column pass multiplies the strip, transposed, by the banded
    (Toeplitz) matrix of the column factor, ``chunk`` pixels at a time; its
    result holds each pixel's column of sums contiguously, so the row pass
    is the same kind of product on overlapping windows of ``block`` pixels.
    BLAS does the arithmetic several times faster per tap than one array
    operation per tap. Each product is kept small, which also keeps BLAS
    from starting threads of its own inside the engine's workers.
    """

    rows = 64  # output rows per strip (converted to float once)
    batch = 16  # output rows per product of the column pass
    block = 16  # output pixels per product of the row pass

    def __init__(self, column, row, channels: int, out_cols: int, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.channels = channels
        self.h, self.w = len(column), len(row)
        self.out_cols = out_cols
        self.chunk = 32 * channels  # elements per product of the column pass
        column = np.asarray(column, dtype=self.dtype)
        self.vertical = np.ascontiguousarray(_toeplitz(self.batch, column, self.dtype).T)
        self.across = _toeplitz(self.block, np.asarray(row, dtype=self.dtype), self.dtype)
        self.blocks = -(-out_cols // self.block)

    def pitch(self, width: int) -> int:
        """Row length (elements) of the strip buffer for ``width`` elements."""
        pixels = max(width // self.channels, self.blocks * self.block + self.w - 1)
        return -(-pixels * self.channels // self.chunk) * self.chunk

    def buffer_rows(self, n: int) -> int:
        """Rows of the strip buffer for ``n`` output rows: whole batches."""
        return -(-n // self.batch) * self.batch + self.h - 1

    def run(self, buffer: np.ndarray, n: int, scratch: Scratch):
        """Sums for ``n`` rows of the zero-tailed strip ``buffer``, which has
        :meth:`buffer_rows` rows (those past ``n + h - 1`` are zeroed here).

        Yields ``(first row, sums)`` for each batch of rows, the sums an
        (rows x cols x C) view of a buffer the next batch reuses.

        Every batch is a whole one, its surplus rows dropped: BLAS sums a
        product of another shape in another order, so a short last batch
        would give an image's last rows other bits than the same rows of a
        band that ends lower (or of a taller strip). Where a row falls in
        its batch does not change its sums (checked by the streaming tests).
        """
        pitch = buffer.shape[1]
        c = self.channels
        size = self.dtype.itemsize
        chunks = pitch // self.chunk
        rows = self.batch + self.h - 1
        buffer[n + self.h - 1 :] = 0
        # Every batch has the same shapes, so the same buffers and views.
        columns = scratch.get("gemm-columns", (chunks, self.chunk, self.batch), self.dtype)
        line = c * self.batch  # one pixel's sums: channel-major, then row
        across = np.lib.stride_tricks.as_strided(
            columns, (self.blocks, self.block + self.w - 1, line),
            (self.block * line * size, line * size, size),
        )  # fmt: skip
        result = scratch.get("gemm-result", (self.blocks, self.block, line), self.dtype)
        sums = result.reshape(self.blocks * self.block, c, self.batch)[: self.out_cols].transpose(2, 0, 1)
        for first in range(0, n, self.batch):
            windows = np.lib.stride_tricks.as_strided(
                buffer[first:], (chunks, self.chunk, rows), (self.chunk * size, size, pitch * size)
            )
            np.matmul(windows, self.vertical, out=columns)
            np.matmul(self.across, across, out=result)
            yield first, sums[: min(self.batch, n - first)]


# ---------------------------------------------------------------------------
# Fourier tiles
# ---------------------------------------------------------------------------

#: FFT lengths pocketfft handles well (products of 2, 3 and 5).
_FAST_LENGTHS = sorted(
    {2**a * 3**b * 5**c for a in range(13) for b in range(6) for c in range(5)}
    & set(range(16, 4097))
)

def fft_length(k: int) -> int:
    """Tile side for a kernel side of ``k``: a fast length near ``max(192, 6 k)``.

    Smaller tiles waste work on their overlap and on per-call costs; larger
    ones leave the cache. Timings are flat from about 160 to 320 for small
    kernels, and tiles stay within 4096 (or ``2 k``) for huge ones.

    >>> fft_length(3), fft_length(31), fft_length(101)
    (192, 192, 625)
    """
    return fast_length_at_least(min(max(192, 6 * k), max(2 * k, 4096)))


def fft_tile(kernel_shape: tuple[int, int], extent: tuple[int, int]) -> tuple[int, int]:
    """FFT tile (rows, columns) for a kernel on a padded image of ``extent``:
    :func:`fft_length` of each side, or less where a fast length holds the
    whole extent (a small image is one tile).

    >>> fft_tile((31, 31), (4030, 300))
    (192, 192)
    >>> fft_tile((31, 31), (130, 100))
    (135, 100)
    """
    return tuple(min(fft_length(k), fast_length_at_least(e)) for k, e in zip(kernel_shape, extent))


def fast_length_at_least(length: int) -> int:
    """The smallest good FFT length >= ``length`` (``length`` itself beyond the table)."""
    for candidate in _FAST_LENGTHS:
        if candidate >= length:
            return candidate
    return length


#: Elements one FFT call transforms at most. A tile is transformed in
#: passes of 1-D FFTs over at most this many elements (a few milliseconds
#: each), so a 4096 x 4096 tile is never one call of a second that neither
#: a checkpoint nor a KeyboardInterrupt can break into. The passes are the
#: ones pocketfft's 2-D transforms make, in the same order, so the sums are
#: the same bits as ``rfft2`` and ``irfft2`` of the whole tile.
FFT_CALL_ELEMENTS = 1 << 20


def _parts(count: int, line: int) -> list[slice]:
    """Consecutive slices of ``count`` lines of ``line`` elements, each within one FFT call."""
    step = max(1, FFT_CALL_ELEMENTS // max(1, line))
    return [slice(i, min(count, i + step)) for i in range(0, count, step)]


class FourierTiles:
    """Overlap-save correlation by FFT on (fh x fw) tiles.

    Each tile's channels are transformed together; the kernel's spectrum
    is computed once. With ``exact=True`` (integer matrices on integer
    images) the float64 results are rounded to the exact integer sums.
    A tile's sums depend on what the tile holds, so tiles sit on a grid
    fixed by the image, every :attr:`rows` x :attr:`cols` output pixels
    from its top left corner; a caller splitting the work among threads
    starts each :meth:`run` on that grid.
    """

    def __init__(
        self,
        weights: np.ndarray,
        channels: int,
        dtype,
        *,
        exact: bool = False,
        extent: tuple[int, int] | None = None,
    ) -> None:
        self.h, self.w = weights.shape
        if extent is None:
            self.fh, self.fw = fft_length(self.h), fft_length(self.w)
        else:
            self.fh, self.fw = fft_tile((self.h, self.w), extent)
        self.channels = channels
        self.dtype = np.dtype(np.float64 if exact else dtype)
        self.exact = exact
        # scipy's irfft2 scales its result once, by 1 / (fh fw) rounded
        # from long double to the tile's precision; the passes do the same.
        self.scale = self.dtype.type(1 / np.longdouble(self.fh * self.fw))
        flipped = np.asarray(weights, dtype=np.float64)[::-1, ::-1]
        spectrum = np.empty((self.fh, self.fw // 2 + 1), np.complex128)
        # numpy.fft.rfft2(flipped, s=(fh, fw)), pass by pass.
        for part in _parts(self.h, spectrum.shape[1]):
            np.fft.rfft(flipped[part], n=self.fw, axis=1, out=spectrum[part])
        spectrum[self.h :] = 0
        for part in _parts(spectrum.shape[1], self.fh):
            np.fft.fft(spectrum[:, part], axis=0, out=spectrum[:, part])
        complex_type = np.complex128 if self.dtype == np.float64 else np.complex64
        self.spectrum = spectrum.astype(complex_type)

    @property
    def rows(self) -> int:
        """Output rows per tile."""
        return self.fh - self.h + 1

    @property
    def cols(self) -> int:
        """Output columns per tile."""
        return self.fw - self.w + 1

    @property
    def tiles_per_run(self) -> int:
        """Tiles side by side that one :meth:`run` should take: as many as
        make up one FFT call's elements, so that small tiles share the
        costs of a run outside the FFTs, and at least one."""
        return max(1, FFT_CALL_ELEMENTS // (self.fh * self.fw * self.channels))

    def run(
        self,
        src: np.ndarray,
        n: int,
        out_cols: int,
        sum_dtype,
        scratch: Scratch,
        checkpoint=carry_on,
    ) -> np.ndarray:
        """Sums of a row of tiles, as an n x out_cols x channels array.

        ``src`` holds their padded image: ``n + h - 1`` rows (n at most
        :attr:`rows`) of ``out_cols + w - 1`` pixels, channels interleaved.
        The tiles start every :attr:`cols` output columns from the left.
        The FFTs run over axes 0 and 1, the channels being a batch, so no
        data is ever transposed. A tile larger than
        :data:`FFT_CALL_ELEMENTS` is transformed in passes, and
        ``checkpoint()`` is called after each pass and each tile; it may
        raise to abandon the work.
        """
        c = self.channels
        source = src.reshape(src.shape[0], -1, c)
        sums = scratch.get("fft-sums", (n, out_cols, c), sum_dtype)
        for x0 in range(0, out_cols, self.cols):
            x1 = min(out_cols, x0 + self.cols)
            self._tile(source[:, x0 : x1 + self.w - 1], sums[:, x0:x1], scratch, checkpoint)
            checkpoint()
        return sums

    def _tile(self, source: np.ndarray, sums: np.ndarray, scratch: Scratch, checkpoint) -> None:
        """sums (n x cols x C) = one tile's sums from its padded image ``source``."""
        n, cols, c = sums.shape
        rows, width = source.shape[:2]
        tile = scratch.get("fft-tile", (self.fh, self.fw, c), self.dtype)
        if width < self.fw:
            tile[:rows, width:] = 0
        np.copyto(tile[:rows, :width], source, casting="unsafe")
        valid = slice(self.w - 1, width)
        if tile.size <= FFT_CALL_ELEMENTS:
            tile[rows:] = 0
            full = self._whole_tile(tile, scratch)
            self._store(full[self.h - 1 : self.h - 1 + n, valid], sums)
            return
        fft = scipy_fft()
        half = scratch.get("fft-half", (self.fh, self.fw // 2 + 1, c), self.spectrum.dtype)
        for part in _parts(rows, half[0].size):
            if fft is not None:
                half[part] = fft.rfft(tile[part], axis=1)
            else:
                np.fft.rfft(tile[part], axis=1, out=half[part])
            checkpoint()
        half[rows:] = 0  # the transforms of the tile's rows of zeros
        for part in _parts(half.shape[1], self.fh * c):
            self._filter_columns(half[:, part], self.spectrum[:, part, None], fft)
            checkpoint()
        needed = half[self.h - 1 : self.h - 1 + n]
        for part in _parts(n, self.fw * c):
            if fft is not None:
                values = fft.irfft(needed[part], n=self.fw, axis=1, norm="forward",
                                   overwrite_x=True)[:, valid]  # fmt: skip
                np.multiply(values, self.scale, out=values)
            else:
                full = scratch.get("fft-full", (part.stop - part.start, self.fw, c), self.dtype)
                values = np.fft.irfft(needed[part], n=self.fw, axis=1, out=full)[:, valid]
            self._store(values, sums[part])
            checkpoint()

    def _whole_tile(self, tile: np.ndarray, scratch: Scratch) -> np.ndarray:
        """The tile correlated with the kernel, by one 2-D FFT each way."""
        fft = scipy_fft()
        spectrum = self.spectrum[:, :, None]
        if fft is not None:
            transform = fft.rfft2(tile, axes=(0, 1), overwrite_x=True)
            np.multiply(transform, spectrum, out=transform)
            return fft.irfft2(transform, s=(self.fh, self.fw), axes=(0, 1), overwrite_x=True)
        spec = scratch.get("fft-spec", spectrum.shape[:2] + (self.channels,), spectrum.dtype)
        full = scratch.get("fft-full", tile.shape, self.dtype)
        np.fft.rfft2(tile, axes=(0, 1), out=spec)
        np.multiply(spec, spectrum, out=spec)
        # irfft2 ignores `out`; its two stages written out honour it.
        np.fft.ifft(spec, axis=0, out=spec)
        np.fft.irfft(spec, n=self.fw, axis=1, out=full)
        return full

    @staticmethod
    def _filter_columns(block: np.ndarray, spectrum: np.ndarray, fft) -> None:
        """Columns of the rows' spectra -> times the kernel's, transformed back along axis 0."""
        if fft is not None:
            product = fft.fft(block, axis=0)
            np.multiply(product, spectrum, out=product)
            # Unscaled here: the rows' inverse scales once, by 1 / (fh fw).
            block[...] = fft.ifft(product, axis=0, norm="forward", overwrite_x=True)
        else:
            # numpy.fft.irfft2 scales each axis's inverse by its own length.
            np.fft.fft(block, axis=0, out=block)
            np.multiply(block, spectrum, out=block)
            np.fft.ifft(block, axis=0, out=block)

    def _store(self, values: np.ndarray, sums: np.ndarray) -> None:
        """Copy float results into ``sums``, rounded to the exact integers when ``exact``."""
        if self.exact:
            np.rint(values, out=values)
        np.copyto(sums, values, casting="unsafe")
