"""A TIFF larger than memory budgets: convfilter streamed against `vips conv` and dask-image.

The input is a generated RGB uint8 TIFF, 32768 x 32768 by default (1.07
gigapixels, 3.2 GB): tiles of 256 x 256, uncompressed (so that no program
spends its time in a codec and what is compared is reading, filtering and
writing), in a BigTIFF. It is made from the sample photographs: every tile
is a window at a random place in them, turned or mirrored at random, with
its own gain and sensor-like noise, so no two tiles are alike. It is
written by tifffile from a generator of tiles (the process holds a few
photographs, never the image), and kept in ``--folder`` for the next run.

Three programs filter it with Pillow's EDGE_ENHANCE (-1 around 10, scale 2)
into a tiled BigTIFF of 256 x 256 tiles, each as a child process:

* convfilter: ``python -m convfilter apply IN OUT -k edge_enhance --stream
  --memory 256M`` (``--memory`` sets the budget);
* libvips: ``vips conv IN OUT[tile,...,bigtiff] MASK --precision integer``,
  with ``VIPS_CONCURRENCY`` set to the same number of threads. Integer
  precision sums the integer mask exactly and rounds back to 8 bits, as
  convfilter does; vips' default, float, writes a float image (four times
  the bytes, not like work), and ``approximate`` is a lossy approximation;
* dask-image: a short script that opens the TIFF as a zarr store
  (``tifffile.imread(aszarr=True)``, ``dask.array.from_zarr``), runs
  ``dask_image.ndfilters.correlate`` on float32 with the same weights (a
  3 x 3 x 1 array, so channels stay apart), rounds and clips to uint8, and
  writes the tiles with tifffile, one row of chunks computed at a time (the
  threaded scheduler, the same number of workers).

The programs take turns within each round (``--runs`` rounds), so a busy
spell on a shared machine slows all of them rather than one. Each is
started by a small launcher process (Python without site packages) that
forks and execs it and reads its peak resident set from ``wait4``: Linux
carries a parent's resident set into a forked or vfork'ed child's figure,
so the benchmark itself, which holds NumPy and the photographs, must not be
the parent. A run longer than ``--timeout`` seconds is killed and recorded
as such (its peak so far kept), and that program is not run again.

The outputs are compared on a few regions away from the edges (some across
tile and band joins): the largest difference between programs and the
share of samples that differ. The table gives the median wall time and
peak memory and each program's ratio to convfilter (above 1, convfilter is
ahead), then the targets of the issue.

    python benchmarks/large.py                 # 1 gigapixel, 3 rounds (the input is made once, cached)
    python benchmarks/large.py --write         # the same, kept in benchmarks/results/large.json
    python benchmarks/large.py --quick         # a 2048 x 2048 image, one round (checks the script works)

``tables.py`` renders the table of docs/performance.md from the kept file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import record  # noqa: E402

PHOTOS = [ROOT / "sample_images" / name for name in ("coffee.png", "chelsea.png", "rocket.jpg")]
TILE = 256
#: Pillow's EDGE_ENHANCE as a vips matrix file: width, height, scale, offset, then the rows.
VIPS_MASK = "3 3 2 0\n-1 -1 -1\n-1 10 -1\n-1 -1 -1\n"
DEFAULT_FOLDER = Path(tempfile.gettempdir()) / "convfilter-large-bench"

# ---------------------------------------------------------------------------
# The input


def photo_canvas() -> np.ndarray:
    """The sample photographs side by side at 1024 rows, over their mirror images (2048 rows)."""
    from PIL import Image

    strips = []
    for path in PHOTOS:
        with Image.open(path) as photo:
            width = round(photo.width * 1024 / photo.height)
            strips.append(np.asarray(photo.convert("RGB").resize((width, 1024), Image.Resampling.BICUBIC)))
    row = np.concatenate(strips, axis=1)
    return np.ascontiguousarray(np.concatenate([row, row[::-1, ::-1]], axis=0))


def photo_tiles(side: int, seed: int = 14):
    """The input's tiles in TIFF order: windows of the photographs, each turned,
    lit and noised its own way."""
    canvas = photo_canvas()
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 4, (16, TILE + 16, TILE + 16, 3)).astype(np.int16)
    across = -(-side // TILE)
    for _ in range(across * across):
        y = int(rng.integers(0, canvas.shape[0] - TILE))
        x = int(rng.integers(0, canvas.shape[1] - TILE))
        window = canvas[y : y + TILE, x : x + TILE]
        turn = int(rng.integers(0, 8))
        window = np.rot90(window, turn % 4)
        if turn >= 4:
            window = window[:, ::-1]
        ny, nx = (int(v) for v in rng.integers(0, 16, 2))
        grain = noise[int(rng.integers(0, len(noise))), ny : ny + TILE, nx : nx + TILE]
        gain = rng.uniform(0.75, 1.25)
        lit = window.astype(np.int16) * np.int16(round(gain * 64)) // 64 + grain
        yield np.clip(lit, 0, 255).astype(np.uint8)


def make_input(folder: Path, side: int) -> Path:
    """The side x side input in ``folder``, made unless a complete one is there."""
    import tifffile

    path = folder / f"photo-{side}.tif"
    if path.exists():
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                if page.shape == (side, side, 3) and page.is_tiled and page.tilelength == TILE:
                    return path
        except Exception:  # a damaged leftover: make it again
            pass
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tif.partial")
    print(f"making {path} ({side} x {side} RGB, {side * side * 3 / 1e9:.2f} GB)", flush=True)
    with tifffile.TiffWriter(partial, bigtiff=True) as writer:
        writer.write(photo_tiles(side), shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", metadata=None)  # fmt: skip
    os.replace(partial, path)
    return path


# ---------------------------------------------------------------------------
# Running one program

# Forks and execs the command, and prints its wall seconds, peak resident set
# (KiB), exit code and whether it was killed for the time limit. Run with -S,
# it holds under 10 MiB, which is the least a measured child can show.
LAUNCHER = """
import os, signal, sys, time
timeout, log = float(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.execvp(sys.argv[3], sys.argv[3:])
    finally:
        os._exit(127)
expired = []
def expire(*_):
    expired.append(True)
    os.kill(pid, signal.SIGKILL)
signal.signal(signal.SIGALRM, expire)
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, usage = os.wait4(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status), int(bool(expired)))
"""

# Children may write bytecode, as after any normal install (an editable install
# with PYTHONDONTWRITEBYTECODE set would recompile every run).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(command: list[str], cwd: Path, timeout: float, env: dict | None = None) -> dict:
    """One run of ``command``: ``wall_s``, ``peak_mib``, ``stdout``, and
    ``timed_out`` or ``failed`` (a message) where it did not finish well."""
    log = Path(tempfile.mkstemp(dir=cwd, prefix=".run-", suffix=".out")[1])
    try:
        probe = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(timeout), str(log), *command], cwd=cwd,
                               capture_output=True, text=True, env=env or CHILD_ENV, timeout=timeout + 120)  # fmt: skip
        stdout = log.read_text(errors="replace")
    finally:
        log.unlink(missing_ok=True)
    wall, rss_kib, code, expired = probe.stdout.split()
    figures = {"wall_s": float(wall), "peak_mib": int(rss_kib) / 1024, "stdout": stdout}  # ru_maxrss: KiB
    if int(expired):
        figures["timed_out"] = f"killed after the {timeout:g} s time limit"
    elif int(code) != 0:
        figures["failed"] = f"exit code {code}: {probe.stderr.strip()[-400:]}"
    return figures


# ---------------------------------------------------------------------------
# The competitors

#: dask-image's way: the TIFF as a zarr store, correlate on float32, rounded to
#: uint8, written a row of chunks at a time. argv: IN OUT WORKERS CHUNK.
DASK_SCRIPT = """
import sys
import dask
import dask.array as da
import numpy as np
import tifffile
from dask_image import ndfilters

