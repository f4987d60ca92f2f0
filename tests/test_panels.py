"""panels.py: the grid of labelled pictures behind the gallery and the diff picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convfilter import panels

GAP, LABEL = 8, 20  # the default layout, restated independently
WHITE = (255, 255, 255)


def solid(size, colour):
    return Image.new("RGB", size, colour)


def label_strip(sheet: Image.Image, left: int, top: int, width: int, label: int = LABEL) -> np.ndarray:
    return np.asarray(sheet)[top : top + label, left : left + width]


def test_pictures_sit_centred_in_their_cells_under_their_labels():
    red, blue, green = (255, 0, 0), (0, 0, 255), (0, 160, 0)
    pictures = [("a", solid((30, 20), red)), ("b", solid((10, 6), blue)), ("c", solid((30, 20), green))]
    sheet = panels.panel_sheet(pictures, (30, 20), columns=2)
    assert sheet.image.size == (2 * 30 + 3 * GAP, 2 * (20 + LABEL) + 3 * GAP)
    second_left = GAP + 30 + GAP
    second_row = GAP + LABEL + 20 + GAP
    expected = [
        (GAP, GAP + LABEL, GAP + 30, GAP + LABEL + 20),
        (second_left + 10, GAP + LABEL + 7, second_left + 20, GAP + LABEL + 13),
        (GAP, second_row + LABEL, GAP + 30, second_row + LABEL + 20),
    ]
    assert [t.box for t in sheet.tiles] == expected and [t.label for t in sheet.tiles] == ["a", "b", "c"]
    drawn = np.asarray(sheet.image).copy()
    for (label, picture), (left, top, right, bottom) in zip(pictures, expected):
        assert np.array_equal(drawn[top:bottom, left:right], np.asarray(picture))
        drawn[top:bottom, left:right] = WHITE
    for left, top in [(GAP, GAP), (second_left, GAP), (GAP, second_row)]:
        assert (label_strip(sheet.image, left, top, 30) < 128).any()  # a label is drawn
        drawn[top : top + LABEL, left : left + 30] = WHITE
    assert (drawn == 255).all()  # nothing outside the pictures and their label strips


def test_a_long_label_stops_at_its_cell():
    long = "a label far wider than its cell, running on"
    sheet = panels.panel_sheet([(long, solid((40, 10), WHITE)), ("b", solid((40, 10), WHITE))], (40, 10))
    strip = label_strip(sheet.image, 0, GAP, sheet.image.width)
    assert (strip[:, GAP : GAP + 40] < 128).any()
    assert (strip[:, GAP + 40 : 2 * GAP + 40] == 255).all()  # the gap between the cells stays blank


def test_footer_goes_under_the_last_cell_and_widens_the_sheet():
    footer = solid((90, 5), (0, 0, 255))
    pictures = [(str(i), solid((20, 10), (200, 0, 0))) for i in range(3)]
    sheet = panels.panel_sheet(pictures, (20, 10), columns=3, footer=footer, gap=6, label_height=18)
    left, top = 6 + 2 * (20 + 6), 6 + 18 + 10 + 6
    assert sheet.image.size == (left + 90 + 6, top + 5 + 6)
    assert np.array_equal(np.asarray(sheet.image)[top : top + 5, left : left + 90], np.asarray(footer))
    assert sheet.tiles[2].box == (left, 6 + 18, left + 20, 6 + 18 + 10)


def test_a_picture_larger_than_its_cell_is_refused():
    with pytest.raises(ValueError, match="larger than its cell"):
        panels.panel_sheet([("big", solid((11, 10), WHITE))], (10, 10))


@pytest.mark.parametrize("resample", [Image.Resampling.LANCZOS, Image.Resampling.BOX])
def test_shrunk_is_pillows_resize_by_the_sources_factor(rng, resample):
    source = Image.fromarray(rng.integers(0, 256, (50, 100, 3), dtype=np.uint8))
    smaller = source.crop((4, 4, 96, 46))  # 92 x 42, as a border "valid" result is
    assert np.array_equal(np.asarray(panels.shrunk(source, (100, 50), (50, 25), resample)),
                          np.asarray(source.resize((50, 25), resample)))  # fmt: skip
    assert np.array_equal(np.asarray(panels.shrunk(smaller, (100, 50), (50, 25), resample)),
                          np.asarray(smaller.resize((46, 21), resample)))  # fmt: skip
    assert panels.shrunk(source, (100, 50), (100, 50)) is source


def test_stretched_and_finite_range():
    values = np.array([[np.nan, -np.inf, 2.0], [4.0, 6.0, np.inf]])
    low, high = panels.finite_range(values)
    assert (low, high) == (2.0, 6.0)
    assert panels.stretched(values, low, high).tolist() == [[0, 0, 0], [128, 255, 255]]
    assert panels.finite_range(np.array([np.nan])) == (0.0, 0.0)
    assert panels.stretched(np.full((2, 2), 7.0), 7.0, 7.0).tolist() == [[0, 0], [0, 0]]
