"""The benchmark scripts run (a quick pass, as CI can afford), and the
performance page shows the figures they kept, not hand-typed ones."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PERFORMANCE = BENCHMARKS.parent / "docs" / "performance.md"


def quick_run(script: str, *extra: str, timeout: float = 300) -> list[str]:
    """The lines a benchmark script prints with --quick (it must exit 0)."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", *extra],
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def competitor_tables(lines: list[str]) -> int:
    """How many competitor tables the lines hold; each must begin with convfilter at ratio 1."""
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["competitor", "ms"]]
    for i in headers:
        name, ms, runs, ratio = lines[i + 1].split()
        assert name == "convfilter" and float(ms) > 0 and runs == "1" and ratio == "1.00x"
    return len(headers)


def test_engine_benchmark_quick_run_prints_a_table():
    lines = quick_run("engine.py")
    assert lines[0].startswith("image 320x240 RGB uint8")
    assert competitor_tables(lines) == 5  # one table per kernel
    assert any(line.startswith("target") for line in lines) or any("not installed" in line for line in lines)


def test_filters_benchmark_quick_run_prints_a_table():
    lines = quick_run("filters.py")
    assert lines[0].startswith("image 160x120 RGB uint8")
    assert competitor_tables(lines) == 11
    assert any(line.startswith("target") for line in lines)


def load_tables():
    """benchmarks/tables.py as a module (it imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("benchmark_tables", BENCHMARKS / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_performance_page_tables_are_the_kept_figures():
    tables = load_tables()
    expected = tables.render()
    held = tables.blocks_in(PERFORMANCE.read_text(encoding="utf-8"))
    assert sorted(held) == sorted(expected), "docs/performance.md should mark each table once"
    stale = sorted(name for name, body in held.items() if body != "\n" + expected[name] + "\n")
    assert not stale, (
        f"docs/performance.md tables {stale} differ from benchmarks/results/*.json; "
        "refresh with: python3 benchmarks/tables.py --update docs/performance.md"
    )


def test_kept_figures_name_the_machine_and_are_positive():
    tables = load_tables()
    engine, cli = tables.load("engine"), tables.load("cli")
    for data in (engine, cli):
        assert data["cpu"].strip() and data["cpu"] != "unknown"
        assert data["cores"] >= 1 and data["date"]
        assert all(data["versions"][name] for name in ("python", "numpy", "pillow"))
    medians = [f["median_ms"] for k in engine["kernels"] for f in k["results"].values()]
    assert len(engine["kernels"]) == 5 and all("convfilter" in k["results"] for k in engine["kernels"])
    programs = [p for entry in cli["apply"] for p in entry["programs"] if "median_wall_ms" in p]
    assert any(p["label"] == "convfilter apply" for p in programs)
    medians += [p["median_wall_ms"] for p in programs] + [p["median_peak_mib"] for p in programs]
    medians += [j["median_wall_ms"] for batch in cli["batch"] for j in batch["jobs"]]
    started = {p["label"]: p["median_wall_ms"] for p in cli["startup"]["programs"]}
    assert {"convfilter --help", "python -c 'import click'"} <= set(started)
    medians += list(started.values())
    assert medians and all(value > 0 for value in medians)


def test_tables_script_imports_only_the_standard_library():
    tree = ast.parse((BENCHMARKS / "tables.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_a_quick_run_refuses_to_write():
    kept = BENCHMARKS / "results" / "engine.json"
    before = kept.read_bytes()
    for script in ("engine.py", "cli.py"):
        result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", "--write"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 2 and "--write" in result.stderr
    assert kept.read_bytes() == before


def test_cost_model_benchmark_quick_run_prints_every_job():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "cost_model.py"), "--quick"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [re.search(r" (direct|separable|fft) +([\d.]+) +([\d.]+) +([\d.]+) +(<-)?$", line)
            for line in result.stdout.splitlines()[2:]]  # fmt: skip
    assert len(rows) >= 9 and all(rows) and all(float(row[4]) > 0 for row in rows)
    assert sum(bool(row[5]) for row in rows) == 9  # auto's pick, once a job


def test_large_benchmark_quick_run_prints_a_table(tmp_path):
    lines = quick_run("large.py", "--folder", str(tmp_path), timeout=240)
    assert any(line.startswith("input 2048 x 2048 RGB uint8") for line in lines)
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["program", "wall", "s"])
    rows = {line.split()[0]: line for line in lines[header + 1 : header + 5] if line.strip()}
    name, wall, peak, runs, wall_ratio, peak_ratio = rows["convfilter"].split()
    assert float(wall) > 0 and float(peak) > 0 and runs == "1" and wall_ratio == peak_ratio == "1.00x"
    if importlib.util.find_spec("distributed") is not None:  # the same job on a local Dask cluster
        assert re.search(r" \d+\.\d\d +\d+ +1 +[\d.]+x +[\d.]+x$", rows["convfilter-dask"]), rows
    for label in ("vips", "dask-image"):  # measured, or said to be missing
        row = rows[label]
        assert "not installed" in row or re.search(r" \d+\.\d\d +\d+ +1 +[\d.]+x +[\d.]+x$", row), row
    like = [line for line in lines if "largest difference" in line]
    assert all(int(line.split("largest difference ")[1].split(",")[0]) <= 1 for line in like), like
    assert not list(tmp_path.glob("out-*.tif"))  # each output is removed once sampled


def test_large_benchmark_measures_the_child_not_its_parent(tmp_path):
    """A child's peak resident set is its own, however large the process measuring it."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import large
    finally:
        sys.path.remove(str(BENCHMARKS))
    ballast = bytearray(256 << 20)  # this process: well above any figure below
    ballast[:: 1 << 12] = b"x" * len(ballast[:: 1 << 12])
    tiny = large.run_once(["true"], tmp_path, 60)
    grown = large.run_once([sys.executable, "-c", "b = bytearray(160 << 20); b[::4096] = b'x' * len(b[::4096])"],
                           tmp_path, 60)  # fmt: skip
    assert tiny["peak_mib"] < 40 and 160 < grown["peak_mib"] < 240, (tiny, grown)
    slow = large.run_once(["sleep", "30"], tmp_path, 0.5)
    assert "timed_out" in slow and slow["wall_s"] < 10
    del ballast
