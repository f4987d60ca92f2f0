"""Whole-process benchmarks: `convfilter apply` against a Pillow script, vips and ImageMagick.

Each command runs as its own process, in turn, several times; the table
gives the median wall time and the median peak memory (the child's maximum
resident set size, from the operating system), and each competitor's ratio
to convfilter. Then `convfilter batch` over many small photos with one job
and with one job per CPU, as images per second.

    python benchmarks/cli.py            # 12 MP JPEG and PNG, 5 runs each
    python benchmarks/cli.py --quick    # a small image, one run (checks the script works)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "sample_images" / "coffee.png"
EDGE_ENHANCE = "-1,-1,-1,-1,10,-1,-1,-1,-1"  # Pillow's EDGE_ENHANCE, scale 2

PILLOW_SCRIPT = (
    "import sys; from PIL import Image, ImageFilter; "
    "Image.open(sys.argv[1]).filter(ImageFilter.EDGE_ENHANCE).save(sys.argv[2])"
)
PYVIPS_SCRIPT = (
    "import sys, pyvips; "
    "mask = pyvips.Image.new_from_array([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]], scale=2); "
    "pyvips.Image.new_from_file(sys.argv[1], access='sequential')"
    ".conv(mask, precision='integer').cast('uchar').write_to_file(sys.argv[2])"
)


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A real photograph scaled to size, with a little sensor-like noise."""
    base = Image.open(PHOTO).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(base) + noise, 0, 255).astype(np.uint8))


# A child's peak RSS counts the memory of whatever process forked it, so each
# command is started by this small launcher rather than by the benchmark
# process itself (which holds NumPy and Pillow).
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


# Children may write bytecode (the warm-up run does), as after any normal install;
# with PYTHONDONTWRITEBYTECODE set, an editable install would recompile every run.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run of ``command`` as a child process."""
    probe = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *command], cwd=cwd,
                           capture_output=True, text=True, env=CHILD_ENV)  # fmt: skip
    wall, rss_kib, code = probe.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{command[0]} failed ({code}): {probe.stderr.strip()[:300]}")
    return float(wall), int(rss_kib) / 1024  # ru_maxrss is in KiB on Linux


def measure(command: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    run_once(command, cwd)  # warm-up: file cache, bytecode
    results = [run_once(command, cwd) for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def imagemagick() -> str | None:
    """The ImageMagick 6/7 command, if a real one is installed."""
    for name in ("magick", "convert"):
        path = shutil.which(name)
        if path:
            try:
                probe = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.stdout.startswith("Version: ImageMagick"):
                return path
    return None


def convfilter_command() -> list[str]:
    script = shutil.which("convfilter", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "convfilter"]


def competitors(source: str, output: str) -> list[tuple[str, list[str] | None, str]]:
    """(label, command or None, note) for each program, convfilter first."""
    rows: list[tuple[str, list[str] | None, str]] = [
        ("convfilter apply", convfilter_command() + ["apply", source, output, "-k", "edge_enhance", "-q"], ""),
        ("Pillow script", [sys.executable, "-c", PILLOW_SCRIPT, source, output], ""),
    ]
    vips = shutil.which("vips")
    mask = "edge_enhance.mat"
    rows.append(("vips conv", [vips, "conv", source, output, mask, "--precision", "integer"] if vips else None,
                 "" if vips else "vips command not installed (apt-get install libvips-tools)"))
    try:
        import pyvips  # noqa: F401

        rows.append(("pyvips script", [sys.executable, "-c", PYVIPS_SCRIPT, source, output], ""))
    except Exception:  # pyvips missing or its library not loadable
        rows.append(("pyvips script", None, "pyvips not installed (pip install 'convfilter[bench]')"))
    magick = imagemagick()
    if magick:
        rows.append(("ImageMagick", [magick, source, "-define", "convolve:scale=0.5",
                                     "-morphology", "Convolve", f"3x3:{EDGE_ENHANCE}", output], ""))
    else:
        rows.append(("ImageMagick", None, "ImageMagick not installed (apt-get install imagemagick)"))
    return rows


def apply_table(workdir: Path, runs: int, size: tuple[int, int]) -> None:
    (workdir / "edge_enhance.mat").write_text("3 3 2 0\n-1 -1 -1\n-1 10 -1\n-1 -1 -1\n")
    image = photo_like(*size)
    for suffix in (".jpg", ".png"):
        source = f"big{suffix}"
        image.save(workdir / source, quality=90) if suffix == ".jpg" else image.save(workdir / source)
        print(f"\n### `apply -k edge_enhance` on a {size[0]} x {size[1]} {suffix[1:].upper()}, "
              f"median of {runs} run(s)\n")  # fmt: skip
        print("| program | wall ms | peak RSS MiB | wall / convfilter | memory / convfilter |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base: tuple[float, float] | None = None
        for label, command, note in competitors(source, f"out{suffix}"):
            if command is None:
                print(f"| {label} | - | - | - | - |  <!-- {note} -->")
                continue
            try:
                wall, rss = measure(command, workdir, runs)
            except RuntimeError as exc:
                print(f"| {label} | failed | | | |  <!-- {exc} -->")
                continue
            base = base or (wall, rss)
            print(f"| {label} | {wall * 1000:.0f} | {rss:.0f} | {wall / base[0]:.2f} | {rss / base[1]:.2f} |")


def batch_table(workdir: Path, count: int, runs: int) -> None:
    photos = workdir / "photos"
    photos.mkdir()
    base = photo_like(640, 480)
    for i in range(count):
        # Shifted crops of one picture: every file differs, all cost the same.
        base.rotate(i % 360).save(photos / f"photo{i:04d}.jpg", quality=90)
    jobs_all = os.cpu_count() or 1
    print(f"\n### `batch -k edge_enhance` over {count} JPEGs of 640 x 480, median of {runs} run(s)\n")
    print("| jobs | wall s | images/s | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    first = None
    for jobs in sorted({1, jobs_all}):
        out = workdir / f"out{jobs}"
        command = convfilter_command() + ["batch", str(photos), "-d", str(out), "-k", "edge_enhance",
                                          "--jobs", str(jobs), "--overwrite", "--no-progress"]  # fmt: skip
        try:
            wall, _ = measure(command, workdir, runs)
        except RuntimeError as exc:
            print(f"| {jobs} | failed | | |  <!-- {exc} -->")
            return
        rate = count / wall
        first = first or rate
        print(f"| {jobs} | {wall:.2f} | {rate:.1f} | {rate / first:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small image, one run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    size = (400, 300) if args.quick else (4000, 3000)
    count = 8 if args.quick else args.photos
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="convfilter-bench-") as tmp:
        workdir = Path(tmp)
        apply_table(workdir, runs, size)
        batch_table(workdir, count, runs)


if __name__ == "__main__":
    main()
