"""One large image filtered in chunks on Dask: ``dask.array`` with ``map_overlap``.

:func:`filter_dask_array` filters any 2-D or 3-D (rows, columns, samples)
``dask.array`` step by step, as :func:`convfilter.engine.filter_array`
filters the whole image in memory, and gives the same bytes.
:func:`tiff_array` opens the first image of a TIFF as such an array, a
chunk read per task from the file's own strips or tiles, and
:func:`filter_tiff` runs the two on a Dask cluster and writes the tiled
BigTIFF that :func:`convfilter.streaming.filter_tiff` writes, byte for byte.

Chunks and borders. Each step is one ``map_overlap`` whose depth is the
step's reach (the larger of its two sides on each axis); chunks are at
least that deep, so each chunk gets its neighbours' rows and columns and
no more. How a chunk is filtered depends on the border mode, as for the
bands of :mod:`convfilter.streaming`, now on both axes:

* ``nearest``, ``constant``, ``keep``: a chunk's sides on the image's edge
  get no margin (``boundary="none"``), and the chunk is filtered with the
  border mode itself, so every pass pads at the true edge as it does in
  memory; what the filter makes of an inner side's margin is cut off.
* ``wrap``, ``reflect``, ``mirror``: the array is first extended on each
  side by the rows and columns :func:`~convfilter.engine.border_index`
  maps there, filtered as above, and cut back to the image.
* ``valid``: each chunk filtered ``valid``; the image's edges lose the
  reach, inner sides keep every row.

Methods are chosen once per step for the whole image, as
:func:`~convfilter.engine.filter_array` chooses them (a float image holding
NaN or infinity is scanned first, which computes the step's input once
more); ``fft`` sums depend on the chunk, so they are byte-identical only
where they are exact (integer matrices on 8- and 16-bit samples).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import engine, streaming
from .options import BorderMode, FilterSettings, Method

__all__ = ["ChunkReport", "filter_dask_array", "filter_tiff", "tiff_array", "CHUNK_SIDE"]

#: Preferred side of a chunk in pixels (rounded to whole strips or tiles of the file).
CHUNK_SIDE = 2048

#: How often the writing process looks whether the next row of chunks is done.
_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class ChunkReport:
    """What :func:`filter_tiff` did: the output's ``shape`` and ``dtype``, the
    ``chunks`` of the output, the ``workers`` of the cluster, the largest
    ``band_bytes`` the writing process held, the ``compression`` written,
    ``seconds``, and the steps whose FFT sums are not exact, ``inexact_fft``
    (as :class:`~convfilter.streaming.StreamReport`)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: int
    workers: int
    band_bytes: int
    compression: str
    seconds: float
    inexact_fft: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def tiff_array(source: str | os.PathLike, chunks: tuple[int, int] | None = None):
    """The first image of a striped or tiled TIFF as a lazy ``dask.array``.

    Each chunk is read by its own task, which opens the file and decodes
    the strips or tiles it covers (so every worker must see ``source``).
    ``chunks`` is (rows, columns) per chunk; by default about
    :data:`CHUNK_SIDE` square, rounded to whole tiles, and whole rows for a
    striped file (whose strips are read whole). Shape (rows, columns) for
    one sample per pixel, else (rows, columns, samples).

    Raises
    ------
    StreamingError
        A file that is not a TIFF this reads (as :func:`convfilter.streaming.filter_tiff`).
    """
    import dask.array as da

    path = os.path.abspath(os.fspath(source))
    reader = streaming.TiffRows(path)
    try:
        shape, dtype = reader.shape, reader.dtype
        segment = reader.segment_shape
        tiled = reader.tiled
    finally:
        reader.close()
    if chunks is None:
        rows = _rounded(CHUNK_SIDE, segment[0])
        cols = _rounded(CHUNK_SIDE, segment[1]) if tiled else shape[1]
    else:
        rows, cols = (max(1, int(c)) for c in chunks)
    grid = (_pieces(shape[0], rows), _pieces(shape[1], cols)) + tuple((n,) for n in shape[2:])
    return da.map_blocks(_read_chunk, path, dtype=dtype, chunks=grid, meta=np.empty((0,) * len(shape), dtype),
                         name=f"convfilter-read-{_token(path)}")  # fmt: skip


