"""Filtering whole images: bands, alpha, kernel chains, and one file in, one file out.

``filter_image`` filters a Pillow image; ``filter_file`` is the whole job
behind ``convfilter apply`` (and each file of ``convfilter batch``): load,
filter every frame, optionally compare with Pillow, save atomically.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, BinaryIO, Callable

import numpy as np
from PIL import Image, ImageFilter

from . import encoding, engine, images, loading
from .kernels import Kernel
from .options import AlphaMode, BorderMode, FilterSettings, OutputSettings, SettingsError

if TYPE_CHECKING:  # compare (and Pillow's ImageDraw and fonts) load only for comparisons
    from . import compare

__all__ = [
    "FileResult",
    "Filter",
    "as_settings",
    "filter_image",
    "filter_pixels",
    "resolve_alpha",
    "filter_file",
    "compare_files",
]

@dataclass
class FileResult:
    """What happened to one file, for the report and for ``--json``."""

    input: str
    output: str
    mode: str = ""
    size: tuple[int, int] = (0, 0)
    frames: int = 1
    format: str = ""
    notes: list[str] = field(default_factory=list)
    timings_ms: dict = field(default_factory=dict)
    diff: compare.DiffReport | None = None
    reference: str | None = None

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "mode": self.mode,
            "width": self.size[0],
            "height": self.size[1],
            "frames": self.frames,
            "format": self.format,
            "notes": list(self.notes),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "reference": self.reference,
            "diff": None if self.diff is None else self.diff.to_dict(),
        }


def _band_indices(mode: str, settings: FilterSettings) -> tuple[list[int], int | None]:
    """(indices of bands to filter, index of the alpha band or None)."""
    bands = list(images.band_names(mode))
    alpha = bands.index("A") if "A" in bands else None
    if settings.channels is not None:
        wanted = []
        for name in settings.channels:
            if name.upper() not in bands:
                raise SettingsError(
                    f"mode {mode} has no band {name!r} (its bands: {','.join(bands)})"
                )
            wanted.append(bands.index(name.upper()))
        selected = sorted(set(wanted))
    else:
        selected = list(range(len(bands)))
        if alpha is not None and settings.alpha in ("keep", "auto"):
            selected.remove(alpha)
    if settings.alpha == "premultiply":
        if alpha is None:
            raise SettingsError(f"--alpha premultiply needs an image with alpha, not mode {mode}")
        if not [i for i in selected if i != alpha]:
            raise SettingsError("--alpha premultiply filters colour: name a colour band in --channels")
    if settings.alpha == "filter" and alpha is not None and alpha not in selected:
        selected = sorted(selected + [alpha])
    return selected, alpha


def _crop_like(array: np.ndarray, step, border: str) -> np.ndarray:
    """Pass-through bands shrink with the filtered ones under border ``valid``."""
    if border != "valid":
        return array
    top, bottom, left, right = step.reach
    rows, cols = array.shape[:2]
    return array[top : rows - bottom, left : cols - right]


def _fill_values(settings: FilterSettings, dtype: np.dtype, mode: str) -> list[float]:
    """The fill value of each band of a ``mode`` image (zeros, unused, unless the
    border is ``constant``)."""
    bands = images.band_names(mode)
    if settings.border is not BorderMode.CONSTANT:
        return [0.0] * len(bands)
    dtype = np.dtype(dtype)
    full_scale = 1.0 if dtype.kind == "f" else float(np.iinfo(dtype).max)
    return settings.cval.for_bands(full_scale, len(bands), bands=",".join(bands))


def _by_fill_value(array: np.ndarray, cvals: list[float], run) -> np.ndarray:
    """``run(bands, cval)`` over the last axis of ``array``: once when every band
    has the same fill value, else band by band, stacked again."""
    if len(set(cvals)) <= 1:
        return run(array, cvals[0] if cvals else 0.0)
    return np.stack([run(array[..., i : i + 1], cval)[..., 0] for i, cval in enumerate(cvals)], axis=-1)


def _step(
    array: np.ndarray, step, settings: FilterSettings, cvals: list[float], progress=None
) -> np.ndarray:
    if not isinstance(step, Kernel):  # a median, an unsharp mask, ...: computed by the filter itself

        def run(bands: np.ndarray, cval: float) -> np.ndarray:
            return step.apply(bands, border=settings.border, cval=cval, threads=settings.threads,
                              progress=progress)  # fmt: skip

        return _by_fill_value(array, cvals, run)
    # Mode I is summed and clamped as Pillow does; every other mode's samples
    # are ones filter_array sums in Pillow's order.
    filter_samples = engine.filter_mode_i if array.dtype == np.int32 else engine.filter_array

    def run(bands: np.ndarray, cval: float) -> np.ndarray:
        return filter_samples(bands, step, border=settings.border, cval=cval, abs=settings.abs,
                              method=settings.method, threads=settings.threads, progress=progress)

    return _by_fill_value(array, cvals, run)


def _premultiplied_step(
    colour: np.ndarray, alpha: np.ndarray, kernel: Kernel, settings: FilterSettings, cvals: list[float],
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Filter colour premultiplied by alpha, then divide by the filtered alpha.

    Works in float64 on 8- or 16-bit data: colour' = corr(colour * a) /
    corr(a) + offset, alpha' = corr(a), both rounded like any result of the
    type. Where the result is fully transparent, coverage says nothing about
    colour: there the colour is filtered on its own, as ``keep`` filters it
    (so ``identity`` changes nothing). ``cvals`` are the fill values of the
    colour bands and then alpha: beyond a constant border lie pixels of that
    colour and coverage.
    """
    dtype = colour.dtype
    top = float(np.iinfo(dtype).max)
    a = alpha.astype(np.float64) / top
    options = dict(border=settings.border, threads=settings.threads, progress=progress)
    outside = cvals[-1] / top
    offset = getattr(kernel, "offset", 0.0)

    def run(values: np.ndarray, cval: float) -> np.ndarray:
        if isinstance(kernel, Kernel):
            return engine.correlate(values, kernel.replace(offset=0.0), cval=cval, method=settings.method,
                                    **options)  # fmt: skip
        return kernel.apply(values, cval=cval, **options)  # a linear filter: float64 in, float64 out

    weighted = _by_fill_value(colour.astype(np.float64) * a[..., None], [c * outside for c in cvals[:-1]], run)
    coverage = run(a, outside)
    covered = coverage > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        values = weighted / coverage[..., None] + offset
    values = np.where(covered[..., None], values, 0.0)
    if settings.abs:
        values = np.abs(values)
    new_colour = engine.round_to_dtype((values + 0.5).astype(np.float32), dtype)
    if not covered.all():
        uncovered = ~covered
        new_colour[uncovered] = _step(colour, kernel, settings, cvals[:-1])[uncovered]
    if settings.abs:
        coverage = np.abs(coverage)
    new_alpha = engine.round_to_dtype((coverage * top + 0.5).astype(np.float32), dtype)
    return new_colour, new_alpha


