"""Whole-process benchmarks: `convfilter apply` against a Pillow script, vips and ImageMagick.

Each command runs as its own process, the commands taking turns for
several rounds (so a busy spell on a shared machine slows all alike); the
table gives the median wall time and the median peak memory (the child's
maximum resident set size, from the operating system), and each
competitor's ratio to convfilter. Then `convfilter batch` over many small photos with one job
and with one job per CPU, as images per second. First, how long the command takes to start
(`--help`, `--version`) against Python importing Click.

    python benchmarks/cli.py            # 12 MP JPEG and PNG, 5 runs each
    python benchmarks/cli.py --write    # the same, kept in benchmarks/results/cli.json
    python benchmarks/cli.py --quick    # a small image, one run (checks the script works)

``tables.py`` renders the tables of docs/performance.md from the kept file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import record  # noqa: E402

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


def measure(commands: dict[str, list[str]], cwd: Path, runs: int) -> dict[str, dict]:
    """Each command's median wall ms and peak MiB over ``runs`` runs, and each run's.

    Every command first runs once to warm up (file cache, bytecode); then the
    commands take turns, one run each per round, so that a busy spell on a
    shared machine falls on all of them rather than on one. A command that
    fails is reported as ``{"failed": message}`` and not run again.
    """
    results: dict[str, dict] = {}
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for round_ in range(runs + 1):
        for label, command in commands.items():
            if label in results:
                continue
            try:
                figures = run_once(command, cwd)
            except RuntimeError as exc:
                results[label] = {"failed": str(exc)}
                continue
            if round_:
                times[label].append(figures)
    for label in commands:
        if label in results:
            continue
        walls = [wall * 1000 for wall, _ in times[label]]
        peaks = [peak for _, peak in times[label]]
        results[label] = {
            "median_wall_ms": round(statistics.median(walls), 2),
            "median_peak_mib": round(statistics.median(peaks), 2),
            "runs": runs,
            "wall_ms": [round(v, 2) for v in walls],
            "peak_mib": [round(v, 2) for v in peaks],
        }
    return {label: results[label] for label in commands}


def is_script(path: str) -> bool:
    """Whether the file is a ``#!`` script (a wrapper, not the program itself)."""
    try:
        with open(path, "rb") as head:
            return head.read(2) == b"#!"
    except OSError:
        return True


def imagemagick() -> tuple[str, str] | None:
    """(command, version) of ImageMagick 6/7, if a real one is installed.

    A wrapper script of the same name earlier on PATH would add its own
    start-up to every run, so the program itself is preferred.
    """
    found = []
    for name in ("magick", "convert"):
        for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
            path = shutil.which(name, path=folder)
            if not path or any(os.path.samefile(path, other) for other, _ in found):
                continue
            try:
                probe = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.stdout.startswith("Version: ImageMagick"):
                version = " ".join(probe.stdout.split()[1:4])  # "ImageMagick 6.9.11-60 Q16"
                found.append((path, version))
    found.sort(key=lambda item: is_script(item[0]))  # stable: PATH order among equals
    return found[0] if found else None


def versions() -> dict[str, str | None]:
    """Pillow's and each competitor's version (None: not installed)."""
    vips, libvips = shutil.which("vips"), None
    if vips:
        probe = subprocess.run([vips, "--version"], capture_output=True, text=True)
        vips = probe.stdout.strip().removeprefix("vips-") or None
    try:
        import pyvips

        libvips = ".".join(str(pyvips.version(i)) for i in range(3))
    except Exception:  # pyvips missing or its library not loadable
        pass
    magick = imagemagick()
    return {
        "convfilter": (record.package_version("convfilter") or "?")
        + (" (editable install)" if record.editable_install("convfilter") else ""),
        "numpy": np.__version__,
        "pillow": Image.__version__,
        "vips": vips,
        "pyvips": record.package_version("pyvips") if libvips else None,
        "pyvips_libvips": libvips,
        "imagemagick": magick[1] if magick else None,
    }


