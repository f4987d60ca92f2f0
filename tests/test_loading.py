"""convfilter.loading: reading ahead on a thread, the shared warnings filter,
decoders handed the whole file, and a module that imports no NumPy."""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from convfilter import loading


@pytest.fixture
def photo(rng, tmp_path):
    """A 200 x 150 JPEG of noise."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def test_loading_imports_pillow_but_not_numpy():
    # What lets ReadAhead decode while the command imports NumPy.
    code = "import sys, convfilter.loading; print('numpy' in sys.modules, 'PIL.Image' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["False", "True"]


def test_read_ahead_gives_what_load_image_gives(photo):
    with Image.open(photo) as pillow:
        expected = np.asarray(pillow.convert("RGB"))  # Pillow's own decode is the oracle
    loaded = loading.ReadAhead(photo, max_pixels=0, formats=("JPEG",)).result()
    assert loaded.format == "JPEG" and loaded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(loaded.frames[0]), expected)
    np.testing.assert_array_equal(loaded.pixels[..., :3], expected)
    assert loaded.encoding.jpeg_qtables is not None  # read from the file, as load_image reads it


def test_read_ahead_hands_its_image_over_once(photo):
    ahead = loading.ReadAhead(photo)
    ahead.result()
    with pytest.raises(RuntimeError, match="once"):
        ahead.result()


@pytest.mark.parametrize("case", ["missing", "not an image", "format not allowed", "too many pixels"])
def test_read_ahead_raises_what_load_image_raises(case, photo, tmp_path):
    options = {}
    if case == "missing":
        path = tmp_path / "nothing.png"
    elif case == "not an image":
        path = tmp_path / "notes.png"
        path.write_text("not pixels")
    elif case == "format not allowed":
        path, options = photo, {"formats": ("PNG",)}
    else:
        path, options = photo, {"max_pixels": 100}
    with pytest.raises(loading.ImageError) as direct:
        loading.load_image(path, **options)
    with pytest.raises(type(direct.value)) as ahead:
        loading.ReadAhead(path, **options).result()
    assert str(ahead.value) == str(direct.value)


class _CountingDecoder:
    """Pillow's decoder, with its decode calls counted."""

    def __init__(self, decoder, calls: list[int]) -> None:
        self._decoder, self._calls = decoder, calls

    def decode(self, data):
        self._calls.append(len(data))
        return self._decoder.decode(data)

    def __getattr__(self, name):
        return getattr(self._decoder, name)


def test_a_jpeg_is_handed_to_its_decoder_in_one_block(rng, tmp_path, monkeypatch):
    # In Pillow's 64 KiB blocks the decoder needs the GIL back after each one,
    # which another busy thread could hold for its whole switch interval.
    path = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path, quality=95)
    assert path.stat().st_size > 4 * 65536
    with Image.open(path) as pillow:
        expected = np.asarray(pillow)  # in Pillow's blocks: 9 calls
    calls: list[int] = []
    make = Image._getdecoder
    monkeypatch.setattr(Image, "_getdecoder", lambda *args: _CountingDecoder(make(*args), calls))
    loaded = loading.load_image(path)
    np.testing.assert_array_equal(np.asarray(loaded.frames[0]), expected)
    assert len(calls) == 1 and calls[0] >= path.stat().st_size - 4096  # the header was read before


def test_warnings_stay_ignored_until_the_last_decode_ends():
    before = list(warnings.filters)
    first, second = loading._warnings_ignored(), loading._warnings_ignored()
    first.__enter__()
    second.__enter__()  # as a second thread would
    first.__exit__(None, None, None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("still quiet", UserWarning)
    assert seen == []
    second.__exit__(None, None, None)
    assert warnings.filters == before


def test_a_filter_added_while_decoding_survives_it():
    # NumPy adds filters as it is imported, which the command does while a
    # read-ahead decodes; catch_warnings would put back the list without them.
    added = ("always", None, FutureWarning, None, 0)
    try:
        with loading._warnings_ignored():
            warnings.filters.insert(0, added)
        assert added in warnings.filters
        assert loading._IGNORE_ALL not in warnings.filters
    finally:
        if added in warnings.filters:
            warnings.filters.remove(added)


def test_decodes_on_two_threads_leave_the_filters_as_they_were(rng, tmp_path):
    paths = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    before = list(warnings.filters)
    errors: list[BaseException] = []

    def load_all():
        try:
            for path in paths:
                loading.load_image(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load_all) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert warnings.filters == before


def test_before_numpy_is_loaded_pixels_decode_into_a_mapping_numpy_later_wraps(rng, tmp_path):
    # The read-ahead's case: no NumPy yet, so the memory is an anonymous mapping.
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    code = f"""
import sys
from convfilter import loading
loaded = loading.ReadAhead({str(path)!r}).result()
assert "numpy" not in sys.modules
print(type(loaded.shared.memory).__name__)
import numpy as np
from PIL import Image
expected = np.asarray(Image.open({str(path)!r}))
assert loaded.pixels.flags.writeable and loaded.pixels.shape == (30, 40, 4)
assert (loaded.pixels[..., :3] == expected).all() and (np.asarray(loaded.frames[0]) == expected).all()
loaded.pixels[2, 3, :3] = 9
print(loaded.frames[0].getpixel((3, 2)))
"""
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split("\n")[:2] == ["mmap", "(9, 9, 9)"]
