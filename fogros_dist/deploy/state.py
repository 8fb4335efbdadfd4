"""The deployment state store: one JSON file per deployment, written atomically.

Every step of `up` records what it created before moving on, so `list` and `down` find machines
and processes even after the supervisor crashed. The store lives in ``$FOGROS_DIST_HOME``
(default ``$XDG_STATE_HOME/fogros_dist``, i.e. ``~/.local/state/fogros_dist``). State files hold
the nodes' environments: they are written 0600 in 0700 directories (the home, ``deployments/``
and each deployment's directory). A home that is a file, read-only or cannot be made fails in
one line (ConfigError); a state file that cannot be read is reported by name
(:meth:`StateStore.scan`), never skipped in silence, and never read without bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fogros_dist.errors import ConfigError, DeploymentError, UnknownDeployment
from fogros_dist.spec import DeploymentSpec, Host, ProcessRecord, from_json, to_json

__all__ = [
    "DeploymentState",
    "ExitRecord",
    "StateStore",
    "UnreadableState",
    "default_home",
    "validate_deployment_name",
]

# provisioning -> starting -> running (degraded while a node or bridge restarts) -> stopping -> gone;
# failed: it ended on an error and was released, the record stays with the reason until `down`
# (or the next `up` of the name); a failed record with ``leftovers`` names what could not go.
Status = Literal["planned", "provisioning", "starting", "running", "degraded", "stopping", "failed"]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Far above any real record (a few KiB per process): a state file larger than this is not one.
_MAX_STATE_BYTES = 16 * 1024 * 1024


def default_home() -> Path:
    """Where state lives: $FOGROS_DIST_HOME, else $XDG_STATE_HOME/fogros_dist."""
    explicit = os.environ.get("FOGROS_DIST_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "fogros_dist"


def validate_deployment_name(name: str) -> str:
    """Deployment names become directory names, tags and Zenoh keys: keep them plain."""
    if not _NAME.match(name):
        msg = (
            f"deployment name {name!r} is invalid: use 1-63 lowercase letters, digits and '-', "
            f"starting with a letter (e.g. 'grasp-demo')"
        )
        raise ConfigError(msg)
    return name


@dataclass(frozen=True, kw_only=True)
class ExitRecord:
    """How a supervised process ended, as the supervisor saw it (for `list` and the post-mortem)."""

    role: str
    name: str
    machine: str
    # None: it did not stop; negative: killed by that signal; -1: gone, exit code unknown.
    exit_code: int | None
    stderr_tail: tuple[str, ...] = ()
    at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class DeploymentState:
    """What a deployment has created so far; the single source of truth for `list` and `down`.

    It is written before anything exists and removed after everything is gone: ``pending`` names
    the machines whose provider is creating them (no Host yet, so `down` asks the provider to
    reclaim them by tag), ``hosts`` and ``processes`` what exists, ``exits`` how processes ended,
    ``leftovers`` what a teardown could not release.
    """

    spec: DeploymentSpec
    status: Status
    created_at: float
    updated_at: float
    robot_domain_id: int
    supervisor: ProcessRecord | None = None
    pending: tuple[str, ...] = ()
    hosts: tuple[Host, ...] = ()
    processes: tuple[ProcessRecord, ...] = ()
    error: str = ""
    exits: tuple[ExitRecord, ...] = ()
    leftovers: tuple[str, ...] = ()
    stats_paths: tuple[tuple[str, str], ...] = field(default=())

    @property
    def released(self) -> bool:
        """Nothing of it exists any more (a failed record kept only for its reason)."""
        return not (self.pending or self.hosts or self.processes or self.leftovers)

    def host(self, machine: str) -> Host | None:
        """The provisioned host for ``machine``, if it got that far."""
        return next((h for h in self.hosts if h.machine == machine), None)

    def domain_ids(self) -> frozenset[int]:
        """Every ROS domain this deployment uses (robot and machines)."""
        ids = {self.robot_domain_id}
        for host in self.hosts:
            value = dict(host.env).get("ROS_DOMAIN_ID")
            if value is not None and value.isdigit():
                ids.add(int(value))
        return frozenset(ids)


@dataclass(frozen=True, kw_only=True)
class UnreadableState:
    """A deployment whose state file exists but cannot be read: what `list` shows instead."""

    name: str
    path: Path
    # Why, in a few words ("Permission denied", "not valid JSON: ...").
    reason: str


class StateStore:
    """Deployment state files under one home directory."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()

    def deployment_dir(self, name: str) -> Path:
        """The directory that holds a deployment's state, machine work dirs and logs."""
        return self.home / "deployments" / validate_deployment_name(name)

    def _state_file(self, name: str) -> Path:
        return self.deployment_dir(name) / "state.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: allocation of names and domain IDs must not race.

        Raises:
            ConfigError: the home is not a directory this user can write.
        """
        self._make_private_dirs(self.home)
        lock = self.home / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise self._unusable(err, lock) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def names(self) -> list[str]:
        """Names of every deployment with a state file (readable or not), sorted.

        Raises:
            ConfigError: the home or its ``deployments/`` exists but cannot be listed.
        """
        root = self.home / "deployments"
        try:
            entries = sorted(entry.name for entry in os.scandir(root))
        except FileNotFoundError:
            return []
        except OSError as err:
            if isinstance(err, NotADirectoryError) and self.home.is_file():
                raise self._unusable(
                    NotADirectoryError(20, "it is a file, not a directory"), self.home
                ) from err
            raise self._unusable(err, root) from err
        return [name for name in entries if _NAME.match(name) and _has_state(root / name)]

    def load(self, name: str) -> DeploymentState:
        """The recorded state of ``name``.

        Raises:
            UnknownDeployment: none is recorded (the message lists the known ones).
            DeploymentError: its state file cannot be read, naming it and why.
        """
        path = self._state_file(name)
        try:
            text = _read_state(path)
        except (FileNotFoundError, NotADirectoryError):
            known = ", ".join(self.names()) or "none"
            msg = f"no deployment named {name!r} is recorded in {self.home} (known: {known})"
            raise UnknownDeployment(msg) from None
        except _Unreadable as err:
            msg = f"state file {path} is unreadable ({err}): remove it after checking nothing runs"
            raise DeploymentError(msg) from err
        try:
            return from_json(DeploymentState, text)
        except (ConfigError, ValueError, RecursionError) as err:
            msg = f"state file {path} is unreadable ({err}): remove it after checking nothing runs"
            raise DeploymentError(msg) from err

    def scan(self) -> tuple[list[DeploymentState], list[UnreadableState]]:
        """Every recorded deployment: the states that load, and the state files that do not
        (with why), each sorted by name."""
        states: list[DeploymentState] = []
        unreadable: list[UnreadableState] = []
        for name in self.names():
            try:
                states.append(self.load(name))
            except UnknownDeployment:
                continue  # removed meanwhile
            except DeploymentError as err:
                reason = err.__cause__ or err
                unreadable.append(
                    UnreadableState(name=name, path=self._state_file(name), reason=_reason(reason))
                )
        return states, unreadable

    def load_all(self) -> list[DeploymentState]:
        """Every readable deployment state (:meth:`scan` also names the unreadable ones)."""
        return self.scan()[0]

    def used_domain_ids(self) -> frozenset[int]:
        """ROS domains taken by recorded deployments."""
        used: set[int] = set()
        for state in self.load_all():
            used |= state.domain_ids()
        return frozenset(used)

    def create(self, state: DeploymentState) -> None:
        """Record a new deployment; refuses a name that is already recorded, unless that record
        is a failed deployment with nothing left (kept only for its reason)."""
        path = self._state_file(state.spec.name)
        if path.exists() and not self._replaceable(state.spec.name):
            msg = (
                f"deployment {state.spec.name!r} is already recorded: run 'fogros-dist down "
                f"{state.spec.name}' first, or pick another name"
            )
            raise DeploymentError(msg)
        # Logs and work dirs of an earlier deployment of the same name go now, not at `down`,
        # so `fogros-dist logs` still works after `down`.
        stale = path.parent
        if stale.exists():
            try:
                shutil.rmtree(stale)
            except OSError as err:
                msg = (
                    f"cannot clear {stale} (left by an earlier deployment {state.spec.name!r}): "
                    f"{err.strerror or err}: remove it, or pick another name"
                )
                raise DeploymentError(msg) from err
        self.save(state)

    def _replaceable(self, name: str) -> bool:
        try:
            recorded = self.load(name)
        except DeploymentError:
            return False
        return recorded.status == "failed" and recorded.released

    def save(self, state: DeploymentState) -> DeploymentState:
        """Write ``state`` atomically (temp file + rename) with a fresh ``updated_at``."""
        state = dataclasses.replace(state, updated_at=time.time())
        path = self._state_file(state.spec.name)
        self._make_private_dirs(self.home, path.parent.parent, path.parent)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(to_json(state))
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._unusable(err, path) from err
        return state

    def remove(self, name: str) -> None:
        """Forget a deployment (its logs stay until a deployment of the same name starts)."""
        path = self._state_file(name)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise self._unusable(err, path) from err

    def _make_private_dirs(self, *dirs: Path) -> None:
        """Make each of ``dirs`` (in order; the home's parents as needed) a 0700 directory."""
        for directory in dirs:
            try:
                if directory == self.home:
                    directory.parent.mkdir(parents=True, exist_ok=True)
                try:
                    directory.mkdir(mode=0o700, exist_ok=True)
                except FileExistsError:
                    raise NotADirectoryError(20, "it is a file, not a directory") from None
                info = directory.stat()
                # A home made before state was private, or by a looser umask: tighten it.
                if info.st_mode & 0o077 and info.st_uid == os.getuid():
                    directory.chmod(0o700)
            except OSError as err:
                raise self._unusable(err, directory) from err

    def _unusable(self, err: OSError, path: Path) -> ConfigError:
        where = "" if path == self.home else f" ({path})"
        msg = (
            f"state home {self.home} is not usable{where}: {_reason(err)}: set FOGROS_DIST_HOME "
            f"to a directory you can write"
        )
        return ConfigError(msg)


class _Unreadable(Exception):
    """A state file that exists but is no readable text."""


def _read_state(path: Path) -> str:
    """The text of the state file ``path``, read with a bound and only from a regular file.

    Raises:
        FileNotFoundError, NotADirectoryError: there is none.
        _Unreadable: it exists but cannot be read (its message says why).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as err:
        raise _Unreadable(_reason(err)) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise _Unreadable(kind)
        data = os.read(fd, _MAX_STATE_BYTES + 1)
        if len(data) > _MAX_STATE_BYTES:
            raise _Unreadable(f"larger than {_MAX_STATE_BYTES // (1024 * 1024)} MiB")
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Unreadable(f"not UTF-8 at byte {err.start}") from err
    except OSError as err:
        raise _Unreadable(_reason(err)) from err
    finally:
        os.close(fd)


def _has_state(directory: Path) -> bool:
    """``directory`` holds a state file, or may (it cannot be looked into: `load` says why)."""
    try:
        os.lstat(directory / "state.json")
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