source, destination, workers, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tile = 256
store = tifffile.imread(source, aszarr=True)
image = da.from_zarr(store)  # one chunk per TIFF tile
height, width, bands = image.shape
image = image.rechunk((chunk, chunk, bands))
weights = np.array([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]], np.float32)[:, :, None] / 2
filtered = ndfilters.correlate(image.astype(np.float32), weights, mode="nearest")
result = da.clip(da.floor(filtered + 0.5), 0, 255).astype(np.uint8)

def tiles():
    for y in range(0, height, chunk):
        rows = result[y : y + chunk].compute()
        for ty in range(0, rows.shape[0], tile):
            for tx in range(0, width, tile):
                yield rows[ty : ty + tile, tx : tx + tile]

with dask.config.set(scheduler="threads", num_workers=workers):
    with tifffile.TiffWriter(destination, bigtiff=True) as writer:
        writer.write(tiles(), shape=(height, width, bands), dtype=np.uint8, tile=(tile, tile),
                     photometric="rgb", metadata=None)
store.close()
"""

DASK_CHUNK = 1024  # a multiple of the tile; 3 MiB of uint8 (12 MiB as float32) a chunk


def installed(module: str) -> bool:
    """Whether ``module`` imports in this Python (asked of a child, to keep this process small)."""
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=120)
    return probe.returncode == 0


def competitors(source: Path, folder: Path, threads: int, memory: str) -> list[dict]:
    """label, command (None where not installed), output path, environment and note of each program."""
    rows = [{
        "label": "convfilter",
        "command": [sys.executable, "-m", "convfilter", "apply", str(source), str(folder / "out-convfilter.tif"),
                    "-k", "edge_enhance", "--stream", "--memory", memory, "--max-pixels", "0",
                    "--threads", str(threads), "--json"],
        "output": folder / "out-convfilter.tif", "env": CHILD_ENV,
        "note": f"streamed, --memory {memory}, {threads} threads",
    }]  # fmt: skip
    if installed("distributed"):
        rows.append({
            "label": "convfilter-dask",
            "command": [sys.executable, "-m", "convfilter", "apply", str(source), str(folder / "out-cluster.tif"),
                        "-k", "edge_enhance", "--scheduler", "local", "--memory", memory, "--max-pixels", "0",
                        "--threads", str(threads), "--json"],
            "output": folder / "out-cluster.tif", "env": CHILD_ENV,
            "note": f"--scheduler local: {threads} worker processes started and stopped by the command; "
                    "peak of the largest single process (the command or a worker)",
        })  # fmt: skip
    vips = shutil.which("vips")
    mask = folder / "edge_enhance.mat"
    mask.write_text(VIPS_MASK)
    out = folder / "out-vips.tif"
    rows.append({
        "label": "vips conv",
        "command": [vips, "conv", str(source), f"{out}[tile,tile-width={TILE},tile-height={TILE},bigtiff]",
                    str(mask), "--precision", "integer"] if vips else None,
        "output": out, "env": {**CHILD_ENV, "VIPS_CONCURRENCY": str(threads)},
        "note": f"--precision integer, VIPS_CONCURRENCY={threads}" if vips
        else "not installed (apt-get install libvips-tools)",
    })  # fmt: skip
    have_dask = all(installed(m) for m in ("dask_image", "zarr"))
    out = folder / "out-dask.tif"
    rows.append({
        "label": "dask-image",
        "command": [sys.executable, "-c", DASK_SCRIPT, str(source), str(out), str(threads), str(DASK_CHUNK)]
        if have_dask else None,
        "output": out, "env": CHILD_ENV,
        "note": f"ndfilters.correlate, float32, chunks of {DASK_CHUNK} x {DASK_CHUNK}, threaded scheduler, "
                f"{threads} workers" if have_dask else "not installed (pip install 'convfilter[bench]')",
    })  # fmt: skip
    return rows


def versions() -> dict[str, str | None]:
    """Each program's version (None: not installed), asked without importing them here."""
    vips = shutil.which("vips")
    if vips:
        probe = subprocess.run([vips, "--version"], capture_output=True, text=True)
        vips = probe.stdout.strip().removeprefix("vips-") or None
    return {
        "convfilter": record.package_version("convfilter"),
        "numpy": np.__version__,
        "tifffile": record.package_version("tifffile"),
        "vips": vips,
        "dask": record.package_version("dask"),
        "dask_image": record.package_version("dask-image"),
        "zarr": record.package_version("zarr"),
        "scipy": record.package_version("scipy"),
    }


