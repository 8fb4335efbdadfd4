"""A ROS application for link tests, run as a process (in the machine's namespace or here).

``python link_app.py publish --domain D --topic T --rate HZ --count N [--size B] [--reliability R]
[--depth K]`` waits until a subscription matches (the bridge's), prints ``ready``, waits for
``go`` on stdin, publishes N std_msgs/String messages at HZ whose data is ``"<seq> <send time ns>
"`` padded to B bytes, prints ``sent N`` and exits when stdin closes.

``python link_app.py subscribe --domain D --topic T [--reliability R] [--depth K]`` prints
``ready`` once subscribed, then one ``<seq> <latency ns>`` line per message received.

The payload's sequence number is what the test compares with the bridges' counters: it is the
ground truth of what a real subscriber got.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.spec import QosSpec, TopicSpec

STRING = "std_msgs/msg/String"


def payload_text(seq: int, size: int) -> str:
    """The data of message ``seq``: its number, its send time, padding to ``size`` bytes."""
    head = f"{seq} {time.time_ns()} "
    return head + "x" * max(0, size - len(head))


def parse_payload(text: str) -> tuple[int, int]:
    """``(seq, send time ns)`` of a :func:`payload_text`."""
    seq, sent, _ = text.split(" ", 2)
    return int(seq), int(sent)


def _topic(args: argparse.Namespace) -> TopicSpec:
    return TopicSpec(
        name=args.topic, type=STRING, qos=QosSpec(reliability=args.reliability, depth=args.depth)
    )


def _publish(args: argparse.Namespace) -> int:
    with DdsGraph(args.domain) as graph:
        types = graph.types
        cls = types.message_class(STRING)
        publisher = graph.publisher(_topic(args))
        deadline = time.monotonic() + 30
        while publisher.matched_count() < 1:
            if time.monotonic() > deadline:
                print("error: no subscription matched within 30 s", flush=True)
                return 1
            time.sleep(0.01)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        period = 1.0 / args.rate
        start = time.monotonic()
        for seq in range(1, args.count + 1):
            wait = start + (seq - 1) * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            publisher.publish(types.serialize(STRING, cls(data=payload_text(seq, args.size))))
        print(f"sent {args.count}", flush=True)
        sys.stdin.read()  # keep the writer (and its reliable history) until told to go
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    lock = threading.Lock()
    with DdsGraph(args.domain) as graph:
        types = graph.types

        def on_message(cdr: bytes) -> None:
            seq, sent = parse_payload(types.deserialize(STRING, cdr).data)
            with lock:
                print(f"{seq} {time.time_ns() - sent}", flush=True)

        graph.subscribe(_topic(args), on_message)
        print("ready", flush=True)
        sys.stdin.read()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("publish", "subscribe"))
    parser.add_argument("--domain", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--reliability", default="reliable", choices=("reliable", "best_effort"))
    parser.add_argument("--depth", type=int, default=10)
    args = parser.parse_args()
    return _publish(args) if args.role == "publish" else _subscribe(args)


if __name__ == "__main__":
    sys.exit(main())
