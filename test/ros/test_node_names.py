"""ROS 2 node names: rmw's rules, full names, and the bridges' names."""

from __future__ import annotations

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.ros.node_names import (
    NodeName,
    bridge_node_name,
    default_node_name,
    full_node_name,
    parse_node_name,
)


@pytest.mark.parametrize(
    ("text", "namespace", "name"),
    [
        ("talker", "/", "talker"),
        ("/talker", "/", "talker"),
        ("/perception/grasp_planner", "/perception", "grasp_planner"),
        ("/a/b_2/_hidden", "/a/b_2", "_hidden"),
    ],
)
def test_parse_node_name_splits_namespace_and_name(text: str, namespace: str, name: str) -> None:
    parsed = parse_node_name(text)
    assert parsed == NodeName(namespace=namespace, name=name)
    assert parsed.full == (text if text.startswith("/") else f"/{text}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grasp-planner", r"node name 'grasp-planner' .* is invalid: .* \(e\.g\. 'grasp_planner'\)"),
        ("/2d_slam", r"node name '2d_slam' .* not starting with a digit \(e\.g\. 'n2d_slam'\)"),
        ("/ns/", r"has no base name"),
        ("ns/talker", r"node name 'ns/talker' is relative: give the full name, e\.g\. '/ns/talker'"),
        ("/my-ns/talker", r"namespace of node '/my-ns/talker' has an invalid part 'my-ns'"),
        ("/a//talker", r"has an invalid part ''"),
        ("/" + "n" * 256, r"is 256 characters long: use at most 255"),
    ],
)
def test_parse_node_name_rejects_what_rmw_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_node_name(text)


def test_full_node_name_joins_namespace_and_name() -> None:
    assert full_node_name(namespace="", name="planner") == "/planner"
    assert full_node_name(namespace="/", name="planner") == "/planner"
    assert full_node_name(namespace="/robot1/", name="planner") == "/robot1/planner"
    with pytest.raises(ConfigError, match=r"namespace 'robot1' of node 'planner' is relative: use '/robot1'"):
        full_node_name(namespace="robot1", name="planner")


@pytest.mark.parametrize(
    ("deployment", "machine", "expected"),
    [
        ("grasp-offload", "", "/fogros_dist/grasp_offload_bridge"),
        ("grasp-offload", "gpu-1", "/fogros_dist/grasp_offload_gpu_1_bridge"),
        ("a--b", "", "/fogros_dist/a_b_bridge"),
        ("launch-4242", "", "/fogros_dist/launch_4242_bridge"),
        ("4you", "lab.gpu", "/fogros_dist/deployment_4you_lab_gpu_bridge"),
    ],
)
def test_bridge_node_name_is_a_valid_ros_name_after_the_deployment(
    deployment: str, machine: str, expected: str
) -> None:
    name = bridge_node_name(deployment, machine=machine)
    assert name == expected
    assert parse_node_name(name).full == name


def test_default_node_names_differ_within_a_process() -> None:
    first, second = default_node_name(), default_node_name()
    assert first != second
    assert parse_node_name(first).namespace == "/"
