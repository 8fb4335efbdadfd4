"""edge_detector: a compute node for offloading demos.

Subscribes to ``/camera/image`` (sensor_msgs/msg/Image, mono or color), publishes the Sobel edge
magnitude on ``/camera/edges`` (mono8) with the input's header, so the sender can match replies to
requests and measure the round trip. Remap either topic with ``--ros-args -r``.
"""

from __future__ import annotations

import sys

import numpy as np

from fogros_dist.nodes.images import sobel_magnitude, to_gray
from fogros_dist.nodes.runtime import NodeContext, guarded, run_node
from fogros_dist.spec import QosSpec, TopicSpec

__all__ = ["IMAGE", "main", "setup"]

IMAGE = "sensor_msgs/msg/Image"


def setup(ctx: NodeContext) -> None:
    """Declare the node's publisher and subscription."""
    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes(ctx.distro)
    image_cls = types.message_class(IMAGE)
    qos = QosSpec(depth=5)
    in_topic = ctx.args.topic("/camera/image")
    out_topic = ctx.args.topic("/camera/edges")
    publisher = ctx.graph.publisher(TopicSpec(name=out_topic, type=IMAGE, qos=qos))

    def on_image(cdr: bytes) -> None:
        msg = types.deserialize(IMAGE, cdr)
        edges = sobel_magnitude(to_gray(msg))
        reply = image_cls(
            header=msg.header,
            height=edges.shape[0],
            width=edges.shape[1],
            encoding="mono8",
            is_bigendian=0,
            step=edges.shape[1],
            data=np.ascontiguousarray(edges).reshape(-1),
        )
        publisher.publish(types.serialize(IMAGE, reply))

    ctx.graph.subscribe(TopicSpec(name=in_topic, type=IMAGE, qos=qos), guarded(ctx.log, in_topic, on_image))
    ctx.log.info("edges of %s -> %s", in_topic, out_topic)


def main() -> int:
    """Console-script entry point."""
    return run_node("edge_detector", setup)


if __name__ == "__main__":
    sys.exit(main())
