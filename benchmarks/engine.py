"""Engine speed against other libraries, on one large photograph-like image.

Run as ``python benchmarks/engine.py`` (``--quick`` for a small image and one
run, as the tests do; ``--write`` to keep the figures in
``benchmarks/results/engine.json``, from which ``tables.py`` renders the
tables of docs/performance.md). For each kernel it times convfilter's
``filter_array`` (``method="auto"``, one thread per CPU) and whichever of
these are installed: Pillow ``ImageFilter`` (3x3 and 5x5 only, as Pillow
allows), ``scipy.ndimage.correlate`` channel by channel, OpenCV
``filter2D`` (and ``sepFilter2D`` for the Gaussian) with one thread and
with all, and pyvips ``conv`` (``convsep`` for the Gaussian). Competitors
run in turn within each round, so a noisy machine slows all alike; the
table gives the median milliseconds and each competitor's time divided by
convfilter's (above 1: convfilter is faster). Slow competitors are run
fewer times (see ``--budget``). The last lines check the speed targets
(docs/performance.md).

Borders: the Pillow presets use convfilter's ``keep`` (Pillow's own rule,
so the outputs are byte-identical); the other kernels use ``nearest``, and
the competitors their nearest-pixel equivalents (OpenCV
``BORDER_REPLICATE``, scipy ``nearest``, vips's own edge rule); the edge
handling is a negligible part of the work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import record  # noqa: E402
from convfilter import engine  # noqa: E402
from convfilter.kernels import PRESETS, Kernel, gaussian_kernel  # noqa: E402

SAMPLE = ROOT / "sample_images" / "coffee.png"


def optional(name: str):
    """The module, or None when it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        return None


PIL = optional("PIL")
if PIL is not None:
    from PIL import Image, ImageFilter
cv2 = optional("cv2")
ndi = optional("scipy.ndimage")
if ndi is not None:
    import scipy.ndimage as ndi
pyvips = optional("pyvips")


