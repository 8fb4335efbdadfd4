"""The deployment state store: one JSON file per deployment, written atomically.

Every step of `up` records what it created before moving on, so `list` and `down` find machines
and processes even after the supervisor crashed. The store lives in ``$FOGROS_DIST_HOME``
(default ``$XDG_STATE_HOME/fogros_dist``, i.e. ``~/.local/state/fogros_dist``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fogros_dist.errors import ConfigError, DeploymentError, UnknownDeployment
from fogros_dist.spec import DeploymentSpec, Host, ProcessRecord, from_json, to_json

__all__ = ["DeploymentState", "StateStore", "default_home", "validate_deployment_name"]

Status = Literal["planned", "provisioning", "starting", "running", "stopping", "failed"]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


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
class DeploymentState:
    """What a deployment has created so far; the single source of truth for `list` and `down`."""

    spec: DeploymentSpec
    status: Status
    created_at: float
    updated_at: float
    robot_domain_id: int
    supervisor: ProcessRecord | None = None
    hosts: tuple[Host, ...] = ()
    processes: tuple[ProcessRecord, ...] = ()
    error: str = ""
    stats_paths: tuple[tuple[str, str], ...] = field(default=())

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
        """Hold the store's lock: allocation of names and domain IDs must not race."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def names(self) -> list[str]:
        """Names of every deployment with a state file, sorted."""
        root = self.home / "deployments"
        if not root.is_dir():
            return []
        return sorted(p.parent.name for p in root.glob("*/state.json"))

    def load(self, name: str) -> DeploymentState:
        """The recorded state of ``name``; UnknownDeployment (listing known ones) if none."""
        path = self._state_file(name)
        try:
            text = path.read_text()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            msg = f"no deployment named {name!r} is recorded in {self.home} (known: {known})"
            raise UnknownDeployment(msg) from None
        try:
            return from_json(DeploymentState, text)
        except (ConfigError, ValueError) as err:
            msg = f"state file {path} is unreadable ({err}): remove it after checking nothing runs"
            raise DeploymentError(msg) from err

    def load_all(self) -> list[DeploymentState]:
        """Every readable deployment state; unreadable files are skipped, not fatal for `list`."""
        states = []
        for name in self.names():
            with contextlib.suppress(DeploymentError):
                states.append(self.load(name))
        return states

    def used_domain_ids(self) -> frozenset[int]:
        """ROS domains taken by recorded deployments."""
        used: set[int] = set()
        for state in self.load_all():
            used |= state.domain_ids()
        return frozenset(used)

    def create(self, state: DeploymentState) -> None:
        """Record a new deployment; refuses a name that is already recorded."""
        path = self._state_file(state.spec.name)
        if path.exists():
            msg = (
                f"deployment {state.spec.name!r} is already recorded: run 'fogros-dist down "
                f"{state.spec.name}' first, or pick another name"
            )
            raise DeploymentError(msg)
        # Logs and work dirs of an earlier deployment of the same name go now, not at `down`,
        # so `fogros-dist logs` still works after `down`.
        stale = path.parent
        if stale.exists():
            shutil.rmtree(stale)
        self.save(state)

    def save(self, state: DeploymentState) -> DeploymentState:
        """Write ``state`` atomically (temp file + rename) with a fresh ``updated_at``."""
        state = dataclasses.replace(state, updated_at=time.time())
        path = self._state_file(state.spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(to_json(state))
        os.replace(tmp, path)
        return state

    def remove(self, name: str) -> None:
        """Forget a deployment (its logs stay until a deployment of the same name starts)."""
        self._state_file(name).unlink(missing_ok=True)
