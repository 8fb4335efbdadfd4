"""The RosGraph port: publish and subscribe raw CDR bytes on ROS 2 topics.

Two adapters implement it: :mod:`fogros_dist.ros.dds` (Cyclone DDS speaking the ROS 2 wire format,
no ROS 2 needed) and :mod:`fogros_dist.ros.rclpy_graph` (rclpy, where ROS 2 is installed). The
bridge and the demo nodes only see this protocol. Payloads are whole CDR messages including the
4-byte encapsulation header, exactly what ``rosbags`` ``serialize_cdr`` produces and what rclpy's
serialized messages carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fogros_dist.spec import TopicSpec

__all__ = ["CdrCallback", "RawPublisher", "RawSubscription", "RosGraph"]

CdrCallback = Callable[[bytes], None]


class RawPublisher(Protocol):
    """Publishes already-serialized messages on one topic."""

    def publish(self, cdr: bytes) -> None:
        """Publish one CDR-encoded message (encapsulation header included)."""

    def matched_count(self) -> int:
        """How many subscriptions on the graph currently match this publisher."""

    def close(self) -> None:
        """Withdraw the publisher from the graph."""


class RawSubscription(Protocol):
    """A subscription delivering raw CDR bytes to a callback (on an adapter-owned thread)."""

    def matched_count(self) -> int:
        """How many publishers on the graph currently match this subscription."""

    def close(self) -> None:
        """Withdraw the subscription; the callback is not called after this returns."""


class RosGraph(Protocol):
    """One participant on one ROS 2 graph (one domain)."""

    def publisher(self, topic: TopicSpec) -> RawPublisher:
        """Create a publisher for ``topic``; its ``type`` must be set."""

    def subscribe(self, topic: TopicSpec, callback: CdrCallback) -> RawSubscription:
        """Subscribe to ``topic`` (``type`` set); ``callback`` gets each message's CDR bytes."""

    def discover_type(self, topic_name: str, timeout: float) -> str | None:
        """The message type (``pkg/msg/Type``) of a publisher on ``topic_name`` seen within
        ``timeout`` seconds, or None."""

    def close(self) -> None:
        """Leave the graph, closing every publisher and subscription made here."""
