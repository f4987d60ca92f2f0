"""Circuits of minimum and maximum calls that pick a rank of each window, or sort it.

A circuit is built once per window size and rank, as a list of steps
``op(a, b shifted by (dy, dx))`` over the image and earlier steps; run by
NumPy over a whole tile at a time (``ranks`` runs them), each step is one
SIMD pass. Building one: every column of the window is sorted, then every
row of the sorted columns. A window sorted both ways rules most of its
samples out of the wanted rank (:meth:`_Wires.rule_out`), and a sorting
network over the few left finishes the job. Only the comparisons the answer
depends on are kept, and any two that differ by a shift of the window are
made once: a column sorted for one window is the same column, read one
pixel over, for its neighbour. The minimum and maximum are running extremes
over spans of 1, 2, 4, ... pixels, about 2 log2(size) calls per pixel.

NumPy only; nothing here touches pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN", "MAX", "Circuit", "extreme_circuit", "selection_circuit", "sorting_circuit",
           "merge_sort_pairs", "mirrored_pairs"]


MIN, MAX = 0, 1

#: A value in a circuit: (node, (dy, dx)) is the node's value at the pixel
#: dy rows down and dx columns right of the one being filtered. Node 0 is
#: the image itself.
_Ref = tuple[int, tuple[int, int]]


class _CircuitBuilder:
    """Makes min and max nodes, each once: a node that only differs from
    another by a shift of all its inputs is that node read at a shift."""

    def __init__(self) -> None:
        self.nodes: list = [None]
        self._index: dict = {}

    def combine(self, op: int, first: _Ref, second: _Ref) -> _Ref:
        if first == second:
            return first
        (a, shift), (b, other) = sorted((first, second))
        key = (op, a, b, (other[0] - shift[0], other[1] - shift[1]))
        node = self._index.get(key)
        if node is None:
            node = self._index[key] = len(self.nodes)
            self.nodes.append(key)
        return node, shift

    def extreme(self, op: int, ref: _Ref, axis: int, start: int, count: int) -> _Ref:
        """``op`` over ``ref`` shifted by start .. start + count - 1 along ``axis``
        (0: rows, 1: columns): spans of 1, 2, 4, ... pixels, each twice the last."""
        span, value = 1, ref
        while 2 * span <= count:
            value = self.combine(op, value, _shifted(value, axis, span))
            span *= 2
        if span < count:  # two spans that overlap cover the rest
            value = self.combine(op, value, _shifted(value, axis, count - span))
        return _shifted(value, axis, start)


def _shifted(ref: _Ref, axis: int, by: int) -> _Ref:
    node, (dy, dx) = ref
    return (node, (dy + by, dx)) if axis == 0 else (node, (dy, dx + by))


def merge_sort_pairs(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort on n wires: comparators (i, j), i < j, that
    leave the smaller value on wire i; in order, they sort any n values."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def mirrored_pairs(n: int) -> list[tuple[int, int]]:
    """The merge sort network upside down: also a sorting network, cheaper than
    the first for some ranks once unneeded comparisons are dropped."""
    return [(n - 1 - j, n - 1 - i) for i, j in merge_sort_pairs(n)]


#: The sorting networks a circuit is built with; the cheapest result is kept.
_NETWORKS = (merge_sort_pairs, mirrored_pairs)


class _Wires:
    """Values on wires being sorted, and what is known of their order: ``le[i, j]``
    means wire i's value is never above wire j's, for every image.

    A comparator whose outcome is known costs nothing (the values at most
    change wires). ``rule_out`` replaces a value that cannot be the
    ``rank``-th by -inf or +inf (``dead`` -1 or 1), which keeps the rank-th
    value where it is.
    """

    def __init__(self, builder: _CircuitBuilder, values: list, le: np.ndarray, dead: np.ndarray) -> None:
        self.builder = builder
        self.values = values
        self.le = le
        self.dead = dead

    def exchange(self, i: int, j: int) -> None:
        """Leave the smaller of wires i and j on i, the larger on j."""
        le = self.le
        if le[i, j]:
            return
        if le[j, i]:
            self.values[i], self.values[j] = self.values[j], self.values[i]
            le[[i, j]] = le[[j, i]]
            le[:, [i, j]] = le[:, [j, i]]
            self.dead[[i, j]] = self.dead[[j, i]]
            return
        u, v = self.values[i], self.values[j]
        self.values[i] = self.builder.combine(MIN, u, v)
        self.values[j] = self.builder.combine(MAX, u, v)
        # min(u, v) <= x when either is; x <= min(u, v) when x is below both;
        # and the other way round for max(u, v).
        low_below, below_low = le[i] | le[j], le[:, i] & le[:, j]
        high_below, below_high = le[i] & le[j], le[:, i] | le[:, j]
        le[i], le[j] = low_below, high_below
        le[:, i], le[:, j] = below_low, below_high
        le[i, i] = le[j, j] = le[i, j] = True
        le[j, i] = False

    def rule_out(self, rank: int) -> None:
        """Replace, one at a time, each value that cannot be the rank-th.

        A value with rank + 1 others known to be no larger has rank + 1 or
        more, so raising it to +inf keeps the rank-th smallest the same;
        likewise one with ``n - rank`` others known to be no smaller is
        lowered to -inf.
        """
        le, dead = self.le, self.dead
        count = len(dead)
        while True:
            alive = dead == 0
            below = le.sum(axis=0) - 1
            above = le.sum(axis=1) - 1
            high = np.flatnonzero(alive & (below >= rank + 1))
            if len(high):
                w = high[np.argmax(below[high])]
                le[:, w] = True
                le[w, :] = dead == 1
                dead[w] = 1
            else:
                low = np.flatnonzero(alive & (above >= count - rank))
                if not len(low):
                    return
                w = low[np.argmax(above[low])]
                le[w, :] = True
                le[:, w] = dead == -1
                dead[w] = -1
            le[w, w] = True
            self.values[w] = None


def _grid_order(size: int) -> np.ndarray:
    """What is known of a window whose columns and rows have been sorted (wire
    ``i * size + j`` is row i, column j): no sample is above one at or below
    and right of it (sorting the rows keeps the columns sorted)."""
    i, j = np.divmod(np.arange(size * size), size)
    return (i[:, None] <= i[None, :]) & (j[:, None] <= j[None, :])


def _sort_values(builder: _CircuitBuilder, values: list, pairs) -> list:
    """``values`` sorted by the network ``pairs`` (the circuit keeps only the
    comparisons that the outputs used later depend on)."""
    count = len(values)
    wires = _Wires(builder, list(values), np.eye(count, dtype=bool), np.zeros(count, np.int8))
    for i, j in pairs:
        wires.exchange(i, j)
    return wires.values


def _sorted_lines(builder, size, pairs, wanted_rows, wanted_cols) -> list:
    """The window's values after sorting each column, then each row: a list of
    size * size refs (row i, column j at ``i * size + j``), None where not
    wanted. ``wanted_cols[i]`` is the set of columns wanted in row i."""
    reach = size // 2
    column = [(0, (dy, 0)) for dy in range(-reach, reach + 1)]
    if wanted_rows == {0}:
        sorted_column = {0: builder.extreme(MIN, (0, (0, 0)), 0, -reach, size)}
    elif wanted_rows == {size - 1}:
        sorted_column = {size - 1: builder.extreme(MAX, (0, (0, 0)), 0, -reach, size)}
    else:
        sorted_column = dict(enumerate(_sort_values(builder, column, pairs(size))))
    grid: list = [None] * (size * size)
    for i in sorted(wanted_rows):
        wanted = wanted_cols[i]
        ranked = sorted_column[i]
        if wanted == {0}:
            row = {0: builder.extreme(MIN, ranked, 1, -reach, size)}
        elif wanted == {size - 1}:
            row = {size - 1: builder.extreme(MAX, ranked, 1, -reach, size)}
        else:
            line = [_shifted(ranked, 1, dx) for dx in range(-reach, reach + 1)]
            row = dict(enumerate(_sort_values(builder, line, pairs(size))))
        for j in wanted:
            grid[i * size + j] = row[j]
    return grid


@dataclass(frozen=True)
class Circuit:
    """Min and max calls in the order they run, and the values they produce.

    ``steps[k]`` is ``(op, a, b, (dy, dx))``: op(a at the pixel, b at the pixel
    shifted by (dy, dx)), where a and b are earlier steps or -1, the image.
    ``boxes[k]`` bounds the shifts step k is read at: (top, bottom, left,
    right); ``slots[k]`` is the buffer it is written to, of ``slot_count``.
    ``outputs`` are (step, (dy, dx)) refs, step -1 being the image.
    """

    steps: tuple
    boxes: tuple
    slots: tuple
    slot_count: int
    outputs: tuple

    @classmethod
    def of(cls, nodes: list, outputs: list) -> Circuit:
        """The circuit computing ``outputs`` (refs to ``nodes`` of a
        :class:`_CircuitBuilder`): only the nodes they need, in an order that
        keeps few buffers alive."""
        order = min((_creation_order(nodes, outputs), _depth_first_order(nodes, outputs)),
                    key=lambda o: _slots(nodes, o, outputs)[1])  # fmt: skip
        number = {node: k for k, node in enumerate(order)}
        number[0] = -1
        steps = tuple((nodes[n][0], number[nodes[n][1]], number[nodes[n][2]], nodes[n][3]) for n in order)
        refs = tuple((number[node], shift) for node, shift in outputs)
        boxes: list = [None] * len(steps)
        for step, shift in refs:
            if step >= 0:
                boxes[step] = _widen(boxes[step], shift)
        for k in range(len(steps) - 1, -1, -1):
            _, a, b, (dy, dx) = steps[k]
            top, bottom, left, right = boxes[k]
            if a >= 0:
                boxes[a] = _widen(_widen(boxes[a], (top, left)), (bottom, right))
            if b >= 0:
                boxes[b] = _widen(_widen(boxes[b], (top + dy, left + dx)), (bottom + dy, right + dx))
        slots, count = _slots(nodes, order, outputs)
        return cls(steps, tuple(boxes), tuple(slots), count, refs)


def _widen(box, point):
    y, x = point
    if box is None:
        return (y, y, x, x)
    top, bottom, left, right = box
    return (min(top, y), max(bottom, y), min(left, x), max(right, x))


def _needed(nodes: list, outputs: list) -> set[int]:
    needed, stack = set(), [node for node, _ in outputs]
    while stack:
        node = stack.pop()
        if node and node not in needed:
            needed.add(node)
            stack += nodes[node][1:3]
    return needed


def _creation_order(nodes, outputs) -> list[int]:
    return sorted(_needed(nodes, outputs))


def _depth_first_order(nodes, outputs) -> list[int]:
    order, seen = [], set()
    for root, _ in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node == 0 or (node in seen and not expanded):
                continue
            if expanded:
                order.append(node)
                continue
            seen.add(node)
            stack.append((node, True))
            stack += [(child, False) for child in nodes[node][2:0:-1] if child and child not in seen]
    return order


def _slots(nodes, order, outputs) -> tuple[list[int], int]:
    """A buffer for each node of ``order`` (reused once no later node reads it), and how many."""
    last = {}
    for k, node in enumerate(order):
        for child in nodes[node][1:3]:
            last[child] = k
    for node, _ in outputs:
        last[node] = len(order)
    free: list[int] = []
    slot_of: dict[int, int] = {}
    count = 0
    for k, node in enumerate(order):
        if free:
            slot_of[node] = free.pop()
        else:
            slot_of[node] = count
            count += 1
        for child in set(nodes[node][1:3]):
            if child and last[child] == k:
                free.append(slot_of[child])
    return [slot_of[node] for node in order], count


@functools.lru_cache(maxsize=32)
def extreme_circuit(size: int, op: int) -> Circuit:
    """The minimum (op ``MIN``) or maximum of the window: along the rows, then the columns."""
    builder = _CircuitBuilder()
    reach = size // 2
    across = builder.extreme(op, (0, (0, 0)), 1, -reach, size)
    return Circuit.of(builder.nodes, [builder.extreme(op, across, 0, -reach, size)])


@functools.lru_cache(maxsize=64)
def selection_circuit(size: int, rank: int) -> Circuit:
    """The rank-th smallest of the window, by the cheapest of a few networks."""
    built = [_build_selection(size, rank, lines, final) for lines in _NETWORKS for final in _NETWORKS]
    return min(built, key=lambda circuit: len(circuit.steps))


def _build_selection(size: int, rank: int, lines, final) -> Circuit:
    count = size * size
    known = _Wires(_CircuitBuilder(), [None] * count, _grid_order(size), np.zeros(count, np.int8))
    known.rule_out(rank)
    alive = np.flatnonzero(known.dead == 0)
    wanted_cols: dict[int, set[int]] = {}
    for wire in alive:
        wanted_cols.setdefault(int(wire) // size, set()).add(int(wire) % size)
    builder = _CircuitBuilder()
    grid = _sorted_lines(builder, size, lines, set(wanted_cols), wanted_cols)
    wires = _Wires(builder, grid, known.le, known.dead)
    # The candidates left, ordered so that those known to be smaller come
    # first: many of the network's comparisons are then already decided.
    order = alive[np.argsort(known.le.sum(axis=0)[alive], kind="stable")]
    lowered = int((known.dead == -1).sum())
    for i, j in final(len(order)):
        wires.exchange(order[i], order[j])
        wires.rule_out(rank)
    return Circuit.of(builder.nodes, [wires.values[order[rank - lowered]]])


@functools.lru_cache(maxsize=16)
def sorting_circuit(size: int) -> Circuit:
    """The window's samples in increasing order (outputs 0 to size * size - 1)."""
    built = [_build_sort(size, lines, final) for lines in _NETWORKS for final in _NETWORKS]
    return min(built, key=lambda circuit: len(circuit.steps))


def _build_sort(size: int, lines, final) -> Circuit:
    count = size * size
    builder = _CircuitBuilder()
    every = set(range(size))
    grid = _sorted_lines(builder, size, lines, every, {i: every for i in every})
    wires = _Wires(builder, grid, _grid_order(size), np.zeros(count, np.int8))
    order = np.argsort(wires.le.sum(axis=0), kind="stable")
    for i, j in final(count):
        wires.exchange(order[i], order[j])
    return Circuit.of(builder.nodes, [wires.values[w] for w in order])