def filter_image(image: Image.Image, kernel, **options) -> Image.Image:
    """Filter a Pillow image as ``convfilter apply`` filters a file.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode the command accepts; palette, 1-bit and colour-keyed
        images are converted first, as the command converts them. Only the
        current frame is filtered, as it is, without EXIF rotation (give
        ``ImageOps.exif_transpose(image)`` for the upright picture).
    kernel
        A :class:`Kernel`, a spec (``"gaussian:2"``), a matrix, a sequence
        of them (a chain), or a :class:`FilterSettings` (then no options).
    **options
        The :class:`FilterSettings` fields: ``repeat``, ``border``, ``cval``,
        ``abs``, ``channels``, ``alpha``, ``method``, ``threads``.

    Returns
    -------
    PIL.Image.Image
        In the filtered mode: the same pixels ``convfilter apply`` writes.
        Bands not selected pass through unchanged (cropped alike under
        border ``valid``); each step of a chain rounds, as applying the
        filters one after another in Pillow does.

    Raises
    ------
    SettingsError
        For an option that is not valid, or does not fit the image (a band
        the mode lacks, premultiply without alpha).
    KernelSpecError, FilterError
        For a kernel that is not one, or one the image cannot take.
    """
    settings = as_settings(kernel, options)
    image = images.filterable(image)
    filtered = filter_pixels(images.to_array(image), image.mode, settings)
    return images.from_array(filtered, image.mode, like=image if isinstance(image, images.DeepImage) else None)


