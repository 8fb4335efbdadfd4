"""The user's own interface types: found in a workspace or an install prefix, carried in the spec,
registered by each bridge, bridged both ways and validated like stock types.

Real parts only: the definition files a test writes in the layouts colcon and ament use, two
bridge processes' code (``bridge_main.run``) on two Cyclone DDS domains, and Zenoh over loopback
TCP. The ROS 2 lane (real rclpy, a colcon-built package) is ``test_interfaces_ros2.py``.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zenoh
from bridge_threads import free_port, run_bridges
from interface_packages import (
    BOX,
    DETECTION,
    FILES,
    IDL_FILES,
    LOCATE,
    TRACK,
    install_prefix,
    source_package,
)
from ros_test_helpers import Inbox

from fogros_dist.deploy.plan import make_plan
from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.net.bridge import ATTACHMENT, query_stats, wait_for_peer_bridge
from fogros_dist.net.bridge_main import run
from fogros_dist.net.zenoh_config import build_config
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.interfaces import InterfaceIndex, needed_interfaces, register_interfaces
from fogros_dist.ros.names import zenoh_key
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import (
    BridgeRunSpec,
    DeploymentSpec,
    InterfaceDef,
    MachineSpec,
    NodeSpec,
    TopicSpec,
    from_json,
    to_json,
)

DEPLOYMENT = "test-interfaces"
FEEDBACK = "lab_msgs/action/Track_FeedbackMessage"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A colcon workspace with ``lab_msgs`` and a package whose interface is never needed."""
    root = tmp_path / "ws"
    source_package(root / "src")
    other = root / "src" / "other_msgs"
    (other / "msg").mkdir(parents=True)
    (other / "package.xml").write_text(
        (root / "src" / "lab_msgs" / "package.xml").read_text().replace("lab_msgs", "other_msgs")
    )
    (other / "msg" / "Unused.msg").write_text("int32 x\n")
    return root


def _find(names: list[str], index: InterfaceIndex) -> tuple[InterfaceDef, ...]:
    return needed_interfaces(names, types=MessageTypes("jazzy"), index=index)


def test_source_workspace_gives_only_the_closure_dependencies_first(workspace: Path) -> None:
    index = InterfaceIndex(workspaces=(workspace,))
    found = _find([DETECTION], index)
    assert [(d.name, d.format) for d in found] == [(BOX, "msg"), (DETECTION, "msg")]
    assert found[1].text == FILES["msg/Detection.msg"]
    # A service and an action's feedback topic pull in their interfaces and what those use.
    found = _find([f"{LOCATE}_Request", FEEDBACK], index)
    assert [d.name for d in found] == [BOX, DETECTION, LOCATE, TRACK]
    assert {d.format for d in found} == {"msg", "srv", "action"}
    # Stock types (std_msgs/Header, the action's UUID and Time) never travel.
    assert _find(["std_msgs/msg/Header", "rcl_interfaces/srv/GetParameters"], index) == ()


def test_install_prefix_is_found_and_the_workspace_wins_over_it(tmp_path: Path, workspace: Path) -> None:
    empty = tmp_path / "empty_prefix"
    empty.mkdir()
    installed = install_prefix(tmp_path / "install" / "lab_msgs")
    environ = {"AMENT_PREFIX_PATH": f"{empty}:{installed}:{installed}"}
    index = InterfaceIndex.from_environment(environ=environ)
    assert index.prefixes == (empty, installed)
    assert [d.name for d in _find([DETECTION], index)] == [BOX, DETECTION]

    # The workspace's copy is what is being offloaded: it wins over the installed one.
    changed = dict(FILES, **{"msg/BoundingBox.msg": "float64 x\nfloat64 y\n"})
    newer = tmp_path / "newer"
    source_package(newer / "src", files=changed)
    index = InterfaceIndex.from_environment(workspaces=[newer], environ=environ)
    box = _find([DETECTION], index)[0]
    assert box.text == "float64 x\nfloat64 y\n"


def test_idl_only_definitions_register_with_the_msg_files_hashes(tmp_path: Path) -> None:
    from_msg = MessageTypes("jazzy")
    register_interfaces(
        from_msg, _find([DETECTION], InterfaceIndex(prefixes=(install_prefix(tmp_path / "a"),)))
    )
    idl_prefix = install_prefix(tmp_path / "b", files=IDL_FILES)
    found = _find([DETECTION], InterfaceIndex(prefixes=(idl_prefix,)))
    assert [(d.name, d.format) for d in found] == [(BOX, "idl"), (DETECTION, "idl")]
    from_idl = MessageTypes("jazzy")
    register_interfaces(from_idl, found)
    for name in (BOX, DETECTION):
        assert from_idl.resolve(name).type_hash == from_msg.resolve(name).type_hash
    assert from_idl.field_definitions(DETECTION)[0] == from_msg.field_definitions(DETECTION)[0]


