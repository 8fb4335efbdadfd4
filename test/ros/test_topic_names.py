"""ROS 2 topic and type naming rules, and their DDS / Zenoh forms."""

from __future__ import annotations

import pytest

from fogros_dist.errors import ConfigError, InvalidTopicName, UnknownMessageType
from fogros_dist.ros.names import (
    MAX_TOPIC_NAME_LENGTH,
    dds_topic_name,
    dds_type_name,
    ros_type_name,
    validate_topic_name,
    validate_type_name,
    zenoh_key,
)


@pytest.mark.parametrize("name", ["/chatter", "/camera/depth/image_raw", "/_hidden", "/a1/b_2/C3", "/x"])
def test_valid_topic_names_pass_unchanged(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", r"topic name '' is empty: give an absolute name such as '/chatter'"),
        ("chatter", r"'chatter' is relative: the bridge carries absolute names only: use '/chatter'"),
        ("~/status", r"'~/status' is a private \(~\) name, which only a node can resolve: use the absolute"),
        ("/{ns}/x", r"contains a \{substitution\}: use the resolved absolute name"),
        ("/camera/", r"'/camera/' ends with '/': use '/camera'"),
        ("/a//b", r"'/a//b' contains '//': use '/a/b'"),
        ("/a__b", r"'/a__b' contains '__' \(reserved by ROS 2\): use '/a_b'"),
        ("/cam/2d", r"'/cam/2d' has token '2d' starting with a digit: rename it, e.g. 'n2d'"),
        ("/cam-era", r"contains '-': only letters, digits, '_' and '/' are allowed: replace it with '_'"),
        ("/caméra", r"contains 'é'"),
        ("/", r"topic name '/' is the root namespace, not a topic"),
        ("/" + "a" * MAX_TOPIC_NAME_LENGTH, rf"is {MAX_TOPIC_NAME_LENGTH + 1} characters long: use at most"),
    ],
)
def test_invalid_topic_names_say_rule_value_and_fix(name: str, match: str) -> None:
    with pytest.raises(InvalidTopicName, match=match) as info:
        validate_topic_name(name)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_dds_and_zenoh_forms() -> None:
    assert dds_topic_name("/chatter") == "rt/chatter"
    assert dds_topic_name("/camera/depth") == "rt/camera/depth"
    assert zenoh_key("/camera/depth") == "camera/depth"
    with pytest.raises(InvalidTopicName):
        dds_topic_name("chatter")
    with pytest.raises(InvalidTopicName):
        zenoh_key("/a//b")


def test_type_names_map_both_ways() -> None:
    assert validate_type_name("sensor_msgs/msg/Image") == "sensor_msgs/msg/Image"
    assert dds_type_name("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert ros_type_name("sensor_msgs::msg::dds_::Image_") == "sensor_msgs/msg/Image"
    assert ros_type_name("std_msgs::msg::dds_::String_") == "std_msgs/msg/String"
    assert ros_type_name("MyIdlType") is None
    assert ros_type_name("a::b::C") is None


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("sensor_msgs/Image", r"'sensor_msgs/Image' lacks its interface kind: use 'sensor_msgs/msg/Image'"),
        ("Image", r"'Image' is malformed: use 'package/msg/Type'"),
        ("pkg/service/Foo", r"'pkg/service/Foo' is malformed"),
        ("pkg/msg/Foo-Bar", r"is malformed"),
    ],
)
def test_invalid_type_names(name: str, match: str) -> None:
    with pytest.raises(UnknownMessageType, match=match):
        validate_type_name(name)
