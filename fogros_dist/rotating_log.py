"""Process output in bounded, rotated files: the pump that writes them and the readers of them.

A supervised process writes its stdout and stderr into pipes; a small pump process (this file, run
by path with ``python -I -S``: standard library only) reads them and appends to ``<name>.out`` and
``<name>.err``. A file that would grow past ``max_bytes`` is rotated first, as
``logging.handlers.RotatingFileHandler`` does: ``<name>.out`` becomes ``<name>.out.1``, ``.1``
becomes ``.2`` and so on, and the oldest beyond ``backups`` is deleted. A process writing straight
into a file could not be rotated safely (it keeps writing into the renamed file), hence the pump.

The pump runs in a session of its own (stopping the process's group does not stop it), ends when
every writer of its pipes has gone, and holds an exclusive ``flock`` on ``.<name>.pump`` in the
log directory until it has written everything: :func:`wait_drained` lets a reader wait for the
last lines of a process that just exited. ``fogros_dist/remote/host_agent.py`` (which may import
nothing of fogros_dist) has a twin of the writer for SSH machines.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import selectors
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BACKUPS",
    "DEFAULT_MAX_BYTES",
    "MIN_MAX_BYTES",
    "LogCursor",
    "RotatingWriter",
    "lock_path",
    "main",
    "parts",
    "pump_argv",
    "tail_lines",
    "wait_drained",
]

# 10 MiB per file and 3 rotated files: at most 40 MiB per stream of a process.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MIN_MAX_BYTES = 4096
BACKUPS = 3
# What `tail_lines` reads at most: enough for any stderr tail, cheap for a huge log.
_TAIL_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024


def parts(path: Path) -> list[Path]:
    """``path``'s rotated parts that exist, oldest first, ``path`` itself last (if it exists)."""
    found = []
    index = 1
    while (older := path.with_name(f"{path.name}.{index}")).exists():
        found.append(older)
        index += 1
    found.reverse()
    if path.exists():
        found.append(path)
    return found


def tail_lines(path: Path, lines: int) -> tuple[str, ...]:
    """The last ``lines`` lines of the log ``path`` across its rotated parts (empty if none)."""
    if lines <= 0:
        return ()
    chunks: list[bytes] = []
    wanted = _TAIL_BYTES
    for part in reversed(parts(path)):
        try:
            with part.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - wanted))
                data = handle.read(wanted)
        except OSError:
            continue
        chunks.append(data)
        wanted -= len(data)
        if wanted <= 0 or data.count(b"\n") > lines:
            break
    text = b"".join(reversed(chunks)).decode(errors="replace").splitlines()
    return tuple(deque(text, maxlen=lines))


def lock_path(log: Path) -> Path:
    """The file the pump writing ``log`` (``<dir>/<name>.out`` or ``.err``) holds locked."""
    return log.with_name(f".{log.stem}.pump")


def wait_drained(log: Path, timeout: float) -> bool:
    """Wait until the pump writing ``log`` has written all it was given (its pipes closed).

    Returns:
        True when it has (or there is no pump), False after ``timeout`` seconds (something else
        still holds the process's output pipe open, e.g. a child it left behind).
    """
    try:
        fd = os.open(lock_path(log), os.O_RDONLY)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)


