"""A deployment onto an SSH host that only a bastion can reach: the connection, the runtime install
(pushed over SFTP and rsync), the node and the bridge's Zenoh link all go through the jump host,
and every later connection (attach, down) takes the same route from the Host record alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import assert_failed_and_released, edge_deployment, edges_round_trip
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ProvisionError
from fogros_dist.providers.local.process import process_alive
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.remote import selfwheel
from fogros_dist.remote.machine import target_from_host
from fogros_dist.spec import MachineSpec, OptionValue

pytestmark = pytest.mark.netns


def _machine(options: dict[str, OptionValue]) -> MachineSpec:
    return MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_up_through_a_bastion_answers_through_the_bridge(
    *,
    ssh_lab: SSHLab,
    bastion: LabHost,
    hidden: LabHost,
    jump_known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)
    # The DDS adapter on the host: what is under test is the route, not ROS 2.
    options = ssh_options(ssh_lab, hidden, jump_known_hosts, ros_setup="none")
    assert options["proxy_jump"] == f"root@{bastion.address}:22"
    spec = edge_deployment("jump-e2e", _machine(options))
    store = StateStore(tmp_path / "home")
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    deployment.up()
    try:
        by_stage = {s.stage: s.message for s in stages if s.machine == "gpu"}
        assert by_stage["ssh-ready"].startswith(f"root@{hidden.address}:2022 via root@{bastion.address}:22")
        port = store.load("jump-e2e").hosts[0].bridge_port
        assert by_stage["forwarded"].startswith(f"bridge port {port}: 127.0.0.1:{port} here -> ")
        host = store.load("jump-e2e").hosts[0]
        # The robot's bridge reaches the machine's through the forward on its own loopback.
        assert host.address == "127.0.0.1"
        assert target_from_host(host).route == f"root@{hidden.address}:2022 via root@{bastion.address}:22"
        node = next(r for r in store.load("jump-e2e").processes if r.name == "edges")
        assert process_alive(node)
        assert hidden.sshd is not None
        assert _netns(node.pid) == _netns(hidden.sshd.pid) != _netns(os.getpid())
        reply = edges_round_trip(robot_domain)
        assert reply.encoding == "mono8"
        assert int(np.asarray(reply.data).max()) == 255
        # A fresh provider (a new connection through the bastion) finds the node from the record.
        assert SSHProvider().attach(host, node).poll() is None
    finally:
        report = deployment.down()
    assert report.terminated_hosts == ("gpu",)
    assert report.errors == ()
    assert not process_alive(node)
    assert store.names() == []


def test_an_unknown_bastion_fails_the_up_in_one_line_and_leaves_only_the_failed_record(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path, robot_domain: int
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(hidden.known_hosts_line())
    spec = edge_deployment("jump-unknown", _machine(ssh_options(ssh_lab, hidden, known)))
    store = StateStore(tmp_path / "home")
    with pytest.raises(ProvisionError) as caught:
        Deployment(spec, store=store, robot_domain_id=robot_domain).up()
    message = str(caught.value)
    assert message.startswith(
        f"ssh-ready: machine 'gpu': jump host root@{bastion.address}:22 is not in {known} "
        f"(it presents ssh-ed25519 {bastion.fingerprint()})"
    )
    assert "\n" not in message
    assert_failed_and_released(store, "jump-unknown", "is not in")
    assert known.read_text() == hidden.known_hosts_line()
