"""Which torchrun agents and workers of one test are still running on this host.

Importable as ``fleet_processes`` from any test (``test/`` is on sys.path).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["training_processes"]


def training_processes(marker: str) -> list[str]:
    """``pid: command line`` of each torchrun agent or worker whose environment holds ``marker``
    (a test's own state home), other than this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and ("torch.distributed.run" in cmdline or "train.worker" in cmdline):
            found.append(f"{entry.name}: {cmdline}")
    return found
