"""Giving memory back to the system after a burst of large mails.

CPython frees a large `bytes` (a 20 MB mail, its decoded attachment) to the C allocator,
but glibc keeps it: once a large block it had mapped is freed, it raises its threshold for
mapping blocks (up to 32 MB), so the next mails' buffers come from its heaps — one per
thread that allocated, the ingest threads each have theirs — and stay there: after 24
concurrent 20 MB mails 1.2 GB stayed resident (issue #27 item 7). Two calls of the C
library (through ctypes: nothing of Python's patched), no-ops elsewhere than glibc:

- `map_large_buffers()` (at the daemon's start): glibc's `mallopt(M_MMAP_THRESHOLD, 1 MiB)`,
  which also stops the threshold from moving: every buffer of a megabyte or more is mapped
  on its own and unmapped when freed, so a mail's memory goes back with it;
- `give_back()` (after a burst): `malloc_trim(0)`, the heaps' free pages returned.

bench/README.md has the figures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BUFFER = 1 << 20  # bytes: a block this large is mapped on its own


@cache
def _glibc(name: str) -> Callable[..., int] | None:
    lib = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(lib), name) if lib else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to ask
        return None


def map_large_buffers() -> bool:
    """Blocks of `LARGE_BUFFER` bytes or more mapped on their own (returned when freed)."""
    mallopt = _glibc("mallopt")
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER) == 1)


def give_back() -> bool:
    """Return the C heaps' free memory to the system; False where that cannot be asked."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True