def as_settings(kernel, options: dict) -> FilterSettings:
    """A :class:`FilterSettings` from one given whole, or from a kernel and options."""
    if isinstance(kernel, FilterSettings):
        if options:
            raise SettingsError(f"give options in the FilterSettings, not beside it ({', '.join(options)})")
        return kernel
    unknown = sorted(set(options) - set(FilterSettings.__dataclass_fields__) - {"kernels"})
    if unknown or "kernels" in options:
        fields = ", ".join(f for f in FilterSettings.__dataclass_fields__ if f != "kernels")
        raise SettingsError(f"unknown option {(unknown or ['kernels'])[0]!r}; the options are {fields}")
    return FilterSettings(kernel, **options)


class Filter(ImageFilter.MultibandFilter):
    """convfilter as a Pillow filter, for ``Image.filter``.

    Takes what :func:`filter_image` takes and gives the same pixels:

    >>> from PIL import Image
    >>> image = Image.new("L", (4, 3), 200)
    >>> image.filter(Filter("sobel-x", abs=True)).getpixel((1, 1))
    0
    """

    name = "convfilter"

    def __init__(self, kernel, **options) -> None:
        self.settings = as_settings(kernel, options)

    def filter(self, image):
        """Pillow's hook: filter an ``ImagingCore``, return one."""
        return filter_image(Image.Image()._new(image), self.settings).im

    def __repr__(self) -> str:
        return f"Filter({self.settings.describe()!r})"


def resolve_alpha(settings: FilterSettings, mode: str, *, opaque: bool) -> str:
    """The alpha mode ``settings.alpha`` stands for on an image of ``mode``
    whose alpha is fully ``opaque`` or not.

    ``auto`` is ``premultiply`` for an image whose alpha is not fully opaque,
    filtered by kernels whose weights all sum to 1 (blurs and sharpens, which
    keep brightness: colour is weighted by coverage, so transparent pixels'
    colour cannot bleed in), and ``keep`` otherwise: opaque images, edge
    kernels (weights summing to 0, which coverage cannot divide), kernels
    that change brightness (premultiplied, their gain would go to alpha) and
    ``channels`` given.
    """
    if settings.alpha != "auto":
        return settings.alpha
    if opaque or "A" not in images.band_names(mode) or settings.channels is not None:
        return "keep"
    return "premultiply" if all(_keeps_brightness(step) for step in settings.kernels) else "keep"


def _keeps_brightness(step) -> bool:
    """True for a kernel whose weights sum to 1, or a linear filter (a blur)."""
    if isinstance(step, Kernel):
        return abs(float(step.weights.sum()) - 1.0) <= 1e-9
    return step.keeps_brightness


def filter_pixels(
    array: np.ndarray, mode: str, settings: FilterSettings, *, progress: Callable[[float], object] | None = None
) -> np.ndarray:
    """:func:`filter_image` on the pixel array of a ``mode`` image (H x W or H x W x C).

    ``progress(fraction)``, if given, is called on this thread as the work
    advances (0 to 1 over the whole chain).
    """
    if settings.alpha == "auto":
        bands = images.band_names(mode)
        opaque = "A" not in bands or images.opaque_alpha(array[..., bands.index("A")])
        settings = replace(settings, alpha=resolve_alpha(settings, mode, opaque=opaque))
    selected, alpha = _band_indices(mode, settings)
    cvals = _fill_values(settings, array.dtype, mode)
    single_band = array.ndim == 2
    if single_band:
        array = array[:, :, np.newaxis]
    chain = settings.chain
    for index, kernel in enumerate(chain):
        step_progress = None if progress is None else _share(progress, index, len(chain))
        if settings.alpha == "premultiply":
            colour_bands = [i for i in selected if i != alpha]
            colour, new_alpha = _premultiplied_step(
                array[:, :, colour_bands], array[:, :, alpha], kernel, settings,
                [cvals[i] for i in colour_bands + [alpha]], step_progress,
            )  # fmt: skip
            result = _crop_like(array, kernel, settings.border).copy()
            result[:, :, colour_bands] = colour
            result[:, :, alpha] = new_alpha
        elif len(selected) == array.shape[2]:
            result = _step(array, kernel, settings, cvals, step_progress)
        else:
            result = _crop_like(array, kernel, settings.border).copy()
            if selected:
                result[:, :, selected] = _step(array[:, :, selected], kernel, settings,
                                               [cvals[i] for i in selected], step_progress)  # fmt: skip
        array = result
    return array[:, :, 0] if single_band else array


