"""Coverage-guided fuzzing of convfilter's image loading and filtering (atheris).

Each input is treated as an image file: decoded by ``images.load_image``
(default allow-list, a 1-megapixel limit so that every input stays fast),
every frame filtered, the result encoded as PNG and decoded again. The only
acceptable failure is :class:`convfilter.images.ImageError`; anything else
(an exception, a hang past ``-timeout``, a crash in a C decoder) is a
finding, saved by libFuzzer as ``crash-*``/``timeout-*`` in the current
directory.

Run for a bounded time (atheris: ``pip install atheris``)::

    python tests/fuzz/fuzz_load_filter.py -max_total_time=60 -timeout=10 fuzz-corpus/

and replay a finding with ``python tests/fuzz/fuzz_load_filter.py crash-...``.
The corpus directory is created and seeded with one small valid file per
allowed format when it is empty. ``TestOneInput`` needs no atheris, so the
test suite can feed it seeds (tests/fuzz/test_fuzz_harness.py); pytest does
not collect this file (tests/fuzz/conftest.py).
"""

from __future__ import annotations

import io
import os
import sys
import warnings

import numpy as np
from PIL import Image

from convfilter import encoding, images
from convfilter.kernels import parse_kernel
from convfilter.options import FilterSettings, OutputSettings
from convfilter.pipeline import filter_image

MAX_PIXELS = 1 << 20
MAX_FRAMES = 8
BORDERS = ("nearest", "reflect", "mirror", "wrap", "constant", "keep")
KERNELS = tuple(parse_kernel(spec) for spec in ("blur", "sobel-x", "1 2 1; 2 4 2; 1 2 1", "emboss"))


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    """Load ``data`` as an image, filter it, round-trip it through TIFF; no warning escapes.

    (Pillow's log records need no check: ``convfilter.images`` gives Pillow's logger a
    NullHandler, so they are never printed unless an application configures logging.)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping convfilter is a finding
        _load_filter_save(data)


def _load_filter_save(data: bytes) -> None:
    try:
        loaded = images.load_image(io.BytesIO(data), max_pixels=MAX_PIXELS)
    except images.ImageError:
        return
    assert loaded.frames, "a loaded image has at least one frame"
    assert loaded.mode in images.FILTERABLE_MODES, loaded.mode
    choice = len(data)
    settings = FilterSettings(
        kernels=(KERNELS[choice % len(KERNELS)],),
        border=BORDERS[(choice // len(KERNELS)) % len(BORDERS)],
    )
    filtered = []
    for frame in loaded.frames[:MAX_FRAMES]:
        assert frame.mode == loaded.mode, (frame.mode, loaded.mode)
        result = filter_image(frame, settings)
        assert result.size == frame.size and result.mode == frame.mode
        filtered.append(result)
    # TIFF holds every filterable mode and pages of different sizes (a GIF frame may grow
    # the canvas), so the round trip must give back exactly what was filtered.
    buffer = io.BytesIO()
    images.save_image(filtered, buffer, fmt="TIFF", metadata=loaded.metadata)
    again = images.load_image(io.BytesIO(buffer.getvalue()), max_pixels=0)
    assert len(again.frames) == len(filtered)
    for page, expected in zip(again.frames, filtered):
        assert page.size == expected.size and page.mode == expected.mode
        assert np.array_equal(images.to_array(page), images.to_array(expected), equal_nan=page.mode == "F")
    # Writing the input's own format may be refused (a mode or frame layout it cannot
    # hold), but only with OutputError, whatever metadata the input carried.
    if loaded.format in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        try:
            plan = encoding.save_options(loaded.format, loaded.encoding, OutputSettings(),
                                         mode=filtered[0].mode)  # fmt: skip
            images.save_image(filtered, io.BytesIO(), fmt=loaded.format, metadata=loaded.metadata,
                              options=plan.options)  # fmt: skip
        except images.OutputError:
            pass


def seed_files() -> dict[str, bytes]:
    """One small valid file per allowed format (the starting corpus)."""
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    seeds: dict[str, bytes] = {}
    variants = {
        "png": (picture.convert("RGBA"), "PNG", {}),
        "jpg": (picture, "JPEG", {"quality": 80}),
        "gif": (picture.quantize(8), "GIF", {"save_all": True, "append_images": [picture.quantize(4)]}),
        "tif": (picture, "TIFF", {"compression": "tiff_lzw"}),
        "bmp": (picture, "BMP", {}),
        "webp": (picture, "WEBP", {"quality": 50}),
        "ppm": (picture, "PPM", {}),
        "tga": (picture, "TGA", {"compression": "tga_rle"}),
        "ico": (picture.resize((16, 16)), "ICO", {"sizes": [(16, 16)]}),  # older Pillow skips larger sizes
        "16bit.png": (Image.fromarray(rng.integers(0, 65536, (4, 5), dtype=np.uint16)), "PNG", {}),
        "float.tif": (Image.fromarray(rng.normal(size=(4, 5)).astype(np.float32)), "TIFF", {}),
    }
    for name, (image, fmt, options) in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        seeds[f"seed.{name}"] = buffer.getvalue()
    return seeds


def _seed_corpus(argv: list[str]) -> None:
    directories = [arg for arg in argv[1:] if not arg.startswith("-") and not os.path.isfile(arg)]
    for directory in directories[:1]:
        os.makedirs(directory, exist_ok=True)
        if not os.listdir(directory):
            for name, data in seed_files().items():
                with open(os.path.join(directory, name), "wb") as handle:
                    handle.write(data)


def main() -> None:
    import atheris

    _seed_corpus(sys.argv)
    atheris.instrument_all()  # Python code of convfilter and Pillow's plugins guides the search
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