# ---------------------------------------------------------------------------
# Like work: a few regions of each output


def regions(side: int, size: int = 64) -> list[tuple[int, int]]:
    """Top-left corners of the compared regions: away from the edges, several
    across joins of tiles, of convfilter's bands and of dask's chunks."""
    size = min(size, side // 4)
    spots = [(0.5, 0.5), (0.25, 0.75), (0.75, 0.25), (0.125, 0.375), (0.875, 0.625), (0.625, 0.875)]
    corners = []
    for fy, fx in spots:
        y, x = int(side * fy), int(side * fx)  # on a multiple of the tile for sides of 2048 and more
        corners.append((min(max(y - size // 2, 8), side - size - 8), min(max(x - size // 2, 8), side - size - 8)))
    return corners


def read_region(path: Path, y0: int, x0: int, size: int) -> np.ndarray:
    """Rows y0..y0+size, columns x0..x0+size of a tiled or striped TIFF, decoding only its segments there."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        if page.is_tiled:
            high, wide = page.tilelength, page.tilewidth
        else:
            high, wide = page.rowsperstrip, page.imagewidth
        across = -(-page.imagewidth // wide)
        out = np.empty((size, size, page.samplesperpixel), page.dtype)
        handle = tif.filehandle
        for ty in range(y0 // high, (y0 + size - 1) // high + 1):
            for tx in range(x0 // wide, (x0 + size - 1) // wide + 1):
                index = ty * across + tx
                handle.seek(page.dataoffsets[index])
                data = handle.read(page.databytecounts[index])
                segment, _, _ = page.decode(data, index)
                segment = np.asarray(segment).reshape(-1, *np.shape(segment)[-3:])[0]
                top, left = ty * high, tx * wide
                a, b = max(y0, top), min(y0 + size, top + high)
                c, d = max(x0, left), min(x0 + size, left + wide)
                out[a - y0 : b - y0, c - x0 : d - x0] = segment[a - top : b - top, c - left : d - left]
    return out


def like_work(samples: dict[str, list[np.ndarray]]) -> list[dict]:
    """Each other program's regions against convfilter's: largest difference, share differing."""
    base = samples.get("convfilter")
    found = []
    for label, regions_ in samples.items():
        if label == "convfilter" or base is None:
            continue
        ours, theirs = np.stack(base).astype(np.int16), np.stack(regions_).astype(np.int16)
        difference = np.abs(ours - theirs)
        found.append({"label": label, "samples": int(difference.size), "largest": int(difference.max()),
                      "differing": int(np.count_nonzero(difference)),
                      "share": float(np.count_nonzero(difference) / difference.size)})  # fmt: skip
    return found


# ---------------------------------------------------------------------------
# The rounds


def measure(rows: list[dict], folder: Path, runs: int, timeout: float, side: int) -> tuple[dict, dict]:
    """Each program's runs, in turn within each round; and its output's regions."""
    corners = regions(side)
    size = min(64, side // 4)
    figures: dict[str, dict] = {row["label"]: {"runs": []} for row in rows if row["command"]}
    samples: dict[str, list[np.ndarray]] = {}
    for round_ in range(1, runs + 1):
        for row in rows:
            label, kept = row["label"], figures.get(row["label"])
            if kept is None or "timed_out" in kept or "failed" in kept:
                continue
            row["output"].unlink(missing_ok=True)
            result = run_once(row["command"], folder, timeout, row["env"])
            if "timed_out" in result or "failed" in result:
                key = "timed_out" if "timed_out" in result else "failed"
                kept[key] = result[key]
                kept["stopped"] = {"wall_s": round(result["wall_s"], 2), "peak_mib": round(result["peak_mib"], 1)}
                print(f"  round {round_}: {label}: {result[key]} (peak so far {result['peak_mib']:.0f} MiB)")
                row["output"].unlink(missing_ok=True)
                continue
            run = {"wall_s": result["wall_s"], "peak_mib": result["peak_mib"]}
            if label == "convfilter":
                run.update(convfilter_account(result["stdout"]))
            kept["runs"].append(run)
            samples[label] = [read_region(row["output"], y, x, size) for y, x in corners]
            row["output"].unlink()  # the next program should not share the disk with this one's dirty pages
            print(f"  round {round_}: {label:<12} {result['wall_s']:8.2f} s {result['peak_mib']:8.0f} MiB", flush=True)
    return figures, samples


def convfilter_account(stdout: str) -> dict:
    """convfilter's own account of the buffers it held, from its --json notes."""
    for line in stdout.splitlines():
        try:
            summary = json.loads(line)
        except ValueError:
            continue
        for note in summary.get("notes", []) if isinstance(summary, dict) else []:
            held = re.search(r"at most (\d+) MiB of buffers held \(budget (\d+) MiB\)", note)
            if held:
                return {"buffers_mib": int(held[1]), "budget_mib": int(held[2])}
    return {}


def summarise(rows: list[dict], figures: dict) -> list[dict]:
    """What the JSON keeps of each program: medians and every run, or why it has none."""
    programs = []
    for row in rows:
        label = row["label"]
        entry = {"label": label, "note": row["note"]}
        kept = figures.get(label)
        if kept is None:
            programs.append({**entry, "skipped": row["note"]})
            continue
        entry["command"] = " ".join(Path(row["command"][0]).name if i == 0 else part
                                    for i, part in enumerate(row["command"]) if "\n" not in part)  # fmt: skip
        for key in ("timed_out", "failed", "stopped"):
            if key in kept:
                entry[key] = kept[key]
        runs = kept["runs"]
        if runs:
            walls = [run["wall_s"] * 1000 for run in runs]
            medians, timing = record.medians_and_kept({label: walls})
            peaks = [run["peak_mib"] for run in runs]
            entry.update({"median_wall_ms": timing[label]["median_ms"], "wall_ms": timing[label]["times_ms"],
                          "median_peak_mib": round(statistics.median(peaks), 1),
                          "peak_mib": [round(p, 1) for p in peaks], "runs": len(runs)})  # fmt: skip
            buffers = [run["buffers_mib"] for run in runs if "buffers_mib" in run]
            if buffers:
                entry["buffers_mib"] = max(buffers)
                entry["budget_mib"] = runs[0]["budget_mib"]
        programs.append(entry)
    return programs


def print_table(programs: list[dict]) -> None:
    print(f"\n  {'program':<16}{'wall s':>9}{'peak MiB':>10}{'runs':>6}{'wall ratio':>12}{'peak ratio':>12}")
    base = next((p for p in programs if p["label"] == "convfilter" and "median_wall_ms" in p), None)
    for program in programs:
        label = program["label"]
        if "median_wall_ms" not in program:
            why = program.get("skipped") or program.get("timed_out") or program.get("failed")
            print(f"  {label:<16}{'-':>9}{'-':>10}{0:>6}   {why}")
            continue
        wall, peak = program["median_wall_ms"] / 1000, program["median_peak_mib"]
        ratios = ("", "")
        if base:
            ratios = (f"{program['median_wall_ms'] / base['median_wall_ms']:.2f}x",
                      f"{peak / base['median_peak_mib']:.2f}x")  # fmt: skip
        print(f"  {label:<16}{wall:>9.2f}{peak:>10.0f}{program['runs']:>6}{ratios[0]:>12}{ratios[1]:>12}")
    print("  (ratio = program / convfilter: above 1, convfilter is ahead)")


def targets(programs: list[dict]) -> list[str]:
    """The issue's targets, met or not, where the competitor ran (a time limit counts as a bound)."""
    by_label = {p["label"]: p for p in programs}
    ours = by_label.get("convfilter", {})
    if "median_wall_ms" not in ours:
        return []
    results = {"wall": {}, "peak": {}}
    for label, program in by_label.items():
        if "median_wall_ms" in program:
            results["wall"][label] = program["median_wall_ms"]
            results["peak"][label] = program["median_peak_mib"]
    lines = []
    for label, competitor, needed, wording in (
        ("peak", "vips conv", 0.5, "peak memory within 2x of libvips'"),
        ("wall", "vips conv", 1 / 1.5, "wall time within 1.5x of libvips' on the same cores"),
        ("wall", "dask-image", 2.0, "wall time well ahead of dask-image (2x or more)"),
        ("peak", "dask-image", 2.0, "peak memory well ahead of dask-image (2x or more)"),
    ):
        line = record.target_line(results, label, competitor, needed, wording)
        stopped = by_label.get(competitor, {}).get("stopped")
        if line is None and stopped and "timed_out" in by_label[competitor]:
            # Killed at the time limit: its time is at least the limit, its peak at least the peak so far.
            bound = stopped["wall_s"] * 1000 if label == "wall" else stopped["peak_mib"]
            ratio = bound / results[label]["convfilter"]
            if ratio >= needed:
                line = f"target {'met':>7}: {label}: {wording} (ratio > {ratio:.2f}: stopped at the time limit)"
            else:
                line = f"target {'unknown':>7}: {label}: {wording} (stopped at the time limit, ratio > {ratio:.2f})"
        if line:
            lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2048 x 2048 image, one round")
    parser.add_argument("--size", type=int, default=32768, help="side of the square input in pixels (default 32768)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each program runs once a round (default 3)")
    parser.add_argument("--memory", default="256M", help="convfilter's --memory budget (default 256M)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of every program (default: one per CPU)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one run may take before it is killed (default 900)")  # fmt: skip
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help=f"where the input is kept and the outputs written (default {DEFAULT_FOLDER})")  # fmt: skip
    parser.add_argument("--write", action="store_true",
                        help=f"save the figures to {record.RESULTS.relative_to(ROOT) / 'large.json'}")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write and args.quick:
        parser.error("--write keeps full runs only, not --quick")
    side, runs = (2048, 1) if args.quick else (args.size, args.runs)
    if side < 256 or runs < 1:
        parser.error("--size must be at least 256 and --runs at least 1")
    environment = record.environment(versions())
    source = make_input(args.folder, side)
    folder = args.folder
    rows = competitors(source, folder, args.threads, args.memory)
    floor = run_once(["true"], folder, 60)["peak_mib"]
    pixels = f"{side * side / 1e9:.2f} gigapixels" if side * side >= 1e8 else f"{side * side / 1e6:.1f} megapixels"
    print(f"input {side} x {side} RGB uint8 ({pixels}, {source.stat().st_size / 1e9:.2f} "
          f"GB, {TILE} x {TILE} tiles, uncompressed), {os.cpu_count()} CPUs, {args.threads} threads each, "
          f"{runs} round(s); a child's peak cannot show less than the launcher's {floor:.0f} MiB")  # fmt: skip
    for row in rows:
        print(f"  {row['label']}: {row['note']}")
    with open(source, "rb") as cached:  # into the page cache, for every program alike
        while cached.read(64 << 20):
            pass
    figures, samples = measure(rows, folder, runs, args.timeout, side)
    programs = summarise(rows, figures)
    print_table(programs)
    ours = next(p for p in programs if p["label"] == "convfilter")
    if "buffers_mib" in ours:
        print(f"  convfilter's budget {ours['budget_mib']} MiB; its own account of buffers held: at most "
              f"{ours['buffers_mib']} MiB")  # fmt: skip
    checked = like_work(samples)
    print(f"\nlike work: {len(regions(side))} regions of {min(64, side // 4)} x {min(64, side // 4)} pixels, "
          "against convfilter's output")  # fmt: skip
    for check in checked:
        print(f"  {check['label']}: largest difference {check['largest']}, {check['differing']} of "
              f"{check['samples']} samples differ ({check['share']:.4%})")  # fmt: skip
    if not checked:
        print("  nothing to compare (only one program ran)")
    print()
    lines = targets(programs)
    for line in lines:
        print(line)
    if args.write:
        path = record.save("large", {
            "benchmark": "large",
            **environment,
            "image": {"width": side, "height": side, "mode": "RGB", "dtype": "uint8", "tile": TILE,
                      "compression": "none", "bytes": source.stat().st_size},
            "runs": runs,
            "threads": args.threads,
            "memory": args.memory,
            "timeout_s": args.timeout,
            "launcher_floor_mib": round(floor, 1),
            "programs": programs,
            "like_work": {"regions": len(regions(side)), "side": min(64, side // 4), "against": "convfilter",
                          "results": checked},
            "targets": lines,
        })  # fmt: skip
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