def filter_file(
    source: str | os.PathLike | BinaryIO,
    destination: str | os.PathLike | BinaryIO,
    settings: FilterSettings | Kernel | str,
    output: OutputSettings = OutputSettings(),
    *,
    diff_pil: bool = False,
    diff_filter: str | None = None,
    diff_image: str | os.PathLike | None = None,
    source_name: str | None = None,
    destination_name: str | None = None,
    progress: Callable[[float], object] | None = None,
    stream: bool | None = None,
    memory: int | None = None,
    scheduler: str | None = None,
    read_ahead: loading.ReadAhead | None = None,
) -> FileResult:
    """Load ``source``, filter every frame, write ``destination``; report what happened.

    ``source``/``destination`` are paths or binary streams (stdin/stdout);
    ``settings`` a :class:`FilterSettings`, or a kernel or chain alone.
    With ``diff_pil``, the first frame is also filtered by Pillow
    (``diff_filter`` or Pillow's equivalent) and compared; ``diff_image``
    writes the side-by-side picture. Nothing is written when anything fails
    before the final rename, and the input is read completely before the
    output is replaced, so input and output may be the same file.
    ``progress(fraction)`` is called as filtering advances (0 to 1).

    A TIFF too large to filter within ``memory`` bytes (None: a quarter of
    the machine's memory) is streamed instead, by bands of rows, into a
    tiled BigTIFF (:func:`convfilter.streaming.filter_file`); ``stream``
    True streams whatever the size, False never streams. ``scheduler``
    (``"local"`` or a Dask scheduler's address) filters a TIFF in chunks
    on that Dask cluster instead, whatever its size
    (:func:`convfilter.chunked.filter_tiff`), into the same file.

    ``read_ahead``, a :class:`convfilter.loading.ReadAhead` of ``source``
    that the caller started earlier, gives the decoded input instead of
    reading it again (never for a TIFF that may be streamed).
    """
    if scheduler is not None or stream or (stream is None and not _comparing(diff_pil, diff_filter, diff_image)
                  and _streams(source, destination, output, memory)):  # fmt: skip
        from . import streaming

        if _comparing(diff_pil, diff_filter, diff_image):
            how = "filtered on a cluster" if scheduler is not None else "streamed"
            raise streaming.StreamingError(f"--diff-pil compares whole images in memory; it cannot be {how}")
        return streaming.filter_file(source, destination, as_settings(settings, {}), output, memory=memory,
                                     source_name=source_name, progress=progress, scheduler=scheduler)  # fmt: skip
    timings: dict[str, float] = {}
    start = time.perf_counter()
    settings = as_settings(settings, {})
    in_name = source_name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "-")
    out_name = destination_name or (
        os.fspath(destination) if isinstance(destination, (str, os.PathLike)) else "-"
    )
    out_path = destination if isinstance(destination, (str, os.PathLike)) else None
    comparing = _comparing(diff_pil, diff_filter, diff_image)
    # Everything that can be refused without the pixels is refused before them.
    if out_path is not None:
        images.output_format(out_path, output.fmt)
        images.check_output_path(out_path)
    if diff_image is not None:
        images.output_format(diff_image, None, format_option=None)
        images.check_output_path(diff_image)
    if comparing:
        _check_comparable(settings, diff_filter)
    if read_ahead is not None:
        loaded = read_ahead.result()
    else:
        loaded = images.load_image(
            source, max_pixels=output.max_pixels, formats=output.formats,
            name=None if source_name is None else "standard input" if source_name == "-" else f"'{source_name}'",
        )  # fmt: skip
    fmt = images.output_format(out_path, output.fmt, fallback=loaded.format)
    _check_writable(loaded.mode, fmt, output)
    timings["load"] = _ms_since(start)
    t = time.perf_counter()
    mode = loaded.mode
    # --alpha auto is decided once per frame here, so filtering does not look again.
    frame_settings = [
        replace(settings, alpha=resolve_alpha(settings, mode, opaque=images.alpha_is_opaque(frame)))
        if settings.alpha == "auto" else settings
        for frame in loaded.frames
    ]  # fmt: skip
    if settings.alpha == "auto" and any(s.alpha == "premultiply" for s in frame_settings):
        if comparing:
            from . import compare

            raise compare.CompareError(
                f"{_NO_PREMULTIPLIED_REFERENCE}; this image has transparent pixels, so --alpha auto "
                "premultiplies: give --alpha keep (or filter) to compare"
            )
        loaded.notes.append("colour filtered weighted by alpha, as the image has transparent pixels "
                            "(--alpha auto; --alpha keep filters colour alone)")  # fmt: skip
    kernels_in_chain = any(isinstance(step, Kernel) for step in settings.kernels)
    if comparing and (mode in ("RGB;16", "RGBA;16") or (mode == "F" and kernels_in_chain and not diff_filter)):
        from . import compare

        what = "32-bit float" if mode == "F" else "16-bit colour"
        raise compare.CompareError(f"Pillow cannot filter {what} images (mode {mode}); leave out --diff-pil")
    if mode == "I" and kernels_in_chain:
        loaded.notes += _int32_notes(loaded.frames)
    first_input = loaded.frames[0] if comparing else None
    count = len(loaded.frames)
    pixels = None if comparing else loaded.pixels  # the comparison needs the input as it was
    filtered = [
        _filter_frame(loaded.frames, i, frame_settings[i],
                      None if progress is None else lambda fraction, i=i: progress((i + fraction) / count),
                      pixels=pixels)
        for i in range(count)
    ]  # fmt: skip
    timings["filter"] = _ms_since(t)
    result = FileResult(
        input=in_name,
        output=out_name,
        mode=mode,
        size=filtered[0].size,
        frames=len(filtered),
        format=fmt,
        notes=list(loaded.notes),
    )
    if comparing:
        from . import compare

        t = time.perf_counter()
        selected, _ = _band_indices(first_input.mode, settings)
        reference, result.reference = compare.pillow_reference(
            first_input, settings.kernels, selected, repeat=settings.repeat, filter_name=diff_filter
        )
        margin = compare.kernel_margin(settings.kernels, settings.repeat)
        result.diff = compare.compare_images(filtered[0], reference, margin=margin)
        timings["pillow"] = _ms_since(t)
        if diff_image is not None:
            picture = compare.diff_picture(
                [("input", first_input), ("convfilter", filtered[0]), (result.reference, reference)],
                filtered[0],
                reference,
            )
            picture_format = images.output_format(diff_image, None, format_option=None)
            images.save_image([picture], diff_image, fmt=picture_format)
    t = time.perf_counter()
    if output.background is not None:
        filtered, flatten_notes = _each_frame(images.flatten, filtered, output.background)
        result.notes += flatten_notes
    if output.depth == 8:
        filtered, depth_notes = _each_frame(images.reduce_to_8_bits, filtered)
        result.notes += depth_notes
    alphas = _alpha_planes(filtered) if fmt == "GIF" else None
    plan = encoding.save_options(fmt, loaded.encoding, output, mode=filtered[0].mode, alphas=alphas,
                                 comment=not output.strip_metadata)  # fmt: skip
    metadata = None if output.strip_metadata else loaded.metadata
    not_held = metadata.not_held(fmt) if metadata is not None else []
    if not_held:
        names = ", ".join(not_held[:-1]) + " or " + not_held[-1] if len(not_held) > 1 else not_held[0]
        result.notes.append(f"{fmt} holds no {names}; not written")
    result.notes += plan.notes
    result.notes += images.save_image(filtered, destination, fmt=fmt, metadata=metadata, options=plan.options)
    timings["save"] = _ms_since(t)
    timings["total"] = _ms_since(start)
    result.timings_ms = timings
    return result