def test_services_and_actions_become_the_messages_rmw_carries(workspace: Path) -> None:
    types = MessageTypes("jazzy")
    register_interfaces(types, _find([LOCATE, TRACK], InterfaceIndex(workspaces=(workspace,))))
    fields = {name: [f for f, _ in types.field_definitions(name)[1]] for name in _action_messages(TRACK)}
    assert fields == {
        f"{TRACK}_Goal": ["label", "max_frames"],
        f"{TRACK}_Result": ["frames"],
        f"{TRACK}_Feedback": ["latest"],
        f"{TRACK}_SendGoal_Request": ["goal_id", "goal"],
        f"{TRACK}_SendGoal_Response": ["accepted", "stamp"],
        f"{TRACK}_GetResult_Request": ["goal_id"],
        f"{TRACK}_GetResult_Response": ["status", "result"],
        f"{TRACK}_FeedbackMessage": ["goal_id", "feedback"],
    }
    assert types.resolve(f"{LOCATE}_Response").dds_name == "lab_msgs::srv::dds_::Locate_Response_"
    # A bare 'Detection' inside a .srv is the package's message, as rosidl reads it.
    response_cls = types.message_class(f"{LOCATE}_Response")
    detection = _detection(types, "cup")
    cdr = types.serialize(f"{LOCATE}_Response", response_cls(found=True, detection=detection))
    assert types.deserialize(f"{LOCATE}_Response", cdr).detection.label == "cup"


# RIHS01 hashes that rosidl generates in ROS 2 Jazzy (the typehash= rmw announces for each).
@pytest.mark.parametrize(
    ("type_name", "rihs01"),
    [
        (
            "example_interfaces/srv/AddTwoInts_Request",
            "000c5fd92d6b2e1a05949348f584d6d652adea1e92d691792011ac2273508302",
        ),
        (
            "example_interfaces/srv/AddTwoInts_Response",
            "de5c030d4af33cba2749310b249737b631594703f9300495f48bffb2b44dcc2f",
        ),
        ("std_srvs/srv/Trigger_Request", "d010825374ce8918e72bfd826c82603e60f45419e932ea976f807b74a863a199"),
        ("std_srvs/srv/Trigger_Response", "2d946c21e2fc3f1e9ca6986a8191d85fcc70097a8bb7771a053564bc47009cdf"),
        (
            "example_interfaces/action/Fibonacci_SendGoal_Request",
            "3d088942b413247db536576f0286768c6be8fcd5d0c9a5d544f359fba090a238",
        ),
        (
            "example_interfaces/action/Fibonacci_SendGoal_Response",
            "d8c07bb3d5b766fe4b43159c9a5222af5214e2fcc29229b991d826166c512be1",
        ),
        (
            "example_interfaces/action/Fibonacci_Result",
            "fea81394f25aa4502217953f1a021fb750e79c10bbd43f13dd94632da6569649",
        ),
        (
            "example_interfaces/action/Fibonacci_Feedback",
            "2b12e37361da6f408d4c85bc24a18de64333f29082f2ca34b5ee33dc4c8b42a9",
        ),
    ],
)
def test_shipped_stock_services_and_actions_have_ros2s_type_hashes(type_name: str, rihs01: str) -> None:
    types = MessageTypes("jazzy")
    assert types.resolve(type_name).type_hash == f"RIHS01_{rihs01}"
    assert types.knows_interface(type_name.rsplit("_", 1)[0].removesuffix("_SendGoal"))


def test_shipped_parameter_services_resolve_in_every_distro() -> None:
    for distro in ("humble", "iron", "jazzy", "kilted"):
        types = MessageTypes(distro)
        for name in ("DescribeParameters", "GetParameterTypes", "GetParameters", "ListParameters"):
            assert types.resolve(f"rcl_interfaces/srv/{name}_Request").distro == distro
        for name in ("SetParameters", "SetParametersAtomically"):
            assert types.field_definitions(f"rcl_interfaces/srv/{name}_Response")[1]
        assert [f for f, _ in types.field_definitions("action_msgs/srv/CancelGoal_Response")[1]] == [
            "return_code",
            "goals_canceling",
        ]


