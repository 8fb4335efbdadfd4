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

Services cross as raw CDR too: a server's handler gets each request's CDR (encapsulation header +
request body, without the request id that rmw adds on the wire) and a responder to send the reply
CDR with, at most once, from any thread, at any later time; a client sends request CDR and gets
the reply CDR, or None when no reply came in time. Servers and clients belong to nodes as
publishers and subscriptions do, so ``ros2 service list`` and ``ros2 node info`` show them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from fogros_dist.ros.qos import DiscoveredTopic
from fogros_dist.spec import ServiceSpec, TopicSpec

__all__ = [
    "CdrCallback",
    "RawPublisher",
    "RawServiceClient",
    "RawServiceServer",
    "RawSubscription",
    "RosGraph",
    "ServiceHandler",
    "ServiceResponder",
]

CdrCallback = Callable[[bytes], None]
# Sends the reply CDR of one call; call it at most once, from any thread.
ServiceResponder = Callable[[bytes], None]
# Gets a request's CDR (no rmw request header) and the responder for its reply; it may answer
# later from another thread. A call never answered times out at the ROS client.
ServiceHandler = Callable[[bytes, ServiceResponder], None]


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


class RawServiceServer(Protocol):
    """A service server on the graph, handing each request to a :data:`ServiceHandler`."""

    def close(self) -> None:
        """Withdraw the server; the handler is not called after this returns (replies still
        pending are dropped)."""


class RawServiceClient(Protocol):
    """A client of one service on the graph, exchanging raw CDR."""

    def server_ready(self) -> bool:
        """Whether a server of the service is discovered and matched both ways."""

    def call(self, request_cdr: bytes, timeout: float) -> bytes | None:
        """Send one request (CDR, encapsulation header included) and wait for its reply.

        Waits up to ``timeout`` seconds in all, for a server and then for the reply. Thread-safe:
        calls from several threads are in flight together. Returns the reply CDR, or None when
        no reply came in time or the client was closed meanwhile.
        """

    def close(self) -> None:
        """Withdraw the client; calls in flight return None."""


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

    def discover_topic(self, topic_name: str, timeout: float) -> DiscoveredTopic | None:
        """The type of the publishers on ``topic_name`` (other than this graph's own) and the
        QoS a subscription needs to receive from all of them (reliability, durability, history,
        depth; deadline and lifespan where discovery has them), once at least one was seen
        within ``timeout`` seconds; None if none was. Publishers of another type are left out
        (a type conflict is the graph's to report)."""

    def service_server(
        self, service: ServiceSpec, handler: ServiceHandler, *, nodes: Sequence[str] = ()
    ) -> RawServiceServer:
        """Serve ``service`` (``type`` ``pkg/srv/Type`` set): ``handler`` gets each request.

        ``nodes`` as for :meth:`publisher`. Raises ConfigError for a missing or invalid type, or
        an invalid service or node name.
        """

    def service_client(self, service: ServiceSpec, *, nodes: Sequence[str] = ()) -> RawServiceClient:
        """A client of ``service`` (``type`` set); ``nodes`` as for :meth:`publisher`."""

    def discover_service_type(self, name: str, timeout: float) -> str | None:
        """The type (``pkg/srv/Type``) of a server of ``name`` other than this graph's own, seen
        within ``timeout`` seconds, or None."""

    def close(self) -> None:
        """Leave the graph, closing every publisher, subscription, server and client made here."""