def _comparing(diff_pil: bool, diff_filter: str | None, diff_image) -> bool:
    return bool(diff_pil or diff_filter or diff_image is not None)


def _streams(source, destination, output: OutputSettings, memory: int | None) -> bool:
    """Whether a TIFF file is streamed unasked: it is too large to filter within
    ``memory`` (read from its header), and the output is a TIFF file."""
    if not all(isinstance(path, (str, os.PathLike)) for path in (source, destination)):
        return False
    if not os.fspath(source).lower().endswith((".tif", ".tiff")):
        return False  # the header is read only when the name says TIFF
    if images.output_format(destination, output.fmt) != "TIFF":
        return False
    from . import streaming

    return not streaming.fits_in_memory(source, memory, output.max_pixels)


def compare_files(
    first: str | os.PathLike,
    second: str | os.PathLike,
    output: OutputSettings = OutputSettings(),
    *,
    diff_image: str | os.PathLike | None = None,
) -> compare.DiffReport:
    """Compare two image files frame by frame: the whole of ``convfilter diff``.

    Both are decoded as ``filter_file`` decodes its input (``output`` says
    what may be decoded); ``diff_image`` writes the two first frames and
    their difference side by side.

    Raises
    ------
    compare.CompareError
        Frame counts, sizes or modes that differ.
    images.ImageError, images.OutputError
        An input that is not an image, a picture that cannot be written.
    """
    from . import compare

    picture_format = None
    if diff_image is not None:
        picture_format = images.output_format(diff_image, None, format_option=None)
        images.check_output_path(diff_image)
    a = images.load_image(first, max_pixels=output.max_pixels, formats=output.formats)
    b = images.load_image(second, max_pixels=output.max_pixels, formats=output.formats)
    report = compare.compare_frames(a.frames, b.frames)
    if diff_image is not None:
        picture = compare.diff_picture([("A", a.frames[0]), ("B", b.frames[0])], a.frames[0], b.frames[0])
        images.save_image([picture], diff_image, fmt=picture_format)
    return report