def photograph(width: int, height: int) -> np.ndarray:
    """The sample photograph resized to width x height (RGB uint8)."""
    if PIL is not None and SAMPLE.exists():
        with Image.open(SAMPLE) as image:
            return np.asarray(image.convert("RGB").resize((width, height), Image.BICUBIC)).copy()
    # Without Pillow: smooth noise plus hard edges, which is close enough.
    rng = np.random.default_rng(1)
    coarse = rng.random((height // 50 + 2, width // 50 + 2, 3)) * 255
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    smooth = coarse[rows.astype(int)][:, cols.astype(int)]
    smooth[:, width // 3 : width // 2] *= 0.4
    return (smooth + rng.normal(0, 6, smooth.shape)).clip(0, 255).astype(np.uint8)


def random_kernel(side: int, seed: int) -> Kernel:
    """A dense random kernel with weights summing to 1 (so outputs stay in range)."""
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(0.0, 1.0, (side, side)) + 0.1
    return Kernel(matrix, scale=float(matrix.sum()), name=f"random {side}x{side}")


# How docs/performance.md names each case.
TITLES = {
    "edge_enhance 3x3 (keep)": "edge_enhance 3x3, keep",
    "smooth_more 5x5 (keep)": "smooth_more 5x5, keep",
    "random 9x9": "random 9x9",
    "gaussian s=5 31x31": "gaussian sigma 5, 31x31",
    "random 31x31": "random 31x31",
}


def versions() -> dict[str, str | None]:
    """NumPy's, Pillow's and each competitor's version (None: not installed)."""
    libvips = None
    if pyvips is not None:
        libvips = ".".join(str(pyvips.version(i)) for i in range(3))
    return {
        "convfilter": record.package_version("convfilter"),
        "numpy": np.__version__,
        "pillow": PIL.__version__ if PIL is not None else None,
        "scipy": record.package_version("scipy") if ndi is not None else None,
        "opencv": cv2.__version__ if cv2 is not None else None,
        "pyvips": record.package_version("pyvips") if pyvips is not None else None,
        "libvips": libvips,
    }


def cases():
    """(label, kernel, convfilter border, Pillow filter or None, separable)."""
    gaussian = gaussian_kernel(5.0)
    edge = PRESETS["edge_enhance"].kernel()
    smooth = PRESETS["smooth_more"].kernel()
    pillow = (lambda name: getattr(ImageFilter, name)) if PIL is not None else (lambda name: None)
    return [
        ("edge_enhance 3x3 (keep)", edge, "keep", pillow("EDGE_ENHANCE"), False),
        ("smooth_more 5x5 (keep)", smooth, "keep", pillow("SMOOTH_MORE"), False),
        ("random 9x9", random_kernel(9, 9), "nearest", None, False),
        ("gaussian s=5 31x31", gaussian, "nearest", None, True),
        ("random 31x31", random_kernel(31, 31), "nearest", None, False),
    ]


def competitors(image: np.ndarray, kernel: Kernel, border: str, pillow_filter, separable):
    """name -> zero-argument callable producing the filtered image."""
    weights = kernel.weights
    offset = kernel.offset
    runs = {"convfilter": lambda: engine.filter_array(image, kernel, border=border)}
    if pillow_filter is not None:
        picture = Image.fromarray(image)
        runs["Pillow"] = lambda: picture.filter(pillow_filter)
    if ndi is not None:

        def scipy_run():
            out = np.empty_like(image)
            for c in range(image.shape[2]):
                values = ndi.correlate(image[..., c].astype(np.float32), weights, mode="nearest")
                out[..., c] = np.clip(values + offset + 0.5, 0, 255)
            return out

        runs["scipy"] = scipy_run
    if cv2 is not None:
        w32 = weights.astype(np.float32)
        replicate = cv2.BORDER_REPLICATE

        def opencv(threads: int, sep: bool):
            def run():
                cv2.setNumThreads(threads)
                if sep:
                    column, row = kernel.factors
                    return cv2.sepFilter2D(image, -1, (row / kernel.scale).astype(np.float32),
                                           column.astype(np.float32), delta=offset,
                                           borderType=replicate)  # fmt: skip
                return cv2.filter2D(image, -1, w32, delta=offset, borderType=replicate)

            return run

        cpus = os.cpu_count() or 1
        runs["OpenCV filter2D 1t"] = opencv(1, False)
        runs[f"OpenCV filter2D {cpus}t"] = opencv(cpus, False)
        if separable:
            runs["OpenCV sep 1t"] = opencv(1, True)
            runs[f"OpenCV sep {cpus}t"] = opencv(cpus, True)
    if pyvips is not None:
        source = pyvips.Image.new_from_array(image)

        def vips_run():
            if separable:
                column = kernel.factors[0] / kernel.scale
                mask = pyvips.Image.new_from_array(column.reshape(-1, 1).tolist())
                result = source.convsep(mask, precision="float")
            else:
                mask = pyvips.Image.new_from_array(weights.tolist(), offset=offset)
                result = source.conv(mask, precision="float")
            return result.cast("uchar").write_to_memory()

        runs["pyvips"] = vips_run
    return runs


def measure(runs: dict, repeats: int, budget: float) -> dict[str, list[float]]:
    """Milliseconds of each run, round-robin; a run slower than budget/repeats stops early."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            spent = sum(times[name]) / 1000
            if times[name] and spent + times[name][-1] / 1000 > budget:
                continue
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small image, one run each")
    parser.add_argument("--size", default="4000x3000", help="image WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each competitor")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds one competitor may spend on one kernel")  # fmt: skip
    parser.add_argument("--only", help="run only kernels whose label contains this")
    parser.add_argument("--write", action="store_true",
                        help=f"save the figures to {record.RESULTS.relative_to(ROOT) / 'engine.json'}")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write and (args.quick or args.only):
        parser.error("--write keeps full runs only, not --quick or --only")
    width, height = (int(v) for v in args.size.lower().split("x"))
    repeats = args.repeats
    if args.quick:
        width, height, repeats = 320, 240, 1
    image = photograph(width, height)
    environment = record.environment(versions())
    print(f"image {width}x{height} RGB uint8, {os.cpu_count()} CPUs, "
          f"median of up to {repeats} runs, milliseconds (ratio = competitor / convfilter)")  # fmt: skip
    missing = [name for name, module in
               (("Pillow", PIL), ("scipy", ndi), ("OpenCV", cv2), ("pyvips", pyvips))
               if module is None]  # fmt: skip
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}")
    results = {}
    kept = []
    for label, kernel, border, pillow_filter, separable in cases():
        if args.only and args.only not in label:
            continue
        runs = competitors(image, kernel, border, pillow_filter, separable)
        method = engine.choose_method(image.shape, kernel, dtype=image.dtype)
        times = measure(runs, repeats, args.budget)
        medians, figures = record.medians_and_kept(times)
        results[label] = medians
        kept.append({"label": label, "title": TITLES.get(label, label), "method": method, "results": figures})
        record.print_times(f"{label}   (convfilter method: {method})", times, medians)
    print()
    for line in targets(results):
        print(line)
    if args.write:
        path = record.save("engine", {
            "benchmark": "engine",
            **environment,
            "image": {"width": width, "height": height, "mode": "RGB", "dtype": "uint8"},
            "repeats": repeats,
            "budget_s": args.budget,
            "kernels": kept,
        })  # fmt: skip
        print(f"\nwrote {path}")
    return 0


def targets(results: dict) -> list[str]:
    """The speed targets, each met or not (only where the competitor ran)."""
    lines = []

    def check(label, competitor, needed, wording):
        line = record.target_line(results, label, competitor, needed, wording)
        if line:
            lines.append(line)

    for label in ("edge_enhance 3x3 (keep)", "smooth_more 5x5 (keep)"):
        check(label, "Pillow", 5.0, "5x faster than Pillow")
        check(label, "OpenCV filter2D 1t", 1.0, "no slower than OpenCV filter2D 1 thread")
    check("gaussian s=5 31x31", "OpenCV sep 1t", 1 / 1.5, "no slower than 1.5x OpenCV sepFilter2D 1 thread")
    check("gaussian s=5 31x31", "scipy", 5.0, "5x faster than scipy")
    check("random 31x31", "OpenCV filter2D 1t", 1.0, "no slower than OpenCV filter2D 1 thread")
    return lines


if __name__ == "__main__":
    sys.exit(main())