def _read_chunk(path: str, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"][:2]
    reader = streaming.TiffRows(path)
    try:
        return reader.region(y0, y1, x0, x1)
    finally:
        reader.close()


def _rounded(side: int, unit: int) -> int:
    return max(unit, side // unit * unit)


def _pieces(length: int, size: int, least: int = 1) -> tuple[int, ...]:
    """``length`` cut into pieces of ``size``, the last merged into the one
    before when it is shorter than ``least``."""
    size = max(size, least, 1)
    pieces = [size] * (length // size)
    if length % size:
        pieces.append(length % size)
    if len(pieces) > 1 and pieces[-1] < least:
        last = pieces.pop()
        pieces[-1] += last
    return tuple(pieces)


def _token(*parts) -> str:
    import dask.base

    return dask.base.tokenize(*parts, os.urandom(8))


# ---------------------------------------------------------------------------
# Filtering
# ---------------------------------------------------------------------------


def filter_dask_array(array, steps, *, border: str | BorderMode = "nearest", cval: float = 0.0, repeat: int = 1,
                      method: str | Method = "auto", threads: int | None = 1, scheduler=None,
                      inexact: list | None = None):  # fmt: skip
    """``array`` filtered by the chain ``steps``, lazily, chunk by chunk.

    Parameters
    ----------
    array : dask.array.Array
        (rows, columns) or (rows, columns, samples); not chunked along samples.
    steps, border, cval, repeat, method
        As for :func:`convfilter.engine.filter_array` and ``FilterSettings``;
        ``cval`` is one number for every sample.
    threads : int or None
        The engine's threads inside each task (1: the cluster's workers are
        the parallelism).
    scheduler
        What computes a step's input when the method needs a scan of it
        (``dask.compute``'s ``scheduler``, e.g. a distributed ``Client``).
    inexact : list or None
        If given, the names of the steps whose FFT sums are not exact (and so
        differ in their last bits from the whole image's) are appended to it.

    Returns
    -------
    dask.array.Array
        The result, same dtype; same shape except for ``valid``.

    Raises
    ------
    StreamingError
        A step that does not say how far it reaches, or ``valid`` that leaves nothing.
    SettingsError, KernelSpecError, FilterError
        For the steps, border, method or cval, as the rest of convfilter.
    """
    settings = FilterSettings(steps, repeat=repeat, border=border, method=method, threads=threads)
    mode = settings.border
    if array.ndim not in (2, 3) or (array.ndim == 3 and len(array.chunks[2]) != 1):
        raise streaming.StreamingError("give a (rows, columns) or (rows, columns, samples) array, "
                                       "chunked along rows and columns only")  # fmt: skip
    for step in settings.chain:
        streaming.check_streamable(step)
    cval = float(cval)
    for step in settings.chain:
        streaming.output_shape(array.shape, step, mode)  # refuses a valid border that leaves nothing
        chosen = _method_for(step, array, settings.method, scheduler)
        if inexact is not None:
            inexact += streaming.inexact_fft(step, chosen, array.shape, array.dtype)
        array = _filtered(array, step, mode, cval, chosen, threads)
    return array


def _method_for(step, array, method: Method, scheduler) -> str:
    def scan() -> tuple[bool, float]:
        import dask
        import dask.array as da

        finite = da.isfinite(array).all()
        largest = da.max(da.abs(da.where(da.isfinite(array), array, 0)))
        found = dask.compute(finite, largest, scheduler=scheduler)
        return bool(found[0]), float(found[1])

    return streaming.method_for_image(step, array.shape, array.dtype, method, scan)


def _filtered(array, step, mode: BorderMode, cval: float, method: str, threads):
    """One step: ``map_overlap`` with the step's reach, cut as the module's notes say."""
    top, bottom, left, right = step.reach
    rows, cols = array.shape[:2]
    depth = (max(top, bottom), max(left, right))
    least = (max(depth[0], top + bottom + 1), max(depth[1], left + right + 1))
    grid = tuple(_regrid(c, n, s) for c, n, s in zip(array.chunks[:2], array.shape[:2], least))
    extended = mode in streaming.PERIODIC_BORDERS
    if extended:
        # The added rows and columns join the first and last chunks, so that
        # the result, cut back to the image, has the chunks of the input.
        array = _extend(array, top, bottom, left, right, mode)
        grid = tuple(_widened(c, a, b) for c, a, b in zip(grid, (top, left), (bottom, right)))
    array = array.rechunk(grid + array.chunks[2:])
    if mode is BorderMode.VALID:
        out_grid = tuple(_valid_pieces(c, a, b) for c, a, b in zip(grid, (top, left), (bottom, right)))
    else:
        out_grid = grid
    result = array.map_overlap(
        _filter_chunk, depth={0: depth[0], 1: depth[1]} | ({2: 0} if array.ndim == 3 else {}),
        boundary="none", trim=False, chunks=out_grid + array.chunks[2:], dtype=array.dtype,
        meta=np.empty((0,) * array.ndim, array.dtype), name=f"convfilter-{_token(step.name, mode.value)}",
        step=step, mode=mode, cval=cval, method=method, threads=threads, margin=depth,
    )  # fmt: skip
    if extended:
        result = result[top : top + rows, left : left + cols]
    return result


def _regrid(chunks: tuple[int, ...], length: int, least: int) -> tuple[int, ...]:
    """The chunks along one axis, each at least ``least`` long (or one chunk)."""
    if min(chunks) >= least or len(chunks) == 1:
        return chunks
    return _pieces(length, max(max(chunks), least), least)


def _widened(chunks: tuple[int, ...], before: int, after: int) -> tuple[int, ...]:
    pieces = list(chunks)
    pieces[0] += before
    pieces[-1] += after
    return tuple(pieces)


def _valid_pieces(chunks: tuple[int, ...], before: int, after: int) -> tuple[int, ...]:
    pieces = list(chunks)
    pieces[0] -= before
    pieces[-1] -= after
    return tuple(pieces)


def _extend(array, top: int, bottom: int, left: int, right: int, mode: BorderMode):
    """``array`` with the rows and columns a periodic or mirrored border puts around it."""
    import dask.array as da

    for axis, (before, after) in enumerate(((top, bottom), (left, right))):
        if not before and not after:
            continue
        n = array.shape[axis]
        index = engine.border_index(n, before, after, mode.value)
        parts = [array]
        if before:
            parts.insert(0, da.take(array, index[:before], axis=axis))
        if after:
            parts.append(da.take(array, index[before + n :], axis=axis))
        array = da.concatenate(parts, axis=axis)
    return array


def _filter_chunk(block: np.ndarray, *, step, mode: BorderMode, cval: float, method: str, threads,
                  margin: tuple[int, int], block_info=None) -> np.ndarray:  # fmt: skip
    """One chunk with its neighbours' margins filtered, the margins cut off."""
    info = block_info[0]
    where, count = info["chunk-location"], info["num-chunks"]
    margins = [(margin[a] if where[a] > 0 else 0, margin[a] if where[a] < count[a] - 1 else 0) for a in (0, 1)]
    result = engine.filter_array(block, step, border=mode, cval=cval, method=method, threads=threads)
    if mode is BorderMode.VALID:
        # Output k of a valid filter is centred on input k + reach-before; an inner
        # side's margin is depth deep, of which the filter consumed reach-before.
        reach = step.reach
        cuts = [(m0 - r0 if m0 else 0, m1 - r1 if m1 else 0)
                for (m0, m1), r0, r1 in zip(margins, reach[0::2], reach[1::2])]  # fmt: skip
    else:
        cuts = margins
    (a0, a1), (b0, b1) = cuts
    return result[a0 : result.shape[0] - a1, b0 : result.shape[1] - b1]


# ---------------------------------------------------------------------------
# A TIFF on a cluster
# ---------------------------------------------------------------------------


def filter_tiff(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    steps,
    *,
    client,
    border: str | BorderMode = "nearest",
    cval: float = 0.0,
    repeat: int = 1,
    method: str | Method = "auto",
    threads: int | None = 1,
    memory: int | None = None,
    chunks: tuple[int, int] | None = None,
    progress: Callable[[int, int], object] | None = None,
    tile: tuple[int, int] = (256, 256),
) -> ChunkReport:
    """Filter the TIFF ``source`` on the Dask cluster of ``client`` into a tiled BigTIFF.

    The cluster reads, filters and holds the chunks; this process writes the
    output from them in order, a row of chunks at a time, into a temporary
    file beside ``destination`` renamed over it at the end (after an error
    or interruption neither is left, and the cluster's tasks are
    cancelled). The file is the one :func:`convfilter.streaming.filter_tiff`
    writes for the same arguments, byte for byte.

    Parameters
    ----------
    source, destination, steps, border, cval, repeat, method, tile
        As for :func:`convfilter.streaming.filter_tiff`; ``source`` must be
        readable by the workers under the same absolute path.
    client : distributed.Client
        The cluster (see :func:`convfilter.cluster.connect`).
    threads : int or None
        The engine's threads inside each task.
    memory : int or None
        Bytes this process may hold for a row of chunks (None: a quarter of
        the RAM); rows of chunks are made shorter to fit.
    chunks : (rows, columns) or None
        As for :func:`tiff_array`.
    progress : callable or None
        ``progress(done, total)`` after each row of chunks is written.

    Raises
    ------
    StreamingError, SettingsError, KernelSpecError, FilterError
        As :func:`convfilter.streaming.filter_tiff`, before the cluster is given work.
    """
    started = time.perf_counter()
    tile = streaming.check_tile(tile)
    budget = streaming.default_memory() if memory is None else int(memory)
    destination = Path(destination)
    reader = streaming.TiffRows(source)
    try:
        layout = streaming.TiledLayout.of(reader)
        segment, tiled = reader.segment_shape, reader.tiled
    finally:
        reader.close()
    width = layout.shape[1]
    row_bytes = int(np.prod(layout.shape[1:])) * layout.dtype.itemsize
    if chunks is None:
        # held at once: a row of chunks as received, joined into one band, and
        # the rows of the band before it not yet cut into tiles
        fitting = max(tile[0], (budget - streaming.writer_buffer(budget)) // (3 * row_bytes) // tile[0] * tile[0])
        side = min(CHUNK_SIDE, fitting)
        chunks = (_rounded(side, segment[0]), _rounded(CHUNK_SIDE, segment[1]) if tiled else width)
    image = tiff_array(source, chunks)
    inexact: list[str] = []
    result = filter_dask_array(image, steps, border=border, cval=cval, repeat=repeat, method=method,
                               threads=threads, scheduler=client, inexact=inexact)  # fmt: skip
    blocks = result.to_delayed()
    blocks = blocks.reshape(blocks.shape[:2])
    futures = client.compute(list(blocks.ravel()))
    across = blocks.shape[1]
    rows_of_chunks = blocks.shape[0]
    shape = result.shape
    held = [0]

    def bands():
        y0 = 0
        for r in range(rows_of_chunks):
            row = futures[r * across : (r + 1) * across]
            # Polled until done, then gathered: a gather still waiting when Ctrl-C
            # cancels its futures leaves distributed's tasks to print errors of their own.
            while not all(future.done() for future in row):
                time.sleep(_POLL_SECONDS)
            parts = client.gather(row)
            for k in range(r * across, (r + 1) * across):
                futures[k] = None  # released on the cluster once written
            band = parts[0] if across == 1 else np.concatenate(parts, axis=1)
            del parts
            held[0] = max(held[0], band.nbytes)
            y1 = y0 + band.shape[0]
            if progress is not None:
                progress(r + 1, rows_of_chunks)
            yield y0, y1, band
            del band  # not held while the next row of chunks arrives
            y0 = y1

    try:
        streaming.write_tiled(destination, streaming.tiles_of_bands(bands(), shape, tile), shape, layout, tile,
                              streaming.writer_buffer(budget))  # fmt: skip
    finally:
        live = [f for f in futures if f is not None]
        if live:
            client.cancel(live)
    workers = len(client.scheduler_info().get("workers", {}))
    return ChunkReport(shape=shape, dtype=layout.dtype, chunks=len(futures), workers=workers,
                       band_bytes=held[0], compression=layout.compression or "none",
                       seconds=time.perf_counter() - started, inexact_fft=tuple(dict.fromkeys(inexact)))  # fmt: skip