def _check_writable(mode: str, fmt: str, output: OutputSettings) -> None:
    """Refuse, in one message, every reason ``fmt`` cannot hold a ``mode`` image as asked."""
    written_mode = mode if output.background is None else images.flattened_mode(mode)
    checks = [images.check_alpha] if output.depth == 8 else [images.check_depth, images.check_alpha]
    reasons = []
    for check in checks:
        try:
            check(written_mode, fmt)
        except images.OutputError as exc:
            reasons.append(str(exc))
    if reasons:
        raise images.OutputError("; and ".join(reasons))


def _check_comparable(settings: FilterSettings, diff_filter: str | None) -> None:
    """Raise CompareError now for a --diff-pil request that cannot be met."""
    from . import compare

    if settings.alpha == "premultiply":
        raise compare.CompareError(_NO_PREMULTIPLIED_REFERENCE + "; give --alpha keep or --alpha filter")
    if settings.border == "valid":
        raise compare.CompareError(
            "border 'valid' changes the size, so there is nothing to compare with Pillow; "
            "use --border keep"
        )
    if diff_filter:
        compare.pillow_filter(diff_filter)
    else:
        for kernel in settings.kernels:
            compare.pillow_equivalent(kernel)


_NO_PREMULTIPLIED_REFERENCE = (
    "--diff-pil compares with Pillow's filters, which filter each band on its own and "
    "have no premultiplied alpha"
)


