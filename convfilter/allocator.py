"""Allocator tuning for the command line: reuse freed image buffers.

Filtering one file allocates and frees a few image-sized buffers (decoded
pixels, the array, the result, the image to encode). By default glibc's
malloc gives every block above 128 KiB its own fresh memory mapping and
unmaps it when freed, so each buffer pays again for the kernel to fault in
and zero every page; on a 12 MP photo that is a large share of the run.
Raising the mmap and trim thresholds makes freed blocks stay in the heap,
to be reused by the next buffer. Peak memory does not grow: a block is
reused, not added.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["reuse_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 512 << 20  # blocks up to 512 MiB come from the reusable heap

_done = False


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep and reuse freed large blocks (once per process).

    Returns True when the settings were applied; on other platforms or C
    libraries it does nothing and returns False. It changes only speed,
    never results.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _done
