"""Tests for convfilter.kernels: the Kernel value, presets and the spec parser."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convfilter import kernels
from convfilter.kernels import (
    PRESETS,
    Kernel,
    KernelSpecError,
    box_kernel,
    brightness_hint,
    gaussian_kernel,
    parse_kernel,
    prepare_kernel,
)
from convfilter.neighbourhood import NeighbourhoodFilter

PROPERTY = settings(max_examples=100, deadline=None)


# ---------------------------------------------------------------------------
# The Kernel value
# ---------------------------------------------------------------------------


def test_matrix_is_read_only_float64_copy():
    source = np.array([[1, 2], [3, 4]], dtype=np.int16)
    k = Kernel(source)
    assert k.matrix.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        k.matrix[0, 0] = 9
    source[0, 0] = 9  # changing the caller's array does not reach the kernel
    assert k.matrix[0, 0] == 1


def test_kernel_is_a_frozen_dataclass():
    k = Kernel([[1]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.scale = 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.matrix = np.ones((1, 1))


def test_factors_are_read_only():
    k = Kernel([[1, 2], [2, 4]], factors=([1, 2], [1, 2]))
    with pytest.raises(ValueError, match="read-only"):
        k.factors[0][0] = 5


@pytest.mark.parametrize(
    ("shape", "anchor"),
    [((1, 1), (0, 0)), ((2, 2), (1, 1)), ((3, 3), (1, 1)), ((2, 5), (1, 2)), ((4, 3), (2, 1)), ((7, 2), (3, 1))],
)
def test_anchor_is_half_the_shape_rounded_down(shape, anchor):
    k = Kernel(np.ones(shape))
    assert k.shape == shape
    assert k.anchor == anchor


def test_one_dimensional_input_is_one_row():
    k = Kernel([1, 2, 1], scale=4)
    assert k.shape == (1, 3)
    assert k.anchor == (0, 1)
    assert k.weights.tolist() == [[0.25, 0.5, 0.25]]


@pytest.mark.parametrize("scale", [1, 4, -2, 0.5, 1e-3])
def test_weights_are_matrix_over_scale(scale):
    matrix = np.array([[1.0, -2.0, 3.0], [0.5, 7.0, -8.0]])
    k = Kernel(matrix, scale=scale)
    np.testing.assert_allclose(k.weights, matrix / scale, rtol=1e-15)
    assert k.weights_float32.dtype == np.float32
    np.testing.assert_allclose(k.weights_float32, matrix / scale, rtol=1e-6)


def test_flipped_rotates_180_degrees_and_keeps_scale_and_offset():
    k = Kernel([[1, 2, 3], [4, 5, 6]], scale=3, offset=-7)
    f = k.flipped()
    assert f.matrix.tolist() == [[6, 5, 4], [3, 2, 1]]
    assert (f.scale, f.offset) == (3, -7)
    assert f.flipped() == k
    assert f != k


@PROPERTY
@given(st.lists(st.lists(st.integers(-9, 9), min_size=3, max_size=3), min_size=1, max_size=5))
def test_flipping_twice_is_identity(rows):
    k = Kernel(rows)
    np.testing.assert_array_equal(k.flipped().flipped().matrix, k.matrix)
    np.testing.assert_array_equal(k.flipped().matrix, np.rot90(k.matrix, 2))


def test_flipped_keeps_factors_consistent():
    k = parse_kernel("sobel-y")
    f = k.flipped()
    np.testing.assert_array_equal(np.outer(*f.factors), f.matrix)
    np.testing.assert_array_equal(f.matrix, -k.matrix)  # sobel-y is antisymmetric vertically


@pytest.mark.parametrize(
    ("matrix", "total"), [([[1, 2], [3, 4]], 10), ([[1, 1, 1]], 3), ([[-1, -1], [-1, -1]], -4), ([[0.5]], 0.5)]
)
def test_normalized_divides_by_the_sum(matrix, total):
    n = Kernel(matrix, scale=7, offset=3).normalized()
    assert n.scale == total
    assert n.offset == 3
    np.testing.assert_allclose(n.weights, np.array(matrix) / total)
    assert math.isclose(float(n.weights.sum()), 1.0)


@pytest.mark.parametrize("spec", ["sobel-x", "sobel-y", "laplacian", "laplacian8", "find_edges", "1 -1", "1 -2 1"])
def test_normalize_refuses_a_zero_sum_kernel(spec):
    with pytest.raises(KernelSpecError, match="sum to zero"):
        parse_kernel(spec).normalized()


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        ([], "empty|2-D"),
        ([[]], "empty"),
        ([[[1]]], "2-D"),
        ([[1, float("nan")]], "NaN or infinity"),
        ([[float("inf")]], "NaN or infinity"),
        ([["a"]], "not numeric"),
        (np.ones((1, 1025)), "largest side allowed is 1024"),
    ],
    ids=["empty", "empty row", "3-D", "nan", "inf", "text", "too wide"],
)
def test_bad_matrix_raises(matrix, match):
    with pytest.raises(KernelSpecError, match=match):
        Kernel(matrix)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("scale", 0, "scale must not be zero"),
        ("scale", 0.0, "scale must not be zero"),
        ("scale", float("nan"), "scale must be finite"),
        ("scale", float("inf"), "scale must be finite"),
        ("scale", "two", "scale must be a number"),
        ("offset", float("-inf"), "offset must be finite"),
        ("offset", None, "offset must be a number"),
    ],
)
def test_bad_scale_or_offset_raises(field, value, match):
    with pytest.raises(KernelSpecError, match=match):
        Kernel([[1]], **{field: value})


def test_kernel_spec_error_is_a_value_error():
    assert issubclass(KernelSpecError, ValueError)


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


def _spellings(name: str) -> list[str]:
    dashed = name.replace("_", "-")
    underscored = name.replace("-", "_")
    return [name, name.upper(), dashed, underscored.upper(), dashed.title(), f"  {name}  "]


@pytest.mark.parametrize(
    ("spelling", "key"),
    [(spelling, key) for key, preset in PRESETS.items() for spelling in _spellings(preset.name)],
)
def test_every_preset_in_every_spelling(spelling, key):
    k = parse_kernel(spelling)
    preset = PRESETS[key]
    assert k.name == preset.name
    np.testing.assert_array_equal(k.matrix, np.array(preset.grid, dtype=float))
    assert (k.scale, k.offset) == (preset.scale, preset.offset)
    assert k.pillow_name == preset.pillow_name


@pytest.mark.parametrize("spelling", ["EDGE_ENHANCE", "edge-enhance", "Edge_Enhance", "eDgE-eNhAnCe"])
def test_edge_enhance_spellings(spelling):
    k = parse_kernel(spelling)
    assert k.name == "edge_enhance"
    assert k.matrix.tolist() == [[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]]
    assert k.scale == 2


@pytest.mark.parametrize("key", sorted(k for k, p in PRESETS.items() if p.factors is not None))
def test_preset_factors_multiply_to_the_matrix(key):
    k = PRESETS[key].kernel()
    column, row = k.factors
    np.testing.assert_array_equal(np.outer(column, row), k.matrix)


@pytest.mark.parametrize(
    ("spec", "matrix"),
    [
        ("sobel-x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
        ("sobel-y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
        ("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    ],
)
def test_textbook_presets(spec, matrix):
    # Sobel-x is "right minus left", sobel-y "below minus above", in correlation order.
    k = parse_kernel(spec)
    assert k.matrix.tolist() == matrix
    assert (k.scale, k.offset) == (1, 0)


@pytest.mark.parametrize("preset", ["sobel-x", "SMOOTH"])
def test_fixed_presets_take_no_parameters(preset):
    with pytest.raises(KernelSpecError, match="takes no parameters"):
        parse_kernel(f"{preset}:3")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_box(n):
    for spec in (f"box:{n}", f"BOX:{n}", f"box: {n}", f"box:+{n}"):
        k = parse_kernel(spec)
        assert k.shape == (n, n)
        assert (k.matrix == 1).all()
        assert k.scale == n * n
        assert math.isclose(float(k.weights.sum()), 1.0)
        np.testing.assert_array_equal(np.outer(*k.factors), k.matrix)
    assert box_kernel(n) == parse_kernel(f"box:{n}")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("box", "needs parameters: box:N"),
        ("box:", "needs parameters: box:N"),
        ("box:0", "positive whole number"),
        ("box:-3", "positive whole number"),
        ("box:2.5", "positive whole number"),
        ("box:x", "positive whole number"),
        ("box:3,3", "expected box:N"),
        ("box:1025", "between 1 and 1024"),
        ("gaussian", "needs parameters: gaussian:SIGMA"),
        ("gaussian:0", "positive number"),
        ("gaussian:-1", "positive number"),
        ("gaussian:nan", "must be finite"),
        ("gaussian:inf", "must be finite"),
        ("gaussian:1e999", "must be finite"),
        ("gaussian:abc", "must be a number"),
        ("gaussian:1,4", "SIZE must be odd"),
        ("gaussian:1,0", "positive whole number"),
        ("gaussian:1,3,5", "expected gaussian:SIGMA"),
        ("gaussian:1,", "expected gaussian:SIGMA"),
        ("gaussian:200", "needs a 1201x1201 kernel"),
        ("gaussian:1e308", "wider than 1024"),
    ],
)
def test_parametric_preset_errors(spec, match):
    with pytest.raises(KernelSpecError, match=match):
        parse_kernel(spec)


def hand_gaussian(sigma: float, size: int) -> np.ndarray:
    """exp(-x^2 / (2 sigma^2)) on -r..r, normalised, then the outer product."""
    r = (size - 1) // 2
    g = [math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-r, r + 1)]
    total = sum(g)
    g = [v / total for v in g]
    return np.array([[a * b for b in g] for a in g])


@pytest.mark.parametrize(
    ("sigma", "default_size"), [(0.1, 3), (0.5, 5), (1, 7), (1.5, 11), (2, 13), (0.34, 5)]
)
def test_gaussian_default_size_and_values(sigma, default_size):
    # 2 * ceil(3 * sigma) + 1, worked out by hand: 0.34 -> ceil(1.02) = 2 -> 5.
    k = parse_kernel(f"gaussian:{sigma}")
    assert k.shape == (default_size, default_size)
    np.testing.assert_allclose(k.weights, hand_gaussian(sigma, default_size), rtol=1e-12, atol=1e-15)
    assert math.isclose(float(k.weights.sum()), 1.0, rel_tol=1e-12)
    column, row = k.factors
    np.testing.assert_allclose(np.outer(column, row), k.matrix, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(k.matrix, k.matrix.T)  # symmetric
    assert k.matrix[default_size // 2, default_size // 2] == k.matrix.max()


@pytest.mark.parametrize(("sigma", "size"), [(1.0, 3), (2.5, 9), (0.8, 1), (3, 5)])
def test_gaussian_with_size(sigma, size):
    k = parse_kernel(f"gaussian:{sigma},{size}")
    assert k.shape == (size, size)
    np.testing.assert_allclose(k.weights, hand_gaussian(sigma, size), rtol=1e-12, atol=1e-15)
    assert k == gaussian_kernel(sigma, size)


def test_tiny_gaussian_is_a_delta_without_warnings():
    # filterwarnings=error would turn numpy overflow warnings into failures.
    k = parse_kernel("gaussian:1e-200,5")
    expected = np.zeros((5, 5))
    expected[2, 2] = 1
    np.testing.assert_array_equal(k.weights, expected)


# ---------------------------------------------------------------------------
# Inline matrices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "1 2 3; 4 5 6",
        "1,2,3;4,5,6",
        "1, 2, 3 ; 4 ,5,6;",
        "1 2 3\n4 5 6",
        "1,2,3\r\n4,5,6\r\n",
        "\n\n 1\t2\t3 \n 4 5 6\n\n",
        "[[1, 2, 3], [4, 5, 6]]",
        "[[1 2 3] [4 5 6]]",
        "[ [1,2,3],\n  [4,5,6] ]",
        "1 2 3 # first row\n4 5 6 # second",
        "# heading\n1 2 3\n# between rows\n4 5 6",
        "1 2 3;\n4 5 6;\n",
        "1 2 3 ;  # first row\n4 5 6",
        "1.0 2. 3e0; 4 +5 0.6e1",
        "2/2 4/2 6/2; 8/2 10/2 12/2",
        "1 ,2 , 3; 4 , 5 ,6",
        "1\t,\t2\t,3; 4 5 6",
        "  1 2 3 ;\n 4 5 6 ;  \n",
        "[ [1 ,2, 3] , [4,5 ,6] ]",
        "[[1,2,3]\n[4,5,6]]",
    ],
)
def test_inline_matrix_spellings(spec):
    k = parse_kernel(spec)
    assert k.matrix.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert (k.scale, k.offset) == (1.0, 0.0)
    assert k.pillow_name is None


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("7", 7.0),
        ("-1", -1.0),
        ("+2", 2.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("-.25", -0.25),
        ("1e3", 1000.0),
        ("-2.5E-1", -0.25),
        ("1/9", 1 / 9),
        ("-1/4", -0.25),
        ("3/1e1", 0.3),
        ("[42]", 42.0),
        ("[[0.125]]", 0.125),
    ],
)
def test_number_forms(spec, value):
    k = parse_kernel(spec)
    assert k.shape == (1, 1)
    assert k.matrix[0, 0] == value


def test_one_row_forms():
    for spec in ("1 2 1", "[1, 2, 1]", "1,2,1;"):
        assert parse_kernel(spec).matrix.tolist() == [[1, 2, 1]]


def test_one_column():
    assert parse_kernel("1; 2; 1").matrix.tolist() == [[1], [2], [1]]


def test_matrix_is_not_normalised():
    k = parse_kernel("1 1 1; 1 1 1; 1 1 1")
    assert k.scale == 1 and k.offset == 0
    assert k.weights.sum() == 9


@st.composite
def matrices_as_text(draw):
    rows = draw(st.integers(1, 5))
    cols = draw(st.integers(1, 5))
    values = draw(
        st.lists(
            st.lists(st.integers(-999, 999), min_size=cols, max_size=cols), min_size=rows, max_size=rows
        )
    )
    divisor = draw(st.sampled_from([1, 2, 4, 8, 10]))
    style = draw(st.sampled_from(["fraction", "decimal", "exponent"]))

    def fmt(v: int) -> str:
        if style == "fraction":
            return f"{v}/{divisor}"
        if style == "decimal":
            return repr(v / divisor)
        return f"{v / divisor:e}"

    entry_sep = draw(st.sampled_from([" ", ",", ", ", "\t", " , "]))
    row_sep = draw(st.sampled_from([";", "\n", "; ", " ;\n", "nested"]))
    if row_sep == "nested":
        text = "[" + ", ".join("[" + ", ".join(fmt(v) for v in row) + "]" for row in values) + "]"
    else:
        text = row_sep.join(entry_sep.join(fmt(v) for v in row) for row in values)
    expected = np.array(values, dtype=float) / divisor
    return text, expected


@PROPERTY
@given(matrices_as_text())
def test_matrix_text_round_trip(case):
    text, expected = case
    np.testing.assert_allclose(parse_kernel(text).matrix, expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# Parser errors
# ---------------------------------------------------------------------------


#: Empty entries and rows, each refused with where it is and what to do.
EMPTY_ENTRY_CASES = [
    ("1,,2", "empty entry at row 1, column 2 of '1,,2': remove the extra comma or write a number"),
    (",1,2", "empty entry at row 1, column 1 of ',1,2'"),
    ("1,2,", "empty entry at row 1, column 3 of '1,2,'"),
    ("1, ,2", "empty entry at row 1, column 2 of '1, ,2'"),
    ("1 ,\t, 2", "empty entry at row 1, column 2"),
    ("1 2,,3", "empty entry at row 1, column 3"),
    ("1 2; 3,,4", "empty entry at row 2, column 2 of '3,,4'"),
    ("1,2,\n3,4,", "empty entry at row 1, column 3 of '1,2,'"),
    ("1,2; 3,4,;", "empty entry at row 2, column 3 of '3,4,'"),
    ("1 2 # comment\n3,,4", "empty entry at row 2, column 2"),
    ("1 2;;3 4", "row 2 is empty in '1 2;;3 4': remove the extra ';' or write the row's numbers"),
    ("1 2; ;3 4", "row 2 is empty in '1 2; ;3 4': remove the extra ';'"),
    ("1 2;\n;3 4", "row 2 is empty in '1 2;\\n;3 4': remove the extra ';'"),
    (";1 2", "row 1 is empty in ';1 2': remove the extra ';'"),
    ("1 2;;", "row 2 is empty in '1 2;;': remove the extra ';'"),
    ("1 2\n\n3 4", "row 2 is empty in '1 2\\n\\n3 4': remove the blank line"),
    ("[[1,,2],[3,4]]", "empty entry at row 1, column 2 of '1,,2'"),
    ("[[1,2],[3,4,]]", "empty entry at row 2, column 3 of '3,4,'"),
    ("[[,1,2],[3,4]]", "empty entry at row 1, column 1"),
    ("[1,2,]", "empty entry at row 1, column 3 of '1,2,'"),
    ("[[1,2],,[3,4]]", "row 2 is empty in '[[1,2],,[3,4]]': remove the extra comma or write the row's numbers"),
    ("[[1,2], , [3,4]]", "row 2 is empty in '[[1,2], , [3,4]]': remove the extra comma"),
    ("[,[1,2],[3,4]]", "row 1 is empty in '[,[1,2],[3,4]]': remove the extra comma"),
    ("[[1,2],[3,4],]", "row 3 is empty in '[[1,2],[3,4],]': remove the extra comma"),
    ("[[1,2],[]]", "row 2 is empty in '[[1,2],[]]': remove the '[]' or write the row's numbers"),
]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1 2 3; 4 5", "row 2 has 2 values, row 1 has 3"),
        ("1 2; 3", "row 2 has 1 value, row 1 has 2"),
        ("1 2\n3 4\n5 6 7", "row 3 has 3 values, row 1 has 2"),
        ("[[1, 2], [3]]", "row 2 has 1 value, row 1 has 2"),
        ("1 x 3", "'x' is not a number (at row 1, column 2)"),
        ("1 2; 3 abc", "'abc' is not a number (at row 2, column 2)"),
        ("1 2; 3 4; 5 0x10", "'0x10' is not a number (at row 3, column 2)"),
        ("1/2/3", "'1/2/3' is not a number (at row 1, column 1)"),
        ("1 1/0", "division by zero in '1/0' (at row 1, column 2)"),
        ("1 nan", "NaN or infinity is not allowed ('nan' at row 1, column 2)"),
        ("inf 1", "NaN or infinity is not allowed ('inf' at row 1, column 1)"),
        ("1; -Infinity", "NaN or infinity is not allowed ('-Infinity' at row 2, column 1)"),
        ("1e999", "'1e999' is not finite (at row 1, column 1)"),
        ("1 2;;3 4", "row 2 is empty"),
        ("", "kernel spec is empty"),
        ("   \n ", "kernel spec is empty"),
        (";", "kernel matrix is empty"),
        ("[]", "kernel matrix is empty"),
        ("# just a comment", "kernel matrix is empty"),
        ("[1, 2", "must end with ']'"),
        ("[[1, 2], [3, 4]", "one level of rows"),
        ("1 2\n\n3 4", "row 2 is empty"),
        ("1 2;\n;3 4", "row 2 is empty"),
        ("[[1, [2]], [3, 4]]", "one level of rows"),
    ]
    + EMPTY_ENTRY_CASES,
)
def test_parser_error_messages(spec, message):
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(spec)
    assert message in str(info.value)


@st.composite
def matrix_with_an_empty_entry(draw):
    """Matrix text with one empty entry put at a known row and column."""
    rows = draw(st.integers(1, 4))
    cols = draw(st.integers(1, 4))
    values = [[str(draw(st.integers(-99, 99))) for _ in range(cols)] for _ in range(rows)]
    row, col = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols))
    values[row].insert(col, "")
    entry_sep = draw(st.sampled_from([",", ", ", " , ", "\t,"]))
    row_sep = draw(st.sampled_from([";", "\n", "; ", "nested"]))
    if row_sep == "nested":
        text = "[" + ", ".join("[" + entry_sep.join(r) + "]" for r in values) + "]"
    else:
        text = row_sep.join(entry_sep.join(r) for r in values)
    return text, row + 1, col + 1


@PROPERTY
@given(matrix_with_an_empty_entry())
def test_an_empty_entry_is_refused_where_it_is(case):
    text, row, col = case
    with pytest.raises(KernelSpecError, match=f"empty entry at row {row}, column {col} "):
        parse_kernel(text)


def test_empty_entry_in_a_long_row_is_shown_in_context():
    spec = ",".join(["1"] * 50) + ",," + ",".join(["2"] * 50)
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(spec)
    message = str(info.value)
    excerpt = message.split(" of ", 1)[1].split(": ", 1)[0]
    assert excerpt.startswith("'...1,1,") and excerpt.endswith(",2,2...'")
    assert "1,,2" in excerpt
    assert "empty entry at row 1, column 51" in message
    assert len(message) < 150


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("sobelx", "sobel-x"),
        ("SOBELY", "sobel-y"),
        ("edge_enhanse", "edge_enhance"),
        ("gausian:2", "gaussian"),
        ("smoth", "smooth"),
    ],
)
def test_unknown_preset_suggests_a_close_match(spec, suggestion):
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(spec)
    message = str(info.value)
    assert "unknown kernel preset" in message
    assert "did you mean" in message
    hint = message.split("did you mean", 1)[1].split("?", 1)[0]
    assert suggestion in [s.strip() for s in hint.split(",")]


def test_unknown_preset_without_close_match_has_no_hint():
    with pytest.raises(KernelSpecError, match="unknown kernel preset 'zzzqqq'") as info:
        parse_kernel("zzzqqq")
    assert "did you mean" not in str(info.value)


def test_parse_kernel_refuses_non_text():
    with pytest.raises(KernelSpecError, match="must be text"):
        parse_kernel([[1, 2]])


@PROPERTY
@given(st.text())
def test_arbitrary_text_gives_a_kernel_or_kernel_spec_error(text):
    # A filter name in any case ("PREWITT") gives the filter that is not one matrix.
    try:
        result = parse_kernel(text)
    except KernelSpecError:
        return
    assert isinstance(result, (Kernel, NeighbourhoodFilter))


def test_filter_names_in_capitals_give_their_filters():
    assert isinstance(parse_kernel("PREWITT"), NeighbourhoodFilter)
    assert isinstance(parse_kernel("Median:3"), NeighbourhoodFilter)


_spec_pieces = st.sampled_from(
    list("0123456789.,;:[]/ -+eE#\n\t@")
    + ["box:", "gaussian:", "1e308", "1e-320", "nan", "inf", "sobel-x", "/", "1/0", "]]", "[["]
)


@PROPERTY
@given(st.lists(_spec_pieces, max_size=25).map("".join))
def test_spec_like_text_gives_a_kernel_or_kernel_spec_error(text):
    try:
        result = parse_kernel(text)
    except KernelSpecError:
        return
    assert isinstance(result, Kernel)
    assert np.isfinite(result.matrix).all()


# ---------------------------------------------------------------------------
# @PATH files
# ---------------------------------------------------------------------------


def test_text_file_with_comments(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text("# a 2x3 kernel\n1 2 3   # first row\n  # between rows\n4, 5, 6\n# trailing comment\n\n")
    k = parse_kernel(f"@{path}")
    assert k.matrix.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert (k.scale, k.offset) == (1, 0)
    assert k.name == "@edge.txt"


@pytest.mark.parametrize("text", ["1 2; 3 4", "[[1, 2], [3, 4]]", "1/1 2/1\n3e0 4.0"])
def test_text_file_forms(tmp_path, text):
    path = tmp_path / "k.kernel"
    path.write_text(text)
    assert parse_kernel(f"@{path}").matrix.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(("text", "message"), [
    ("1 2 3\n4 5\n", "row 2 has 2 values, row 1 has 3"),
    ("1 2 3\n4,,5\n", "empty entry at row 2, column 2 of '4,,5'"),
])  # fmt: skip
def test_text_file_error_names_the_file(tmp_path, text, message):
    path = tmp_path / "kernel.txt"
    path.write_text(text)
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(f"@{path}")
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfe\x00 1 2")
    with pytest.raises(KernelSpecError, match="not UTF-8 text"):
        parse_kernel(f"@{path}")


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[1.5, -2.0], [0.25, 4.0]]), [[1.5, -2.0], [0.25, 4.0]]),
        (np.array([[1, 2, 3]], dtype=np.int8), [[1, 2, 3]]),
        (np.array([1, 2, 1], dtype=np.uint16), [[1, 2, 1]]),
        (np.array([[True, False]]), [[1, 0]]),
        (np.arange(6, dtype=np.float32).reshape(3, 2), [[0, 1], [2, 3], [4, 5]]),
    ],
    ids=["float64", "int8", "1-D uint16", "bool", "float32"],
)
def test_npy_file(tmp_path, array, expected):
    path = tmp_path / "k.npy"
    np.save(path, array)
    k = parse_kernel(f"@{path}")
    assert k.matrix.tolist() == expected
    assert k.matrix.dtype == np.float64


def test_npy_suffix_is_case_insensitive(tmp_path):
    path = tmp_path / "K.NPY"
    with open(path, "wb") as fh:
        np.save(fh, np.eye(2))
    assert parse_kernel(f"@{path}").matrix.tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.ones((2, 2, 2)), "3-D array"),
        (np.array(5.0), "0-D array"),
        (np.array([[1 + 2j]]), "not numbers"),
        (np.array([["a"]]), "not numbers"),
        (np.zeros((0, 3)), "empty array"),
        (np.array([[1.0, np.nan]]), "NaN or infinity"),
    ],
    ids=["3-D", "0-D", "complex", "strings", "empty", "nan"],
)
def test_bad_npy_file(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(KernelSpecError, match=match):
        parse_kernel(f"@{path}")


def test_pickled_npy_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pickle-ran"

    class Trap:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([[Trap()]], dtype=object), allow_pickle=True)
    with pytest.raises(KernelSpecError, match="cannot read kernel file"):
        parse_kernel(f"@{path}")
    assert not marker.exists()
    # The trap is real: loading with pickle allowed does run it.
    np.load(path, allow_pickle=True)
    assert marker.is_dir()


def test_truncated_npy_file(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.ones((4, 4)))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(KernelSpecError, match="cannot read kernel file"):
        parse_kernel(f"@{path}")


@pytest.mark.parametrize("name", ["missing.txt", "missing.npy"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(KernelSpecError, match="no such file") as info:
        parse_kernel(f"@{path}")
    assert str(path) in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(KernelSpecError, match="is a directory"):
        parse_kernel(f"@{tmp_path}")


def test_at_sign_alone():
    with pytest.raises(KernelSpecError, match="must be followed by a file path"):
        parse_kernel("@")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads files whatever their permissions; see the monkeypatched test below",
)
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("1 2 3")
    path.chmod(0)
    try:
        with pytest.raises(KernelSpecError, match="permission denied"):
            parse_kernel(f"@{path}")
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("name", ["secret.txt", "secret.npy"])
def test_permission_error_is_reported(tmp_path, monkeypatch, name):
    # Works as root too: the module's open() raises what a chmod 000 file would.
    path = tmp_path / name
    path.write_text("1 2 3")

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(kernels, "open", denied, raising=False)
    with pytest.raises(KernelSpecError, match="permission denied") as info:
        parse_kernel(f"@{path}")
    assert str(path) in str(info.value)


def test_kernel_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "k.txt"
    os.mkfifo(fifo)
    with pytest.raises(KernelSpecError, match="not a regular file"):
        parse_kernel(f"@{fifo}")


def test_npy_header_claiming_a_huge_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
        )
    with pytest.raises(KernelSpecError, match="100000x100000"):
        parse_kernel(f"@{path}")


# ---------------------------------------------------------------------------
# The brightness hint
# ---------------------------------------------------------------------------


def test_brightness_hint_for_a_kernel_that_sums_to_16():
    hint = brightness_hint(parse_kernel("1 2 1; 2 4 2; 1 2 1"))
    assert hint is not None
    assert "'1 2 1; 2 4 2; 1 2 1' sum to 16" in hint
    assert "16 times brighter" in hint
    assert "add --normalize to divide by 16" in hint


@pytest.mark.parametrize(
    "spec",
    [
        "sobel-x",
        "0 -1 0; -1 5 -1; 0 -1 0",
        "gaussian:2",
        "box:3",
        "1 0 -1",
        "1 -2 1; 2 -4 2; 1 -2 1",
        "1/9 1/9 1/9; 1/9 1/9 1/9; 1/9 1/9 1/9",
        "0.1 0.2 0.3 0.4",
        "1e9 1 -1e9",
    ],
)
def test_no_brightness_hint_for_sums_of_zero_or_one(spec):
    assert brightness_hint(parse_kernel(spec)) is None


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_no_brightness_hint_for_a_preset(key):
    # Several presets (contour, find_edges, emboss with its offset) do not sum
    # to 1 and are meant that way.
    assert brightness_hint(parse_kernel(PRESETS[key].name)) is None


def test_brightness_hint_for_a_negative_sum_says_inverted():
    kernel = parse_kernel("-1 -2 -1")
    hint = brightness_hint(kernel)
    assert hint is not None
    assert "sum to -4" in hint
    assert "inverted (4 times as strong)" in hint
    assert "clipped to black" in hint
    assert "add --normalize to divide by -4" in hint
    # The advice works: normalized, the weights sum to 1 and the note goes away.
    normalized = prepare_kernel(kernel, normalize=True)
    assert math.isclose(float(normalized.weights.sum()), 1.0)


def test_brightness_hint_for_a_sum_below_one_says_darker():
    hint = brightness_hint(parse_kernel("0.25 0.25"))
    assert hint is not None
    assert "sum to 0.5" in hint
    assert "darker (0.5 times as bright)" in hint


def test_brightness_hint_shows_a_sum_near_one_with_enough_digits():
    hint = brightness_hint(parse_kernel("1.0000001"))
    assert hint is not None
    assert "sum to 1.0000001" in hint


@pytest.mark.parametrize(
    "options", [{"scale": 16}, {"scale": 1}, {"normalize": True}, {"scale": 2, "flip": True}]
)
def test_no_brightness_hint_once_the_scale_is_given(options):
    kernel = prepare_kernel(parse_kernel("1 2 1; 2 4 2; 1 2 1"), **options)
    assert kernel.scale_given
    assert brightness_hint(kernel) is None


@pytest.mark.parametrize("options", [{}, {"offset": 10}, {"flip": True}])
def test_brightness_hint_survives_offset_and_flip(options):
    kernel = prepare_kernel(parse_kernel("1 2 3"), **options)
    assert not kernel.scale_given
    assert "sum to 6" in brightness_hint(kernel)


def test_brightness_hint_for_kernel_files(tmp_path):
    text_file = tmp_path / "k.txt"
    text_file.write_text("1 1\n1 1\n")
    npy_file = tmp_path / "k.npy"
    np.save(npy_file, np.full((2, 2), 2.0))
    assert f"'@{text_file}' sum to 4" in brightness_hint(parse_kernel(f"@{text_file}"))
    assert f"'@{npy_file}' sum to 8" in brightness_hint(parse_kernel(f"@{npy_file}"))


def test_brightness_hint_cuts_a_long_matrix():
    hint = brightness_hint(parse_kernel(" ".join(["1"] * 100)))
    assert "sum to 100" in hint
    assert "1 1 ...' sum to" in hint
    assert len(hint) < 160


def test_no_brightness_hint_for_a_kernel_made_in_code():
    assert brightness_hint(Kernel([[1, 2, 1]])) is None


def test_matrix_spec_is_kept_and_does_not_change_equality():
    kernel = parse_kernel(" 1 2 1 ")
    assert kernel.matrix_spec == "1 2 1"
    assert kernel.name == "matrix 1x3"
    assert kernel == Kernel([[1, 2, 1]])
    assert hash(kernel) == hash(Kernel([[1, 2, 1]]))
    assert kernel.flipped().matrix_spec == "1 2 1"
    assert parse_kernel("sobel-x").matrix_spec is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        kernel.matrix_spec = "2"


@PROPERTY
@given(st.lists(st.lists(st.integers(-9, 9), min_size=3, max_size=3), min_size=1, max_size=3))
def test_brightness_hint_exactly_when_the_sum_is_neither_zero_nor_one(rows):
    spec = "; ".join(" ".join(str(v) for v in row) for row in rows)
    kernel = parse_kernel(spec)
    total = sum(map(sum, rows))
    hint = brightness_hint(kernel)
    assert (hint is None) == (total in (0, 1))
    if hint is not None:
        assert f"sum to {total}" in hint
        assert math.isclose(float(prepare_kernel(kernel, normalize=True).weights.sum()), 1.0)
