"""Host-wide claims on ROS domains, so Local machines of every home and user on a host differ.

Two robots on one host (two users, or two ``$FOGROS_DIST_HOME``\\ s) each know only their own state
store; without a shared record both gave their Local machines the same DDS domain, and one
robot's bridge received the other's replies. Claims live in a directory every user can write,
sticky like /tmp (``/tmp/fogros_dist-host/domains/``; ``$FOGROS_DIST_HOST_DIR`` moves it, for
tests). A claim is one file ``<domain>.<uid>.claim``, created with ``O_EXCL`` under the directory's
``flock``, naming the deployment's state file, the deployment, the machine and the claiming
process (PID and start time). A domain is free when no live claim names it. A claim is stale,
and ignored (and removed, when it is ours to remove), when its process is gone *and* its
deployment's state file does not record that machine on that domain; a state file this user
cannot read keeps the claim alive, so a domain is never taken from under a running deployment.
Teardown (the provider's ``terminate``) removes the claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.local.process import start_ticks

__all__ = ["DomainClaim", "DomainClaims", "default_claims_dir"]

_DEFAULT_ROOT = Path("/tmp/fogros_dist-host")
# A claim file is written right after it is created: one seen empty this young is not stale.
_WRITING_GRACE_S = 10.0
_LOCK_TIMEOUT_S = 10.0


def default_claims_dir() -> Path:
    """``$FOGROS_DIST_HOST_DIR/domains``, else ``/tmp/fogros_dist-host/domains``."""
    root = os.environ.get("FOGROS_DIST_HOST_DIR")
    return (Path(root) if root else _DEFAULT_ROOT) / "domains"


@dataclass(frozen=True, kw_only=True)
class DomainClaim:
    """One claim on a domain, as its file records it."""

    domain: int
    uid: int
    state_file: str
    deployment: str
    machine: str
    pid: int
    start_ticks: int
    path: Path

    def describe(self) -> str:
        """Who holds the domain, for error messages."""
        return f"deployment {self.deployment!r} (machine {self.machine!r}, uid {self.uid}, {self.state_file})"


class DomainClaims:
    """The host's claims directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_claims_dir()

    def claim(
        self,
        *,
        state_file: Path,
        deployment: str,
        machine: str,
        candidates: Sequence[int],
        avoid: frozenset[int] = frozenset(),
    ) -> int:
        """Claim the first domain of ``candidates`` that no live claim holds and ``avoid`` does
        not name; a domain this machine of this deployment already holds is kept.

        Raises:
            ProvisionError: the directory is unusable, or every candidate is taken (naming
                who holds the first one).
        """
        with self._locked():
            held = self._live()
            for domain in candidates:
                mine = held.get(domain)
                if mine is not None and _same(mine, state_file=state_file, machine=machine):
                    return domain
            for domain in candidates:
                if domain in avoid or domain in held:
                    continue
                self._write(domain, state_file=state_file, deployment=deployment, machine=machine)
                return domain
        first = held.get(candidates[0]) if candidates else None
        holder = f": domain {candidates[0]} is held by {first.describe()}" if first else ""
        span = f"{candidates[0]}" if len(candidates) == 1 else f"{candidates[0]}..{candidates[-1]}"
        msg = (
            f"machine {machine!r}: no free ROS domain in {span} on this host{holder}; "
            f"run 'fogros-dist down' on deployments you no longer need, or set option domain_id"
        )
        raise ProvisionError(msg)

    def release(self, *, state_file: Path, machine: str) -> None:
        """Remove this user's claims for ``machine`` of the deployment at ``state_file``."""
        if not self.root.is_dir():
            return
        with self._locked():
            for claim in self._claims():
                if claim.uid == os.getuid() and _same(claim, state_file=state_file, machine=machine):
                    claim.path.unlink(missing_ok=True)

    def release_unrecorded(self, *, deployment: str, machine: str) -> None:
        """Remove the claim this process made for ``machine`` of ``deployment`` (its Host was
        never recorded: creation was interrupted), and this user's stale claims."""
        if not self.root.is_dir():
            return
        with self._locked():
            self._live()
            for claim in self._claims():
                ours = claim.uid == os.getuid() and claim.pid == os.getpid()
                named = (claim.deployment, claim.machine) == (deployment, machine)
                if ours and named and not _recorded(claim):
                    claim.path.unlink(missing_ok=True)

    def held(self) -> dict[int, DomainClaim]:
        """Every live claim, by domain (stale ones of this user are removed on the way)."""
        if not self.root.is_dir():
            return {}
        with self._locked():
            return self._live()

    # -- inside the lock -------------------------------------------------------------------------

    def _live(self) -> dict[int, DomainClaim]:
        live: dict[int, DomainClaim] = {}
        for claim in self._claims():
            if _stale(claim):
                if claim.uid == os.getuid():
                    claim.path.unlink(missing_ok=True)
                continue
            live.setdefault(claim.domain, claim)
        return live

    def _claims(self) -> Iterator[DomainClaim]:
        for path in sorted(self.root.glob("*.claim")):
            claim = _read(path)
            if claim is not None:
                yield claim

    def _write(self, domain: int, *, state_file: Path, deployment: str, machine: str) -> None:
        path = self.root / f"{domain}.{os.getuid()}.claim"
        # Ours but stale (it would have been live otherwise): make room for the new one.
        path.unlink(missing_ok=True)
        record = {
            "domain": domain,
            "uid": os.getuid(),
            "state_file": str(state_file),
            "deployment": deployment,
            "machine": machine,
            "pid": os.getpid(),
            "start_ticks": start_ticks(os.getpid()),
        }
        try:
            # World-readable: other users' robots judge from it whether the claim is stale.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, json.dumps(record).encode())
            finally:
                os.close(fd)
        except OSError as err:
            msg = f"cannot claim ROS domain {domain} in {self.root}: {err.strerror}: check that directory"
            raise ProvisionError(msg) from err

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        _shared_dir(self.root.parent)
        _shared_dir(self.root)
        lock = self.root / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except PermissionError:
            # Another user made it: a read-only descriptor takes the lock just as well.
            fd = _open_lock_read_only(lock)
        except OSError as err:
            msg = f"cannot use the host's ROS domain claims in {self.root}: {err.strerror}"
            raise ProvisionError(msg) from err
        try:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_uid == os.getuid():
                    os.fchmod(fd, 0o666)  # whatever our umask made of it
            deadline = time.monotonic() + _LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        msg = (
                            f"the host's ROS domain claims ({lock}) stayed locked for "
                            f"{_LOCK_TIMEOUT_S:.0f} s: check what holds that file (fuser {lock})"
                        )
                        raise ProvisionError(msg) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)


