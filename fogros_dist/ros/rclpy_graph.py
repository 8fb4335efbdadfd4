"""The RosGraph port on rclpy, for machines with ROS 2 installed (and sourced).

The graph owns a private rclpy Context, one node and a single-threaded executor spinning on its
own thread, so it neither needs nor disturbs ``rclpy.init()`` of the host program. Messages cross
as serialized bytes both ways (``raw=True`` subscriptions; ``Publisher.publish(bytes)``), so
nothing is converted to Python messages.

rclpy is imported inside the functions that need it: importing this module never requires ROS 2.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

from fogros_dist.errors import BridgeError, ConfigError, MissingDependency, UnknownMessageType
from fogros_dist.ros.domain import resolve_domain_id
from fogros_dist.ros.graph import CdrCallback
from fogros_dist.ros.names import validate_topic_name, validate_type_name
from fogros_dist.spec import QosSpec, TopicSpec

__all__ = ["RclpyGraph", "RclpyPublisher", "RclpySubscription", "import_rclpy"]

_log = logging.getLogger(__name__)
# ROS 2's `launch` makes every logger created after its import non-propagating (LaunchLogger):
# ours must still reach the host program's root handlers.
_log.propagate = True
_node_ids = itertools.count()
# How often discover_type looks at the graph: rclpy offers no wait on graph changes to Python.
_DISCOVERY_POLL = 0.02


def import_rclpy() -> Any:
    """Import rclpy, or explain how to get it.

    Raises:
        MissingDependency: rclpy (a ROS 2 installation) is not importable.
    """
    try:
        import rclpy
    except ImportError as err:
        msg = (
            f"the rclpy graph adapter needs ROS 2's rclpy ({err}): source /opt/ros/<distro>/setup.bash, "
            "or use graph='dds', which needs no ROS 2"
        )
        raise MissingDependency(msg) from err
    return rclpy


def message_class(type_name: str) -> Any:
    """The generated rclpy message class for ``pkg/msg/Type``.

    Raises:
        UnknownMessageType: the name is malformed or no installed package provides it.
        MissingDependency: ROS 2 is not importable.
    """
    validate_type_name(type_name)
    import_rclpy()
    from rosidl_runtime_py.utilities import get_message

    try:
        return get_message(type_name)
    except (AttributeError, ModuleNotFoundError, ValueError) as err:
        pkg = type_name.split("/", 1)[0]
        msg = (
            f"message type {type_name!r} is not installed in this ROS 2 environment ({err}): "
            f"build package {pkg!r} and source its workspace"
        )
        raise UnknownMessageType(msg) from err


def _qos_profile(qos: QosSpec) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    # rclpy's QoSProfile is untyped where ROS 2 is installed, and unknown (Any) where it is not.
    return QoSProfile(  # type: ignore[no-untyped-call,unused-ignore]
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE
        if qos.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
    )


class RclpyPublisher:
    """Publishes serialized messages through an rclpy publisher. Made by RclpyGraph."""

    def __init__(self, *, graph: RclpyGraph, topic: TopicSpec, publisher: Any) -> None:
        self._graph = graph
        self._topic = topic
        self._publisher: Any = publisher
        self._lock = threading.Lock()

    @property
    def topic(self) -> TopicSpec:
        """The topic this publisher writes."""
        return self._topic

    def publish(self, cdr: bytes) -> None:
        """Publish one CDR message (encapsulation header included).

        Raises:
            BridgeError: the publisher is closed or rclpy rejected the bytes.
        """
        publisher = self._publisher
        if publisher is None:
            msg = f"publisher on {self._topic.name} is closed: create a new one with RclpyGraph.publisher()"
            raise BridgeError(msg)
        try:
            publisher.publish(bytes(cdr))
        except Exception as err:  # rclpy raises its own RCLError types
            msg = f"publish on {self._topic.name} failed ({err}): check the bytes are a {self._topic.type}"
            raise BridgeError(msg) from err

    def matched_count(self) -> int:
        """How many subscriptions currently match this publisher (0 once closed)."""
        publisher = self._publisher
        return 0 if publisher is None else int(publisher.get_subscription_count())

    def close(self) -> None:
        """Withdraw the publisher; idempotent."""
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._graph._destroy(self, publisher)


class RclpySubscription:
    """Delivers raw CDR bytes to a callback on the graph's executor thread. Made by RclpyGraph.

    An exception in the callback is logged and the message dropped (it would otherwise stop the
    executor and with it every other subscription of the graph).
    """

    def __init__(self, *, graph: RclpyGraph, topic: TopicSpec, callback: CdrCallback) -> None:
        self._graph = graph
        self._topic = topic
        self._callback = callback
        self._subscription: Any = None
        # Held while the callback runs, so close() can wait it out; reentrant so the callback
        # itself may close the subscription.
        self._lock = threading.RLock()
        self._closed = False

    @property
    def topic(self) -> TopicSpec:
        """The topic this subscription reads."""
        return self._topic

    def _deliver(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._callback(data)
            except Exception:
                _log.exception("callback for %s raised; the message is dropped", self._topic.name)

    def matched_count(self) -> int:
        """How many publishers currently match this subscription (0 once closed)."""
        subscription = self._subscription
        if subscription is None or self._closed:
            return 0
        count = getattr(subscription, "get_publisher_count", None)
        if count is not None:
            return int(count())
        # Humble's Subscription has no matched count: fall back to publishers on the graph.
        return int(self._graph._node.count_publishers(self._topic.name))

    def close(self) -> None:
        """Withdraw the subscription; the callback is not called after this returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            self._graph._destroy(self, subscription)


