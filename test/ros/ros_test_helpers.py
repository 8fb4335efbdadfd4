"""Helpers shared by the ROS layer's tests (a plain module: conftest files cannot be imported)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from fogros_dist.ros.types import MessageTypes

Waiter = Callable[[Callable[[], bool], float], bool]
TIMEOUT = 5.0


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """True as soon as ``condition()`` holds, False if it still fails after ``timeout`` seconds.

    For DDS matching, which the RosGraph port offers no event for; the check is cheap, so it
    runs every millisecond.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class Inbox:
    """Collects what a subscription delivers; ``get`` waits for the next message."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue()
        self.threads: set[str] = set()

    def __call__(self, cdr: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        self._queue.put(cdr)

    def get(self, timeout: float = TIMEOUT) -> bytes:
        return self._queue.get(timeout=timeout)

    def empty(self) -> bool:
        return self._queue.empty()


def string_cdr(types: MessageTypes, text: str) -> bytes:
    """A std_msgs/msg/String message, serialized."""
    return types.serialize("std_msgs/msg/String", types.message_class("std_msgs/msg/String")(data=text))


def make_image(types: MessageTypes, size: int) -> object:
    """A mono8 sensor_msgs/Image with ``size`` pixel bytes."""
    image_cls = types.message_class("sensor_msgs/msg/Image")
    header_cls = types.message_class("std_msgs/msg/Header")
    time_cls = types.message_class("builtin_interfaces/msg/Time")
    pixels = np.arange(size, dtype=np.uint8)
    return image_cls(
        header=header_cls(stamp=time_cls(sec=1, nanosec=2), frame_id="camera"),
        height=1,
        width=size,
        encoding="mono8",
        is_bigendian=0,
        step=size,
        data=pixels,
    )