class RotatingWriter:
    """Appends to ``path`` (created 0600), rotating it before it would exceed ``max_bytes``.

    Rotation prefers a line boundary: a chunk is split after its last newline that still fits, so
    a line is only ever split across files when it is longer than the room left in an empty file.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int = BACKUPS) -> None:
        self.path = path
        self._max = max(max_bytes, MIN_MAX_BYTES)
        self._backups = max(backups, 0)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating as often as it needs."""
        while data:
            room = self._max - self._size
            if len(data) <= room:
                self._write(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1
            if cut == 0 and self._size == 0:
                cut = room  # one line longer than a whole file: split it
            if cut:
                self._write(data[:cut])
                data = data[cut:]
            self._rotate()

    def close(self) -> None:
        """Close the current file."""
        os.close(self._fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        name = self.path.name
        if self._backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            self.path.with_name(f"{name}.{self._backups}").unlink(missing_ok=True)
            for index in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{name}.{index}")
                if older.exists():
                    older.rename(self.path.with_name(f"{name}.{index + 1}"))
            self.path.rename(self.path.with_name(f"{name}.1"))
        self._fd = self._open()
        self._size = 0


class LogCursor:
    """Reads a rotated log as one stream, like ``tail -F``: when the file it reads has been
    rotated, the rest of it comes first, then the next newer part (``path.1`` ... ``path``), so a
    reader that fell behind by fewer than ``BACKUPS`` rotations misses nothing."""

    def __init__(self, path: Path, *, from_end: bool) -> None:
        self._path = path
        self._handle = None if not path.exists() else path.open("rb")
        if self._handle is not None and from_end:
            self._handle.seek(0, os.SEEK_END)

    def read(self) -> bytes:
        """What was written since the last call (b"" when nothing was)."""
        if self._handle is None:
            try:
                self._handle = self._path.open("rb")
            except OSError:
                return b""
        data = self._handle.read(_READ_BYTES)
        if data:
            return data
        reading = os.fstat(self._handle.fileno()).st_ino
        try:
            if self._path.stat().st_ino == reading:
                return b""
        except OSError:
            return b""
        # Rotated, and the old file is read to its end: go on with the next newer one.
        following = _newer_part(self._path, reading)
        try:
            handle = following.open("rb")
        except OSError:
            return b""
        self._handle.close()
        self._handle = handle
        return self.read()

    def close(self) -> None:
        """Close the file being read."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _newer_part(path: Path, inode: int) -> Path:
    """The part written after the one with ``inode`` (the oldest kept one if that is gone)."""
    kept = parts(path)
    for index, part in enumerate(kept[:-1]):
        with contextlib.suppress(OSError):
            if part.stat().st_ino == inode:
                return kept[index + 1]
    return kept[0] if kept else path


def pump_argv(
    *, sources: Sequence[tuple[int, Path]], lock_fd: int, max_bytes: int, backups: int = BACKUPS
) -> list[str]:
    """The command that pumps each pipe read end ``fd`` into its log ``path`` (pass the fds and
    ``lock_fd``, an exclusively flock-ed descriptor of :func:`lock_path`, to the child)."""
    argv = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "pump"]
    argv += ["--max-bytes", str(max_bytes), "--backups", str(backups), "--lock-fd", str(lock_fd)]
    return argv + [f"{fd}:{path}" for fd, path in sources]


def _pump(sources: Sequence[tuple[int, Path]], *, max_bytes: int, backups: int) -> None:
    selector = selectors.DefaultSelector()
    # A log that cannot be written (disk full, directory gone) is dropped, not the process: it
    # would die of a broken pipe if the pump stopped reading.
    writers: dict[int, RotatingWriter | None] = {}
    for fd, path in sources:
        try:
            writers[fd] = RotatingWriter(path, max_bytes=max_bytes, backups=backups)
        except OSError:
            writers[fd] = None
        selector.register(fd, selectors.EVENT_READ)
    while writers:
        for key, _events in selector.select():
            fd = int(key.fd)
            data = os.read(fd, _READ_BYTES)
            writer = writers[fd]
            if data:
                if writer is not None:
                    try:
                        writer.write(data)
                    except OSError:
                        writers[fd] = None
                continue
            selector.unregister(fd)
            os.close(fd)
            writers.pop(fd)
            if writer is not None:
                with contextlib.suppress(OSError):
                    writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``pump --max-bytes N --backups K --lock-fd L FD:PATH...``: runs until every pipe closes."""
    parser = argparse.ArgumentParser(prog="rotating_log")
    sub = parser.add_subparsers(dest="command", required=True)
    pump = sub.add_parser("pump")
    pump.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    pump.add_argument("--backups", type=int, default=BACKUPS)
    pump.add_argument("--lock-fd", type=int, required=True)
    pump.add_argument("sources", nargs="+")
    args = parser.parse_args(argv)
    # Nothing but the end of its pipes should end it: the process it serves would lose its output.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    sources = []
    for item in args.sources:
        fd, _, path = item.partition(":")
        sources.append((int(fd), Path(path)))
    try:
        _pump(sources, max_bytes=args.max_bytes, backups=args.backups)
    finally:
        # Written everything: readers waiting in wait_drained() may go on.
        with contextlib.suppress(OSError):
            os.close(args.lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
