"""Filtering TIFFs too large to hold: read by rows, filtered in bands, written in tiles.

:func:`filter_tiff` reads the first image of a striped or tiled TIFF (or
BigTIFF) a few strips or tiles at a time, filters it a band of full-width
rows at a time and writes a tiled BigTIFF, holding no more than a memory
budget. The result is the same bytes as :func:`convfilter.engine.filter_array`
applied step by step to the whole image in memory (see Methods for the one
exception).

Bands. A step that reaches T rows up and B rows down makes output rows
``y0 .. y1-1`` from input rows ``y0-T .. y1+B-1``. Where those fall outside
the image, the border mode decides what the band holds:

* ``nearest``, ``constant``, ``keep``: the band is cut at the image's edge
  and filtered with the border mode itself, so at the true top and bottom
  edges the filter pads as it does in memory (every pass of a blur
  included; these modes only look at the edge's own pixels). A cut inside
  the image spoils the T (or B) rows next to it, which are read for that
  purpose and dropped.
* ``wrap``, ``reflect``, ``mirror`` reach across the image: the band is
  extended by the rows :func:`~convfilter.engine.border_index` maps those
  positions to (the bottom rows above the top edge, for ``wrap``), filtered
  with the border mode, and its first T and last B rows dropped. A matrix is
  padded once, so this is what happens in memory; the neighbourhood filters'
  passes are symmetric windows, which turn a periodic or mirrored extension
  of their input into the same extension of their output, so padding each
  pass or extending once agree.
* ``valid``: input rows ``y0 .. y1+T+B-1``, filtered ``valid``.

Columns are never cut (a band is the full width), so the left and right
edges are the image's own and the filter treats them itself. A band that
holds every row is the whole image, filtered as it is.

Chains. In memory every step pads its own input at the image's edges, so a
chain cannot be run on one band padded once. Each step is therefore a pass
of its own: every step but the last writes its result, uncompressed, to a
temporary file beside the destination, which the next step reads by rows
(at most two such files exist at a time, each the size of the uncompressed
image); the last step writes the TIFF. ``repeat`` repeats the whole chain.

Methods. A matrix step's method is chosen once for the whole image of its
pass, as :func:`~convfilter.engine.filter_array` chooses it
(:func:`~convfilter.engine.choose_method`, and ``direct`` for a float image
holding NaN or infinity), and every band uses it. ``direct`` and
``separable`` sums do not depend on which rows a band holds, so they are
byte-identical. ``fft`` sums depend on the tile grid, which follows the
whole image's size: they are byte-identical where they are exact (integer
matrices on 8- and 16-bit images) and otherwise within the engine's
accuracy contract only.

Memory. A band of n output rows holds its input rows (n + T + B), its
output rows, the working buffers of the filter (estimated: the engine's
strips for a matrix, three float64 copies of the input band for a
neighbourhood filter) and, for the TIFF, at most three decoded rows of
strips or tiles; the last pass also leaves the writer its share
(:func:`writer_buffer`: tiles gathered for compression). Band heights are
the largest that keep this under the budget; the last pass's are whole rows
of output tiles, so the tiles are cut straight from the band. A band is
let go before the next is filtered, and rows are read into the band in
place (no second copy).

Output. A tiled BigTIFF, same shape (smaller with ``valid``), dtype,
photometric and extra samples as the input, compressed as the input where
that compression is lossless and tifffile writes it (LZW, Deflate, PackBits,
Zstandard, with the input's predictor), else uncompressed. It is written to
a temporary file beside ``destination`` and renamed over it at the end;
after any error or interruption neither file is left.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from . import allocator, engine
from .kernels import Kernel
from .options import BorderMode, FilterSettings, Method

__all__ = ["StreamingError", "StreamReport", "filter_tiff", "default_memory", "method_for_image", "write_tiled",
           "TiledLayout", "STREAMED_DTYPES"]

#: Sample types read and written: those the engine sums as they are.
STREAMED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))

#: Share of physical memory used when no budget is given.
MEMORY_SHARE = 0.25

#: TIFF compressions written as the input has them (lossless, and written by tifffile).
_KEPT_COMPRESSIONS = {5: "lzw", 8: "adobe_deflate", 32946: "deflate", 32773: "packbits", 50000: "zstd"}

#: Decoded rows of strips or tiles held at once, at most: the last two read, kept for the
#: next band, and the one being read.
_CACHED_SEGMENT_ROWS = 3

#: Working bytes of the engine's strips, per thread (its 2 MiB strip, the sums and scratch):
#: measured 4.5 MiB a thread on 8- and 16-bit bands, 8.5 MiB on float32 ones.
_ENGINE_STRIP_BYTES = 6 << 20
_ENGINE_STRIP_BYTES_FLOAT = 9 << 20

#: The most of the budget, and the most bytes, given to tiles waiting to be compressed.
WRITER_BUFFER_SHARE = 8
WRITER_BUFFER_BYTES = 64 << 20

#: Float64 copies of its input band a neighbourhood filter is assumed to hold while it works.
_NEIGHBOURHOOD_COPIES = 3

PERIODIC_BORDERS = (BorderMode.WRAP, BorderMode.REFLECT, BorderMode.MIRROR)

# tifffile logs what it finds wrong in a damaged file before raising (or
# reading on); unconfigured, Python's last-resort handler would print that on
# stderr beside convfilter's one-line error. As for Pillow (images.py), a
# NullHandler keeps it quiet unless an application configures logging.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


class StreamingError(ValueError):
    """A file, filter or budget that cannot be streamed; the message says what to change."""


@dataclass(frozen=True)
class StreamReport:
    """What :func:`filter_tiff` did: the output's ``shape`` and ``dtype``, the
    ``bands`` filtered over all passes (one pass per step of the chain),
    ``peak_bytes`` held by the band buffers, decoded tiles and the filters'
    estimated working buffers, the strips or tiles of the input ``decoded``
    (each is decoded about once, some twice where bands meet), the
    ``compression`` written, ``seconds``, and the names of the steps whose
    FFT sums are not exact (so differ from the in-memory result in their
    last bits: see the module's notes), ``inexact_fft``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    bands: int
    passes: int
    peak_bytes: int
    decoded: int
    compression: str
    seconds: float
    inexact_fft: tuple[str, ...] = ()


def default_memory() -> int:
    """The budget used when none is given: :data:`MEMORY_SHARE` of physical memory."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return int(total * MEMORY_SHARE)


def filter_tiff(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    steps,
    *,
    border: str | BorderMode = "nearest",
    cval: float = 0.0,
    repeat: int = 1,
    method: str | Method = "auto",
    memory: int | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    tile: tuple[int, int] = (256, 256),
) -> StreamReport:
    """Filter the TIFF ``source`` into a tiled BigTIFF ``destination`` by bands of rows.

    Parameters
    ----------
    source : path
        A striped or tiled TIFF or BigTIFF; its first image is filtered. Samples
        uint8, uint16, float32 or float64; 1 to 4 of them per pixel, stored
        contiguously (chunky).
    destination : path
        Where the tiled BigTIFF goes; replaced only once it is complete.
    steps : kernel, filter, spec or sequence of them
        As ``FilterSettings.kernels``: applied in order, the whole chain
        ``repeat`` times, each rounded to the image's dtype.
    border, cval, method, threads
        As for :func:`~convfilter.engine.filter_array`; ``method`` is chosen
        once for the whole image (see the module's notes).
    memory : int or None
        Budget in bytes for the buffers (None: :func:`default_memory`).
    progress : callable or None
        Called as ``progress(done, total)`` after each band; ``total`` counts
        the bands of every pass.
    tile : (height, width)
        The output's tile size, multiples of 16.

    Returns
    -------
    StreamReport

    Raises
    ------
    StreamingError
        A file that is not a TIFF this reads, a filter without a finite reach,
        ``valid`` on an image smaller than the chain's reach, or a budget too
        small for one band (the message gives the least that would do).
    SettingsError, KernelSpecError, FilterError
        For the steps, border, method or cval, as the rest of convfilter.

    Examples
    --------
    >>> report = filter_tiff("big.tif", "out.tif", ["blur", "sharpen"], memory=64 << 20)  # doctest: +SKIP
    """
    started = time.perf_counter()
    settings = FilterSettings(steps, repeat=repeat, border=border, method=method, threads=threads)
    mode = settings.border
    chain = settings.chain
    for step in chain:
        check_streamable(step)
    cval = float(cval)
    tile = check_tile(tile)
    budget = default_memory() if memory is None else int(memory)
    if budget <= 0:
        raise StreamingError(f"the memory budget must be a positive number of bytes, got {memory!r}")
    destination = Path(destination)
    folder = destination.parent if str(destination.parent) else Path(".")

    temporaries: list[Path] = []
    reader = TiffRows(source)
    source_rows = reader
    try:
        shapes = [reader.shape]
        for step in chain:
            shapes.append(output_shape(shapes[-1], step, mode))
        plans = []
        for k, step in enumerate(chain):
            last = k == len(chain) - 1
            cache = reader.segment_row_bytes * _CACHED_SEGMENT_ROWS if k == 0 else 0
            plans.append(_plan_pass(shapes[k], shapes[k + 1], reader.dtype, step, budget, cache,
                                    tile[0] if last else 1, threads, writes=last))  # fmt: skip
        total = sum(len(plan.bands) for plan in plans)
        meter = _Meter(progress, total)
        compression = reader.kept_compression()[0]

        inexact: list[str] = []
        for k, (step, plan) in enumerate(zip(chain[:-1], plans[:-1])):
            path = _temporary(folder, destination.name, ".step.tmp")
            temporaries.append(path)  # removed by the finally below
            _create(path)
            with _RawRows.create(path, shapes[k + 1], reader.dtype) as sink:
                chosen = _resolve_method(step, source_rows, settings.method, plan, meter)
                inexact += inexact_fft(step, chosen, shapes[k], reader.dtype)
                for _, _, rows in _bands(source_rows, step, mode, cval, chosen, threads, plan, meter):
                    sink.append(rows)
                    del rows  # not held while the next band is filtered
            reader.forget()  # read again only by a later pass
            if source_rows is not reader:
                source_rows.close()
                os.remove(temporaries.pop(0))
            source_rows = reader  # until the next one is open
            source_rows = _RawRows.open(path, shapes[k + 1], reader.dtype)

        step, plan = chain[-1], plans[-1]
        chosen = _resolve_method(step, source_rows, settings.method, plan, meter)
        inexact += inexact_fft(step, chosen, shapes[-2], reader.dtype)
        bands = _bands(source_rows, step, mode, cval, chosen, threads, plan, meter)
        write_tiled(destination, tiles_of_bands(bands, shapes[-1], tile), shapes[-1], TiledLayout.of(reader), tile,
                    writer_buffer(budget))  # fmt: skip
    finally:
        if source_rows is not reader:
            source_rows.close()
        reader.close()
        for path in temporaries:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
    return StreamReport(shape=shapes[-1], dtype=reader.dtype, bands=total, passes=len(chain),
                        peak_bytes=meter.peak, decoded=reader.decoded, compression=compression or "none",
                        seconds=time.perf_counter() - started, inexact_fft=tuple(dict.fromkeys(inexact)))  # fmt: skip


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def check_streamable(step) -> None:
    """A step streams when it says how far it reaches: four whole numbers >= 0."""
    try:
        reach, name = step.reach, step.name
    except (AttributeError, NotImplementedError):
        reach, name = None, getattr(step, "name", type(step).__name__)
    if not isinstance(reach, tuple) or len(reach) != 4 or not all(isinstance(r, (int, np.integer)) and r >= 0 for r in reach):
        raise StreamingError(
            f"{name} cannot be filtered in bands: it does not say how far it reaches; "
            "filter the image in memory instead"
        )


def check_tile(tile) -> tuple[int, int]:
    try:
        height, width = (int(t) for t in tile)
    except (TypeError, ValueError):
        raise StreamingError(f"tile must be (height, width), got {tile!r}") from None
    if height < 16 or width < 16 or height % 16 or width % 16:
        raise StreamingError(f"TIFF tiles are multiples of 16 pixels on each side, got {height}x{width}")
    return height, width


def output_shape(shape: tuple[int, ...], step, mode: BorderMode) -> tuple[int, ...]:
    if mode is not BorderMode.VALID:
        return shape
    top, bottom, left, right = step.reach
    rows, cols = shape[0] - top - bottom, shape[1] - left - right
    if rows < 1 or cols < 1:
        raise StreamingError(
            f"border 'valid' leaves nothing of a {shape[1]}x{shape[0]} image: {step.name} reaches "
            f"{left + right} columns and {top + bottom} rows; choose another border"
        )
    return (rows, cols) + shape[2:]


# ---------------------------------------------------------------------------
# Reading: the TIFF's strips or tiles, and the chain's temporary files
# ---------------------------------------------------------------------------


class TiffRows:
    """The first image of a TIFF, read by rows: each strip or row of tiles is
    decoded when first asked for and kept while it may be asked for again."""

    def __init__(self, path) -> None:
        self._name = os.fspath(path)
        try:
            self._file = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many kinds for a damaged header
            raise StreamingError(f"{os.fspath(path)!r} is not a TIFF file tifffile reads: {exc}") from None
        try:
            self._page = page = self._file.pages.first
            self._check(page, path)
        except BaseException:
            self._file.close()
            raise
        samples = page.samplesperpixel
        self.shape = (page.imagelength, page.imagewidth) + ((samples,) if samples > 1 else ())
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        self.photometric = page.photometric
        self.extrasamples = tuple(page.extrasamples) or None
        self._samples = samples
        if page.is_tiled:
            self._height, self._width = page.tilelength, page.tilewidth
        else:
            self._height, self._width = min(page.rowsperstrip, page.imagelength), page.imagewidth
        self._across = -(-page.imagewidth // self._width)
        self._decode_args = {}
        if page.compression in (6, 7, 34892, 33007):
            self._decode_args = {"jpegtables": page.jpegtables, "jpegheader": page.jpegheader}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cached_bytes = 0
        self.decoded = 0  # segments decoded so far

    def image_count(self) -> int:
        """How many images (pages, thumbnails aside) the file holds."""
        return sum(1 for page in self._file.pages if not getattr(page, "is_reduced", False))

    @staticmethod
    def _check(page, path) -> None:
        where = os.fspath(path)
        if page.imagedepth > 1:
            raise StreamingError(f"{where!r} holds a volume ({page.imagedepth} planes deep); give a 2-D image")
        if page.samplesperpixel > 1 and page.planarconfig != 1:
            raise StreamingError(f"{where!r} stores each sample in its own plane (planar configuration "
                                 "separate); save it with contiguous samples (chunky) to stream it")  # fmt: skip
        if not 1 <= page.samplesperpixel <= 4:
            raise StreamingError(f"{where!r} has {page.samplesperpixel} samples per pixel; 1 to 4 stream")
        if page.photometric == 3:
            raise StreamingError(f"{where!r} is a palette image: filtering its indices means nothing; "
                                 "convert it to RGB first")  # fmt: skip
        dtype = None if page.dtype is None else np.dtype(page.dtype).newbyteorder("=")
        if dtype not in STREAMED_DTYPES:
            names = ", ".join(d.name for d in STREAMED_DTYPES)
            found = f"{page.bitspersample}-bit samples" if dtype is None else f"{dtype.name} samples"
            raise StreamingError(f"{where!r} has {found}; streaming reads {names}")
        if page.is_subsampled and page.compression not in (6, 7, 34892, 33007):
            raise StreamingError(f"{where!r} has chroma subsampling, which only JPEG decoding undoes")

    @property
    def tiled(self) -> bool:
        return bool(self._page.is_tiled)

    @property
    def segment_shape(self) -> tuple[int, int]:
        """Rows and columns of one strip or tile."""
        return self._height, self._width

    @property
    def segment_row_bytes(self) -> int:
        """Bytes of one decoded strip, or one row of tiles."""
        return self._height * self._across * self._width * self._samples * self.dtype.itemsize

    def kept_compression(self) -> tuple[str | None, int | None]:
        """The compression (and predictor) to write: the input's when kept, else none."""
        name = _KEPT_COMPRESSIONS.get(int(self._page.compression))
        if name is None:
            return None, None
        predictor = int(self._page.predictor)
        return name, predictor if predictor in (2, 3) else None

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed) as one array."""
        index = np.asarray(index, dtype=np.intp)
        out = np.empty((len(index),) + self.shape[1:], self.dtype)
        segment = index // self._height
        # Runs of consecutive rows of one segment, copied as slices (no temporary
        # copy of the band), in the order asked, so the last ones stay cached.
        breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(segment) != 0)) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(index)]):
            k = int(segment[start])
            first = int(index[start]) - k * self._height
            out[start:stop] = self._segment_row(k)[first : first + stop - start]
        return out

    def _segment_row(self, k: int) -> np.ndarray:
        block = self._cache.get(k)
        if block is not None:
            self._cache.move_to_end(k)
            return block
        while len(self._cache) >= _CACHED_SEGMENT_ROWS - 1:
            _, dropped = self._cache.popitem(last=False)
            self.cached_bytes -= dropped.nbytes
        block = self._decoded_rows(k, 0, self._across)
        self._cache[k] = block
        self.cached_bytes += block.nbytes
        return block

    def _decoded_rows(self, k: int, first: int, stop: int) -> np.ndarray:
        """Strip ``k``, or tiles ``first .. stop-1`` of row of tiles ``k``, decoded
        (as rows of samples from tile ``first``'s left edge to the image's or
        tile ``stop-1``'s right edge)."""
        page = self._page
        y = k * self._height
        height = min(self._height, page.imagelength - y)
        x_stop = min(page.imagewidth, stop * self._width)
        block = np.zeros((height, x_stop - first * self._width, self._samples), self.dtype)
        handle = self._file.filehandle
        for j in range(first, stop):
            index = k * self._across + j
            offset, count = page.dataoffsets[index], page.databytecounts[index]
            if not count:
                continue  # an empty segment: tifffile fills those with 0
            with handle.lock:
                handle.seek(offset)
                data = handle.read(count)
            try:
                segment, _, _ = page.decode(data, index, **self._decode_args)
            except Exception as exc:  # damaged data: tifffile's codecs raise many kinds
                raise StreamingError(f"{self._name!r}: its {'tile' if page.is_tiled else 'strip'} {index} "
                                     f"cannot be decoded (damaged or truncated): {exc}") from None  # fmt: skip
            self.decoded += 1
            x = (j - first) * self._width
            width = min(self._width, block.shape[1] - x)
            segment = np.asarray(segment).reshape(-1, segment.shape[-3], segment.shape[-2], segment.shape[-1])
            block[:, x : x + width] = segment[0, :height, :width]
        return block.reshape(block.shape[:2] + self.shape[2:])

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0 .. y1-1`` and columns ``x0 .. x1-1``, decoding only the
        strips or tiles they touch (nothing is cached)."""
        out = np.empty((y1 - y0, x1 - x0) + self.shape[2:], self.dtype)
        first, stop = x0 // self._width, -(-x1 // self._width)
        for k in range(y0 // self._height, -(-y1 // self._height)):
            block = self._decoded_rows(k, first, stop)
            top = k * self._height
            a, b = max(y0, top), min(y1, top + block.shape[0])
            left = first * self._width
            out[a - y0 : b - y0] = block[a - top : b - top, x0 - left : x1 - left]
        return out

    def forget(self) -> None:
        """Drop the decoded strips or tiles kept for the next band."""
        self._cache.clear()
        self.cached_bytes = 0

    def close(self) -> None:
        self.forget()
        self._file.close()


class _RawRows:
    """A chain's intermediate image: rows of samples in a file, written in
    order and read back by row numbers."""

    cached_bytes = 0

    def __init__(self, handle, shape, dtype) -> None:
        self._handle = handle
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    @classmethod
    def create(cls, path: Path, shape, dtype) -> _RawRows:
        return cls(open(path, "wb"), shape, dtype)

    @classmethod
    def open(cls, path: Path, shape, dtype) -> _RawRows:
        return cls(open(path, "rb"), shape, dtype)

    def append(self, rows: np.ndarray) -> None:
        self._handle.write(np.ascontiguousarray(rows, self.dtype).data)

    def rows(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.intp)
        out = np.empty((len(index),) + self.shape[1:], self.dtype)
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        fd = self._handle.fileno()
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(index)]):
            first = int(index[start])
            target = memoryview(out[start:stop]).cast("B")  # read in place: no second copy of the band
            done = 0
            while done < len(target):
                got = os.preadv(fd, [target[done:]], first * self._row_bytes + done)
                if got <= 0:
                    raise StreamingError(f"temporary file {self._handle.name!r} was cut short")
                done += got
        return out

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _RawRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _temporary(folder: Path, name: str, suffix: str) -> Path:
    """A new hidden name beside ``name``, not yet a file: the caller knows it
    before :func:`_create` makes it, so a Ctrl-C at any moment leaves
    nothing its cleanup does not know of (a file made inside a helper could
    be interrupted before the helper returned its name)."""
    return folder / f".{name}.{secrets.token_hex(8)}{suffix}"


def _create(path: Path) -> None:
    """Create ``path`` empty, readable by its owner alone; never an existing file
    (64 random bits in the name make a clash a matter of chance only)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@dataclass(frozen=True)
class TiledLayout:
    """How the output TIFF stores its samples: the input's ``shape`` of one
    image, ``dtype``, ``photometric`` and ``extrasamples``, and the
    ``compression`` (and ``predictor``) kept from it, or None."""

    shape: tuple[int, ...]
    dtype: np.dtype
    photometric: object
    extrasamples: tuple | None
    compression: str | None
    predictor: int | None

    @classmethod
    def of(cls, reader: TiffRows) -> TiledLayout:
        return cls(reader.shape, reader.dtype, reader.photometric, reader.extrasamples, *reader.kept_compression())


def writer_buffer(budget: int) -> int:
    """The bytes of a ``budget`` that :func:`write_tiled` may hold in tiles waiting to be compressed."""
    return min(WRITER_BUFFER_BYTES, budget // WRITER_BUFFER_SHARE)


def _budget_for(held: int) -> int:
    """The least budget that leaves ``held`` bytes beside the writer's share."""
    budget = held
    while budget - writer_buffer(budget) < held:
        budget = held + writer_buffer(budget) + 1
    return budget


def write_tiled(destination: Path, tiles: Iterator[np.ndarray], shape: tuple[int, ...], layout: TiledLayout,
                tile: tuple[int, int], buffer_bytes: int) -> None:  # fmt: skip
    """Write a tiled BigTIFF of ``shape`` from ``tiles`` in TIFF order, laid
    out as ``layout`` says, to a temporary file beside ``destination``
    renamed over it once complete; after any error neither is left.
    tifffile holds at most about ``buffer_bytes`` of tiles waiting to be
    compressed (it gathers them for its encoding threads)."""
    destination = Path(destination)
    folder = destination.parent if str(destination.parent) else Path(".")
    final = _temporary(folder, destination.name, ".tmp")
    try:
        _create(final)
        with tifffile.TiffWriter(final, bigtiff=True) as writer:
            writer.write(
                data=tiles,
                shape=shape,
                dtype=layout.dtype,
                tile=tile,
                photometric=layout.photometric,
                planarconfig="contig" if len(shape) == 3 else None,
                extrasamples=layout.extrasamples,
                compression=layout.compression,
                predictor=layout.predictor,
                metadata=None,
                buffersize=buffer_bytes,
            )
        os.replace(final, destination)
    except BaseException as exc:
        try:
            os.remove(final)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is None and "written" in str(exc):
            # NumPy's tofile, which tifffile writes tiles with, reports a short write
            # (a full disk, a file size limit) as "N requested and M written" alone.
            raise OSError(f"writing {os.fspath(destination)!r} stopped short ({exc} bytes): "
                          "is the disk full?") from None  # fmt: skip
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, os.fspath(destination)) from None  # name the file
        raise


# ---------------------------------------------------------------------------
# Planning: band heights under the budget, and the method of a pass
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    bands: list[tuple[int, int]]  # output rows [y0, y1) of each band
    working_bytes: int  # estimated working bytes of the filter that do not grow with the band
    work_per_input_row: int  # estimated working bytes per input row of a band


def _plan_pass(shape_in, shape_out, dtype, step, budget, cache_bytes, multiple, threads, writes=False) -> _Plan:
    """Bands of output rows, as tall as the budget allows (a multiple of
    ``multiple`` rows, except the last); a pass that ``writes`` the TIFF
    also leaves the writer its share of the budget."""
    top, bottom, _, _ = step.reach
    samples_in = int(np.prod(shape_in[1:]))
    row_in = samples_in * dtype.itemsize
    row_out = int(np.prod(shape_out[1:])) * dtype.itemsize
    if isinstance(step, Kernel):  # the engine works in strips of its own size, into the output band
        per_thread = _ENGINE_STRIP_BYTES_FLOAT if dtype.kind == "f" else _ENGINE_STRIP_BYTES
        work_row, fixed = 0, per_thread * engine.worker_count(threads, 1.0)
    else:
        work_row, fixed = _NEIGHBOURHOOD_COPIES * 8 * samples_in, 0
    reach = top + bottom
    out_rows = shape_out[0]
    budget_left = budget - (writer_buffer(budget) if writes else 0)

    def cost(n: int) -> int:
        held = shape_in[0] if n >= out_rows else n + reach  # one band is the whole image, unpadded
        return held * (row_in + work_row) + n * row_out + strips(held) + cache_bytes

    def strips(held: int) -> int:  # the engine's strips are no larger than twice the band in float32
        return min(fixed, 2 * held * 4 * samples_in)

    least = min(multiple, out_rows)
    if cost(least) > budget_left:
        mib = 1 << 20
        needed = _budget_for(cost(least)) if writes else cost(least)
        raise StreamingError(
            f"a band of {least} rows of this {shape_in[1]}-pixel-wide image, with the {reach} rows "
            f"{step.name} reaches, needs a memory budget of about {needed / mib:.2f} MiB ({needed} bytes)"
            f"{' with the writer' + chr(39) + 's share' if writes else ''}; the budget is {budget / mib:.2f} MiB "
            f"({budget} bytes): give at least that" + (", or smaller tiles" if multiple > 1 else "")
        )
    low, high = least, out_rows  # cost grows with n: the tallest band that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if cost(middle) <= budget_left else (low, middle - 1)
    n = out_rows if low >= out_rows else max(least, low // multiple * multiple)
    bands = [(y0, min(out_rows, y0 + n)) for y0 in range(0, out_rows, n)]
    return _Plan(bands, strips(n + reach), work_row)


def _resolve_method(step, source, method, plan: _Plan, meter: _Meter) -> str:
    """The method ``filter_array`` would use on the whole image of this pass."""
    return method_for_image(step, source.shape, source.dtype, method, lambda: _scan(source, plan, meter))


def inexact_fft(step, method: str, shape, dtype) -> list[str]:
    """``[step.name]`` when ``method`` is ``fft`` and its sums of ``step`` are not exact, else ``[]``."""
    if method == "fft" and not engine.fft_sums_are_exact(shape, step, dtype=dtype):
        return [step.name]
    return []


def method_for_image(step, shape, dtype, method: Method, scan: Callable[[], tuple[bool, float]]) -> str:
    """The method :func:`~convfilter.engine.filter_array` uses for ``step`` on
    a whole image of ``shape`` and ``dtype``; ``scan()`` gives (every sample
    finite, largest magnitude), asked only for float images where that decides."""
    if not isinstance(step, Kernel):
        return method.value
    dtype = np.dtype(dtype)
    chosen = engine.choose_method(shape, step, dtype=dtype, method=method.value)
    if method is not Method.AUTO or dtype.kind != "f" or chosen not in ("fft", "separable"):
        return chosen
    finite, largest = scan()
    affordable = engine.estimate_seconds("direct", shape, step, dtype=dtype) <= engine.MAX_SECONDS
    if not finite and affordable:
        return "direct"
    if finite and largest > 1e30 and chosen == "separable":
        return "direct" if affordable else "fft"
    return chosen


def _scan(source, plan: _Plan, meter: _Meter) -> tuple[bool, float]:
    """Whether every sample is finite, and the largest magnitude, read band by band."""
    finite, largest = True, 0.0
    rows = max(1, plan.bands[0][1] - plan.bands[0][0])
    for y0 in range(0, source.shape[0], rows):
        block = source.rows(np.arange(y0, min(source.shape[0], y0 + rows)))
        meter.hold(block.nbytes + source.cached_bytes)
        finite = finite and bool(np.isfinite(block).all())
        largest = max(largest, float(np.nanmax(np.abs(np.where(np.isfinite(block), block, 0)), initial=0)))
    return finite, largest


# ---------------------------------------------------------------------------
# Filtering band by band
# ---------------------------------------------------------------------------


class _Meter:
    """Counts bands for ``progress`` and keeps the peak of the bytes held."""

    def __init__(self, progress, total: int) -> None:
        self._progress = progress
        self.total = total
        self.done = 0
        self.peak = 0

    def hold(self, nbytes: int) -> None:
        self.peak = max(self.peak, int(nbytes))

    def band_done(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress(self.done, self.total)


def _bands(source, step, mode: BorderMode, cval, method, threads, plan: _Plan,
           meter: _Meter) -> Iterator[tuple[int, int, np.ndarray]]:  # fmt: skip
    """``(y0, y1, rows)`` for every band of output rows of ``step`` on ``source``."""
    rows = source.shape[0]
    top, bottom, _, _ = step.reach
    for y0, y1 in plan.bands:
        if mode is BorderMode.VALID:
            index, first = np.arange(y0, y1 + top + bottom), None
        elif y0 == 0 and y1 == rows:
            index, first = np.arange(rows), 0
        elif mode in PERIODIC_BORDERS:
            index, first = engine.border_index(rows, top, bottom, mode.value)[y0 : y1 + top + bottom], top
        else:
            low, high = max(0, y0 - top), min(rows, y1 + bottom)
            index, first = np.arange(low, high), y0 - low
        band = source.rows(index)
        result = engine.filter_array(band, step, border=mode, cval=cval, method=method, threads=threads)
        working = plan.working_bytes + plan.work_per_input_row * len(index)  # estimated
        meter.hold(band.nbytes + result.nbytes + source.cached_bytes + working)
        del band
        if first is not None:
            result = result[first : first + y1 - y0]
        if result.shape[0] != y1 - y0:
            raise StreamingError(f"{step.name} gave {result.shape[0]} rows for a band of {y1 - y0}; "
                                 "it cannot be filtered in bands")  # fmt: skip
        meter.band_done()
        yield y0, y1, result
        del result  # not held while the next band is filtered


def tiles_of_bands(bands, shape: tuple[int, ...], tile: tuple[int, int]) -> Iterator[np.ndarray]:
    """The output's tiles in TIFF order (rows of tiles, left to right), cut from
    bands whose heights are whole rows of tiles except the last."""
    height, width = tile
    pending = None
    for _, y1, rows in bands:
        if pending is not None:
            rows = np.concatenate([pending, rows])
            pending = None
        whole = rows.shape[0] if y1 == shape[0] else rows.shape[0] // height * height
        for ty in range(0, whole, height):
            for tx in range(0, shape[1], width):
                # A copy, as tifffile would make: a view would keep the whole band
                # alive for as long as the writer keeps a tile (it keeps the first).
                yield np.ascontiguousarray(rows[ty : ty + height, tx : tx + width])
        if whole < rows.shape[0]:
            pending = rows[whole:].copy()
        del rows


# ---------------------------------------------------------------------------
# One file, as `convfilter apply` streams it

#: Copies of a decoded image the in-memory path holds at its peak (the input,
#: the result, and the pipeline's margins), for deciding when to stream.
IN_MEMORY_COPIES = 2.5

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def decoded_bytes(source) -> int | None:
    """Bytes of one decoded copy of a TIFF's first image, from its header; None
    for a source that is not a TIFF file (a stream, another format, unreadable)."""
    if not isinstance(source, (str, os.PathLike)) or not _is_regular_file(source):
        return None  # opening a FIFO would wait for a writer
    try:
        with open(source, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return None
        with tifffile.TiffFile(source) as tiff:
            page = tiff.pages.first
            return int(page.imagelength) * int(page.imagewidth) * int(page.samplesperpixel) * np.dtype(
                page.dtype).itemsize  # fmt: skip
    except Exception:  # a damaged header (tifffile raises many kinds): the in-memory path reports it
        return None


def _is_regular_file(path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def fits_in_memory(source, memory: int | None, max_pixels: int = 0) -> bool:
    """Whether filtering ``source`` in memory stays within ``memory`` bytes (None:
    :func:`default_memory`); True for anything that is not a TIFF, and for a
    TIFF of more than ``max_pixels`` pixels (non-zero), which the in-memory
    loader refuses as it refuses any decompression bomb."""
    size = decoded_bytes(source)
    budget = default_memory() if memory is None else memory
    if size is None or size * IN_MEMORY_COPIES <= budget:
        return True
    return bool(max_pixels) and _pixels(source) > max_pixels


def _pixels(source) -> int:
    with tifffile.TiffFile(source) as tiff:
        page = tiff.pages.first
        return int(page.imagelength) * int(page.imagewidth)


#: The mode name of each (samples per pixel, dtype), as convfilter names modes.
_MODES = {(1, "uint8"): "L", (2, "uint8"): "LA", (3, "uint8"): "RGB", (4, "uint8"): "RGBA",
          (1, "uint16"): "I;16", (3, "uint16"): "RGB;16", (4, "uint16"): "RGBA;16", (1, "float32"): "F"}  # fmt: skip


def filter_file(source, destination, settings: FilterSettings, output, *, memory: int | None = None,
                source_name: str | None = None, progress: Callable[[float], object] | None = None,
                scheduler: str | None = None):  # fmt: skip
    """``convfilter apply`` by streaming: a TIFF in, a tiled BigTIFF out, within ``memory``.

    With ``scheduler`` (``"local"`` or a Dask scheduler's address), the
    image is filtered in chunks on that cluster (:mod:`convfilter.chunked`;
    a local cluster has ``settings.threads`` workers, default one per CPU)
    and written by this process into the same file.

    Takes what :func:`convfilter.pipeline.filter_file` takes for a file
    path, and refuses, before reading any pixels, what streaming cannot do
    (``--channels``, ``--abs``, alpha other than ``filter`` on an image
    with alpha, a per-band ``--cval``, output encoding options, an output
    that is not TIFF, more pixels than ``output.max_pixels``). Returns a
    :class:`~convfilter.pipeline.FileResult` whose notes say how it was
    streamed and what the output does not keep.
    """
    from .images import output_format
    from .pipeline import FileResult

    started = time.perf_counter()
    if not isinstance(source, (str, os.PathLike)) or not isinstance(destination, (str, os.PathLike)):
        raise StreamingError("streaming reads and writes files, not standard input or output")
    in_name = source_name or os.fspath(source)
    if not _is_regular_file(source):
        raise StreamingError(f"{in_name!r} is not a regular file; streaming reads TIFF files only")
    if output_format(destination, output.fmt) != "TIFF":
        raise StreamingError(f"streaming writes a tiled BigTIFF; name the output .tif or .tiff, not "
                             f"{os.fspath(destination)!r}")  # fmt: skip
    refused = [what for what, given in (
        ("--channels", settings.channels is not None), ("--abs", settings.abs),
        ("--quality", output.quality is not None), ("--lossless", output.lossless),
        ("--compression", output.compression is not None), ("--background", output.background is not None),
        ("--depth", output.depth is not None)) if given]  # fmt: skip
    if refused:
        raise StreamingError(f"streaming filters every band as it is and keeps the input's encoding; "
                             f"it cannot take {', '.join(refused)}")  # fmt: skip
    reader = TiffRows(source)
    shape, dtype, images_held = reader.shape, reader.dtype, reader.image_count()
    reader.close()
    if images_held > 1:
        raise StreamingError(f"{in_name!r} holds {images_held} images; streaming filters one, so it would "
                             "drop the others: split them first (tiffsplit), or filter it in memory")  # fmt: skip
    samples = shape[2] if len(shape) > 2 else 1
    full_scale = 1.0 if dtype.kind == "f" else float(np.iinfo(dtype).max)
    cvals = set(settings.cval.for_bands(full_scale, samples))
    if len(cvals) > 1:
        raise StreamingError("streaming fills every band with the same --cval, not one per band")
    pixels = shape[0] * shape[1]
    if output.max_pixels and pixels > output.max_pixels:
        raise StreamingError(f"{in_name!r} has {pixels:,} pixels, more than --max-pixels "
                             f"{output.max_pixels:,}; give --max-pixels 0 (or a larger limit) to filter it")  # fmt: skip
    has_alpha = samples in (2, 4)
    if has_alpha and settings.alpha != "filter":
        raise StreamingError("streaming filters every band, alpha included: give --alpha filter")
    budget = default_memory() if memory is None else memory
    report_progress = None if progress is None else lambda done, total: progress(done / total)
    common = dict(border=settings.border, cval=cvals.pop(), repeat=settings.repeat, method=settings.method,
                  memory=memory, progress=report_progress)  # fmt: skip
    if scheduler is None:
        with allocator.large_blocks_returned():
            report = filter_tiff(source, destination, settings.kernels, threads=settings.threads, **common)
        how = (f"streamed: {report.bands} bands in {report.passes} pass{'es' if report.passes > 1 else ''}, at most "
               f"{report.peak_bytes / (1 << 20):.0f} MiB of buffers held (budget {budget / (1 << 20):.0f} MiB)")
    else:
        from . import chunked
        from .cluster import connect

        for step in settings.chain:  # refused before a cluster is started
            check_streamable(step)
            shape = output_shape(shape, step, settings.border)
        workers = settings.threads or os.cpu_count() or 1
        with connect(scheduler, workers) as connection:
            report = chunked.filter_tiff(os.path.abspath(source), destination, settings.kernels,
                                         client=connection.client, threads=1, **common)  # fmt: skip
        where = "a local Dask cluster" if scheduler == "local" else f"the Dask cluster at {scheduler}"
        how = (f"filtered on {where}: {report.chunks} chunks over {report.workers} workers; this process held at "
               f"most {report.band_bytes / (1 << 20):.0f} MiB of output rows (budget {budget / (1 << 20):.0f} MiB)")
    notes = [
        how,
        f"written as a tiled BigTIFF, {report.compression}; streaming copies no ICC profile, resolution or "
        "other tags of the input",
    ]
    if report.inexact_fft:
        parts = "chunks" if scheduler is not None else "bands"
        notes.append(f"FFT sums of {', '.join(report.inexact_fft)} depend on how the image is cut into {parts}: "
                     "within the accuracy contract of filtering it in memory, not the same bytes "
                     "(--method direct gives those)")  # fmt: skip
    return FileResult(
        input=in_name, output=os.fspath(destination), mode=_MODES.get((samples, dtype.name), f"{dtype.name} x{samples}"),
        size=(report.shape[1], report.shape[0]), frames=1, format="TIFF", notes=notes,
        timings_ms={"filter": report.seconds * 1000.0, "total": (time.perf_counter() - started) * 1000.0},
    )  # fmt: skip
