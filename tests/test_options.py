"""The option vocabulary: enums, fill values and the two settings values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convfilter import encoding
from convfilter.kernels import Kernel, KernelSpecError, parse_kernel
from convfilter.options import (
    DEFAULT_MAX_PIXELS,
    AlphaMode,
    BorderMode,
    Compression,
    FillValue,
    FilterSettings,
    Method,
    OutputSettings,
    SettingsError,
)


def test_options_module_imports_neither_numpy_nor_pillow():
    code = (
        "import sys, convfilter.options, convfilter.cli; "
        "print(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_default_max_pixels_is_pillows_own():
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_every_compression_has_a_pillow_name():
    assert set(encoding.COMPRESSIONS) == set(Compression)


@pytest.mark.parametrize("enum", [BorderMode, Method, AlphaMode, Compression])
def test_choices_compare_equal_to_their_names_and_parse_any_case(enum):
    for member in enum:
        assert member == member.value and str(member) == member.value
        assert enum.parse(member.value.upper(), "--x") is member
        assert member.description
    with pytest.raises(SettingsError, match="choose from " + ", ".join(enum.names())):
        enum.parse("bogus", "--x")


def test_border_bogus_is_refused_when_the_settings_are_made():
    with pytest.raises(SettingsError, match="unknown border 'bogus'") as caught:
        FilterSettings("blur", border="bogus")
    assert caught.value.option == "--border"


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"repeat": 0}, "--repeat"),
        ({"repeat": 1.5}, "--repeat"),
        ({"method": "fastest"}, "--method"),
        ({"alpha": "drop"}, "--alpha"),
        ({"cval": "red"}, "--cval"),
        ({"cval": "150%"}, "--cval"),
        ({"cval": [1, "x"]}, "--cval"),
        ({"abs": "yes"}, "--abs"),
        ({"channels": ""}, "--channels"),
        ({"channels": [1, 2]}, "--channels"),
        ({"threads": 0}, "--threads"),
        ({"threads": True}, "--threads"),
    ],
)
def test_bad_filter_settings_name_their_option(options, option):
    with pytest.raises(SettingsError) as caught:
        FilterSettings("blur", **options)
    assert caught.value.option == option


def test_filter_settings_take_kernels_in_every_form():
    matrix = [[1, 2, 1]]
    settings = FilterSettings(["blur", Kernel(np.ones((3, 3))), np.eye(3)], border="WRAP", channels="r, g",
                              cval=[255, 0, 0], method=Method.FFT)  # fmt: skip
    assert [k.name for k in settings.kernels] == ["blur", "custom", "matrix 3x3"]
    assert settings.border is BorderMode.WRAP and settings.method is Method.FFT
    assert settings.channels == ("R", "G")
    assert settings.cval == FillValue((255.0, 0.0, 0.0), (False, False, False))
    one = FilterSettings(matrix)
    assert len(one.kernels) == 1 and one.kernels[0].matrix.tolist() == [[1.0, 2.0, 1.0]]
    assert FilterSettings("sharpen", repeat=2).describe() == "sharpen (x2)"
    with pytest.raises(SettingsError, match="at least one kernel"):
        FilterSettings([])
    with pytest.raises(KernelSpecError):
        FilterSettings("no-such-preset")


@pytest.mark.parametrize(
    ("text", "full_scale", "count", "expected"),
    [
        ("0", 255, 3, [0.0, 0.0, 0.0]),
        ("100%", 255, 1, [255.0]),
        ("50%", 65535, 2, [32767.5, 32767.5]),
        ("10%,20,30%", 1.0, 3, [0.1, 20.0, 0.3]),
    ],
)
def test_fill_values_in_sample_units(text, full_scale, count, expected):
    assert FillValue.parse(text).for_bands(full_scale, count) == pytest.approx(expected)


def test_fill_value_needs_one_value_or_one_per_band():
    with pytest.raises(SettingsError, match="give 1, or 4: one per band \\(R,G,B,A\\)"):
        FillValue.parse("1,2").for_bands(255, 4, bands="R,G,B,A")


def test_fill_value_text_round_trips():
    for text in ("0", "255,0,0", "50%", "12.5%,3"):
        assert str(FillValue.parse(text)) == text
    assert FillValue.of(7) == FillValue.parse("7") and FillValue.of(0.25) == FillValue.parse("0.25")


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"quality": 0}, "--quality"),
        ({"quality": 101}, "--quality"),
        ({"depth": 16}, "--depth"),
        ({"compression": "zip"}, "--compression"),
        ({"max_pixels": -1}, "--max-pixels"),
        ({"background": (255, 255)}, "--background"),
        ({"background": (0, 0, 256)}, "--background"),
    ],
)
def test_bad_output_settings_name_their_option(options, option):
    with pytest.raises(SettingsError) as caught:
        OutputSettings(**options)
    assert caught.value.option == option


def test_output_settings_normalise_names():
    output = OutputSettings(compression="LZW", formats=("png", "PNG", "eps"))
    assert output.compression is Compression.LZW
    assert output.formats == ("PNG", "EPS")


def test_parse_kernel_applies_the_kernel_options():
    kernel = parse_kernel("1 2 1; 2 4 2; 1 2 1", normalize=True)
    assert kernel.scale == 16 and kernel.weights.sum() == pytest.approx(1.0)
    flipped = parse_kernel("1 2 3", flip=True, offset=5)
    assert flipped.matrix.tolist() == [[3.0, 2.0, 1.0]] and flipped.offset == 5
