"""The bridges' nodes on their ROS graphs: a bridge named after its deployment, and on the robot
the offloaded nodes themselves, each owning the endpoints of its bridged topics.

Real bridge processes (``bridge_main``) on two DDS domains. Without ROS 2 the robot's graph is
read as rmw reads it (``ros_graph_view``: ros_discovery_info joined with DCPS discovery); with
ROS 2 the real ``ros2 node list`` / ``ros2 node info`` executables read it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zenoh
from net_test_helpers import STRING, TIMEOUT, Inbox, free_tcp_port, string_cdr, wait_for
from ros_graph_view import GraphView, ros2_until

from fogros_dist.errors import ConfigError
from fogros_dist.net.bridge import Bridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.node_names import bridge_node_name
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, TopicSpec, to_json

DEPLOYMENT = "grasp-offload"
CAMERA = TopicSpec(name="/camera/depth", type=STRING)
GRASPS = TopicSpec(name="/grasps", type=STRING)
PLANNER = "/perception/grasp_planner"
VIEWER = "/viewer"
ROBOT_BRIDGE = "/fogros_dist/grasp_offload_bridge"
MACHINE_BRIDGE = "/fogros_dist/grasp_offload_gpu_bridge"


def _specs(robot_domain: int, machine_domain: int, graph: str) -> tuple[BridgeRunSpec, BridgeRunSpec]:
    endpoint = f"tcp/127.0.0.1:{free_tcp_port()}"
    machine = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="machine",
        machine="gpu",
        listen=(endpoint,),
        outbound=(GRASPS,),
        inbound=(CAMERA,),
        domain_id=machine_domain,
        graph=graph,  # type: ignore[arg-type]
        node_name=bridge_node_name(DEPLOYMENT, machine="gpu"),
    )
    robot = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="robot",
        machine="robot",
        connect=(endpoint,),
        outbound=(CAMERA,),
        inbound=(GRASPS,),
        domain_id=robot_domain,
        graph=graph,  # type: ignore[arg-type]
        node_name=bridge_node_name(DEPLOYMENT),
        # The planner publishes /grasps and subscribes to /camera/depth; so does a viewer node
        # that only subscribes: one subscription on the robot, owned by both.
        proxy_nodes=(PLANNER, VIEWER, "/idle"),
        inbound_owners=((GRASPS.name, (PLANNER,)),),
        outbound_owners=((CAMERA.name, (PLANNER, VIEWER)),),
    )
    return robot, machine


@pytest.fixture
def start_bridges(tmp_path: Path) -> Iterator[Callable[[BridgeRunSpec, BridgeRunSpec], None]]:
    """Start a machine and a robot bridge process and wait until both are ready; both are
    stopped (SIGTERM, then SIGKILL by PID) after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(robot: BridgeRunSpec, machine: BridgeRunSpec) -> None:
        for spec in (machine, robot):
            path = tmp_path / f"bridge-{spec.side}.json"
            path.write_text(to_json(spec))
            proc = subprocess.Popen(
                [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            started.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("bridge ready:"), proc.stderr.read() if proc.stderr else ""

    yield start
    for proc in reversed(started):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_robot_graph_shows_the_offloaded_nodes_owning_their_topics(
    new_domain_id: Callable[[], int], start_bridges: Callable[[BridgeRunSpec, BridgeRunSpec], None]
) -> None:
    robot, machine = _specs(new_domain_id(), new_domain_id(), "dds")
    robot_view, machine_view = GraphView(robot.domain_id), GraphView(machine.domain_id)
    try:
        start_bridges(robot, machine)

        def robot_complete(v: GraphView) -> bool:
            return (
                v.topics_of(PLANNER) == ({"rt/grasps"}, {"rt/camera/depth"})
                and v.topics_of(VIEWER) == (set(), {"rt/camera/depth"})
                and v.node("/idle") is not None
            )

        assert robot_view.wait(robot_complete), robot_view.rosters
        participant = robot_view.participant_of(ROBOT_BRIDGE)
        assert participant is not None
        assert [n.full_name for n in robot_view.rosters[participant]] == [
            ROBOT_BRIDGE,
            PLANNER,
            VIEWER,
            "/idle",
        ]
        # Every rt/ endpoint of the bridge's participant is claimed by a node, so nothing shows as
        # _NODE_NAME_UNKNOWN_; the bridge's own node owns none (it only stands in for the others).
        claimed = {g[:16] for n in robot_view.rosters[participant] for g in (*n.reader_gids, *n.writer_gids)}
        own_endpoints = {
            guid
            for table in (robot_view.writers, robot_view.readers)
            for guid, (owner, topic) in table.items()
            if owner == participant[:16] and topic.startswith("rt/")
        }
        assert claimed == own_endpoints
        assert len(own_endpoints) == 2
        assert robot_view.topics_of(ROBOT_BRIDGE) == (set(), set())

        # The machine's graph has no stand-ins: its bridge is one node owning both endpoints.
        assert machine_view.wait(
            lambda v: v.topics_of(MACHINE_BRIDGE) == ({"rt/camera/depth"}, {"rt/grasps"})
        ), machine_view.rosters
        machine_participant = machine_view.participant_of(MACHINE_BRIDGE)
        assert machine_participant is not None
        assert [n.full_name for n in machine_view.rosters[machine_participant]] == [MACHINE_BRIDGE]
    finally:
        robot_view.close()
        machine_view.close()


@pytest.mark.ros
@pytest.mark.parametrize("graph", ["dds", "rclpy"])
def test_ros2_node_list_and_info_on_the_robot_show_the_cloud_nodes(
    graph: str,
    new_domain_id: Callable[[], int],
    start_bridges: Callable[[BridgeRunSpec, BridgeRunSpec], None],
    types: MessageTypes,
) -> None:
    pytest.importorskip("rclpy")
    robot, machine = _specs(new_domain_id(), new_domain_id(), graph)
    start_bridges(robot, machine)

    names = ros2_until(
        ["node", "list"],
        robot.domain_id,
        lambda out: {ROBOT_BRIDGE, PLANNER, VIEWER, "/idle"} <= set(out.split()),
    )
    assert "_NODE_NAME_UNKNOWN_" not in names
    planner = ros2_until(
        ["node", "info", PLANNER], robot.domain_id, lambda out: "/grasps: std_msgs/msg/String" in out
    )
    subscribers, publishers = (
        planner.split("Publishers:")[0],
        planner.split("Publishers:")[1].split("Service")[0],
    )
    assert "/camera/depth: std_msgs/msg/String" in subscribers
    assert "/grasps: std_msgs/msg/String" in publishers
    viewer = ros2_until(["node", "info", VIEWER], robot.domain_id, lambda out: "/camera/depth" in out)
    assert "/grasps" not in viewer
    machine_names = ros2_until(["node", "list"], machine.domain_id, lambda out: MACHINE_BRIDGE in out.split())
    assert PLANNER not in machine_names.split()

    # Owners change nothing about forwarding: one message in, one message out, each way.
    with DdsGraph(robot.domain_id) as robot_app, DdsGraph(machine.domain_id) as machine_app:
        on_machine, on_robot = Inbox(), Inbox()
        camera_in = machine_app.subscribe(CAMERA, on_machine)
        grasps_in = robot_app.subscribe(GRASPS, on_robot)
        camera_out = robot_app.publisher(CAMERA)
        grasps_out = machine_app.publisher(GRASPS)
        assert wait_for(lambda: camera_out.matched_count() >= 1 and camera_in.matched_count() == 1)
        assert wait_for(lambda: grasps_out.matched_count() == 1 and grasps_in.matched_count() == 1)
        camera_out.publish(string_cdr(types, "depth"))
        grasps_out.publish(string_cdr(types, "grasp"))
        assert types.deserialize(STRING, on_machine.get()).data == "depth"  # type: ignore[attr-defined]
        assert types.deserialize(STRING, on_robot.get()).data == "grasp"  # type: ignore[attr-defined]
        assert not wait_for(lambda: not on_machine.empty(), 0.5)  # the stand-in forwarded nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"outbound_owners": (("/grasps", (PLANNER,)),)},
            r"outbound_owners names topic /grasps, which is not an outbound topic of the robot bridge",
        ),
        (
            {"inbound_owners": (("/grasps", ("/someone_else",)),)},
            r"inbound_owners gives topic /grasps the node /someone_else, which is not in proxy_nodes: "
            r"add it there \(known: /idle, /perception/grasp_planner, /viewer\)",
        ),
        (
            {"proxy_nodes": ("/grasp-planner",), "inbound_owners": ()},
            r"node name 'grasp-planner' .* is invalid",
        ),
    ],
)
def test_bridge_refuses_owners_that_do_not_fit_its_topics(
    new_domain_id: Callable[[], int], change: dict[str, object], message: str
) -> None:
    import dataclasses

    robot, _ = _specs(new_domain_id(), new_domain_id(), "dds")
    robot = dataclasses.replace(robot, **change)  # type: ignore[arg-type]
    session = zenoh.open(config_for(robot))
    try:
        with DdsGraph(robot.domain_id) as graph, pytest.raises(ConfigError, match=message):
            Bridge(spec=robot, graph=graph, session=session)
    finally:
        session.close()  # type: ignore[no-untyped-call]
