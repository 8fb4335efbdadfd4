"""One line for a failed run, from what torch elastic itself reports.

When a worker fails, its agent prints a ``ChildFailedError`` block whose "Root Cause (first
observed failure)" section names the global rank, the exit code (and signal) and the worker's
error file; the error file (written by ``@record`` in :mod:`fogros_dist.train.worker`) holds the
exception as ``{"message": {"message": "<Type>: <text>", "extraInfo": {"py_callstack": ...}}}``.
:func:`root_cause` joins the two into ``machine, rank, exit code, first line of the error``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Failure", "error_line", "root_cause"]

_ROOT = "Root Cause (first observed failure):"
_RANK = re.compile(r"^\s*rank\s*:\s*(-?\d+)\s*\(local_rank:\s*(-?\d+)\)", re.M)
# "exitcode  : -9 (pid: 1234)  (SIGKILL)": the signal's name only when a signal ended it.
_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)[ \t]*(?:\((\w+)\))?", re.M)
_ERROR_FILE = re.compile(r"^\s*error_file\s*:\s*(\S+)", re.M)
_TRACEBACK = re.compile(r"^\s*traceback\s*:\s*(.*)$", re.M)


@dataclass(frozen=True)
class Failure:
    """The first failure one agent saw."""

    rank: int
    exit_code: int
    signal: str
    error: str

    def describe(self, machine: str) -> str:
        """``machine local-1, rank 1, exit code 1: ValueError: ...``."""
        code = f"exit code {self.exit_code}" + (f" {self.signal}" if self.signal else "")
        return f"machine {machine}, rank {self.rank}, {code}: {self.error}"


def error_line(path: Path) -> str:
    """The first line of the exception an error file records ("" if it has none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):
        message = message.get("message")
    if not isinstance(message, str):
        return ""
    return message.strip().splitlines()[0] if message.strip() else ""


def root_cause(agent_output: str) -> Failure | None:
    """The root cause an agent printed (its last ``ChildFailedError`` block), or None."""
    at = agent_output.rfind(_ROOT)
    if at < 0:
        return None
    block = agent_output[at + len(_ROOT) :]
    rank, code = _RANK.search(block), _EXIT.search(block)
    if rank is None or code is None:
        return None
    error = ""
    found = _ERROR_FILE.search(block)
    if found is not None and found.group(1) != "<N/A>":
        error = error_line(Path(found.group(1)))
    if not error:
        traceback = _TRACEBACK.search(block)
        error = traceback.group(1).strip() if traceback is not None else ""
    signal = code.group(3) or ""
    return Failure(rank=int(rank.group(1)), exit_code=int(code.group(1)), signal=signal, error=error)