def _open_lock_read_only(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        msg = f"cannot use the host's ROS domain claims lock {lock}: {err.strerror}"
        raise ProvisionError(msg) from err


def _shared_dir(path: Path) -> None:
    """Make ``path`` a sticky, world-writable directory (as /tmp), or check that it is one."""
    try:
        path.mkdir()
    except FileExistsError:
        pass
    except OSError as err:
        msg = f"cannot make the host's ROS domain claims directory {path}: {err.strerror}"
        raise ProvisionError(msg) from err
    else:
        path.chmod(0o1777)  # mkdir's mode is cut by the umask
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        msg = f"{path} is not a directory: remove it, fogros_dist keeps the host's ROS domain claims there"
        raise ProvisionError(msg)
    wanted = stat.S_ISVTX | 0o777
    if info.st_mode & wanted != wanted:
        if info.st_uid == os.getuid():
            path.chmod(0o1777)
            return
        msg = (
            f"{path} (uid {info.st_uid}) is not sticky and world-writable: its owner should run "
            f"'chmod 1777 {path}' so every user's fogros_dist can claim ROS domains there"
        )
        raise ProvisionError(msg)


def _read(path: Path) -> DomainClaim | None:
    """The claim in ``path``; None for a file that is not one (and not one being written)."""
    try:
        info = path.stat()
        data = json.loads(path.read_text())
        return DomainClaim(
            domain=int(data["domain"]),
            uid=info.st_uid,
            state_file=str(data["state_file"]),
            deployment=str(data["deployment"]),
            machine=str(data["machine"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # Unreadable or half-written: it holds its domain (named by the file) while it is young.
    domain = path.name.partition(".")[0]
    with contextlib.suppress(OSError):
        info = path.stat()
        if domain.isdigit() and time.time() - info.st_mtime < _WRITING_GRACE_S:
            return DomainClaim(
                domain=int(domain),
                uid=info.st_uid,
                state_file="?",
                deployment="?",
                machine="?",
                pid=0,
                start_ticks=-1,
                path=path,
            )
    return None


def _same(claim: DomainClaim, *, state_file: Path, machine: str) -> bool:
    return claim.state_file == str(state_file) and claim.machine == machine


def _stale(claim: DomainClaim) -> bool:
    """Its process is gone and its deployment's record does not hold the domain."""
    if claim.pid == 0:
        return False  # being written (see _read)
    if claim.pid > 0 and start_ticks(claim.pid) == claim.start_ticks:
        return False
    return not _recorded(claim)


def _recorded(claim: DomainClaim) -> bool:
    """The deployment's state file records the claim's machine on its domain (or cannot be read
    by this user: then it may, and the claim stands)."""
    try:
        text = Path(claim.state_file).read_text()
    except FileNotFoundError:
        return False
    except (OSError, UnicodeError):
        return True
    try:
        hosts = json.loads(text).get("hosts", [])
        for host in hosts:
            env = dict(host.get("env", []))
            if host.get("machine") == claim.machine and env.get("ROS_DOMAIN_ID") == str(claim.domain):
                return True
    except (ValueError, AttributeError, TypeError):
        return True  # a corrupt record may still stand for running processes
    return False
