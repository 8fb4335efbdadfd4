"""A deployment on an SSH host, end to end: a real sshd in a namespace, the offline runtime install,
the workspace push, the machine bridge there, the robot bridge here, and an image answered by the
remote edge_detector through DDS on both sides."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ssh_fixtures import FAST_RETRY, ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ProvisionError
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.local.process import process_alive
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.remote import selfwheel
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, OptionValue, TopicSpec

pytestmark = pytest.mark.netns

IMAGE = "sensor_msgs/msg/Image"


def _spec(name: str, options: dict[str, OptionValue], workspace: Path | None = None) -> DeploymentSpec:
    return DeploymentSpec(
        name=name,
        machines=(MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items()))),),
        nodes=(
            NodeSpec(
                name="edges",
                package="fogros_dist",
                executable="edge_detector",
                machine="gpu",
                topics_in=(TopicSpec(name="/camera/image", type=IMAGE),),
                topics_out=(TopicSpec(name="/camera/edges", type=IMAGE),),
            ),
        ),
        workspace=str(workspace or ""),
    )


def _edges_round_trip(robot_domain: int) -> Any:
    """Publish a small image on the robot's graph; return the decoded reply from the SSH host."""
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes("jazzy")
    frame = np.zeros((8, 8), dtype=np.uint8)
    frame[2:6, 2:6] = 200
    msg = types.message_class(IMAGE)(
        header=types.message_class("std_msgs/msg/Header")(
            stamp=types.message_class("builtin_interfaces/msg/Time")(sec=1, nanosec=2), frame_id="cam"
        ),
        height=8,
        width=8,
        encoding="mono8",
        is_bigendian=0,
        step=8,
        data=frame.reshape(-1),
    )
    got = threading.Event()
    replies: list[bytes] = []

    def on_edges(cdr: bytes) -> None:
        replies.append(cdr)
        got.set()

    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        pub = graph.publisher(TopicSpec(name="/camera/image", type=IMAGE))
        graph.subscribe(TopicSpec(name="/camera/edges", type=IMAGE), on_edges)
        deadline = time.monotonic() + 30
        while not got.wait(0.2):
            assert time.monotonic() < deadline, "no reply from the SSH host"
            pub.publish(types.serialize(IMAGE, msg))
    finally:
        graph.close()
    return types.deserialize(IMAGE, replies[0])


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
    workspace = _workspace(tmp_path / "ws")
    store = StateStore(tmp_path / "home")
    spec = _spec("ssh-e2e", ssh_options(ssh_lab, alpha, known_hosts), workspace)

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
        reply = _edges_round_trip(robot_domain)
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
        assert int(np.asarray(_edges_round_trip(robot_domain).data).max()) == 255
        # A fresh provider (a new connection) finds it from its record alone.
        assert SSHProvider().attach(host, node).poll() is None
    finally:
        report = deployment.down()
    assert report.terminated_hosts == ("gpu",)
    assert {e.name for e in report.exits} == {"edges", "bridge", "robot-bridge"}
    assert not any(process_alive(r) for r in records if r.machine == "gpu")
    assert store.names() == []

    # Nothing changed: the runtime is cached, the workspace unchanged, and up is quick.
    by_stage = _up_and_down(spec, store, robot_domain)
    assert "bootstrapped" not in by_stage
    assert by_stage["cached"].endswith("is up to date: nothing installed")
    assert by_stage["synced"].startswith("workspace: 0 of 30 files sent: unchanged")
    assert float(by_stage["elapsed"]) < 15.0


def _workspace(root: Path) -> Path:
    """30 source files, and a build/ directory (1 MB) that must not travel."""
    (root / "src" / "pkg").mkdir(parents=True)
    for i in range(30):
        (root / "src" / "pkg" / f"file{i}.py").write_text(f"value = {i}\n" * 100)
    (root / "build").mkdir()
    (root / "build" / "big.o").write_bytes(b"\0" * 1_000_000)
    return root


def _check_first_stages(stages: list[Stage]) -> None:
    names = [s.stage for s in stages if s.machine == "gpu"]
    assert names[:2] == ["requesting", "ssh-ready"]
    # The workspace push overlaps the bridge's start; the node waits for it.
    assert names.index("ssh-ready") < names.index("ready") < names.index("started")
    assert names.index("synced") < names.index("started")
    assert "bootstrapped" in names or "cached" in names
    synced = next(s.message for s in stages if s.stage == "synced")
    assert synced.startswith("workspace: 30 of 30 files sent ("), synced


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


def test_unknown_host_fails_the_up_in_one_line_and_records_nothing(
    ssh_lab: SSHLab, beta: LabHost, tmp_path: Path, robot_domain: int
) -> None:
    store = StateStore(tmp_path / "home")
    spec = _spec("ssh-unknown", ssh_options(ssh_lab, beta, tmp_path / "empty_known_hosts"))
    with pytest.raises(ProvisionError) as caught:
        Deployment(spec, store=store, robot_domain_id=robot_domain).up()
    assert str(caught.value).startswith(
        f"ssh-ready: machine 'gpu': host root@{beta.address}:2222 is not in {tmp_path / 'empty_known_hosts'}"
    )
    assert store.names() == []


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
