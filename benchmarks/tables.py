"""Markdown tables from the kept benchmark figures (benchmarks/results/*.json).

    python3 benchmarks/tables.py                                  # print every table
    python3 benchmarks/tables.py --update docs/performance.md     # rewrite its tables
    python3 benchmarks/tables.py --check docs/performance.md      # exit 1 if any is stale

A table sits in a document between ``<!-- bench:NAME -->`` and
``<!-- /bench -->``, NAME being ``engine``, ``filters``, ``cli``, ``batch`` or ``large``; ``--update``
replaces what lies between, and nothing else. Ratios are a competitor's
median time divided by convfilter's: above 1, convfilter is faster.

Standard library only, so that a test can import this file cheaply.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = re.compile(r"(<!-- bench:(\w+) -->\n)(.*?)(<!-- /bench -->)", re.DOTALL)


def load(name: str, folder: Path = RESULTS) -> dict:
    """The figures ``NAME.py --write`` kept."""
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def ratio(value: float) -> str:
    """A ratio to three significant figures at most: 0.89x, 20.6x, 426x."""
    if value < 10:
        return f"{value:.2f}x"
    if value < 100:
        return f"{value:.1f}x"
    return f"{value:.0f}x"


def load_words(data: dict) -> str:
    start, end = data.get("load_average_start"), data.get("load_average_end")
    if not start or not end:
        return ""
    return f"; 1-minute load average {start[0]:.2f} at the start, {end[0]:.2f} at the end"


def runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def machine(data: dict) -> str:
    return f"Measured {data['date']} on {data['cpu']} ({data['cores']} cores)"


def version_words(versions: dict, names: list[tuple[str, str]]) -> str:
    return ", ".join((f"{label} " if label else "") + versions[key] for key, label in names if versions.get(key))


# ---------------------------------------------------------------- engine

def engine_column(name: str) -> tuple[int, int, str]:
    """(family order, threads, family) of one competitor's name in engine.json."""
    opencv = re.fullmatch(r"OpenCV (filter2D|sep) (\d+)t", name)
    if opencv:
        return (2 if opencv[1] == "filter2D" else 3), int(opencv[2]), opencv[1]
    order = {"Pillow": 0, "scipy": 1, "pyvips": 4}
    return order.get(name, 5), 0, name


def engine_columns(kernels: list[dict]) -> list[tuple[str, list[str]]]:
    """(header, competitor names) of each column after convfilter's.

    OpenCV's filter2D gets a column per thread count; its sepFilter2D, run on
    the separable kernel only, shares one column between thread counts.
    """
    names = sorted({name for k in kernels for name in k["results"] if name != "convfilter"},
                   key=engine_column)  # fmt: skip
    columns: list[tuple[str, list[str]]] = []
    separable: list[str] = []
    for name in names:
        _, threads, family = engine_column(name)
        if family == "filter2D":
            columns.append((f"OpenCV `filter2D` {threads} thread{'s' if threads != 1 else ''}", [name]))
        elif family == "sep":
            separable.append(name)
            if len(separable) == 1:
                columns.append(("", separable))
        else:
            columns.append(({"scipy": "SciPy"}.get(name, name), [name]))
    if separable:
        threads = " / ".join(str(engine_column(name)[1]) for name in separable)
        plural = "" if threads == "1" else "s"
        at = next(i for i, (_, group) in enumerate(columns) if group is separable)
        columns[at] = (f"OpenCV `sepFilter2D` {threads} thread{plural}", separable)
    return columns


