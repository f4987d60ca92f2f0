"""The fuzz target runs without atheris, on its seeds and on a few broken inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_load_filter.py")


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_load_filter", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness()
SEEDS = harness.seed_files()


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_loads_filters_and_round_trips(name, monkeypatch):
    calls = []
    real = harness.filter_image
    monkeypatch.setattr(harness, "filter_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    harness.TestOneInput(SEEDS[name])
    assert calls, f"{name} was not filtered: the seed does not decode"


@pytest.mark.parametrize("cut", [0, 1, 7, 20, 60])
def test_broken_seeds_are_refused_quietly(cut):
    for data in SEEDS.values():
        harness.TestOneInput(data[:cut])
        harness.TestOneInput(data[:cut] + b"\xff" * 32 + data[cut + 32 :])


def test_a_wrong_exception_is_a_finding(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(harness, "filter_image", broken)
    with pytest.raises(RuntimeError):
        harness.TestOneInput(SEEDS["seed.png"])
