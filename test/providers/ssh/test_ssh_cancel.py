"""Cancelling an SSHHost machine while it comes up, through the provider verbs and
``ProvisionContext.cancel`` as the engine passes them: during the SSH wait, during the runtime
install, during the workspace build. Each raises Cancelled within 2 s of ``cancel.set()``
(asserted with a 3 s margin, CANCEL_BOUND_S), nothing it started runs on on the host (PID records
checked by PID + start time, and their whole process groups), and teardown still works after it.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, after, cancel_when, still_running
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab
from workspace_helpers import user_workspace

from fogros_dist.errors import Cancelled
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.remote import selfwheel
from fogros_dist.remote.runner import RetryPolicy
from fogros_dist.spec import MachineSpec, OptionValue
from fogros_dist.workspace.selection import select_packages

pytestmark = pytest.mark.netns

PATIENT = RetryPolicy(attempts=40, first_delay_s=1.0, max_delay_s=5.0, timeout_s=10.0)
# greet_words' setup.py takes a minute: the build is surely under way when it is cancelled.
_SLOW_SETUP = "import time\ntime.sleep(60)\n"


@pytest.fixture
def frozen_self_wheel(monkeypatch: pytest.MonkeyPatch, wheel_cache: Path) -> None:
    """The robot's fogros_dist as it was when the test began, and the session's wheel cache."""
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)


def _machine(options: dict[str, OptionValue]) -> MachineSpec:
    return MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))


class _Stages:
    """The progress a provider reports, with the time each stage was first seen."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.first: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, stage: str, message: str) -> None:
        with self._lock:
            self.seen.append((stage, message))
            self.first.setdefault(stage, time.monotonic())

    def since(self, stage: str) -> float:
        """Seconds since ``stage`` was first reported (-1: not yet)."""
        with self._lock:
            first = self.first.get(stage)
        return -1.0 if first is None else time.monotonic() - first


def test_the_ssh_wait_of_create_is_cancelled_and_shown_through_the_context(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    # Nothing listens on port 2299 of beta: every attempt is refused, for 40 attempts.
    machine = _machine(ssh_options(ssh_lab, beta, known_hosts, port=2299, ros_setup="none"))
    stages = _Stages()
    provider = SSHProvider(retry=PATIENT)

    def create(cancel: threading.Event) -> None:
        ctx = ProvisionContext(deployment="cancel-ssh", state_dir=tmp_path, progress=stages, cancel=cancel)
        provider.create(machine, ctx)

    error, latency = cancel_when(after(3.0), create)
    assert latency < CANCEL_BOUND_S, latency
    assert str(error).startswith(
        f"machine 'gpu': stopped on request while connecting to root@{beta.address}:2299 (ssh-ready: attempt "
    ), error
    assert stages.seen[0] == (
        "waiting",
        f"ssh root@{beta.address}:2299: attempt 1 of 40, 0 s, connection refused",
    )


def test_a_runtime_install_is_cancelled_and_stopped_on_the_host(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    wheel_cache: Path,
    frozen_self_wheel: None,
) -> None:
    # A remote_dir of its own: nothing is installed there, so the install really runs.
    fresh = tmp_path / "fresh-remote"
    machine = _machine(ssh_options(ssh_lab, alpha, known_hosts, ros_setup="none", remote_dir=str(fresh)))
    provider = SSHProvider(cache_dir=wheel_cache)
    stages = _Stages()
    ctx = ProvisionContext(deployment="cancel-install", state_dir=tmp_path, progress=stages)
    host = provider.create(machine, ctx)
    record = Path(host.workdir) / "run" / "fogros-bootstrap.json"
    running_since: list[float] = []

    def installing() -> bool:
        # The install process has run on the host for a second (pip is at work).
        if not running_since and record.exists() and still_running(record):
            running_since.append(time.monotonic())
        return bool(running_since) and time.monotonic() - running_since[0] >= 1.0

    try:
        error, latency = cancel_when(
            installing, lambda cancel: provider.prepare(host, dataclasses.replace(ctx, cancel=cancel))
        )
        assert latency < CANCEL_BOUND_S, latency
        assert (
            str(error)
            == "machine 'gpu': stopped on request while installing the runtime (stopped on the host)"
        )
        assert still_running(record) == []
        assert [m for s, m in stages.seen if s == "bootstrapping"] == [
            f"installing fogros_dist and its dependencies into {next(fresh.glob('venvs/*'))}"
        ]
        # Nothing was stamped: the next up installs from scratch.
        assert not list(fresh.glob("venvs/*/.fogros-deps"))
    finally:
        # Teardown after a cancel: not cancelled itself.
        provider.terminate(host)
        shutil.rmtree(fresh, ignore_errors=True)


def test_a_workspace_build_is_cancelled_and_stopped_on_the_host(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    wheel_cache: Path,
    frozen_self_wheel: None,
) -> None:
    root = user_workspace(tmp_path / "ws")
    words_setup = root / "src" / "words" / "greet_words" / "setup.py"
    words_setup.write_text(_SLOW_SETUP + words_setup.read_text())
    selection = select_packages(root, ["greeter"])
    machine = _machine(ssh_options(ssh_lab, alpha, known_hosts, ros_setup="none"))
    provider = SSHProvider(cache_dir=wheel_cache)
    stages = _Stages()
    cancel = threading.Event()
    ctx = ProvisionContext(
        deployment="cancel-build", state_dir=tmp_path, progress=stages, workspace=selection, cancel=cancel
    )
    host = provider.create(machine, ctx)
    try:
        # The runtime (installed or cached), then the push and build in the background.
        provider.prepare(host, ctx)
        record = Path(host.workdir) / "run" / "fogros-build.json"

        def resolve(_cancel: threading.Event) -> None:
            # As the engine does next: the node's executable, once its workspace is built.
            provider.resolve_node(host, package="greeter", executable="greeter_node")

        # colcon has been in greet_words' setup.py for a second when the user cancels.
        error, latency = cancel_when(lambda: stages.since("building") >= 1.0, resolve, cancel=cancel)
        assert latency < CANCEL_BOUND_S, latency
        assert (
            str(error)
            == "machine 'gpu': stopped on request while building the workspace (stopped on the host)"
        )
        assert ("building", "greet_words (1/2)") in stages.seen
        assert "built" not in stages.first
        assert still_running(record) == []
        # Nothing was stamped as built.
        overlay = Path(dict(host.env)["FOGROS_SSH_OVERLAY"])
        assert not (overlay / ".fogros-build").exists()
        # The starts that follow give up on the same event too.
        with pytest.raises(Cancelled, match=r"^machine 'gpu': stopped on request while "):
            provider.resolve_node(host, package="greeter", executable="greeter_node")
    finally:
        provider.terminate(host)
    # And after teardown nothing recorded there runs.
    for path in (Path(host.workdir) / "run").glob("*.json"):
        assert still_running(path) == [], path