class RclpyGraph:
    """One rclpy node, on a private context, on one ROS 2 domain.

    Args:
        domain_id: the ROS domain; None reads ``$ROS_DOMAIN_ID`` (default 0) now.
        node_name: the node's name; a per-process unique default is chosen.
        distro: accepted for symmetry with DdsGraph; the sourced ROS 2 decides the types.

    Raises:
        MissingDependency: rclpy is not importable.
        ConfigError: the domain id is invalid.
        BridgeError: rclpy could not start (e.g. the RMW implementation failed to load).
    """

    def __init__(
        self, domain_id: int | None = None, *, node_name: str | None = None, distro: str | None = None
    ) -> None:
        rclpy = import_rclpy()
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        del distro
        self._domain_id = resolve_domain_id(domain_id)
        name = node_name or f"fogros_dist_{os.getpid()}_{next(_node_ids)}"
        self._lock = threading.Lock()
        self._closed = False
        self._endpoints: list[RclpyPublisher | RclpySubscription] = []
        self._context = Context()
        try:
            # A library must not take over SIGINT: the host program decides how to stop.
            rclpy.init(
                context=self._context,
                domain_id=self._domain_id,
                signal_handler_options=SignalHandlerOptions.NO,
            )
            self._node = rclpy.create_node(name, context=self._context)
        except Exception as err:  # RCLError, InvalidNodeNameException, ...
            self._context.try_shutdown()
            msg = (
                f"rclpy could not start a node on ROS domain {self._domain_id} ({err}): "
                "check RMW_IMPLEMENTATION and the sourced ROS 2"
            )
            raise BridgeError(msg) from err
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, name=f"rclpy-graph {name}", daemon=True)
        self._thread.start()

    @property
    def domain_id(self) -> int:
        """The ROS domain this node is on."""
        return self._domain_id

    @property
    def node_name(self) -> str:
        """The name of this graph's node."""
        return str(self._node.get_name())

    def publisher(self, topic: TopicSpec) -> RclpyPublisher:
        """Create a publisher for ``topic`` (its ``type`` must be set).

        Raises:
            ConfigError: the topic has no type or an invalid name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        msg_cls = self._message_class(topic)
        with self._lock:
            self._check_open()
            publisher = self._node.create_publisher(msg_cls, topic.name, _qos_profile(topic.qos))
            endpoint = RclpyPublisher(graph=self, topic=topic, publisher=publisher)
            self._endpoints.append(endpoint)
        return endpoint

    def subscribe(self, topic: TopicSpec, callback: CdrCallback) -> RclpySubscription:
        """Subscribe to ``topic`` (``type`` set); ``callback`` gets each message's CDR bytes.

        Raises:
            ConfigError: the topic has no type or an invalid name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        msg_cls = self._message_class(topic)
        endpoint = RclpySubscription(graph=self, topic=topic, callback=callback)
        with self._lock:
            self._check_open()
            endpoint._subscription = self._node.create_subscription(
                msg_cls, topic.name, endpoint._deliver, _qos_profile(topic.qos), raw=True
            )
            self._endpoints.append(endpoint)
        return endpoint

    def discover_type(self, topic_name: str, timeout: float) -> str | None:
        """The type of a publisher on ``topic_name`` other than this graph's own node.

        Returns:
            ``pkg/msg/Type``, or None if no publisher appeared within ``timeout`` seconds.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        validate_topic_name(topic_name)
        self._check_open()
        own = (self._node.get_name(), self._node.get_namespace())
        waiter = threading.Event()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            for info in self._node.get_publishers_info_by_topic(topic_name):
                if (info.node_name, info.node_namespace) != own and "/msg/" in info.topic_type:
                    return str(info.topic_type)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waiter.wait(min(_DISCOVERY_POLL, left))

    def close(self) -> None:
        """Destroy every endpoint, the node and the context, and stop the executor thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            endpoints = list(self._endpoints)
        for endpoint in endpoints:
            endpoint.close()
        self._executor.shutdown(timeout_sec=5.0)
        self._node.destroy_node()
        self._context.try_shutdown()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> RclpyGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass
        except Exception:
            if not self._closed:
                _log.exception("rclpy executor of %s stopped", self._node.get_name())

    def _message_class(self, topic: TopicSpec) -> Any:
        validate_topic_name(topic.name)
        if topic.type is None:
            msg = (
                f"topic {topic.name} has no message type: set TopicSpec.type, "
                "or learn it first with discover_type()"
            )
            raise ConfigError(msg)
        return message_class(topic.type)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"rclpy graph on domain {self._domain_id} is closed: open a new RclpyGraph"
            raise BridgeError(msg)

    def _destroy(self, endpoint: RclpyPublisher | RclpySubscription, handle: Any) -> None:
        with self._lock:
            if endpoint in self._endpoints:
                self._endpoints.remove(endpoint)
        if isinstance(endpoint, RclpyPublisher):
            self._node.destroy_publisher(handle)
        else:
            self._node.destroy_subscription(handle)
