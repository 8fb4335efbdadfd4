"""A deployment on an SSH host, end to end: a real sshd in a namespace, the offline runtime install,
the workspace push, the machine bridge there, the robot bridge here, and an image answered by the
remote edge_detector through DDS on both sides."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import assert_failed_and_released, edge_deployment, edges_round_trip
from ssh_fixtures import FAST_RETRY, ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ProvisionError
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.local.process import process_alive
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.remote import selfwheel
from fogros_dist.spec import DeploymentSpec, MachineSpec, OptionValue

pytestmark = pytest.mark.netns


def _spec(name: str, options: dict[str, OptionValue]) -> DeploymentSpec:
    machine = MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))
    return edge_deployment(name, machine)


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_up_offloads_to_the_ssh_host_then_a_second_up_installs_and_pushes_nothing(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    # The robot's code is what it was when the test began, even if someone edits the checkout
    # meanwhile (a changed file rightly reinstalls fogros_dist on the host).
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)
    store = StateStore(tmp_path / "home")
    # fogros_dist's own node: nothing of a workspace travels (test_ssh_workspace.py has one).
    spec = _spec("ssh-e2e", ssh_options(ssh_lab, alpha, known_hosts))

    stages: list[Stage] = []
    lines: list[str] = []
    deployment = Deployment(
        spec,
        store=store,
        reporter=stages.append,
        output=lambda machine, name, stream, text: lines.append(f"[{machine}/{name}/{stream}] {text}"),
        robot_domain_id=robot_domain,
    )
    deployment.up()
    try:
        _check_first_stages(stages)
        state = store.load("ssh-e2e")
        host = state.hosts[0]
        assert (host.provider, host.address) == ("ssh", alpha.address)
        records = state.processes
        node = next(r for r in records if r.name == "edges")
        # The node runs on the host: alive, and inside its network namespace.
        assert process_alive(node)
        assert alpha.sshd is not None
        assert _netns(node.pid) == _netns(alpha.sshd.pid) != _netns(os.getpid())
        reply = edges_round_trip(robot_domain)
        assert reply.encoding == "mono8"
        assert reply.header.frame_id == "cam"
        assert int(np.asarray(reply.data).max()) == 255
        deadline = time.monotonic() + 10
        while not any(line.startswith("[gpu/edges/") and "ready on" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        # The SSH connection drops: the node and the bridge run on (the topics never used SSH),
        # and the supervisor reconnects to watch and stop them.
        assert alpha.kill_sessions() >= 1
        assert process_alive(node)
        assert int(np.asarray(edges_round_trip(robot_domain).data).max()) == 255
        # A fresh provider (a new connection) finds it from its record alone.
        assert SSHProvider().attach(host, node).poll() is None
    finally:
        report = deployment.down()
    assert report.terminated_hosts == ("gpu",)
    assert {e.name for e in report.exits} == {"edges", "bridge", "robot-bridge"}
    assert not any(process_alive(r) for r in records if r.machine == "gpu")
    assert store.names() == []

    # Nothing changed: the runtime is cached, and up is quick.
    by_stage = _up_and_down(spec, store, robot_domain)
    assert "bootstrapped" not in by_stage
    assert by_stage["cached"].endswith("is up to date: nothing installed")
    assert by_stage["synced"].startswith("no workspace packages to push")
    assert float(by_stage["elapsed"]) < 15.0


def _check_first_stages(stages: list[Stage]) -> None:
    names = [s.stage for s in stages if s.machine == "gpu"]
    assert names[:2] == ["requesting", "ssh-ready"]
    assert names.index("ssh-ready") < names.index("ready") < names.index("started")
    assert names.index("synced") < names.index("started")
    assert "bootstrapped" in names or "cached" in names
    synced = next(s.message for s in stages if s.stage == "synced")
    assert synced.startswith("no workspace packages to push"), synced


def _up_and_down(spec: DeploymentSpec, store: StateStore, robot_domain: int) -> dict[str, str]:
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    started = time.monotonic()
    deployment.up()
    elapsed = time.monotonic() - started
    deployment.down()
    found = {s.stage: s.message for s in stages if s.machine == "gpu"}
    found["elapsed"] = str(elapsed)
    return found


def test_unknown_host_fails_the_up_in_one_line_and_leaves_only_the_failed_record(
    ssh_lab: SSHLab, beta: LabHost, tmp_path: Path, robot_domain: int
) -> None:
    store = StateStore(tmp_path / "home")
    spec = _spec("ssh-unknown", ssh_options(ssh_lab, beta, tmp_path / "empty_known_hosts"))
    with pytest.raises(ProvisionError) as caught:
        Deployment(spec, store=store, robot_domain_id=robot_domain).up()
    assert str(caught.value).startswith(
        f"ssh-ready: machine 'gpu': host root@{beta.address}:2222 is not in {tmp_path / 'empty_known_hosts'}"
    )
    assert_failed_and_released(store, "ssh-unknown", "is not in")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"python": "python9"},
            r"^machine 'gpu': Python interpreter 'python9' not found on 10\.231\.\d+\.2 \(.*\): "
            r"install Python 3\.10\+ there, or set option python to its path$",
        ),
        (
            {"ros_setup": "/opt/ros/nowhere/setup.bash"},
            r"^machine 'gpu': ros_setup '/opt/ros/nowhere/setup\.bash' does not exist on this host: "
            r"give the path of a ROS 2 setup\.bash, or 'auto' or 'none'$",
        ),
    ],
)
def test_host_problems_are_named(
    *,
    ssh_lab: SSHLab,
    beta: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    extra: dict[str, OptionValue],
    message: str,
) -> None:
    machine = MachineSpec(
        name="gpu",
        provider="ssh",
        options=tuple(sorted(ssh_options(ssh_lab, beta, known_hosts, **extra).items())),
    )
    provider = SSHProvider(retry=FAST_RETRY)
    with pytest.raises(ProvisionError, match=message):
        provider.create(machine, ProvisionContext(deployment="bad", state_dir=tmp_path))


def test_a_bridge_port_in_use_is_named(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    provider = SSHProvider()
    ctx = ProvisionContext(deployment="ports", state_dir=tmp_path)
    options = ssh_options(ssh_lab, beta, known_hosts, ros_setup="none")
    # sshd itself holds port 2222 on the host.
    taken = MachineSpec(
        name="gpu", provider="ssh", options=tuple(sorted({**options, "bridge_port": 2222}.items()))
    )
    with pytest.raises(
        ProvisionError,
        match=r"^machine 'gpu': bridge_port 2222 is in use on this host: "
        r"pick another bridge_port, or leave it unset$",
    ):
        provider.create(taken, ctx)
