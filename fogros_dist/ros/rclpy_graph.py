"""The RosGraph port on rclpy, for machines with ROS 2 installed (and sourced).

The graph owns a private rclpy Context, its own node and a single-threaded executor spinning on
its own thread, so it neither needs nor disturbs ``rclpy.init()`` of the host program. Messages
cross as serialized bytes both ways (``raw=True`` subscriptions; ``Publisher.publish(bytes)``), so
nothing is converted to Python messages.

Each node named with ``nodes=`` is a real rclpy node in that context (no parameter services, no
rosout, no command-line remapping: it stands in for a node that runs elsewhere), so ``ros2 node
info`` lists its topics. An endpoint owned by several nodes is created on the first; the others
get a stand-in of their own that is never serviced (a publisher that never publishes, a
subscription of depth 1 that the executor never waits on), so each message is handled once.

rclpy is imported inside the functions that need it: importing this module never requires ROS 2.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import BridgeError, ConfigError, MissingDependency, UnknownMessageType
from fogros_dist.logs import module_logger
from fogros_dist.ros.domain import resolve_domain_id
from fogros_dist.ros.graph import CdrCallback, ServiceHandler
from fogros_dist.ros.names import validate_topic_name, validate_type_name
from fogros_dist.ros.node_names import NodeName, default_node_name, parse_node_name
from fogros_dist.ros.qos import KEEP_ALL_DEPTH, DiscoveredTopic, clamp_depth, matching_subscription
from fogros_dist.spec import QosSpec, ServiceSpec, TopicSpec

if TYPE_CHECKING:
    from fogros_dist.ros.rclpy_services import RclpyServiceClient, RclpyServiceServer

__all__ = ["RclpyGraph", "RclpyPublisher", "RclpySubscription", "import_rclpy"]

_log = module_logger(__name__)
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


def _stand_in_group() -> Any:
    """A callback group whose entities the executor never waits on (rclpy's executors ask
    ``can_execute`` before adding an entity to the wait set): a stand-in subscription then costs
    no wake-up and no copy per message."""
    from rclpy.callback_groups import CallbackGroup

    class StandInGroup(CallbackGroup):  # type: ignore[misc,unused-ignore]
        def can_execute(self, entity: Any) -> bool:
            return False

        def beginning_execution(self, entity: Any) -> bool:
            return False

        def ending_execution(self, entity: Any) -> None:
            pass

    return StandInGroup()


def _qos_profile(qos: QosSpec) -> Any:
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    def duration(seconds: float) -> Any:
        # 0 is infinite in QosSpec; rclpy's default Duration() (0) means "unspecified" = infinite.
        return Duration(nanoseconds=round(seconds * 1e9))

    # rclpy's QoSProfile is untyped where ROS 2 is installed, and unknown (Any) where it is not.
    return QoSProfile(  # type: ignore[no-untyped-call,unused-ignore]
        history=HistoryPolicy.KEEP_ALL if qos.history == "keep_all" else HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE
        if qos.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
        deadline=duration(qos.deadline_s),
        lifespan=duration(qos.lifespan_s),
    )


# rmw's RMW_DURATION_INFINITE (and anything at least as long) is QosSpec's 0.
_INFINITE_NS = 9223372036854775807


def _qos_spec(profile: Any) -> QosSpec:
    """The QosSpec of a discovered endpoint's rclpy QoSProfile (an UNKNOWN policy: ROS's default)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    def seconds(value: Any) -> float:
        ns = int(value.nanoseconds)
        return 0.0 if ns <= 0 or ns >= _INFINITE_NS else ns / 1e9

    keep_all = profile.history == HistoryPolicy.KEEP_ALL
    # rmw reports depth 0 where discovery does not carry it: ROS's default depth then.
    depth = int(profile.depth) or QosSpec().depth
    return QosSpec(
        reliability="best_effort" if profile.reliability == ReliabilityPolicy.BEST_EFFORT else "reliable",
        durability="transient_local"
        if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        else "volatile",
        history="keep_all" if keep_all else "keep_last",
        depth=KEEP_ALL_DEPTH if keep_all else clamp_depth(depth),
        deadline_s=seconds(profile.deadline),
        lifespan_s=seconds(profile.lifespan),
    )


def _ignore(_data: bytes) -> None:
    """The callback of stand-in subscriptions, which the executor never calls."""


