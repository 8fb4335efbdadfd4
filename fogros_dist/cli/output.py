"""How the CLI renders progress, remote output and tables."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Literal, TextIO

from fogros_dist.deploy.engine import ROBOT, Stage

__all__ = ["PrefixedOutput", "print_stage", "table"]

_lock = threading.Lock()


def print_stage(stage: Stage, stream: TextIO | None = None) -> None:
    """Print one progress line (to stderr, so stdout stays for data)."""
    with _lock:
        print(stage.line(), file=stream or sys.stderr, flush=True)


class PrefixedOutput:
    """An OutputSink printing each remote line as ``[cloud:<machine>] text``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, machine: str, name: str, stream: Literal["stdout", "stderr"], text: str) -> None:
        """Print one line with the machine's prefix (bridges get their own sub-prefix)."""
        del stream
        where = "robot" if machine == ROBOT else f"cloud:{machine}"
        if name in ("bridge", "robot-bridge"):
            where += ":bridge"
        with _lock:
            print(f"[{where}] {text}", file=self._stream or sys.stdout, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)
