"""The torch commands keep freed tensor buffers instead of page-faulting them in every batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from training.malloc import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "1":
    from training.malloc import keep_freed_memory
    assert keep_freed_memory()
torch.empty(16 << 20).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    torch.empty(16 << 20).fill_(1)  # a 64 MB activation-sized buffer, written, freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, "1" if tuned else "0"], check=True,
                         capture_output=True, text=True, env={**os.environ,
                                                             "PHOTOGRADE_MALLOC_TUNING": "1"})
    return int(out.stdout.split()[-1])


@pytest.mark.torch
def test_large_buffers_are_reused_instead_of_faulted_in_again():
    plain, tuned = _page_faults(False), _page_faults(True)
    assert plain > 100 * (64 << 20) // 4096 // 2  # glibc unmaps and refaults every buffer
    assert tuned < plain / 5  # a few buffers' worth, not one per batch


def test_the_tuning_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PHOTOGRADE_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False
