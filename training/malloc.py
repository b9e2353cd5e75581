"""Keep glibc from handing large tensor buffers back to the kernel after every batch.

PyTorch's CPU allocator is plain ``malloc``. glibc serves blocks above its mmap threshold (at
most 32 MB) with ``mmap`` and unmaps them on ``free``, so every forward and backward pass
page-faults its activations in again: evaluating at 384 px here spent twice as much CPU time in
the kernel as in the model. With mmap off and trimming off, freed buffers stay in the heap and
the next batch reuses them (peak memory is about unchanged; it is simply not returned between
batches). Linux / glibc only; elsewhere, or with ``PHOTOGRADE_MALLOC_TUNING=0``, a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("photograde.train")

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = -1  # never trim the heap (mallopt(3): -1 disables trimming)


def keep_freed_memory() -> bool:
    """Tune glibc malloc for the torch commands; True when it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("PHOTOGRADE_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    log.debug("glibc malloc, mmap and trimming off: %s", "applied" if ok else "refused")
    return ok
