"""What both benchmark scripts write down besides their timings, and where.

Standard library only. ``engine.py`` and ``cli.py`` call ``environment()``
when they start and ``save()`` when they finish; ``tables.py`` reads the
files back.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (else what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where there are none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def commit() -> str | None:
    """The checked-out commit of the repository the benchmarks sit in, if any."""
    import subprocess

    try:
        probe = subprocess.run(["git", "rev-parse", "HEAD"], cwd=RESULTS.parent,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return probe.stdout.strip() or None


def environment(versions: dict[str, str | None]) -> dict:
    """The machine, the date and the software a run measured."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "system": platform.platform(terse=True),
        "commit": commit(),
        "load_average_start": load_average(),
        "versions": {"python": sys.version.split()[0], **versions},
    }


def package_version(distribution: str) -> str | None:
    """An installed distribution's version, or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def editable_install(distribution: str) -> bool:
    """Whether pip installed ``distribution`` in editable mode (from a source tree)."""
    from importlib import metadata

    try:
        found = metadata.distribution(distribution).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    try:
        return bool(found and json.loads(found).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def save(name: str, data: dict) -> Path:
    """Write ``data`` (with the closing load average) to results/NAME.json."""
    data = {**data, "load_average_end": load_average()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def medians_and_kept(times: dict[str, list[float]]) -> tuple[dict[str, float], dict]:
    """Each competitor's median milliseconds, and its figures as the JSON keeps them."""
    import statistics

    medians = {name: statistics.median(t) for name, t in times.items()}
    kept = {name: {"median_ms": round(medians[name], 3), "runs": len(t), "times_ms": [round(v, 3) for v in t]}
            for name, t in times.items()}  # fmt: skip
    return medians, kept


def print_times(title: str, times: dict[str, list[float]], medians: dict[str, float]) -> None:
    """One case's table: each competitor's median, runs, and ratio to convfilter's."""
    print(f"\n{title}")
    print(f"  {'competitor':<22}{'ms':>10}{'runs':>6}{'ratio':>9}")
    base = medians["convfilter"]
    for name, value in medians.items():
        print(f"  {name:<22}{value:>10.1f}{len(times[name]):>6}{value / base:>8.2f}x")


def target_line(results: dict, label: str, competitor: str, needed: float, wording: str) -> str | None:
    """A speed target met or not, as a line; None where the competitor did not run."""
    medians = results.get(label, {})
    if competitor not in medians:
        return None
    ratio = medians[competitor] / medians["convfilter"]
    verdict = "met" if ratio >= needed else "NOT met"
    return f"target {verdict:>7}: {label}: {wording} (ratio {ratio:.2f}, needs >= {needed:g})"

