"""Shared fixtures for the kernel, engine and Pillow-parity tests."""

from __future__ import annotations

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
