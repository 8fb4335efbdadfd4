"""The SFTP fallback of :func:`fogros_dist.remote.sync.push_directory` (a host without rsync).

Both sides are listed (size, mtime in whole seconds, mode; the host's list comes from its agent
in one round trip). A file travels when it is new or its size differs. When only its mtime
differs, both sides hash it and it travels only if the contents differ (otherwise just its mtime
is set). Each upload goes to a temporary name and is renamed into place, so a reader never sees
half a file; it then gets the robot's mode and mtime, so the next comparison matches. What the
host has and the robot does not is deleted, except excluded paths. ``cancel`` is checked before
each file and between the chunks of one (paramiko's transfer callback): a cancelled push leaves
at most one ``.fogros-partial`` file, which the next push removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fogros_dist.errors import Cancelled, ProvisionError
from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.cancel import CancelEvent, cancelled
from fogros_dist.remote.host_agent import entries
from fogros_dist.remote.sync import SyncStats

__all__ = ["Entry", "local_manifest", "sftp_push"]


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One path in a tree: kind ``f`` (file), ``d`` (directory) or ``l`` (symlink)."""

    kind: str
    size: int = 0
    mtime: int = 0
    mode: int = 0
    link: str = ""

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Entry:
        """From the agent's ``[kind, size, mtime, mode, link]``."""
        kind, size, mtime, mode, link = raw
        return cls(kind=str(kind), size=int(size), mtime=int(mtime), mode=int(mode), link=str(link))


def local_manifest(
    root: Path, excludes: tuple[str, ...], includes: tuple[str, ...] | None = None
) -> dict[str, Entry]:
    """Every path under ``root`` (POSIX-relative) except excluded ones (and, with ``includes``,
    only those subtrees): the agent's own walk."""
    chosen = None if includes is None else list(includes)
    return {rel: Entry.from_wire(raw) for rel, raw in entries(root, list(excludes), chosen)}


def sftp_push(
    agent: HostAgent,
    *,
    local: Path,
    remote: str,
    excludes: tuple[str, ...],
    delete: bool,
    includes: tuple[str, ...] | None = None,
    cancel: CancelEvent | None = None,
) -> SyncStats:
    """Push ``local`` to ``remote`` over SFTP, sending only changed files; see the module doc.

    With ``includes``, only those subtrees travel, and (with ``delete``) the host keeps only them.

    Raises:
        ProvisionError: an SFTP operation failed (the path and the reason are named).
        Cancelled: ``cancel`` was set first.
    """
    started = time.monotonic()
    target = agent.runner.target
    mine = local_manifest(local, excludes, includes)
    listed = agent.manifest(remote, excludes=excludes, cancel=cancel)
    theirs = {rel: Entry.from_wire(raw) for rel, raw in listed.items()}
    send: list[str] = []
    maybe: list[str] = []
    for rel, entry in mine.items():
        other = theirs.get(rel)
        if entry.kind != "f":
            continue
        if other is None or other.kind != "f" or other.size != entry.size:
            send.append(rel)
        elif other.mtime != entry.mtime:
            maybe.append(rel)
    touch: list[str] = []
    if maybe:
        remote_hashes = agent.hashes(remote, maybe, cancel=cancel)
        for rel in maybe:
            (send if remote_hashes.get(rel) != _sha256(local / rel) else touch).append(rel)
    doomed = sorted(
        (
            rel
            for rel, other in theirs.items()
            if delete and (rel not in mine or mine[rel].kind != other.kind)
        ),
        key=lambda rel: rel.count("/"),
        reverse=True,
    )
    sftp = agent.runner.sftp(cancel=cancel)
    base = PurePosixPath(remote)
    deleted = 0
    sent_bytes = 0
    check = _Checkpoint(
        cancel, machine=target.machine, doing=f"pushing {local} to {target.hostname}:{remote}"
    )
    try:
        for rel in doomed:
            check()
            deleted += _remove(sftp, str(base / rel), theirs[rel].kind)
        for rel in sorted(r for r, e in mine.items() if e.kind == "d"):
            other = theirs.get(rel)
            if other is None or other.kind != "d" or rel in doomed:
                sftp.mkdir(str(base / rel))
            if other is None or other.mode != mine[rel].mode or rel in doomed:
                # Modes as the robot has them, as rsync -p would leave them (the digest compares them).
                sftp.chmod(str(base / rel), mine[rel].mode)
        for rel in sorted(r for r, e in mine.items() if e.kind == "l"):
            other = theirs.get(rel)
            if other is None or other.link != mine[rel].link or rel in doomed:
                if other is not None and rel not in doomed:
                    sftp.remove(str(base / rel))
                sftp.symlink(mine[rel].link, str(base / rel))
        for rel in send:
            check()
            sent_bytes += _upload(sftp, local / rel, str(base / rel), mine[rel], check)
        for rel in touch:
            check()
            sftp.utime(str(base / rel), (mine[rel].mtime, mine[rel].mtime))
    except _Stop:
        raise check.error() from None
    except OSError as err:
        if check.stopped:
            raise check.error() from None
        msg = (
            f"machine {target.machine!r}: SFTP push of {local} to {target.hostname}:{remote} failed "
            f"({err}): check the disk and permissions there"
        )
        raise ProvisionError(msg) from err
    return SyncStats(
        method="sftp",
        files_total=sum(1 for e in mine.values() if e.kind == "f"),
        files_sent=len(send),
        bytes_sent=sent_bytes,
        files_deleted=deleted,
        seconds=time.monotonic() - started,
    )


class _Stop(Exception):
    """Raised inside paramiko's transfer callback to abandon an upload on cancel."""


class _Checkpoint:
    """Called between steps (and by paramiko between chunks): raises _Stop once ``cancel`` is set."""

    def __init__(self, cancel: CancelEvent | None, *, machine: str, doing: str) -> None:
        self._cancel = cancel
        self._machine = machine
        self._doing = doing
        self.stopped = False

    def __call__(self, *_progress: int) -> None:
        if self._cancel is not None and self._cancel.is_set():
            self.stopped = True
            raise _Stop

    def error(self) -> Cancelled:
        """The Cancelled to raise."""
        return cancelled(self._machine, self._doing)


def _upload(sftp: Any, source: Path, destination: str, entry: Entry, check: _Checkpoint) -> int:
    partial = f"{destination}.fogros-partial"
    with source.open("rb") as handle:
        attrs = sftp.putfo(handle, partial, file_size=entry.size, callback=check, confirm=False)
    del attrs
    sftp.chmod(partial, entry.mode)
    sftp.utime(partial, (entry.mtime, entry.mtime))
    sftp.posix_rename(partial, destination)
    return entry.size


def _remove(sftp: Any, path: str, kind: str) -> int:
    if kind != "d":
        sftp.remove(path)
        return 1
    # Deepest paths go first, so a directory is empty by the time it is removed, unless it holds
    # excluded paths (the host's own build output): then it stays, with them.
    with contextlib.suppress(OSError):
        sftp.rmdir(path)
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