class RclpyPublisher:
    """Publishes serialized messages through an rclpy publisher. Made by RclpyGraph."""

    def __init__(
        self,
        *,
        graph: RclpyGraph,
        topic: TopicSpec,
        node: Any,
        publisher: Any,
        stand_ins: Sequence[Any] = (),
    ) -> None:
        self._graph = graph
        self._topic = topic
        self._node: Any = node  # the rclpy node the publisher belongs to
        self._publisher: Any = publisher
        # (node, publisher) of further owning nodes; they never publish.
        self._stand_ins = tuple(stand_ins)
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
            self._graph._destroy(self, publisher, self._stand_ins)


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
        self._node: Any = None  # the rclpy node the subscription belongs to
        # (node, subscription) of further owning nodes; the executor never services them.
        self._stand_ins: tuple[Any, ...] = ()
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
            self._graph._destroy(self, subscription, self._stand_ins)


class RclpyGraph:
    """rclpy nodes, on a private context, on one ROS 2 domain: the graph's own node, plus one per
    node named with ``nodes=``.

    Args:
        domain_id: the ROS domain; None reads ``$ROS_DOMAIN_ID`` (default 0) now.
        node_name: the own node's name (``/ns/name`` or ``name``), which owns every endpoint made
            without ``nodes=``; a per-process unique default is chosen. Command-line ``--ros-args``
            of the process (``-r __node:=...``) still apply to it, as to any rclpy node.
        distro: accepted for symmetry with DdsGraph; the sourced ROS 2 decides the types.
        nodes: further nodes (full names) to create from the start, even before (or without)
            endpoints of their own.

    Raises:
        MissingDependency: rclpy is not importable.
        ConfigError: the domain id or a node name is invalid.
        BridgeError: rclpy could not start (e.g. the RMW implementation failed to load).
    """

    def __init__(
        self,
        domain_id: int | None = None,
        *,
        node_name: str | None = None,
        distro: str | None = None,
        nodes: Sequence[str] = (),
    ) -> None:
        rclpy = import_rclpy()
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        del distro
        self._domain_id = resolve_domain_id(domain_id)
        own = parse_node_name(node_name or default_node_name())
        extra = [parse_node_name(n) for n in nodes]
        name = own.name
        self._lock = threading.Lock()
        self._closed = False
        self._endpoints: list[RclpyPublisher | RclpySubscription] = []
        # Service servers and clients (ros/rclpy_services.py).
        self._services: list[RclpyServiceServer | RclpyServiceClient] = []
        self._context = Context()
        try:
            # A library must not take over SIGINT: the host program decides how to stop.
            rclpy.init(
                context=self._context,
                domain_id=self._domain_id,
                signal_handler_options=SignalHandlerOptions.NO,
            )
            self._node = rclpy.create_node(own.name, namespace=own.namespace, context=self._context)
        except Exception as err:  # RCLError, InvalidNodeNameException, ...
            self._context.try_shutdown()
            msg = (
                f"rclpy could not start a node on ROS domain {self._domain_id} ({err}): "
                "check RMW_IMPLEMENTATION and the sourced ROS 2"
            )
            raise BridgeError(msg) from err
        # Keyed by the name the node really got: the process's --ros-args may have renamed it.
        actual = NodeName(namespace=self._node.get_namespace(), name=self._node.get_name())
        self._nodes: dict[NodeName, Any] = {actual: self._node}
        self._stand_in_group: Any = None
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, name=f"rclpy-graph {name}", daemon=True)
        self._thread.start()
        try:
            for node in extra:
                self._node_for(node)
        except BaseException:
            self.close()
            raise

    @property
    def domain_id(self) -> int:
        """The ROS domain this node is on."""
        return self._domain_id

    @property
    def node_name(self) -> str:
        """The base name of this graph's own node."""
        return str(self._node.get_name())

    @property
    def node_full_name(self) -> str:
        """The full name (``/ns/name``) of this graph's own node."""
        return str(self._node.get_fully_qualified_name())

    def publisher(self, topic: TopicSpec, *, nodes: Sequence[str] = ()) -> RclpyPublisher:
        """Create a publisher for ``topic`` (its ``type`` must be set).

        Args:
            topic: the topic.
            nodes: the nodes (full names) that own it; empty: this graph's own node. The first
                publishes; each further one gets a stand-in that never does.

        Raises:
            ConfigError: the topic has no type, or an invalid topic or node name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        msg_cls = self._message_class(topic)
        owners = self._owners(nodes)
        qos = _qos_profile(topic.effective_qos)
        with self._lock:
            self._check_open()
            first, *others = (self._node_for(owner, locked=True) for owner in owners)
            publisher = first.create_publisher(msg_cls, topic.name, qos)
            stand_ins = [(node, node.create_publisher(msg_cls, topic.name, qos)) for node in others]
            endpoint = RclpyPublisher(
                graph=self, topic=topic, node=first, publisher=publisher, stand_ins=stand_ins
            )
            self._endpoints.append(endpoint)
        return endpoint

    def subscribe(
        self, topic: TopicSpec, callback: CdrCallback, *, nodes: Sequence[str] = ()
    ) -> RclpySubscription:
        """Subscribe to ``topic`` (``type`` set); ``callback`` gets each message's CDR bytes.

        Args:
            topic: the topic.
            callback: gets each message once, on the executor thread.
            nodes: the nodes (full names) that own it; empty: this graph's own node. The first
                delivers; each further one gets a stand-in (depth 1) that is never serviced.

        Raises:
            ConfigError: the topic has no type, or an invalid topic or node name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        msg_cls = self._message_class(topic)
        owners = self._owners(nodes)
        endpoint = RclpySubscription(graph=self, topic=topic, callback=callback)
        with self._lock:
            self._check_open()
            first, *others = (self._node_for(owner, locked=True) for owner in owners)
            endpoint._subscription = first.create_subscription(
                msg_cls, topic.name, endpoint._deliver, _qos_profile(topic.effective_qos), raw=True
            )
            endpoint._node = first
            if others:
                stand_in_qos = _qos_profile(dataclasses.replace(topic.effective_qos, depth=1))
                endpoint._stand_ins = tuple(
                    (
                        node,
                        node.create_subscription(
                            msg_cls,
                            topic.name,
                            _ignore,
                            stand_in_qos,
                            raw=True,
                            callback_group=self._stand_ins_group(),
                        ),
                    )
                    for node in others
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
        found = self.discover_topic(topic_name, timeout)
        return None if found is None else found.type_name

    def discover_topic(self, topic_name: str, timeout: float) -> DiscoveredTopic | None:
        """The type of the publishers on ``topic_name`` other than this graph's nodes, and the
        QoS that matches them all (:func:`~fogros_dist.ros.qos.matching_subscription`), from
        ``get_publishers_info_by_topic``.

        Returns:
            What the graph showed once a publisher appeared, or None if none did within
            ``timeout`` seconds.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        validate_topic_name(topic_name)
        self._check_open()
        own = {(n.name, n.namespace) for n in self._nodes}
        waiter = threading.Event()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            infos = [
                info
                for info in self._node.get_publishers_info_by_topic(topic_name)
                if (info.node_name, info.node_namespace) not in own and "/msg/" in info.topic_type
            ]
            if infos:
                type_name = str(infos[0].topic_type)
                offered = [_qos_spec(i.qos_profile) for i in infos if i.topic_type == type_name]
                return DiscoveredTopic(
                    type_name=type_name, qos=matching_subscription(offered), publishers=len(offered)
                )
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waiter.wait(min(_DISCOVERY_POLL, left))

    def service_server(
        self, service: ServiceSpec, handler: ServiceHandler, *, nodes: Sequence[str] = ()
    ) -> RclpyServiceServer:
        """Serve ``service`` (``type`` set) with an rclpy Service; see
        :class:`~fogros_dist.ros.rclpy_services.RclpyServiceServer`.

        Args:
            service: the service.
            handler: gets each request's CDR and its responder, on the executor thread.
            nodes: the nodes (full names) that own it; empty: this graph's own node. Only the
                first owns the server (rclpy has one node per service).

        Raises:
            ConfigError: the service has no type, or an invalid service or node name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        from fogros_dist.ros.rclpy_services import RclpyServiceServer

        owners = self._owners(nodes)
        with self._lock:
            self._check_open()
            node = self._node_for(owners[0], locked=True)
            server = RclpyServiceServer(graph=self, service=service, handler=handler, node=node)
            self._services.append(server)
        return server

    def service_client(self, service: ServiceSpec, *, nodes: Sequence[str] = ()) -> RclpyServiceClient:
        """A client of ``service`` (``type`` set) through an rclpy Client; ``nodes`` as for
        :meth:`service_server`.

        Raises:
            ConfigError: the service has no type, or an invalid service or node name.
            UnknownMessageType: the type is not installed.
            BridgeError: the graph is closed.
        """
        from fogros_dist.ros.rclpy_services import RclpyServiceClient

        owners = self._owners(nodes)
        with self._lock:
            self._check_open()
            node = self._node_for(owners[0], locked=True)
            client = RclpyServiceClient(graph=self, service=service, node=node)
            self._services.append(client)
        return client

    def discover_service_type(self, name: str, timeout: float) -> str | None:
        """The type (``pkg/srv/Type``) of a server of ``name`` that no node of this graph
        serves, seen within ``timeout`` seconds, or None.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        validate_topic_name(name)
        self._check_open()
        waiter = threading.Event()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            own = any(
                served == name
                for node in list(self._nodes.values())
                for served, _ in node.get_service_names_and_types_by_node(
                    node.get_name(), node.get_namespace()
                )
            )
            for served, types in self._node.get_service_names_and_types():
                if served == name and not own:
                    found = [t for t in types if "/srv/" in t]
                    if found:
                        return str(found[0])
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
            services = list(self._services)
        for service in services:
            service.close()
        for endpoint in endpoints:
            endpoint.close()
        self._executor.shutdown(timeout_sec=5.0)
        for node in reversed(list(self._nodes.values())):
            node.destroy_node()
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

    def _owners(self, nodes: Sequence[str]) -> tuple[NodeName, ...]:
        if isinstance(nodes, str):  # a lone name would otherwise be split into letters
            nodes = (nodes,)
        owners = tuple(dict.fromkeys(parse_node_name(n) for n in nodes))
        return owners or (next(iter(self._nodes)),)

    def _node_for(self, name: NodeName, *, locked: bool = False) -> Any:
        """The rclpy node called ``name``, created (and spun) on first use."""
        if not locked:
            with self._lock:
                return self._node_for(name, locked=True)
        node = self._nodes.get(name)
        if node is not None:
            return node
        import rclpy
        from rclpy.parameter import Parameter

        try:
            node = rclpy.create_node(
                name.name,
                namespace=name.namespace,
                context=self._context,
                # It stands in for a node elsewhere: the process's own --ros-args are not its,
                # and its services (parameters; from Jazzy on ~/get_type_description, which
                # Humble's rclpy lacks and ignores) or rosout would answer for a node not here.
                use_global_arguments=False,
                enable_rosout=False,
                start_parameter_services=False,
                parameter_overrides=[
                    Parameter("start_type_description_service", value=False)  # type: ignore[no-untyped-call,unused-ignore]
                ],
            )
        except Exception as err:  # RCLError, InvalidNodeNameException, ...
            msg = f"rclpy could not create node {name.full} on ROS domain {self._domain_id} ({err})"
            raise BridgeError(msg) from err
        self._nodes[name] = node
        self._executor.add_node(node)
        return node

    def _stand_ins_group(self) -> Any:
        if self._stand_in_group is None:
            self._stand_in_group = _stand_in_group()
        return self._stand_in_group

    def _forget_service(
        self, service: RclpyServiceServer | RclpyServiceClient, node: Any, handle: Any
    ) -> None:
        """Destroy a server's rclpy Service or a client's rclpy Client."""
        from fogros_dist.ros.rclpy_services import RclpyServiceServer

        with self._lock:
            if service in self._services:
                self._services.remove(service)
        if isinstance(service, RclpyServiceServer):
            node.destroy_service(handle)
        else:
            node.destroy_client(handle)

    def _destroy(
        self, endpoint: RclpyPublisher | RclpySubscription, handle: Any, stand_ins: Sequence[Any] = ()
    ) -> None:
        with self._lock:
            if endpoint in self._endpoints:
                self._endpoints.remove(endpoint)
        node = endpoint._node
        if isinstance(endpoint, RclpyPublisher):
            node.destroy_publisher(handle)
            for other, stand_in in stand_ins:
                other.destroy_publisher(stand_in)
        else:
            node.destroy_subscription(handle)
            for other, stand_in in stand_ins:
                other.destroy_subscription(stand_in)