def engine_table(data: dict) -> str:
    kernels = data["kernels"]
    columns = engine_columns(kernels)
    image = data["image"]
    lines = [
        f"Median milliseconds of `filter_array` on a {image['width']} x {image['height']} "
        f"{image['mode']} {image['dtype']} photograph; in brackets, competitor / convfilter.",
        "",
        "| kernel (convfilter method) | convfilter | " + " | ".join(h for h, _ in columns) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for kernel in kernels:
        results = kernel["results"]
        base = results["convfilter"]["median_ms"]
        cells = [f"{kernel['title']} ({kernel['method']})", f"{base:.1f}"]
        for _, group in columns:
            cells.append(" / ".join(f"{results[n]['median_ms']:.1f} ({ratio(results[n]['median_ms'] / base)})"
                                    for n in group if n in results))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", measured_line(data, kernels, [("pyvips", "pyvips"), ("libvips", "libvips")])]
    return "\n".join(lines) + "\n"


def measured_line(data: dict, cases: list[dict], more_versions: list[tuple[str, str]]) -> str:
    """Where and with what the figures were taken, and which competitors ran fewer times."""
    fewer = [f"{name} on {case['title']} ({figures['runs']})" for case in cases
             for name, figures in case["results"].items() if figures["runs"] < data["repeats"]]  # fmt: skip
    versions = version_words(data["versions"], [
        ("convfilter", "convfilter"), ("python", "Python"), ("numpy", "NumPy"), ("pillow", "Pillow"),
        ("scipy", "SciPy"), ("opencv", "OpenCV"), *more_versions,
    ])  # fmt: skip
    counts = f"median of {runs(data['repeats'])} each"
    if fewer:
        counts += f", except where {data['budget_s']:g} s did not allow them all: " + ", ".join(fewer)
    return f"{machine(data)}; {versions}; {counts}{load_words(data)}."


# ---------------------------------------------------------------- cli

def cli_table(data: dict) -> str:
    formats = data["apply"]
    labels: list[str] = []
    for entry in formats:
        for program in entry["programs"]:
            if "median_wall_ms" in program and program["label"] not in labels:
                labels.append(program["label"])
    first = formats[0]
    megapixels = first["width"] * first["height"] / 1e6
    header = {"convfilter apply": "convfilter"}
    lines = [
        f"Median wall time and peak memory (largest resident set) of `apply -k edge_enhance` on a "
        f"{first['width']} x {first['height']} photograph, as a whole process; "
        "in brackets, competitor / convfilter.",
        "",
        f"| {megapixels:.0f} MP input | " + " | ".join(header.get(label, label) for label in labels) + " |",
        "| --- | " + " | ".join("---:" for _ in labels) + " |",
    ]
    for entry in formats:
        measured = {p["label"]: p for p in entry["programs"] if "median_wall_ms" in p}
        base = measured.get("convfilter apply")
        walls, peaks = [], []
        for label in labels:
            program = measured.get(label)
            if program is None:
                walls.append("-")
                peaks.append("-")
                continue
            wall = f"{program['median_wall_ms']:.0f}"
            if base is not None and program is not base:
                wall += f" ({ratio(program['median_wall_ms'] / base['median_wall_ms'])})"
            walls.append(wall)
            peaks.append(f"{program['median_peak_mib']:.0f}")
        lines.append(f"| {entry['format']}: wall ms | " + " | ".join(walls) + " |")
        lines.append(f"| {entry['format']}: peak MiB | " + " | ".join(peaks) + " |")
    skipped = sorted({p["label"] for e in formats for p in e["programs"] if "median_wall_ms" not in p})
    versions = version_words(data["versions"], [
        ("convfilter", "convfilter"), ("python", "Python"), ("numpy", "NumPy"), ("pillow", "Pillow"),
        ("vips", "`vips` (libvips)"), ("pyvips", "pyvips"), ("pyvips_libvips", "pyvips's libvips"),
        ("imagemagick", ""),
    ])  # fmt: skip
    words = f"{machine(data)}; {versions}; median of {runs(data['runs'])} after one warm-up run"
    if skipped:
        words += "; not measured: " + ", ".join(skipped)
    lines += ["", f"{words}{load_words(data)}."]
    return "\n".join(lines) + "\n"


def startup_table(data: dict) -> str:
    started = data.get("startup")
    programs = [p for p in (started or {}).get("programs", []) if "median_wall_ms" in p]
    floor = next((p["median_wall_ms"] for p in programs if p["label"] == "python -c 'import click'"), None)
    if not programs or floor is None:
        return "No start-up figures were kept.\n"
    lines = [
        "Median wall time of starting a command that does nothing else; in brackets, its time / Python's "
        "importing Click alone, the least a Click program can take.",
        "",
        "| command | wall ms |",
        "| --- | ---: |",
    ]
    for program in programs:
        wall = program["median_wall_ms"]
        lines.append(f"| `{program['label']}` | {wall:.0f} ({wall / floor:.2f}x) |")
    lines += ["", f"{machine(data)}; median of {runs(started['runs'])} after one warm-up run{load_words(data)}."]
    return "\n".join(lines) + "\n"


def batch_table(data: dict) -> str:
    batches = [b for b in data["batch"] if all("median_wall_ms" in j for j in b["jobs"])]
    if not batches:
        return "No batch figures were kept.\n"
    jobs = [j["jobs"] for j in batches[0]["jobs"]]
    first = batches[0]
    lines = [
        f"Images per second of `batch -k edge_enhance` over JPEGs of {first['width']} x {first['height']} "
        "(median wall time of the whole command in brackets).",
        "",
        "| photos | " + " | ".join(f"`--jobs {n}`" for n in jobs) + (" | speed-up |" if len(jobs) > 1 else " |"),
        "| ---: | " + " | ".join("---:" for _ in jobs) + (" | ---: |" if len(jobs) > 1 else " |"),
    ]
    for batch in batches:
        rates = [batch["photos"] / (j["median_wall_ms"] / 1000) for j in batch["jobs"]]
        cells = [f"{rate:.0f} images/s ({j['median_wall_ms'] / 1000:.2f} s)" for rate, j in zip(rates, batch["jobs"])]
        if len(jobs) > 1:
            cells.append(f"{rates[-1] / rates[0]:.2f}x")
        lines.append(f"| {batch['photos']} | " + " | ".join(cells) + " |")
    lines += competitor_lines(batches)
    lines += ["", f"{machine(data)}; median of {runs(data['runs'])} after one warm-up run{load_words(data)}."]
    return "\n".join(lines) + "\n"


def competitor_lines(batches: list[dict]) -> list[str]:
    """The same job done by other programs, against convfilter with the most jobs."""
    measured = [b for b in batches if any("median_wall_ms" in c for c in b.get("competitors", []))]
    if not measured:
        return []
    lines = ["", "The same job done by other programs; in brackets, their time / convfilter's with the most jobs.",
             "", "| photos | program | images/s (wall s) |", "| ---: | --- | ---: |"]  # fmt: skip
    skipped = set()
    for batch in measured:
        ours = batch["jobs"][-1]["median_wall_ms"]
        for program in batch["competitors"]:
            if "median_wall_ms" not in program:
                skipped.add(f"{program['label']} ({program.get('skipped') or program.get('failed')})")
                continue
            wall = program["median_wall_ms"]
            lines.append(f"| {batch['photos']} | {program['label']} | {batch['photos'] / (wall / 1000):.0f} "
                         f"({wall / 1000:.2f} s) ({ratio(wall / ours)}) |")  # fmt: skip
    if skipped:
        lines += ["", "Not measured: " + "; ".join(sorted(skipped)) + "."]
    return lines


# ---------------------------------------------------------------- filters

def filters_table(data: dict) -> str:
    specs = data["kernels"]
    names = sorted({name for s in specs for name in s["results"] if name != "convfilter"},
                   key=lambda n: {"Pillow": 0, "scipy": 1}.get(n, 2))  # fmt: skip
    headers = {"scipy": "SciPy", "OpenCV 1t": "OpenCV 1 thread"}
    image = data["image"]
    lines = [
        f"Median milliseconds of `filter_array(image, SPEC, border=\"keep\")` on a {image['width']} x "
        f"{image['height']} {image['mode']} {image['dtype']} photograph; in brackets, competitor / convfilter.",
        "",
        "| spec | convfilter | " + " | ".join(headers.get(n, n) for n in names) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for spec in specs:
        results = spec["results"]
        base = results["convfilter"]["median_ms"]
        cells = [f"`{spec['title']}`", f"{base:.1f}"]
        for name in names:
            value = results.get(name, {}).get("median_ms")
            cells.append("" if value is None else f"{value:.1f} ({ratio(value / base)})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", measured_line(data, specs, [])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- large

def large_table(data: dict) -> str:
    image = data["image"]
    programs = data["programs"]
    base = next((p for p in programs if p["label"] == "convfilter" and "median_wall_ms" in p), None)
    lines = [
        f"Median wall time and peak memory (largest resident set) of filtering a {image['width']} x "
        f"{image['height']} {image['mode']} {image['dtype']} tiled TIFF ({image['width'] * image['height'] / 1e9:.2f} "
        f"gigapixels, {image['bytes'] / 1e9:.1f} GB) with `edge_enhance` into a tiled BigTIFF, as a whole process; "
        "in brackets, competitor / convfilter.",
        "",
        "| program | how | wall s | peak MiB |",
        "| --- | --- | ---: | ---: |",
    ]
    for program in programs:
        label, note = program["label"], program.get("note", "")
        if "median_wall_ms" not in program:
            why = program.get("timed_out") or program.get("failed") or program.get("skipped")
            stopped = program.get("stopped")
            cells = ["-", "-"]
            if stopped and "timed_out" in program:
                cells = [f"> {stopped['wall_s']:.0f}", f">= {stopped['peak_mib']:.0f}"]
            how = why if note == why or not note else f"{note}; {why}"
            lines.append(f"| {label} | {how} | " + " | ".join(cells) + " |")
            continue
        wall, peak = program["median_wall_ms"] / 1000, program["median_peak_mib"]
        cells = [f"{wall:.1f}", f"{peak:.0f}"]
        if base is not None and program is not base:
            cells = [f"{wall:.1f} ({ratio(program['median_wall_ms'] / base['median_wall_ms'])})",
                     f"{peak:.0f} ({ratio(peak / base['median_peak_mib'])})"]  # fmt: skip
        lines.append(f"| {label} | {note} | " + " | ".join(cells) + " |")
    if base is not None and "buffers_mib" in base:
        lines += ["", f"convfilter's own account of the buffers it held: at most {base['buffers_mib']} MiB "
                      f"(budget {base['budget_mib']} MiB)."]  # fmt: skip
    checked = data["like_work"]
    if checked["results"]:
        words = "; ".join(f"{c['label']}: largest difference {c['largest']}, {c['share']:.3%} of samples differ"
                          for c in checked["results"])  # fmt: skip
        lines += ["", f"Like work: {checked['regions']} regions of {checked['side']} x {checked['side']} pixels "
                      f"away from the edges, against convfilter's output: {words}."]  # fmt: skip
    if data.get("targets"):
        lines += ["", "Targets (ratios are competitor / convfilter, as in the table: a peak within 2x of libvips' "
                      "needs 0.5 or more, a wall time within 1.5x of it 0.67 or more):", ""]
        lines += [f"- {target_words(line)}" for line in data["targets"]]
    versions = version_words(data["versions"], [
        ("convfilter", "convfilter"), ("python", "Python"), ("numpy", "NumPy"), ("tifffile", "tifffile"),
        ("vips", "`vips` (libvips)"), ("dask", "dask"), ("dask_image", "dask-image"), ("zarr", "zarr"),
        ("scipy", "SciPy"),
    ])  # fmt: skip
    lines += ["", f"{machine(data)}; {data['threads']} threads each; {versions}; median of {runs(data['runs'])}, "
                  f"the programs taking turns within each round; a run was allowed {data['timeout_s']:g} s"
                  f"{load_words(data)}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def target_words(line: str) -> str:
    """A target line as the benchmark printed it, as prose: "met: peak memory within ... (ratio 0.53)"."""
    verdict, _, rest = line.removeprefix("target").partition(":")
    _, _, wording = rest.partition(":")
    wording = re.sub(r"\d+\.\d{3,}", lambda m: f"{float(m[0]):.2f}", wording.strip())  # 0.666667 -> 0.67
    return f"{verdict.strip()}: {wording}"


# ---------------------------------------------------------------- documents

def render(folder: Path = RESULTS) -> dict[str, str]:
    """Each block's Markdown, by marker name, from the JSON files in ``folder``."""
    engine, cli = load("engine", folder), load("cli", folder)
    blocks = {"engine": engine_table(engine), "cli": cli_table(cli), "batch": batch_table(cli),
              "startup": startup_table(cli)}  # fmt: skip
    if (folder / "filters.json").exists():
        blocks["filters"] = filters_table(load("filters", folder))
    if (folder / "large.json").exists():
        blocks["large"] = large_table(load("large", folder))
    return blocks


def blocks_in(text: str) -> dict[str, str]:
    """What a document holds between each ``<!-- bench:NAME -->`` and ``<!-- /bench -->``."""
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def refresh(text: str, blocks: dict[str, str]) -> str:
    """The document with every marked block replaced by its rendering."""
    unknown = sorted(set(blocks_in(text)) - set(blocks))
    if unknown:
        raise ValueError(f"no table is named {', '.join(unknown)}; known: {', '.join(blocks)}")
    return BLOCK.sub(lambda m: m.group(1) + "\n" + blocks[m.group(2)] + "\n" + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update", metavar="FILE", type=Path, help="rewrite the marked tables of FILE")
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if FILE's marked tables are stale")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of engine.json and cli.json")
    args = parser.parse_args(argv)
    blocks = render(args.results)
    target = args.update or args.check
    if target is None:
        for name, body in blocks.items():
            print(f"<!-- bench:{name} -->\n\n{body}\n<!-- /bench -->\n")
        return 0
    text = target.read_text(encoding="utf-8")
    try:
        fresh = refresh(text, blocks)
    except ValueError as exc:
        parser.error(f"{target}: {exc}")
    missing = sorted(set(blocks) - set(blocks_in(text)))
    if missing:
        print(f"{target}: no place marked for {', '.join(missing)}", file=sys.stderr)
    if args.check:
        stale = sorted(name for name, body in blocks_in(text).items() if body != "\n" + blocks[name] + "\n")
        if stale:
            print(f"{target}: stale tables: {', '.join(stale)}; run tables.py --update {target}", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        target.write_text(fresh, encoding="utf-8")
        print(f"updated {target}")
    else:
        print(f"{target} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
