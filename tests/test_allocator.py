"""allocator.py: the malloc tuning applies where it can and changes no result."""

from __future__ import annotations

import platform
import subprocess
import sys

CHECK = """
import sys, numpy as np
from PIL import Image, ImageFilter
from convfilter.allocator import reuse_freed_memory
from convfilter import engine
from convfilter.kernels import parse_kernel
applied = reuse_freed_memory()
rng = np.random.default_rng(5)
image = rng.integers(0, 256, (600, 700, 3)).astype(np.uint8)
ours = engine.filter_array(image, parse_kernel("smooth_more"), border="keep")
pillow = np.asarray(Image.fromarray(image).filter(ImageFilter.SMOOTH_MORE))
print(applied, reuse_freed_memory(), bool(np.array_equal(ours, pillow)))
"""


def test_tuning_applies_on_glibc_linux_and_keeps_results_exact():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    applied, again, same = out.stdout.split()
    assert same == "True"
    assert again == applied  # a second call reports the same, and changes nothing
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied == "True"
