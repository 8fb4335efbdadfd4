"""The far end of the cross-process wire tests: a DdsGraph that republishes what it receives.

Usage: python dds_echo_peer.py DOMAIN TYPE:IN_TOPIC:OUT_TOPIC [...]
Prints "ready" once its endpoints exist, then runs until its stdin closes.
"""

from __future__ import annotations

import sys

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.spec import QosSpec, TopicSpec


def main(argv: list[str]) -> int:
    domain, *routes = argv
    qos = QosSpec(depth=4)
    with DdsGraph(int(domain)) as graph:
        for route in routes:
            type_name, inbound, outbound = route.split(":")
            publisher = graph.publisher(TopicSpec(name=outbound, type=type_name, qos=qos))
            graph.subscribe(TopicSpec(name=inbound, type=type_name, qos=qos), publisher.publish)
        print("ready", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