def _share(progress: Callable[[float], object], index: int, count: int) -> Callable[[int, int], None]:
    """An engine progress callback for part ``index`` of ``count`` equal parts of ``progress``."""

    def report(done: int, total: int) -> None:
        progress((index + done / max(total, 1)) / count)

    return report


def _filter_frame(
    frames: list, index: int, settings: FilterSettings, progress=None, *, pixels: np.ndarray | None = None
) -> Image.Image | images.DeepImage:
    """Filter ``frames[index]``, letting go of each copy as soon as it is used.

    An 8-bit L or RGB frame filtered whole by one kernel is filtered in
    place when ``pixels`` (:attr:`images.LoadedImage.pixels`) holds its
    memory, and otherwise read by the engine strip by strip
    (:class:`images.PixelRows`), with no array copy of it. Any other frame
    is dropped from ``frames`` once its pixels are in an array, and that
    array once the result exists. So a large image is held once, twice
    at most, never four times.
    """
    frame = frames[index]
    mode = frame.mode
    if _reads_rows(frame, settings):
        (kernel,) = settings.chain
        (cval,) = set(_fill_values(settings, np.dtype(np.uint8), mode))
        options = dict(border=settings.border, cval=cval, abs=settings.abs, method=settings.method,
                       threads=settings.threads, progress=None if progress is None else _share(progress, 0, 1))
        if pixels is not None and index == 0 and len(frames) == 1 and settings.border is not BorderMode.VALID:
            # An RGB image's fourth byte, padding that Pillow never reads, is
            # filtered too: skipping it in each strip costs more than summing it.
            engine.filter_array(pixels, kernel, out=pixels, **options)
            return frame
        result = engine.filter_array(images.PixelRows(frame), kernel, **options)
        frames[index] = frame = None
        return images.from_array(result, mode)
    like = frame if isinstance(frame, images.DeepImage) else None
    array = images.to_array(frame)
    frames[index] = frame = None
    result = filter_pixels(array, mode, settings, progress=progress)
    del array
    return images.from_array(result, mode, like=like)


def _reads_rows(frame, settings: FilterSettings) -> bool:
    """Whether the engine can read ``frame`` strip by strip: every band of an
    8-bit L or RGB image, one kernel, one fill value."""
    return (
        isinstance(frame, Image.Image)
        and frame.mode in ("L", "RGB")
        and settings.channels is None
        and settings.alpha is not AlphaMode.PREMULTIPLY  # an error without alpha, said by filter_pixels
        and len(settings.chain) == 1
        and isinstance(settings.chain[0], Kernel)
        and len(set(_fill_values(settings, np.dtype(np.uint8), frame.mode))) == 1
    )


def _int32_notes(frames: list) -> list[str]:
    """What the dtype policy changes in mode I samples even under ``identity``."""
    negative = wide = 0
    for frame in frames:
        array = images.to_array(frame)
        negative += int(np.count_nonzero(array < 0))
        wide += int(np.count_nonzero(array >= 2**23))
    notes = []
    if negative:
        notes.append(f"{negative} samples below 0 became 0 (mode I is clamped at 0, as Pillow's "
                     "filters clamp it)")
    if wide:
        notes.append(f"{wide} samples of 8,388,608 or more were summed with float32 precision, as Pillow sums "
                     "them, so their lowest bits may change")  # fmt: skip
    return notes


def _each_frame(convert, frames: list, *args) -> tuple[list, list[str]]:
    """``convert(frame, *args)`` (which returns a frame and a note or None) on every
    frame; the converted frames and the first frame's note."""
    converted = [convert(frame, *args) for frame in frames]
    notes = [converted[0][1]] if converted[0][1] else []
    return [frame for frame, _ in converted], notes


def _alpha_planes(frames: list) -> list[np.ndarray] | None:
    """The alpha band of each frame of an animation with alpha (for its disposal), else None."""
    if len(frames) < 2 or "A" not in images.band_names(frames[0].mode):
        return None
    return [images.to_array(frame)[..., -1] for frame in frames]


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
