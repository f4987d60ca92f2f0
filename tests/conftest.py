"""Shared fixtures: seeded random numbers, the sample images, the peak memory of an apply."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The repository's ``sample_images`` folder."""
    return SAMPLE_DIR


#: Runs apply and prints the process's peak resident set, VmHWM (getrusage's
#: maxrss is no use here: Linux carries the forking parent's over into the child).
_PEAK_OF_APPLY = """
import sys
from convfilter.cli import main
try:
    main(["apply", *sys.argv[1:]], prog_name="convfilter")
except SystemExit as exit:
    assert not exit.code, exit.code
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")))
"""


@pytest.fixture
def peak_of_apply():
    """``peak_of_apply(*args, timeout=300)``: bytes of the largest resident set of
    ``convfilter apply ARGS`` run in a new Python, which must succeed. Skips
    the test where Linux's /proc is not there to read it from."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the peak from Linux's /proc")

    def peak(*args, timeout: float = 300) -> int:
        done = subprocess.run([sys.executable, "-c", _PEAK_OF_APPLY, *map(str, args)], capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    return peak
