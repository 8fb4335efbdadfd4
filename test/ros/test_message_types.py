"""Message types from rosbags typestores: names, RIHS01 hashes, CDR round trips."""

from __future__ import annotations

import numpy as np
import pytest
from ros_test_helpers import make_image

from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.ros.types import SUPPORTED_DISTROS, MessageTypes

# RIHS01 hashes of ROS 2 Jazzy's generated code (std_msgs / sensor_msgs *__description.c).
STRING_HASH = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_resolve_gives_ros_and_dds_names_and_hash(distro: str) -> None:
    image = MessageTypes(distro).resolve("sensor_msgs/msg/Image")
    assert image.name == "sensor_msgs/msg/Image"
    assert image.dds_name == "sensor_msgs::msg::dds_::Image_"
    assert image.distro == distro
    assert image.type_hash.startswith("RIHS01_")
    assert len(image.type_hash) == len("RIHS01_") + 64
    assert MessageTypes(distro).resolve("std_msgs/msg/String").type_hash == STRING_HASH


def test_type_hash_goes_on_the_wire_from_iron_on_only() -> None:
    jazzy = MessageTypes("jazzy").resolve("std_msgs/msg/String")
    humble = MessageTypes("humble").resolve("std_msgs/msg/String")
    assert jazzy.user_data == f"typehash={STRING_HASH};".encode()
    assert humble.user_data == b""


def test_unsupported_distro_lists_supported_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"ROS 2 distro 'rolling' is not supported: use one of humble, .*jazzy"
    ):
        MessageTypes("rolling")
    assert {"humble", "jazzy"} <= set(SUPPORTED_DISTROS)


def test_unknown_type_suggests_close_names_and_the_fix() -> None:
    types = MessageTypes("jazzy")
    with pytest.raises(
        UnknownMessageType,
        match=r"'sensor_msgs/msg/Imag' is not defined in ROS 2 jazzy "
        r"\(did you mean 'sensor_msgs/msg/Image'\?\): "
        r"check the spelling; for a package's own type, build package 'sensor_msgs' and source its "
        r"workspace \(install/setup.bash\) before the launch",
    ):
        types.resolve("sensor_msgs/msg/Imag")
    with pytest.raises(UnknownMessageType, match=r"did you mean 'std_msgs/msg/String'"):
        types.resolve("std_msgs/msg/string")
    with pytest.raises(
        UnknownMessageType, match=r"'Image' is malformed.*did you mean 'sensor_msgs/msg/Image'"
    ):
        types.resolve("Image")
    with pytest.raises(UnknownMessageType, match=r"'nope_msgs/msg/Zzz' is not defined in ROS 2 jazzy: check"):
        types.resolve("nope_msgs/msg/Zzz")


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_string_round_trip_matches_known_cdr(distro: str) -> None:
    types = MessageTypes(distro)
    string_cls = types.message_class("std_msgs/msg/String")
    cdr = types.serialize("std_msgs/msg/String", string_cls(data="hello"))
    # Little-endian CDR header, uint32 length 6 (with NUL), "hello\0".
    assert cdr == b"\x00\x01\x00\x00\x06\x00\x00\x00hello\x00"
    assert types.deserialize("std_msgs/msg/String", cdr).data == "hello"  # type: ignore[attr-defined]


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_image_round_trip_keeps_pixels_as_an_array(distro: str) -> None:
    types = MessageTypes(distro)
    image = make_image(types, 640 * 480 * 3)
    cdr = types.serialize("sensor_msgs/msg/Image", image)
    back = types.deserialize("sensor_msgs/msg/Image", cdr)
    assert isinstance(back.data, np.ndarray)  # type: ignore[attr-defined]
    assert np.array_equal(back.data, image.data)  # type: ignore[attr-defined]
    assert back.header.frame_id == "camera"  # type: ignore[attr-defined]


def test_serialize_and_deserialize_errors_name_type_and_fix() -> None:
    types = MessageTypes("jazzy")
    with pytest.raises(
        ConfigError, match=r"cannot serialize a int object as .std_msgs/msg/String.*message_cl"
    ):
        types.serialize("std_msgs/msg/String", 5)
    with pytest.raises(ConfigError, match=r"14 bytes do not decode as 'sensor_msgs/msg/Image'"):
        types.deserialize("sensor_msgs/msg/Image", b"\x00\x01\x00\x00\x06\x00\x00\x00hello\x00")


def test_register_msg_adds_a_custom_type_without_touching_other_instances() -> None:
    types = MessageTypes("jazzy")
    types.register_msg("grasp_msgs/msg/Grasp", "geometry_msgs/Pose pose\nfloat32 score\nuint8[] mask\n")
    grasp = types.resolve("grasp_msgs/msg/Grasp")
    assert grasp.dds_name == "grasp_msgs::msg::dds_::Grasp_"
    assert "grasp_msgs/msg/Grasp" in types.names()
    assert "grasp_msgs/msg/Grasp" not in MessageTypes("jazzy").names()
    with pytest.raises(
        ConfigError, match=r"definition of 'bad_msgs/msg/Bad' does not parse \(Could not parse\)"
    ):
        types.register_msg("bad_msgs/msg/Bad", "int32")
    with pytest.raises(ConfigError, match=r"uses 'bad_msgs/msg/strin', which ROS 2 jazzy does not define"):
        types.register_msg("bad_msgs/msg/Bad", "strin name")
