"""Speed of the filters that are not kernels against Pillow, SciPy and OpenCV.

Run as ``python benchmarks/filters.py`` (``--quick`` for a small image and
one run; ``--write`` keeps the figures in ``benchmarks/results/filters.json``
for ``tables.py``). Each filter spec is timed through ``filter_array`` with
border ``keep`` (Pillow's own edge rule, so convfilter and Pillow produce
the same bytes), beside Pillow's ``ImageFilter`` equivalent and, where they
have the same or a like filter, ``scipy.ndimage`` (channel by channel, as
a 3-D size of (n, n, 1)) and OpenCV on one thread (``blur``,
``GaussianBlur``, ``medianBlur``, ``erode``, ``dilate``). SciPy's and
OpenCV's Gaussians are true Gaussians of the same sigma, not Pillow's
three-box approximation: like work, not the same result. Competitors run in
turn within each round; the table gives median milliseconds and each
competitor's time divided by convfilter's (above 1: convfilter is faster).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import record  # noqa: E402
from engine import PIL, cv2, measure, ndi, photograph, versions  # noqa: E402

from convfilter import engine  # noqa: E402
from convfilter.kernels import parse_kernel  # noqa: E402

SPECS = ["box_blur:2", "box_blur:10", "gaussian_blur:2", "gaussian_blur:10", "unsharp:2,150,3", "median:3",
         "median:5", "min:3", "max:5", "rank:5,7", "mode:3"]  # fmt: skip


def competitors(image: np.ndarray, spec: str) -> dict:
    """name -> zero-argument callable producing the filtered image."""
    step = parse_kernel(spec)
    runs = {"convfilter": lambda: engine.filter_array(image, step, border="keep")}
    if PIL is not None:
        from PIL import Image

        picture = Image.fromarray(image)
        pillow = step.pillow_filter()
        runs["Pillow"] = lambda: picture.filter(pillow)
    name, _, params = spec.partition(":")
    values = [float(v) for v in params.split(",")] if params else []
    if ndi is not None:
        scipy_filter = _scipy(name, values)
        if scipy_filter is not None:
            runs["scipy"] = lambda: scipy_filter(image)
    if cv2 is not None:
        opencv_filter = _opencv(name, values)
        if opencv_filter is not None:

            def opencv():
                cv2.setNumThreads(1)
                return opencv_filter(image)

            runs["OpenCV 1t"] = opencv
    return runs


def _scipy(name: str, values: list[float]):
    if name == "box_blur" and values[0].is_integer():
        side = 2 * int(values[0]) + 1
        return lambda a: ndi.uniform_filter(a, size=(side, side, 1), mode="nearest")
    if name == "gaussian_blur":
        return lambda a: ndi.gaussian_filter(a, sigma=(values[0], values[0], 0), mode="nearest")
    side = int(values[0]) if values else 0
    if name == "median":
        return lambda a: ndi.median_filter(a, size=(side, side, 1), mode="nearest")
    if name == "min":
        return lambda a: ndi.minimum_filter(a, size=(side, side, 1), mode="nearest")
    if name == "max":
        return lambda a: ndi.maximum_filter(a, size=(side, side, 1), mode="nearest")
    if name == "rank":
        return lambda a: ndi.rank_filter(a, int(values[1]), size=(side, side, 1), mode="nearest")
    return None


def _opencv(name: str, values: list[float]):
    replicate = cv2.BORDER_REPLICATE
    if name == "box_blur" and values[0].is_integer():
        side = 2 * int(values[0]) + 1
        return lambda a: cv2.blur(a, (side, side), borderType=replicate)
    if name == "gaussian_blur":
        return lambda a: cv2.GaussianBlur(a, (0, 0), values[0], borderType=replicate)
    side = int(values[0]) if values else 0
    if name == "median":
        return lambda a: cv2.medianBlur(a, side)
    if name in ("min", "max"):
        operation = cv2.erode if name == "min" else cv2.dilate
        window = np.ones((side, side), np.uint8)
        return lambda a: operation(a, window, borderType=replicate)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small image, one run each")
    parser.add_argument("--size", default="4000x3000", help="image WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each competitor")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds one competitor may spend on one filter")  # fmt: skip
    parser.add_argument("--only", help="run only specs that contain this")
    parser.add_argument("--write", action="store_true",
                        help=f"save the figures to {record.RESULTS.relative_to(ROOT) / 'filters.json'}")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write and (args.quick or args.only):
        parser.error("--write keeps full runs only, not --quick or --only")
    width, height = (int(v) for v in args.size.lower().split("x"))
    repeats = args.repeats
    if args.quick:
        width, height, repeats = 160, 120, 1
    image = photograph(width, height)
    environment = record.environment(versions())
    print(f"image {width}x{height} RGB uint8, {os.cpu_count()} CPUs, "
          f"median of up to {repeats} runs, milliseconds (ratio = competitor / convfilter)")  # fmt: skip
    kept, results = [], {}
    for spec in SPECS:
        if args.only and args.only not in spec:
            continue
        times = measure(competitors(image, spec), repeats, args.budget)
        medians, figures = record.medians_and_kept(times)
        results[spec] = medians
        kept.append({"label": spec, "title": spec, "results": figures})
        record.print_times(spec, times, medians)
    print()
    for line in targets(results):
        print(line)
    if args.write:
        path = record.save("filters", {
            "benchmark": "filters",
            **environment,
            "image": {"width": width, "height": height, "mode": "RGB", "dtype": "uint8"},
            "repeats": repeats,
            "budget_s": args.budget,
            "kernels": kept,
        })  # fmt: skip
        print(f"\nwrote {path}")
    return 0


def targets(results: dict) -> list[str]:
    """The issue's speed targets, each met or not (only where the competitor ran)."""
    lines = []

    def check(spec, competitor, needed, wording):
        line = record.target_line(results, spec, competitor, needed, wording)
        if line:
            lines.append(line)

    for spec in results:
        if spec.startswith(("box_blur", "gaussian_blur")):
            check(spec, "Pillow", 1 / 1.5, "within 1.5x of Pillow")
        elif spec.startswith("median:"):
            check(spec, "Pillow", 3.0, "3x faster than Pillow")
            check(spec, "scipy", 1.0, "faster than scipy.ndimage.median_filter")
        else:
            check(spec, "Pillow", 1.0, "as fast as Pillow")
    return lines


if __name__ == "__main__":
    sys.exit(main())