def test_not_found_names_the_type_where_it_looked_and_the_fix(tmp_path: Path, workspace: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    index = InterfaceIndex(workspaces=(workspace,), prefixes=(prefix,))
    ws, pre = re.escape(str(workspace)), re.escape(str(prefix))
    with pytest.raises(
        UnknownMessageType,
        match=(
            r"message type 'nope_msgs/msg/Thing' is not defined in ROS 2 jazzy and no package "
            rf"'nope_msgs' in workspace {ws}; AMENT_PREFIX_PATH {pre}: build package 'nope_msgs' "
            r"\(colcon build\) and source its install/setup.bash before the launch, or set the "
            r"deployment's workspace"
        ),
    ):
        _find(["nope_msgs/msg/Thing"], index)
    with pytest.raises(
        UnknownMessageType,
        match=rf"package 'lab_msgs' at {ws}/src/lab_msgs has no msg/Nope.msg or .idl: check the spelling",
    ):
        _find(["lab_msgs/msg/Nope"], index)
    with pytest.raises(
        UnknownMessageType,
        match=r"'sensor_msgs/msg/Imag' is not defined in ROS 2 jazzy "
        r"\(did you mean 'sensor_msgs/msg/Image'\?\) "
        r"and its stock package 'sensor_msgs' has no such type: check the spelling",
    ):
        _find(["sensor_msgs/msg/Imag"], index)
    # A dependency missing from the package: the message names who uses it.
    broken = tmp_path / "broken"
    source_package(broken / "src", files={"msg/Detection.msg": "Missing part\n"})
    with pytest.raises(
        UnknownMessageType, match=r"'lab_msgs/msg/Missing' \(used by 'lab_msgs/msg/Detection'\)"
    ):
        _find([DETECTION], InterfaceIndex(workspaces=(broken,)))


def test_definitions_that_do_not_parse_are_one_line(tmp_path: Path) -> None:
    types = MessageTypes("jazzy")
    with pytest.raises(
        ConfigError, match=r"lab_msgs/srv/Locate.srv has 0 '---' lines: a .srv has exactly one"
    ):
        types.register_interface(InterfaceDef(name=LOCATE, format="srv", text="string label\n"))
    with pytest.raises(ConfigError, match=r"definition of 'lab_msgs/msg/Box' \(msg\) does not parse"):
        types.register_interface(InterfaceDef(name="lab_msgs/msg/Box", format="msg", text="float32\n"))
    with pytest.raises(ConfigError, match=r"interface 'lab_msgs/msg/Box' has format 'srv'"):
        types.register_interface(InterfaceDef(name="lab_msgs/msg/Box", format="srv", text="a\n---\nb\n"))


def test_plan_carries_the_definitions_in_the_spec(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.delenv("COLCON_PREFIX_PATH", raising=False)
    node = NodeSpec(
        name="tracker",
        package="lab_tracker",
        executable="tracker",
        machine="gpu",
        topics_in=(TopicSpec(name="/detections", type=DETECTION),),
        topics_out=(TopicSpec(name="/chatter", type="std_msgs/msg/String"),),
    )
    spec = DeploymentSpec(
        name="lab",
        machines=(MachineSpec(name="gpu"),),
        nodes=(node,),
        workspace=str(workspace),
        distro="jazzy",
    )
    plan = make_plan(spec)
    assert [d.name for d in plan.spec.interfaces] == [BOX, DETECTION]
    # The spec that reaches the state file and every bridge carries the texts, not a pickle.
    assert from_json(DeploymentSpec, to_json(plan.spec)) == plan.spec
    assert make_plan(plan.spec).spec.interfaces == plan.spec.interfaces  # planning again adds nothing

    missing = dataclasses.replace(node, topics_in=(TopicSpec(name="/x", type="lab_msgs/msg/Gone"),))
    with pytest.raises(
        UnknownMessageType, match=r"'lab_msgs/msg/Gone' is not defined in ROS 2 jazzy and package"
    ):
        make_plan(dataclasses.replace(spec, nodes=(missing,)))


def test_custom_types_are_bridged_both_ways_and_validated(
    workspace: Path, new_domain_id: Callable[[], int], tmp_path: Path
) -> None:
    interfaces = _find([DETECTION, FEEDBACK], InterfaceIndex(workspaces=(workspace,)))
    assert "lab_msgs/msg/Detection" not in MessageTypes("jazzy").names()  # only the spec has them
    detections = TopicSpec(name="/detections", type=DETECTION)
    feedback = TopicSpec(name="/track/_action/feedback", type=FEEDBACK)
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    machine_domain, robot_domain = new_domain_id(), new_domain_id()
    machine = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="machine",
        machine="gpu",
        listen=(endpoint,),
        inbound=(detections,),
        outbound=(feedback,),
        domain_id=machine_domain,
        stats_path=str(tmp_path / "machine-stats.json"),
        interfaces=interfaces,
    )
    robot = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="robot",
        machine="robot",
        connect=(endpoint,),
        outbound=(detections,),
        inbound=(feedback,),
        domain_id=robot_domain,
        stats_path=str(tmp_path / "robot-stats.json"),
        interfaces=interfaces,
    )
    # As the engine hands them over: JSON files, read back by each bridge process.
    machine, robot = (from_json(BridgeRunSpec, to_json(s)) for s in (machine, robot))
    # The user's own nodes have the types from their own build.
    app_types = MessageTypes("jazzy")
    register_interfaces(app_types, interfaces)
    with run_bridges(machine, robot):
        robot_app = DdsGraph(robot_domain, types=app_types)
        machine_app = DdsGraph(machine_domain, types=app_types)
        try:
            arrived = Inbox()
            machine_app.subscribe(detections, arrived)
            good = app_types.serialize(DETECTION, _detection(app_types, "person"))
            back = app_types.deserialize(DETECTION, _deliver(robot_app.publisher(detections), arrived, good))
            assert (back.label, back.box.width, back.header.frame_id) == ("person", 64.0, "camera")

            returned = Inbox()
            robot_app.subscribe(feedback, returned)
            message_cls = app_types.message_class(FEEDBACK)
            uuid = app_types.message_class("unique_identifier_msgs/msg/UUID")
            goal = uuid(uuid=np.arange(16, dtype=np.uint8))
            fb_cls = app_types.message_class(f"{TRACK}_Feedback")
            cdr = app_types.serialize(
                FEEDBACK, message_cls(goal_id=goal, feedback=fb_cls(latest=_detection(app_types, "cup")))
            )
            got = _deliver(machine_app.publisher(feedback), returned, cdr)
            assert app_types.deserialize(FEEDBACK, got).feedback.latest.label == "cup"

            _malformed_is_dropped(endpoint, arrived, good)
        finally:
            robot_app.close()
            machine_app.close()
    # Without the spec's definitions the same bridge refuses the type, naming it.
    bare = dataclasses.replace(machine, interfaces=(), listen=(f"tcp/127.0.0.1:{free_port()}",))
    with pytest.raises(
        UnknownMessageType, match=r"'lab_msgs/action/Track_FeedbackMessage' is not defined in"
    ):
        run(bare, stop=threading.Event())


