"""Doctests in the Markdown pages run in an empty folder that holds ``sample_images/``,
so their examples read the bundled photos and write beside them, never into the tree."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent / "sample_images"


@pytest.fixture(autouse=True)
def _markdown_examples_folder(request, tmp_path, monkeypatch):
    if request.node.path.suffix == ".md":
        (tmp_path / "sample_images").symlink_to(SAMPLES, target_is_directory=True)
        monkeypatch.chdir(tmp_path)
