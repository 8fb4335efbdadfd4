"""Push a directory tree to a host, sending only what changed.

rsync over SSH where both ends have it (its quick check: size and mtime; only changed files
travel), with the same host, user, port, key and known_hosts as the paramiko connection and strict
host key checking. Where either end lacks rsync, an SFTP fallback does the same job
(:mod:`fogros_dist.remote.sftp_sync`). Excluded paths are neither sent nor deleted on the host,
so what the host builds there (``build/``, ``install/``) survives the next push. A push takes
``cancel``: rsync (and the ssh it runs) is stopped within ~0.2 s of it being set, SFTP between
two chunks of a file; either way the next push finishes the job.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fogros_dist.errors import ConfigError, ProvisionError
from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.cancel import CHECK_EVERY_S, CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.remote.host_agent import tree_digest

__all__ = ["DEFAULT_EXCLUDES", "SyncMethod", "SyncStats", "human_bytes", "push_directory"]

# A name matches at any depth; a leading "/" anchors it at the top of the tree (where colcon
# puts its build/install/log directories).
DEFAULT_EXCLUDES: tuple[str, ...] = (".git", ".venv", "__pycache__", "/build", "/install", "/log")
SyncMethod = Literal["auto", "rsync", "sftp"]
# rsync prints progress several times a second; the user needs a line every few seconds.
_PROGRESS_EVERY_S = 2.0
_PERCENT = re.compile(rb"(\d+)%")
# How long a stopped rsync gets to exit on SIGTERM before SIGKILL.
_RSYNC_GRACE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class SyncStats:
    """What one push did."""

    # "digest": both trees already matched, nothing was compared file by file.
    method: Literal["rsync", "sftp", "digest"]
    files_total: int
    files_sent: int
    bytes_sent: int
    files_deleted: int
    seconds: float

    def describe(self) -> str:
        """One line: ``3 of 5000 files sent (12.0 kB), 1 deleted, rsync, 0.4 s``."""
        if self.method == "digest":
            return f"0 of {self.files_total} files sent: unchanged ({self.seconds:.1f} s)"
        return (
            f"{self.files_sent} of {self.files_total} files sent ({human_bytes(self.bytes_sent)}), "
            f"{self.files_deleted} deleted, {self.method}, {self.seconds:.1f} s"
        )


def human_bytes(count: int) -> str:
    """``12.3 MB``-style sizes (powers of 1000, as link speeds are quoted)."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def push_directory(
    agent: HostAgent,
    *,
    local: Path,
    remote: str,
    remote_has_rsync: bool,
    method: SyncMethod = "auto",
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES,
    includes: tuple[str, ...] | None = None,
    delete: bool = True,
    progress: Callable[[str], None] | None = None,
    cancel: CancelEvent | None = None,
) -> SyncStats:
    """Make ``remote`` on the host hold what ``local`` holds, sending only changed files.

    Args:
        agent: the host's agent (and its connection).
        local: the directory on the robot.
        remote: the absolute directory on the host (created with its parents if missing).
        remote_has_rsync: whether the host has rsync (from its probe).
        method: ``rsync``, ``sftp``, or ``auto`` (rsync if both ends have it).
        excludes: names skipped at any depth, or at the top when they start with ``/``.
        includes: relative paths of the only subtrees that travel (a workspace's packages), or
            None for the whole tree. With ``delete``, the host then keeps exactly those subtrees.
        delete: remove what the host has and ``local`` does not (never excluded paths, unless
            ``includes`` is given).
        progress: called every few seconds with a progress line during long transfers.
        cancel: stop the push when set (what was sent stays; the next push sends the rest);
            None: never.

    Returns:
        How many files and bytes went over the network.

    Raises:
        ConfigError: ``local`` is not a directory, or rsync was asked for and is missing.
        ProvisionError: the transfer failed (rsync's last error line is named).
        Cancelled: ``cancel`` was set first.
    """
    if not local.is_dir():
        msg = f"workspace {str(local)!r} is not a directory on this machine: give an existing directory"
        raise ConfigError(msg)
    local_rsync = shutil.which("rsync") is not None
    if method == "rsync" and not (local_rsync and remote_has_rsync):
        where = "this machine" if not local_rsync else agent.runner.target.hostname
        msg = f"sync method 'rsync' needs rsync on both ends; {where} has none: install it, or use 'auto'"
        raise ConfigError(msg)
    started = time.monotonic()
    # rsync's own quick check, in one message to the agent instead of a new SSH connection: when
    # every path's size, mtime and mode match, there is nothing to send.
    mine = tree_digest(local, list(excludes), None if includes is None else list(includes))
    machine = agent.runner.target.machine
    raise_if_cancelled(cancel, machine=machine, doing=f"pushing {local}")
    theirs = agent.digest(remote, excludes=excludes, cancel=cancel)
    if mine["digest"] == theirs["digest"]:
        return SyncStats(
            method="digest",
            files_total=int(mine["files"]),
            files_sent=0,
            bytes_sent=0,
            files_deleted=0,
            seconds=time.monotonic() - started,
        )
    made = agent.run(["mkdir", "-p", remote], what=f"create {remote}", cancel=cancel)
    if made["code"] != 0:
        target = agent.runner.target
        reason = str(made["stderr"]).strip()
        msg = f"machine {target.machine!r}: cannot create {remote} on {target.hostname}: {reason}"
        raise ProvisionError(msg)
    if method == "sftp" or not (local_rsync and remote_has_rsync):
        from fogros_dist.remote.sftp_sync import sftp_push

        return sftp_push(
            agent,
            local=local,
            remote=remote,
            excludes=excludes,
            includes=includes,
            delete=delete,
            cancel=cancel,
        )
    return _rsync(
        agent,
        local=local,
        remote=remote,
        excludes=excludes,
        includes=includes,
        delete=delete,
        progress=progress,
        cancel=cancel,
    )