def _malformed_is_dropped(endpoint: str, arrived: Inbox, good: bytes) -> None:
    bad = [good[:-3], good + b"\x00" * 16]  # truncated inside the score; trailing garbage
    rogue = zenoh.open(build_config(connect=(endpoint,)))
    try:
        wait_for_peer_bridge(rogue, deployment=DEPLOYMENT, machine="gpu", timeout=10.0)
        publisher = rogue.declare_publisher(
            zenoh_key("/detections"), congestion_control=zenoh.CongestionControl.BLOCK
        )
        deadline = time.monotonic() + 10.0
        while not publisher.matching_status.matching:
            assert time.monotonic() < deadline, "the rogue publisher never matched the machine bridge"
            time.sleep(0.01)
        while not arrived.empty():
            arrived.get()
        for payload in bad:
            publisher.put(payload, attachment=ATTACHMENT.pack(0, 1))
        publisher.put(good)
        assert arrived.get(timeout=10.0) == good
        stats = _inbound_stats(rogue, "/detections")
        deadline = time.monotonic() + 10.0
        while stats["dropped_malformed"] < len(bad) and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = _inbound_stats(rogue, "/detections")
        assert stats["dropped_malformed"] == len(bad)
        assert arrived.empty()
    finally:
        rogue.close()  # type: ignore[no-untyped-call]


def _inbound_stats(session: zenoh.Session, name: str) -> dict[str, Any]:
    snapshot = query_stats(session, deployment=DEPLOYMENT, machine="gpu", timeout=5.0)
    for topic in snapshot["topics"]:
        if topic["topic"] == name and topic["direction"] == "inbound":
            return dict(topic)
    raise AssertionError(f"no inbound stats for {name}: {snapshot}")


def _deliver(publisher: Any, inbox: Inbox, cdr: bytes, timeout: float = 30.0) -> bytes:
    """Publish ``cdr`` until it arrives (the bridges may still be matching); returns what came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(cdr)
        try:
            got = inbox.get(timeout=0.5)
        except queue.Empty:
            continue
        if got == cdr:
            return got
    raise AssertionError(f"{len(cdr)} bytes never came across the bridges in {timeout:g} s")


def _detection(types: MessageTypes, label: str) -> Any:
    header = types.message_class("std_msgs/msg/Header")
    stamp = types.message_class("builtin_interfaces/msg/Time")
    box = types.message_class(BOX)
    detection = types.message_class(DETECTION)
    return detection(
        header=header(stamp=stamp(sec=12, nanosec=34), frame_id="camera"),
        box=box(x=1.0, y=2.0, width=64.0, height=48.0),
        label=label,
        score=0.875,
    )


def _action_messages(action: str) -> list[str]:
    suffixes = ("Goal", "Result", "Feedback", "SendGoal_Request", "SendGoal_Response")
    suffixes += ("GetResult_Request", "GetResult_Response", "FeedbackMessage")
    return [f"{action}_{suffix}" for suffix in suffixes]
