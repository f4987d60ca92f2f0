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

import contextlib
import ctypes
import sys
from collections.abc import Iterator

__all__ = ["reuse_freed_memory", "large_blocks_returned"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_THRESHOLD = 512 << 20  # blocks up to 512 MiB come from the reusable heap

#: While streaming, blocks from this size up get their own mapping again.
STREAMING_THRESHOLD = 32 << 20

_done = False
_mallopt = None


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
    global _mallopt
    _mallopt = mallopt
    _done = _set_thresholds(_THRESHOLD)
    return _done


def _set_thresholds(size: int) -> bool:
    return bool(_mallopt(_M_MMAP_THRESHOLD, size)) and bool(_mallopt(_M_TRIM_THRESHOLD, size))


@contextlib.contextmanager
def large_blocks_returned(threshold: int = STREAMING_THRESHOLD) -> Iterator[None]:
    """Within the block, blocks of ``threshold`` bytes and more are returned to
    the system when freed, as glibc does by default.

    Streaming allocates band after band of about the same size; kept in the
    heap, the freed ones leave gaps that stay resident, which would put the
    process well over its memory budget. Threads started within the block
    also share the main heap (each would otherwise keep a heap of its own,
    with its own gaps). Does nothing unless :func:`reuse_freed_memory` was
    applied.
    """
    if not _done:
        yield
        return
    _set_thresholds(threshold)
    _mallopt(_M_ARENA_MAX, 1)  # threads started now share one heap rather than each keeping its own
    try:
        yield
    finally:
        _mallopt(_M_ARENA_MAX, 0)  # glibc's own limit again
        _set_thresholds(_THRESHOLD)