def _rsync(
    agent: HostAgent,
    *,
    local: Path,
    remote: str,
    excludes: tuple[str, ...],
    includes: tuple[str, ...] | None,
    delete: bool,
    progress: Callable[[str], None] | None,
    cancel: CancelEvent | None,
) -> SyncStats:
    runner = agent.runner
    target = runner.target
    argv = [
        "rsync",
        # Recursive, symlinks as symlinks, permissions, times; owners and groups stay the host's.
        "-rlpt",
        "--stats",
        "--no-human-readable",
        "--info=progress2",
        "-e",
        shlex.join(runner.ssh_argv()),
    ]
    if delete:
        argv.append("--delete")
    argv += [f"--exclude={pattern}" for pattern in excludes]
    if includes is not None:
        argv += _include_filters(includes)
        if delete:
            # What lies outside the subtrees (a package no longer needed) goes from the host too.
            argv.append("--delete-excluded")
    argv += [f"{local}/", f"{target.user}@{target.hostname}:{remote}/"]
    started = time.monotonic()
    output = _run_with_progress(argv, progress, cancel)
    seconds = time.monotonic() - started
    if output is None:
        raise cancelled(target.machine, f"pushing {local} to {target.hostname}:{remote} (rsync stopped)")
    text = output.stdout.decode(errors="replace")
    if output.returncode != 0:
        lines = [line for line in output.stderr.decode(errors="replace").splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {output.returncode}"
        msg = (
            f"machine {target.machine!r}: rsync of {local} to {target.hostname}:{remote} failed: {reason}: "
            f"check the disk and permissions there"
        )
        raise ProvisionError(msg)
    return SyncStats(
        method="rsync",
        files_total=_stat(text, r"Number of files: [\d,]+ \(reg: ([\d,]+)"),
        files_sent=_stat(text, r"Number of regular files transferred: ([\d,]+)"),
        bytes_sent=_stat(text, r"Total bytes sent: ([\d,]+)"),
        files_deleted=_stat(text, r"Number of deleted files: ([\d,]+)"),
        seconds=seconds,
    )


def _include_filters(includes: tuple[str, ...]) -> list[str]:
    """rsync filters that keep only ``includes`` and the directories leading to them (rsync takes
    the first rule that matches, so these come after the excludes)."""
    rules: list[str] = []
    for subtree in includes:
        parts = subtree.strip("/").split("/")
        for depth in range(1, len(parts)):
            rule = "--include=/" + "/".join(parts[:depth]) + "/"
            if rule not in rules:
                rules.append(rule)
        rules.append("--include=/" + "/".join(parts) + "/***")
    return [*rules, "--exclude=*"]


def _run_with_progress(
    argv: list[str], progress: Callable[[str], None] | None, cancel: CancelEvent | None
) -> subprocess.CompletedProcess[bytes] | None:
    """Run rsync, reporting its progress; None if ``cancel`` stopped it (it and its ssh)."""
    # Digits without locale separators, messages in English: the stats are parsed.
    env = dict(os.environ, LC_ALL="C")
    # stderr goes to a file: a pipe nobody reads while stdout streams could fill and stall rsync.
    with tempfile.TemporaryFile() as errors:
        # A session of its own: a cancel stops rsync and the ssh it runs as one group, and a
        # Ctrl-C reaches it only through ``cancel`` (so it ends as Cancelled, not as rsync's error).
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=env, start_new_session=True)
        assert proc.stdout is not None
        stdout = bytearray()
        last_report = time.monotonic()
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    _stop_group(proc)
                    return None
                readable, _, _ = select.select([proc.stdout], [], [], CHECK_EVERY_S)
                if not readable:
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                stdout += chunk
                now = time.monotonic()
                if progress is not None and now - last_report >= _PROGRESS_EVERY_S:
                    # progress2 lines end in \r: the newest figure is the last one in the chunk.
                    found = _PERCENT.findall(bytes(chunk))
                    if found:
                        progress(f"{int(found[-1])}% sent")
                        last_report = now
            proc.wait()
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            proc.stdout.close()
        errors.seek(0)
        stderr = errors.read()
    return subprocess.CompletedProcess(argv, proc.returncode, bytes(stdout), stderr)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to rsync's process group (rsync and its ssh), SIGKILL if it lingers; reaped."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=_RSYNC_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _stat(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1).replace(",", "")) if found else 0
