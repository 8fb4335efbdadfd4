"""Raw DDS cost: one sensor_msgs/Image through DdsGraph between two processes on loopback.

The sender process publishes an image and waits for an acknowledgement; the receiver process
stamps CLOCK_MONOTONIC (one clock for the whole host) the moment its callback gets the bytes and
sends the stamp back. One-way latency = receive stamp - stamp taken just before ``publish``.

    .venv/bin/python bench/dds_latency.py [--count 50] [--domain 229]

DDS stays on ``lo`` (fogros_dist.ros.cyclone_config.loopback_config).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import struct
import subprocess
import sys
import time

import numpy as np

from fogros_dist.ros.cyclone_config import apply_loopback_config
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec

IMAGE = "sensor_msgs/msg/Image"
STAMP = "builtin_interfaces/msg/Time"
QOS = QosSpec(reliability="reliable", durability="volatile", depth=1)
IMAGES = TopicSpec(name="/bench/image", type=IMAGE, qos=QOS)
ACKS = TopicSpec(name="/bench/ack", type=STAMP, qos=QosSpec(depth=10))
SIZES = {"1 KB": 1_000, "1 MB": 1_000_000, "6 MB": 6_000_000}


def image_cdr(types: MessageTypes, pixels: int) -> bytes:
    image = types.message_class(IMAGE)
    header = types.message_class("std_msgs/msg/Header")
    stamp = types.message_class(STAMP)
    width = max(1, pixels // 3)
    msg = image(
        header=header(stamp=stamp(sec=0, nanosec=0), frame_id="camera"),
        height=1,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.random.default_rng(0).integers(0, 255, width * 3, dtype=np.uint8),
    )
    return types.serialize(IMAGE, msg)


def receiver(domain: int) -> int:
    """Acknowledge each image with the CLOCK_MONOTONIC time it arrived (as a Time message)."""
    with DdsGraph(domain) as graph:
        acks = graph.publisher(ACKS)

        def on_image(_cdr: bytes) -> None:
            now = time.monotonic_ns()
            # builtin_interfaces/Time CDR: header, int32 sec, uint32 nanosec.
            acks.publish(b"\x00\x01\x00\x00" + struct.pack("<iI", now // 10**9, now % 10**9))

        graph.subscribe(IMAGES, on_image)
        print("ready", flush=True)
        sys.stdin.read()
    return 0


def sender(domain: int, count: int) -> int:
    types = MessageTypes("jazzy")
    peer = subprocess.Popen(
        [sys.executable, __file__, "--receiver", "--domain", str(domain)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline().strip() == "ready"
        with DdsGraph(domain) as graph:
            inbox: queue.Queue[bytes] = queue.Queue()
            acks = graph.subscribe(ACKS, inbox.put)
            images = graph.publisher(IMAGES)
            deadline = time.monotonic() + 10
            while images.matched_count() < 1 or acks.matched_count() < 1:
                if time.monotonic() > deadline:
                    raise SystemExit("receiver did not match within 10 s")
                time.sleep(0.001)
            heading = ("size", "cdr bytes", "one-way median", "p90", "round trip", "publish()")
            print("{:>6} {:>10} {:>15} {:>8} {:>11} {:>10}".format(*heading))
            for label, pixels in SIZES.items():
                cdr = image_cdr(types, pixels)
                one_way, round_trip, publish = [], [], []
                for i in range(count + 5):  # the first 5 warm up caches and Cyclone's buffers
                    start = time.monotonic_ns()
                    images.publish(cdr)
                    published = time.monotonic_ns()
                    ack = inbox.get(timeout=10)
                    back = time.monotonic_ns()
                    sec, nanosec = struct.unpack("<iI", ack[4:12])
                    if i >= 5:
                        one_way.append((sec * 10**9 + nanosec - start) / 1e6)
                        round_trip.append((back - start) / 1e6)
                        publish.append((published - start) / 1e6)
                p90 = statistics.quantiles(one_way, n=10)[-1]
                print(
                    f"{label:>6} {len(cdr):>10} {statistics.median(one_way):>12.3f} ms {p90:>5.3f} ms"
                    f" {statistics.median(round_trip):>8.3f} ms {statistics.median(publish):>7.3f} ms"
                )
    finally:
        peer.communicate(input="", timeout=10)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="measured messages per size")
    parser.add_argument("--domain", type=int, default=229, help="DDS domain to use (0..232)")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    apply_loopback_config()  # before any participant: this benchmark never leaves lo
    if args.receiver:
        return receiver(args.domain)
    return sender(args.domain, args.count)


if __name__ == "__main__":
    sys.exit(main())
