"""The engine's cost model against the clock: estimated and measured seconds of each method.

For each job (a kernel on an image), every method that applies runs on one
thread; the table gives the model's estimate, the median measured time and
their ratio (measured / estimated), and the method ``auto`` picks. The
model is what ``auto`` chooses by and what refuses absurd work, so the
ratios should stay near 1 and, more important, rank the methods as the
clock does.

    python benchmarks/cost_model.py           # 12 MP and smaller jobs, 3 runs each
    python benchmarks/cost_model.py --quick   # small images, one run (checks the script works)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from convfilter import engine
from convfilter.kernels import Kernel, parse_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402


def jobs(quick: bool) -> list[tuple[str, tuple[int, ...], type, Kernel]]:
    rng = np.random.default_rng(0)
    big, mid, small = ((120, 160, 3), (60, 80, 3), (20, 30, 3)) if quick else (
        (3000, 4000, 3), (1500, 2000, 3), (200, 300, 3))  # fmt: skip
    return [
        ("edge_enhance 3x3", big, np.uint8, parse_kernel("edge_enhance")),
        ("smooth_more 5x5", big, np.uint8, parse_kernel("smooth_more")),
        ("gaussian:5 31x31", mid, np.uint8, parse_kernel("gaussian:5")),
        ("random 9x9", mid, np.uint8, Kernel(rng.normal(size=(9, 9)))),
        ("random 31x31", mid, np.uint8, Kernel(rng.normal(size=(31, 31)))),
        ("random 31x31, small image", small, np.uint8, Kernel(rng.normal(size=(31, 31)))),
        ("box:101", (300, 451, 3) if not quick else small, np.uint8, parse_kernel("box:101")),
        ("random 5x5, float32", mid, np.float32, Kernel(rng.normal(size=(5, 5)))),
        ("sharpen, uint16", mid, np.uint16, parse_kernel("sharpen")),
    ]


def image(shape: tuple[int, ...], dtype) -> np.ndarray:
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def median_seconds(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, one run each")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    engine.filter_array(np.zeros((64, 64)), np.ones((9, 9)), method="fft")  # load the FFT library first
    print(f"{record.cpu_model()} ({os.cpu_count()} cores), one thread, median of {runs}")
    print(f"{'job':<28} {'method':<10} {'estimate s':>10} {'measured s':>10} {'ratio':>6}  auto")
    for name, shape, dtype, kernel in jobs(args.quick):
        array = image(shape, dtype)
        auto = engine.choose_method(shape, kernel, dtype=dtype)
        for method in ("direct", "separable", "fft"):
            estimate = engine.estimate_seconds(method, shape, kernel, dtype=dtype)
            if not np.isfinite(estimate) or estimate > 30:
                continue
            measured = median_seconds(lambda: engine.filter_array(array, kernel, method=method, threads=1),
                                      runs if estimate < 2 else 1)  # fmt: skip
            mark = "<-" if method == auto else ""
            print(f"{name:<28} {method:<10} {estimate:>10.4f} {measured:>10.4f} {measured / estimate:>6.2f}  {mark}")


if __name__ == "__main__":
    main()