def compile_bytecode() -> None:
    """Byte-compile convfilter's modules, as ``pip install`` does.

    Run from a source tree, a Python with PYTHONDONTWRITEBYTECODE set (as
    some machines have) would otherwise compile every module changed since
    its cached bytecode at each start, which a user's installed copy never
    does (30 ms for engine.py alone here).
    """
    import compileall

    import convfilter

    compileall.compile_dir(os.path.dirname(convfilter.__file__), quiet=1)


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
        rows.append(("ImageMagick", [magick[0], source, "-define", "convolve:scale=0.5",
                                     "-morphology", "Convolve", f"3x3:{EDGE_ENHANCE}", output], ""))
    else:
        rows.append(("ImageMagick", None, "ImageMagick not installed (apt-get install imagemagick)"))
    return rows


def apply_table(workdir: Path, runs: int, size: tuple[int, int]) -> list[dict]:
    (workdir / "edge_enhance.mat").write_text("3 3 2 0\n-1 -1 -1\n-1 10 -1\n-1 -1 -1\n")
    image = photo_like(*size)
    kept = []
    for suffix, name in ((".jpg", "JPEG"), (".png", "PNG")):
        source = f"big{suffix}"
        image.save(workdir / source, quality=90) if suffix == ".jpg" else image.save(workdir / source)
        rows = competitors(source, f"out{suffix}")
        figures = measure({label: command for label, command, _ in rows if command}, workdir, runs)
        print(f"\n### `apply -k edge_enhance` on a {size[0]} x {size[1]} {name}, median of {runs} run(s)\n")
        print("| program | wall ms | peak RSS MiB | wall / convfilter | memory / convfilter |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base: tuple[float, float] | None = None
        programs = []
        for label, command, note in rows:
            if command is None:
                print(f"| {label} | - | - | - | - |  <!-- {note} -->")
                programs.append({"label": label, "skipped": note})
                continue
            programs.append({"label": label, **figures[label]})
            if "failed" in figures[label]:
                print(f"| {label} | failed | | | |  <!-- {figures[label]['failed']} -->")
                continue
            wall, rss = figures[label]["median_wall_ms"], figures[label]["median_peak_mib"]
            base = base or (wall, rss)
            print(f"| {label} | {wall:.0f} | {rss:.0f} | {wall / base[0]:.2f} | {rss / base[1]:.2f} |")
        kept.append({"format": name, "width": size[0], "height": size[1],
                     "bytes": (workdir / source).stat().st_size, "programs": programs})  # fmt: skip
    return kept


#: The same batch job as a short Pillow script on a pool of threads (Pillow's
#: codecs and filters release the GIL): argv is SOURCE_DIR OUT_DIR THREADS.
PILLOW_POOL_SCRIPT = """
import os, sys
from concurrent.futures import ThreadPoolExecutor
from PIL import Image, ImageFilter
source, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
def one(name):
    with Image.open(os.path.join(source, name)) as image:
        image.filter(ImageFilter.EDGE_ENHANCE).save(os.path.join(out, name), quality=90)
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(one, sorted(os.listdir(source))))
"""


def batch_competitors(photos: Path, workdir: Path, mask: Path) -> list[tuple[str, list[str] | None, str]]:
    """(label, command or None, note) of the other ways to run the batch job, writing
    below ``workdir``; ``mask`` is edge_enhance as a vips matrix file."""
    cpus = os.cpu_count() or 1
    rows: list[tuple[str, list[str] | None, str]] = []
    for threads in sorted({1, cpus}):
        out = workdir / f"pillow-{threads}"
        rows.append((f"Pillow script, {threads} thread{'s' if threads > 1 else ''}",
                     [sys.executable, "-c", PILLOW_POOL_SCRIPT, str(photos), str(out), str(threads)], ""))
    magick = imagemagick()
    mogrify = shutil.which("mogrify")
    if magick and mogrify and not is_script(mogrify):
        out = workdir / "mogrify"
        out.mkdir(exist_ok=True)
        rows.append(("ImageMagick mogrify", ["sh", "-c", f'exec "{mogrify}" -path "{out}" -define convolve:scale=0.5 '
                                             f'-morphology Convolve 3x3:{EDGE_ENHANCE} "{photos}"/*.jpg'], ""))
    else:
        rows.append(("ImageMagick mogrify", None, "ImageMagick not installed (apt-get install imagemagick)"))
    vips = shutil.which("vips")
    if vips:
        out = workdir / "vips"
        out.mkdir(exist_ok=True)
        each = f'exec "{vips}" conv "$0" "{out}/${{0##*/}}" "{mask}" --precision integer'
        rows.append((f"vips conv per file, {cpus} at a time",
                     ["sh", "-c", f"ls \"{photos}\"/*.jpg | xargs -P{cpus} -n1 sh -c '{each}'"], ""))
    else:
        rows.append(("vips conv per file", None, "vips command not installed (apt-get install libvips-tools)"))
    return rows


def batch_table(workdir: Path, count: int, runs: int) -> dict:
    photos = workdir / f"photos{count}"
    photos.mkdir()
    base = photo_like(640, 480)
    for i in range(count):
        # Rotations of one picture: every file differs, all cost about the same.
        base.rotate(i % 360).save(photos / f"photo{i:04d}.jpg", quality=90)
    commands: dict = {}
    for jobs in sorted({1, os.cpu_count() or 1}):
        out = workdir / f"out{count}-{jobs}"
        commands[jobs] = convfilter_command() + ["batch", str(photos), "-d", str(out), "-k", "edge_enhance",
                                                 "--jobs", str(jobs), "--overwrite", "--no-progress"]  # fmt: skip
    (workdir / f"others{count}").mkdir()
    others = batch_competitors(photos, workdir / f"others{count}", workdir / "edge_enhance.mat")
    commands.update({label: command for label, command, _ in others if command})
    measured = measure(commands, workdir, runs)
    figures = {jobs: measured[jobs] for jobs in measured if isinstance(jobs, int)}
    print(f"\n### `batch -k edge_enhance` over {count} JPEGs of 640 x 480, median of {runs} run(s)\n")
    print("| jobs | wall s | images/s | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    first = None
    kept = {"photos": count, "width": 640, "height": 480, "jobs": []}
    for jobs, result in figures.items():
        kept["jobs"].append({"jobs": jobs, **result})
        if "failed" in result:
            print(f"| {jobs} | failed | | |  <!-- {result['failed']} -->")
            continue
        wall = result["median_wall_ms"] / 1000
        rate = count / wall
        first = first or rate
        print(f"| {jobs} | {wall:.2f} | {rate:.1f} | {rate / first:.2f} |")
    kept["competitors"] = []
    for label, command, note in others:
        result = measured.get(label, {"skipped": note}) if command else {"skipped": note}
        kept["competitors"].append({"label": label, **result})
        if "median_wall_ms" in result:
            print(f"| {label} | {result['median_wall_ms'] / 1000:.2f} | "
                  f"{count / (result['median_wall_ms'] / 1000):.1f} | |")  # fmt: skip
    return kept


def startup_table(workdir: Path, runs: int) -> dict:
    """Starting the command with nothing to do, against Python importing Click
    (the least any Click program can take) and bare Python."""
    commands = {
        "convfilter --help": convfilter_command() + ["--help"],
        "convfilter --version": convfilter_command() + ["--version"],
        "python -c 'import click'": [sys.executable, "-c", "import click"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    measured = measure(commands, workdir, runs)
    print(f"\n### Starting, median of {runs} run(s)\n")
    print("| command | wall ms | / import click |")
    print("| --- | ---: | ---: |")
    floor = measured["python -c 'import click'"].get("median_wall_ms")
    for label, figures in measured.items():
        if "median_wall_ms" in figures:
            share = f"{figures['median_wall_ms'] / floor:.2f}" if floor else ""
            print(f"| {label} | {figures['median_wall_ms']:.0f} | {share} |")
    return {"runs": runs, "programs": [{"label": label, **figures} for label, figures in measured.items()]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small image, one run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photos", type=int, nargs="+", default=[200, 800],
                        help="batch sizes to time (default: 200 800)")  # fmt: skip
    parser.add_argument("--write", action="store_true",
                        help=f"save the figures to {record.RESULTS.relative_to(ROOT) / 'cli.json'}")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write and args.quick:
        parser.error("--write keeps full runs only, not --quick")
    runs = 1 if args.quick else args.runs
    size = (400, 300) if args.quick else (4000, 3000)
    counts = [8] if args.quick else args.photos
    environment = record.environment(versions())
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="convfilter-bench-") as tmp:
        workdir = Path(tmp)
        started = startup_table(workdir, 1 if args.quick else max(15, 5 * runs))
        applied = apply_table(workdir, runs, size)
        batches = [batch_table(workdir, count, runs) for count in counts]
    if args.write:
        path = record.save("cli", {"benchmark": "cli", **environment, "runs": runs, "startup": started,
                                   "apply": applied, "batch": batches})  # fmt: skip
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
