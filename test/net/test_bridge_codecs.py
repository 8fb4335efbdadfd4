"""Codecs through a real bridge pair (two Cyclone DDS domains, two Zenoh sessions on loopback):
the graphs see raw Images on both sides, the link carries codec frames, corrupt frames are
counted as dropped_codec and dropped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zenoh
from codec_frames import IMAGE, depth_mm, image_cdr, textured_rgb
from net_test_helpers import DEPLOYMENT, TIMEOUT, Inbox, Link, free_tcp_port, wait_for

from fogros_dist.errors import ConfigError
from fogros_dist.net.bridge import ATTACHMENT, Bridge, wait_for_peer_bridge
from fogros_dist.net.codec_stats import CodecStats
from fogros_dist.net.codecs import AUTO_JPEG_QUALITY, MAGIC, TopicEncoder
from fogros_dist.net.image_codec import psnr_db
from fogros_dist.net.zenoh_config import build_config
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, QosSpec, TopicSpec

PSNR_FLOOR_DB = 38.0


def _topic_stats(bridge: Bridge, name: str, direction: str) -> dict[str, object]:
    for topic in bridge.stats.snapshot()["topics"]:
        if topic["topic"] == name and topic["direction"] == direction:
            return dict(topic)
    raise AssertionError(f"no {direction} stats for {name}")


def _codec(bridge: Bridge, name: str, direction: str) -> dict[str, object]:
    section = _topic_stats(bridge, name, direction)["codec"]
    assert isinstance(section, dict)
    return section


def _connected(link: Link, topic: TopicSpec) -> tuple[object, Inbox]:
    inbox = Inbox()
    subscription = link.machine.app.subscribe(topic, inbox)
    publisher = link.robot.app.publisher(topic)
    assert wait_for(lambda: publisher.matched_count() >= 1)  # type: ignore[attr-defined]
    assert wait_for(lambda: subscription.matched_count() == 1)
    return publisher, inbox


def test_auto_codec_carries_depth_exactly_and_colour_above_the_psnr_floor(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    depth_topic = TopicSpec(name="/camera/depth", type=IMAGE, qos=QosSpec(depth=5))
    colour_topic = TopicSpec(name="/camera/color", type=IMAGE, qos=QosSpec(depth=5))
    link = bridge_link(robot_out=[depth_topic, colour_topic], machine_in=[depth_topic, colour_topic])
    depth_pub, depth_inbox = _connected(link, depth_topic)
    colour_pub, colour_inbox = _connected(link, colour_topic)

    for seed in range(3):
        cdr = image_cdr(types, depth_mm(seed), "16UC1", frame_id="depth", stamp=(seed, 123))
        depth_pub.publish(cdr)  # type: ignore[attr-defined]
        assert depth_inbox.get() == cdr  # lossless: byte for byte
    rgb = textured_rgb(0)
    cdr = image_cdr(types, rgb, "rgb8", frame_id="color_optical", stamp=(77, 88))
    colour_pub.publish(cdr)  # type: ignore[attr-defined]
    got = types.deserialize(IMAGE, colour_inbox.get())
    sent = types.deserialize(IMAGE, cdr)
    for name in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(got, name) == getattr(sent, name)
    assert (got.header.stamp.sec, got.header.stamp.nanosec, got.header.frame_id) == (77, 88, "color_optical")
    assert psnr_db(memoryview(rgb.tobytes()), bytes(got.data)) >= PSNR_FLOOR_DB

    out = _codec(link.robot.bridge, "/camera/depth", "outbound")
    assert out["used"] == {"zstd": 3}
    assert isinstance(out["ratio"], float)
    assert out["ratio"] > 2
    colour_out = _codec(link.robot.bridge, "/camera/color", "outbound")
    assert colour_out["used"] == {f"jpeg:{AUTO_JPEG_QUALITY}": 1}
    psnr = colour_out["psnr_db"]
    assert isinstance(psnr, dict)
    assert psnr["samples"] == 1
    assert psnr["min"] >= PSNR_FLOOR_DB
    assert wait_for(lambda: _topic_stats(link.machine.bridge, "/camera/color", "inbound")["messages"] == 1)
    colour_in = _codec(link.machine.bridge, "/camera/color", "inbound")
    assert colour_in["used"] == {"jpeg": 1}
    assert colour_in["raw_bytes"] == len(cdr)
    assert colour_in["wire_bytes"] == colour_out["wire_bytes"]
    time_ms = colour_in["time_ms"]
    assert isinstance(time_ms, dict)
    assert time_ms["samples"] == 1
    # What crossed the link (outbound bytes) is the compressed size; what was published, the raw.
    assert _topic_stats(link.robot.bridge, "/camera/color", "outbound")["bytes"] == colour_out["wire_bytes"]
    assert _topic_stats(link.machine.bridge, "/camera/color", "inbound")["bytes"] == len(cdr)


def test_codec_none_sends_colour_images_bit_exact(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    topic = TopicSpec(name="/camera/raw", type=IMAGE, codec="none")
    link = bridge_link(robot_out=[topic], machine_in=[topic])
    publisher, inbox = _connected(link, topic)
    cdr = image_cdr(types, textured_rgb(1), "rgb8")
    publisher.publish(cdr)  # type: ignore[attr-defined]
    assert inbox.get() == cdr
    assert _codec(link.machine.bridge, "/camera/raw", "inbound")["used"] == {"none": 1}


def test_corrupt_codec_frames_are_counted_and_dropped_and_forwarding_continues(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    topic = TopicSpec(name="/camera/depth", type=IMAGE)
    link = bridge_link(robot_out=[topic], machine_in=[topic])
    inbox = Inbox()
    subscription = link.machine.app.subscribe(topic, inbox)
    assert wait_for(lambda: subscription.matched_count() == 1)
    good_cdr = image_cdr(types, depth_mm(2), "16UC1")
    encoder = TopicEncoder.for_topic("auto", IMAGE, types=types, stats=CodecStats(), topic="/camera/depth")
    assert encoder is not None
    frame = encoder.encode(good_cdr)
    assert frame[:1] == MAGIC[:1]
    garbled = bytearray(frame)
    garbled[len(frame) // 2 :] = bytes(len(frame) - len(frame) // 2)
    corrupt = [
        frame[:7],
        frame[: len(frame) // 2],
        b"\xf7XX" + frame[3:],
        frame[:3] + b"\x02" + frame[4:],
        bytes(garbled),
    ]
    rogue = zenoh.open(build_config(connect=(f"tcp/127.0.0.1:{link.port}",)))
    try:
        wait_for_peer_bridge(rogue, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
        publisher = rogue.declare_publisher("camera/depth", congestion_control=zenoh.CongestionControl.BLOCK)
        assert wait_for(lambda: publisher.matching_status.matching)
        for seq, payload in enumerate(corrupt, start=1):
            publisher.put(payload, attachment=ATTACHMENT.pack(0, seq))
        publisher.put(frame, attachment=ATTACHMENT.pack(0, len(corrupt) + 1))
        assert inbox.get() == good_cdr  # a frame from any sender decodes; the graph gets raw CDR
    finally:
        rogue.close()
    stats = _topic_stats(link.machine.bridge, "/camera/depth", "inbound")
    assert stats["dropped_codec"] == len(corrupt)
    assert stats["dropped_malformed"] == 0
    assert stats["messages"] == 1
    assert inbox.empty()


def test_a_bad_codec_fails_the_bridge_in_one_line(new_domain_id: Callable[[], int], tmp_path: Path) -> None:
    spec = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="machine",
        machine="gpu",
        outbound=(TopicSpec(name="/scan", type="sensor_msgs/msg/LaserScan", codec="jpeg:80"),),
        domain_id=new_domain_id(),
        graph="dds",
        stats_path=str(tmp_path / "stats.json"),
    )
    graph = DdsGraph(spec.domain_id)
    session = zenoh.open(build_config(listen=(f"tcp/127.0.0.1:{free_tcp_port()}",)))
    try:
        with pytest.raises(
            ConfigError, match=r"^codec 'jpeg:80' of topic /scan applies to sensor_msgs/msg/Image only"
        ):
            Bridge(spec=spec, graph=graph, session=session)
        bad = BridgeRunSpec(**{**spec.__dict__, "outbound": (TopicSpec(name="/scan", codec="jpg"),)})
        with pytest.raises(ConfigError, match=r"^codec 'jpg' of topic /scan is invalid: use 'auto', 'none'"):
            Bridge(spec=bad, graph=graph, session=session)
    finally:
        session.close()
        graph.close()
