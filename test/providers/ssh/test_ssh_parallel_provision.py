"""Two SSH hosts of one deployment are provisioned at the same time, and a failing one stops both.

A fleet's machines each wait on their own host (the runtime install alone is tens of seconds), so
the engine creates remote machines in parallel threads. Real sshd hosts in namespaces.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, still_running
from e2e_helpers import assert_failed_and_released, edge_deployment
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import Cancelled, ProvisionError
from fogros_dist.remote import selfwheel
from fogros_dist.spec import DeploymentSpec, MachineSpec, OptionValue

pytestmark = pytest.mark.netns


def _two_hosts(name: str, first: dict[str, OptionValue], second: dict[str, OptionValue]) -> DeploymentSpec:
    spec = edge_deployment(
        name, MachineSpec(name="gpu-a", provider="ssh", options=tuple(sorted(first.items())))
    )
    other = MachineSpec(name="gpu-b", provider="ssh", options=tuple(sorted(second.items())))
    return replace(spec, machines=(*spec.machines, other))


def _robot(monkeypatch: pytest.MonkeyPatch, wheel_cache: Path, tmp_path: Path) -> StateStore:
    """The robot's state store, its wheel cache the session's, and its code what it was when the
    test began (a checkout edited meanwhile would rightly reinstall fogros_dist on the hosts)."""
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)
    return StateStore(tmp_path / "home")


def _index(stages: list[Stage], machine: str, stage: str) -> int:
    return next(i for i, s in enumerate(stages) if s.machine == machine and s.stage == stage)


def test_two_ssh_hosts_are_provisioned_at_the_same_time_and_recorded_in_spec_order(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    beta: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _robot(monkeypatch, wheel_cache, tmp_path)
    spec = _two_hosts(
        "ssh-parallel", ssh_options(ssh_lab, alpha, known_hosts), ssh_options(ssh_lab, beta, known_hosts)
    )
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    try:
        state = deployment.up()
        # One at a time, gpu-a would be ready before gpu-b is even asked for.
        assert _index(stages, "gpu-b", "requesting") < _index(stages, "gpu-a", "ready")
        assert _index(stages, "gpu-a", "requesting") < _index(stages, "gpu-b", "ready")
        assert [h.machine for h in state.hosts] == ["gpu-a", "gpu-b"]
        assert [h.address for h in state.hosts] == [alpha.address, beta.address]
        assert state.pending == ()
        assert state.status == "running"
    finally:
        report = deployment.down()
    assert report.errors == ()
    assert sorted(report.terminated_hosts) == ["gpu-a", "gpu-b"]


def test_a_host_that_fails_stops_the_other_and_the_failure_is_what_up_raises(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    beta: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    store = StateStore(tmp_path / "home")
    # beta's key is in no known_hosts file of this test: its machine fails at once.
    spec = _two_hosts(
        "ssh-parallel-fail",
        ssh_options(ssh_lab, alpha, known_hosts),
        ssh_options(ssh_lab, beta, tmp_path / "empty_known_hosts"),
    )
    with pytest.raises(ProvisionError) as caught:
        Deployment(spec, store=store, robot_domain_id=robot_domain).up()
    message = str(caught.value)
    assert message.startswith(f"ssh-ready: machine 'gpu-b': host root@{beta.address}:2222 is not in "), (
        message
    )
    assert "\n" not in message
    assert_failed_and_released(store, "ssh-parallel-fail", "is not in")
    assert store.load("ssh-parallel-fail").pending == ()


def test_a_cancel_while_both_hosts_install_stops_both_installs_and_removes_the_record(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    beta: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _robot(monkeypatch, wheel_cache, tmp_path)
    # Remote dirs of their own: nothing is installed there, so both installs really run.
    fresh = {name: tmp_path / f"fresh-{name}" for name in ("a", "b")}
    spec = _two_hosts(
        "ssh-parallel-cancel",
        ssh_options(ssh_lab, alpha, known_hosts, ros_setup="none", remote_dir=str(fresh["a"])),
        ssh_options(ssh_lab, beta, known_hosts, ros_setup="none", remote_dir=str(fresh["b"])),
    )
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    cancelled_at: list[float] = []

    def cancel_once_both_install() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            installing = {s.machine for s in list(stages) if s.stage == "bootstrapping"}
            if installing == {"gpu-a", "gpu-b"}:
                time.sleep(1.0)  # pip is at work on both hosts
                cancelled_at.append(time.monotonic())
                deployment.cancel()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cancel_once_both_install, daemon=True)
    watcher.start()
    try:
        with pytest.raises(Cancelled):
            deployment.up()
    finally:
        watcher.join()
    assert cancelled_at, "the two installs never ran at the same time"
    assert time.monotonic() - cancelled_at[0] < CANCEL_BOUND_S
    assert "ssh-parallel-cancel" not in store.names()
    # Each host was cancelled wherever it was (its wheels' push, or pip at work on the host):
    # no install process it had started is left.
    records = sorted(p for d in fresh.values() for p in d.glob("**/run/fogros-bootstrap.json"))
    for record in records:
        assert still_running(record) == [], record
    # Nothing was stamped: the next up installs from scratch on both.
    assert not [p for d in fresh.values() for p in d.glob("venvs/*/.fogros-deps")]
