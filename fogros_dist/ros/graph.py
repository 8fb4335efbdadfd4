"""The RosGraph port: publish and subscribe raw CDR bytes on ROS 2 topics.

Two adapters implement it: :mod:`fogros_dist.ros.dds` (Cyclone DDS speaking the ROS 2 wire format,
no ROS 2 needed) and :mod:`fogros_dist.ros.rclpy_graph` (rclpy, where ROS 2 is installed). The
bridge and the demo nodes only see this protocol. Payloads are whole CDR messages including the
4-byte encapsulation header, exactly what ``rosbags`` ``serialize_cdr`` produces and what rclpy's
serialized messages carry.

Every publisher and subscription belongs to a ROS node on the graph, as ``ros2 node info`` shows
it: by default the graph's own node, or the nodes named with ``nodes=`` (full names such as
``/perception/grasp_planner``). A bridge uses that to make the nodes it stands in for (nodes that
really run on another machine) own the endpoints that carry their topics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    def publisher(self, topic: TopicSpec, *, nodes: Sequence[str] = ()) -> RawPublisher:
        """Create a publisher for ``topic``; its ``type`` must be set.

        ``nodes``: the nodes (full names) it belongs to, each added to the graph the first time it
        is named; empty: the graph's own node. Raises ConfigError for an invalid node name.
        """

    def subscribe(
        self, topic: TopicSpec, callback: CdrCallback, *, nodes: Sequence[str] = ()
    ) -> RawSubscription:
        """Subscribe to ``topic`` (``type`` set); ``callback`` gets each message's CDR bytes.

        ``nodes`` as for :meth:`publisher`; ``callback`` is called once per message however many
        nodes own the subscription.
        """

    def discover_type(self, topic_name: str, timeout: float) -> str | None:
        """The message type (``pkg/msg/Type``) of a publisher on ``topic_name`` seen within
        ``timeout`` seconds, or None."""

    def close(self) -> None:
        """Leave the graph, closing every publisher and subscription made here."""
