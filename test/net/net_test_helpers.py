"""Helpers shared by the net layer's tests (a plain module: conftest files cannot be imported)."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fogros_dist.net.bridge import Bridge
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec

TIMEOUT = 5.0
STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"
DEPLOYMENT = "test-net"


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """True as soon as ``condition()`` holds, False if it still fails after ``timeout`` seconds.

    For states that offer no event to wait on (DDS matching, a counter in another thread); the
    check is cheap, so it runs every millisecond.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """Collects what a graph subscription delivers; ``get`` waits for the next message."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue()

    def __call__(self, cdr: bytes) -> None:
        self._queue.put(cdr)

    def get(self, timeout: float = TIMEOUT) -> bytes:
        return self._queue.get(timeout=timeout)

    def empty(self) -> bool:
        return self._queue.empty()


def string_cdr(types: MessageTypes, text: str) -> bytes:
    """A std_msgs/msg/String message, serialized by rosbags."""
    return types.serialize(STRING, types.message_class(STRING)(data=text))


@dataclass
class Side:
    """One side of the link: the bridge, its graph and session, and an application graph on the
    same domain for the test's own publishers and subscribers (the bridge's graph ignores its
    own participant, as rmw does)."""

    spec: BridgeRunSpec
    graph: DdsGraph
    app: DdsGraph
    session: Any
    bridge: Bridge


@dataclass
class Link:
    robot: Side
    machine: Side
    port: int
    closers: list[Callable[[], None]] = field(default_factory=list)
