"""`convfilter batch --scheduler`: the same batch on a Dask cluster (loopback only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convfilter import cli

distributed = pytest.importorskip(
    "distributed", reason="the Dask extra is not installed (pip install 'convfilter[dask]')"
)


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes and a scheduler on 127.0.0.1; any free HTTP port."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as local:  # fmt: skip
        yield local


@pytest.fixture
def inputs(tmp_path) -> Path:
    rng = np.random.default_rng(11)
    root = tmp_path / "in"
    for i in range(6):
        path = root / ("sub" if i % 2 else "") / f"p{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (21, 30, 3)).astype(np.uint8)).save(path)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "notes.txt").write_text("skip me")
    return root


def test_a_cluster_writes_what_a_local_run_writes(cluster, inputs, tmp_path):
    common = ["-r", "-k", "gaussian:1", "-k", "sharpen", "--name", "{stem}-{kernel}{suffix}", "--json"]
    local = run("batch", inputs, "-d", tmp_path / "local", "--jobs", "1", *common)
    remote = run("batch", inputs, "-d", tmp_path / "dask", "--scheduler", cluster.scheduler_address, *common)
    assert local.exit_code == remote.exit_code == 1, remote.output + remote.stderr
    expected = files(tmp_path / "local")
    assert len(expected) == 6 and files(tmp_path / "dask") == expected

    def statuses(result):
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        return sorted((Path(line["input"]).name, line["status"]) for line in lines[:-1]), lines[-1]

    (local_files, local_summary), (remote_files, remote_summary) = statuses(local), statuses(remote)
    assert remote_files == local_files
    assert [f["input"] for f in remote_summary["failures"]] == [str(inputs / "broken.png")]
    assert remote_summary["failures"] == local_summary["failures"]
    assert (remote_summary["processed"], remote_summary["skipped"]) == (6, 1)


def test_the_safety_checks_run_before_the_cluster_sees_anything(cluster, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p0.png").write_bytes(b"old")
    result = run("batch", inputs, "-d", out, "-k", "blur", "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 1 and "1 output exists already" in result.stderr
    assert files(out) == {"p0.png": b"old"}


def test_scheduler_local_starts_and_stops_its_own_cluster(inputs, tmp_path):
    result = run("batch", inputs / "sub", "-d", tmp_path / "out", "-k", "emboss", "--scheduler", "local",
                 "--jobs", "2")  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(files(tmp_path / "out")) == ["p1.png", "p3.png", "p5.png"]
    assert "processed 3, skipped 0, failed 0" in result.output
    reference = run("batch", inputs / "sub", "-d", tmp_path / "ref", "-k", "emboss", "--jobs", "1")
    assert reference.exit_code == 0 and files(tmp_path / "ref") == files(tmp_path / "out")
