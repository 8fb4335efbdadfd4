"""The RosGraph port on Cyclone DDS (pip ``cyclonedds``): a ROS 2 graph without ROS 2 installed.

It speaks the wire format of ``rmw_cyclonedds_cpp``: DDS topic ``rt/<name>``, type name
``pkg::msg::dds_::Type_``, XCDR1 data representation, keyless topics, participant USER_DATA
``enclave=/;`` and, from Iron on, endpoint USER_DATA ``typehash=RIHS01_<hex>;``.

Messages are never decoded. Each topic gets a Cyclone type built from the ``rosbags`` definition
only so the topic carries the right type name and XTypes type information; samples cross as
serialized CDR in both directions, and Cyclone's C code checks them against that type.

Nodes: DDS has none, so like rmw the graph publishes ``ros_discovery_info``
(:mod:`fogros_dist.ros.discovery`) naming its nodes and the readers and writers each owns, and
republishes it whenever an endpoint comes or goes; ``ros2 node list`` then shows the graph's
node and every node named with ``nodes=``.

Subscriptions deliver on one thread per subscription that blocks in a WaitSet (with the GIL
released). A Cyclone listener would save one thread wake-up, but it runs user code on Cyclone's
receive thread: a slow callback stalls all traffic of the participant, and a callback that
publishes on a reliable topic can deadlock against acknowledgements that the same thread must
process.
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cyclonedds._clayer import ddspy_take
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import (
    DDSException,
    GuardCondition,
    InstanceState,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl
from cyclonedds.internal import DDS, dds_infinity
from cyclonedds.pub import DataWriter, Publisher
from cyclonedds.sub import DataReader, Subscriber
from cyclonedds.topic import Sample, Topic
from cyclonedds.util import duration
from rosbags.interfaces import Nodetype

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.logs import module_logger
from fogros_dist.ros.discovery import (
    DISCOVERY_QOS,
    DISCOVERY_TOPIC,
    PARTICIPANT_INFO_TYPE,
    EndpointKind,
    NodeRoster,
    encode_participant_info,
)
from fogros_dist.ros.domain import resolve_domain_id
from fogros_dist.ros.graph import CdrCallback, ServiceHandler
from fogros_dist.ros.names import dds_topic_name, ros_type_name
from fogros_dist.ros.node_names import NodeName, default_node_name, parse_node_name
from fogros_dist.ros.qos import KEEP_ALL_DEPTH, DiscoveredTopic, clamp_depth, matching_subscription
from fogros_dist.ros.types import MessageType, MessageTypes
from fogros_dist.spec import QosSpec, ServiceSpec, TopicSpec

if TYPE_CHECKING:
    from fogros_dist.ros.dds_services import DdsServiceClient, DdsServiceServer

__all__ = ["DdsGraph", "DdsPublisher", "DdsSubscription", "keep_large_messages_on_heap"]

_log = module_logger(__name__)

_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
_TAKE_BATCH = 32
# A reliable writer waits at most this long for room in its history; rmw waits forever, but a
# bridge that blocks forever on one dead subscriber stops every topic.
_MAX_BLOCKING = duration(seconds=1)
# How long discover_topic() keeps collecting publishers after the first one it found.
_DISCOVERY_SETTLE_S = 0.05

# Cyclone's C dds_write, called through ctypes so the GIL is released while Cyclone checks,
# copies and sends the sample (milliseconds for a camera frame). The pip package's own
# ddspy_write holds the GIL throughout. The sample layout is the Python sertype's container.
_dds_write = DDS._dll_handle.dds_write
_dds_write.argtypes = [ctypes.c_int32, ctypes.c_void_p]
_dds_write.restype = ctypes.c_int32

_BASE_TYPES: dict[str, Any] = {
    "bool": bool,
    "byte": idl.byte,
    "octet": idl.byte,
    "char": idl.uint8,  # rosidl maps .msg char to IDL uint8
    "int8": idl.int8,
    "uint8": idl.uint8,
    "int16": idl.int16,
    "uint16": idl.uint16,
    "int32": idl.int32,
    "uint32": idl.uint32,
    "int64": idl.int64,
    "uint64": idl.uint64,
    "float32": idl.float32,
    "float64": idl.float64,
}


# glibc mallopt parameters, and its ceiling for the mmap threshold on 64-bit systems.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HEAP_BLOCK_LIMIT = 32 * 1024 * 1024


def keep_large_messages_on_heap() -> bool:
    """Make glibc serve blocks up to 32 MiB from its heap instead of fresh ``mmap``s.

    Every large sample is copied into a new buffer several times on its way through Cyclone
    (serdata, reassembly, take, Python bytes). glibc hands out blocks over its mmap threshold
    (128 KiB, raised adaptively) as fresh mappings, so each copy first page-faults its whole
    destination: measured on loopback, a 1 MB image takes 1.4 ms instead of 0.3 ms and a 6 MB
    one 1.8 to 6.6 ms (bimodal, depending on heap state) instead of a steady 1.8 ms.
    This is process-wide and idempotent; freed memory is kept up to 128 MiB for reuse.

    Returns:
        True if the allocator was tuned (glibc), False where there is no ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    tuned = mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_LIMIT) == 1
    return bool(mallopt(_M_TRIM_THRESHOLD, 4 * _HEAP_BLOCK_LIMIT) == 1 and tuned)


def _dds_policies(qos: QosSpec, message_type: MessageType) -> list[Any]:
    """The reader/writer QoS rmw_cyclonedds_cpp would use for ``qos`` (its create_readwrite_qos)."""
    history = Policy.History.KeepAll if qos.history == "keep_all" else Policy.History.KeepLast(qos.depth)
    policies: list[Any] = [
        history,
        # 0 is infinite in QosSpec as in rmw (RMW_DURATION_INFINITE maps to DDS_INFINITY).
        Policy.Deadline(deadline=_duration_ns(qos.deadline_s)),
        Policy.Lifespan(lifespan=_duration_ns(qos.lifespan_s)),
        Policy.Reliability.Reliable(max_blocking_time=_MAX_BLOCKING)
        if qos.reliability == "reliable"
        else Policy.Reliability.BestEffort,
        Policy.Liveliness.Automatic(lease_duration=dds_infinity),
        Policy.WriterDataLifecycle(autodispose=False),
        # rmw's types allow XCDR1 only; a writer offering XCDR2 would not match rmw readers.
        Policy.DataRepresentation(use_cdrv0_representation=True),
    ]
    if qos.durability == "transient_local":
        policies.append(Policy.Durability.TransientLocal)
        # Cyclone keeps historical data per the durability service QoS, not the history QoS.
        policies.append(
            Policy.DurabilityService(
                cleanup_delay=0,
                history=history,
                max_samples=-1,
                max_instances=-1,
                max_samples_per_instance=-1,
            )
        )
    else:
        policies.append(Policy.Durability.Volatile)
    if message_type.user_data:
        policies.append(Policy.Userdata(data=message_type.user_data))
    return policies


class _Closeable(Protocol):
    def close(self) -> None: ...


def _duration_ns(seconds: float) -> int:
    """A QosSpec duration (0 = infinite) in DDS nanoseconds."""
    return dds_infinity if seconds == 0.0 else round(seconds * 1e9)


def _seconds(nanoseconds: int) -> float:
    """A DDS duration as a QosSpec duration (infinite = 0)."""
    return 0.0 if nanoseconds >= dds_infinity else nanoseconds / 1e9


def _qos_spec(qos: Qos) -> QosSpec:
    """The QosSpec of a discovered endpoint's Cyclone QoS (a policy it lacks: DDS's default)."""
    history = qos[Policy.History]
    reliability = qos[Policy.Reliability]
    durability = qos[Policy.Durability]
    deadline = qos[Policy.Deadline]
    lifespan = qos[Policy.Lifespan]
    keep_all = history == Policy.History.KeepAll
    return QosSpec(
        reliability="best_effort" if reliability == Policy.Reliability.BestEffort else "reliable",
        durability="volatile" if durability in (None, Policy.Durability.Volatile) else "transient_local",
        history="keep_all" if keep_all else "keep_last",
        depth=KEEP_ALL_DEPTH if keep_all else clamp_depth(getattr(history, "depth", 1)),
        deadline_s=0.0 if deadline is None else _seconds(deadline.deadline),
        lifespan_s=0.0 if lifespan is None else _seconds(lifespan.lifespan),
    )


def _pad(cdr: bytes) -> bytes:
    """``cdr`` padded to a multiple of 4 bytes, the padding counted in the encapsulation options.

    DDSI payloads are 4-byte aligned (rmw pads too). XTypes 1.3 (7.6.3.1.2) lets the two low bits
    of the options field say how many bytes were added, so a receiver can give back exactly the
    bytes that were published.
    """
    pad = -len(cdr) % 4
    if pad == 0 or len(cdr) < 4 or cdr[3] & 3:
        return cdr if pad == 0 else cdr + bytes(pad)
    return b"".join((cdr[:3], bytes((cdr[3] | pad,)), memoryview(cdr)[4:], bytes(pad)))


def _unpad(data: bytes) -> bytes:
    """Undo :func:`_pad`: drop the padding the encapsulation options announce."""
    if len(data) < 8:
        return data
    pad = data[3] & 3
    if pad == 0:
        return data
    return b"".join((data[:3], bytes((data[3] & ~3,)), memoryview(data)[4:-pad]))


def _delete(entity: Any) -> None:
    """Delete a Cyclone entity now rather than at garbage collection (its __del__ is idempotent)."""
    if entity is not None:
        entity.__del__()


class _Structs:
    """Cyclone IDL struct classes for ROS message types, one per type, built on first use."""

    def __init__(self, types: MessageTypes) -> None:
        self._types = types
        self._built: dict[tuple[str, bool], type[IdlStruct]] = {}

    def get(self, type_name: str, *, request_header: bool = False) -> type[IdlStruct]:
        """The struct for ``type_name``; ``request_header``: led by rmw's service request header
        (a uint64 client id and an int64 sequence number), as on ``rq/`` and ``rr/`` topics."""
        key = (type_name, request_header)
        built = self._built.get(key)
        if built is not None:
            return built
        message_type = self._types.resolve(type_name)
        _, fields = self._types.field_definitions(type_name)
        # Trailing '_' names no ROS field can have, so they never clash with the message's own.
        annotations: dict[str, Any] = (
            {"request_guid_": idl.uint64, "request_seq_": idl.int64} if request_header else {}
        )
        annotations.update({name: self._field(type_name, name, desc) for name, desc in fields})
        # dataclassify=False: field names are never turned into Python parameters, so a ROS
        # field called e.g. "from" still works; we never build samples in Python anyway.
        struct = make_idl_struct(
            message_type.dds_name.rsplit("::", 1)[-1],
            message_type.dds_name,
            annotations,
            dataclassify=False,
        )
        self._built[key] = struct
        return struct

    def _field(self, owner: str, field: str, desc: tuple[Any, Any]) -> Any:
        kind, detail = desc
        if kind == Nodetype.BASE:
            name, bound = detail
            if name == "string":
                return idl.bounded_str[bound] if bound else str  # type: ignore[misc]
            if name in _BASE_TYPES:
                return _BASE_TYPES[name]
            msg = (
                f"field {field!r} of {owner!r} has type {name!r}, which the dds graph adapter cannot "
                "describe: use graph='rclpy' for this topic"
            )
            raise BridgeError(msg)
        if kind == Nodetype.NAME:
            return self.get(detail)
        if kind == Nodetype.ARRAY:
            sub, length = detail
            return idl.array[self._field(owner, field, sub), length]  # type: ignore[misc]
        sub, bound = detail
        element = self._field(owner, field, sub)
        # sequence<uint8> (images, point clouds) decodes to a list of ints in Python; harmless
        # here because samples never pass through Python decoding, only their type info does.
        if bound:
            return idl.sequence[element, bound]  # type: ignore[misc]
        return idl.sequence[element]  # type: ignore[misc]


class DdsPublisher:
    """Publishes serialized messages on one ROS 2 topic (a DDS writer). Made by DdsGraph."""

    def __init__(self, *, graph: DdsGraph, topic: TopicSpec, writer: DataWriter[Any]) -> None:
        self._graph = graph
        self._topic = topic
        self._writer: DataWriter[Any] | None = writer
        self._handle = int(writer._ref)
        self._guid = bytes(writer.guid.bytes)

    @property
    def topic(self) -> TopicSpec:
        """The topic this publisher writes."""
        return self._topic

    def publish(self, cdr: bytes) -> None:
        """Publish one CDR message (with its 4-byte encapsulation header).

        Raises:
            BridgeError: the publisher is closed, the bytes are not a valid message of the topic's
                type, or reliable delivery stayed blocked for a second.
        """
        if self._writer is None:
            msg = f"publisher on {self._topic.name} is closed: create a new one with DdsGraph.publisher()"
            raise BridgeError(msg)
        data = _pad(bytes(cdr))
        pointer = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
        sample = Sample(usample=pointer, usample_size=len(data))
        ret = _dds_write(self._handle, ctypes.byref(sample))
        if ret < 0:
            raise BridgeError(self._write_error(ret, len(cdr)))

    def _write_error(self, ret: int, size: int) -> str:
        name = self._topic.name
        if self._writer is None:  # closed by another thread while this write was under way
            return f"publisher on {name} is closed: create a new one with DdsGraph.publisher()"
        if ret == DDSException.DDS_RETCODE_TIMEOUT:
            return (
                f"publish on {name} blocked for 1 s: a reliable subscriber is not keeping up "
                "(publish less often, or use best_effort QoS)"
            )
        if ret == DDSException.DDS_RETCODE_BAD_PARAMETER:
            return (
                f"{size} bytes published on {name} are not a valid CDR {self._topic.type} message: "
                "pass the whole serialized message, encapsulation header included"
            )
        return f"publish on {name} failed: {DDSException(ret)}"

    def matched_count(self) -> int:
        """How many subscriptions currently match this publisher (0 once closed)."""
        if self._writer is None:
            return 0
        status = self._writer.get_publication_matched_status()  # type: ignore[no-untyped-call]
        return int(status.current_count)

    def close(self) -> None:
        """Withdraw the writer from the graph; idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._graph._forget(self)
            _delete(writer)


class DdsSubscription:
    """Delivers the raw CDR of each message on one topic to a callback. Made by DdsGraph.

    The callback runs on this subscription's own thread, one message at a time, in arrival order.
    An exception in it is logged and the message dropped; later messages still arrive.
    """

    def __init__(
        self,
        *,
        graph: DdsGraph,
        topic: TopicSpec,
        participant: DomainParticipant,
        reader: DataReader[Any],
        callback: CdrCallback,
    ) -> None:
        self._graph = graph
        self._topic = topic
        self._reader = reader
        self._guid = bytes(reader.guid.bytes)
        self._callback = callback
        self._closing = threading.Event()
        self._released = False
        self._lock = threading.Lock()
        self._waitset = WaitSet(participant)
        self._condition = ReadCondition(reader, _ANY_STATE)
        self._wakeup = GuardCondition(participant)
        self._waitset.attach(self._condition)
        self._waitset.attach(self._wakeup)
        self._thread = threading.Thread(target=self._run, name=f"dds-sub {topic.name}", daemon=True)
        self._thread.start()

    @property
    def topic(self) -> TopicSpec:
        """The topic this subscription reads."""
        return self._topic

    def matched_count(self) -> int:
        """How many publishers currently match this subscription (0 once closed)."""
        with self._lock:
            if self._released:
                return 0
            status = self._reader.get_subscription_matched_status()  # type: ignore[no-untyped-call]
            return int(status.current_count)

    def close(self) -> None:
        """Withdraw the reader; once this returns the callback is not called again (when called
        from the callback itself, the running call finishes and no further one starts)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wakeup.set(True)
        self._graph._forget(self)
        if threading.current_thread() is self._thread:
            return  # the loop ends when the callback returns and releases the reader itself
        self._thread.join()
        self._release()

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._waitset.wait(dds_infinity)
                self._drain()
        except Exception:  # a DDS failure here must not vanish silently with the thread
            _log.exception("subscription on %s stopped", self._topic.name)
        finally:
            if self._closing.is_set():
                # close() from the callback cannot join this thread, so the thread frees the
                # entities itself; close() from elsewhere joins and then finds them released.
                self._release()

    def _drain(self) -> None:
        while not self._closing.is_set():
            samples = ddspy_take(self._reader._ref, _ANY_STATE, _TAKE_BATCH)
            if isinstance(samples, int):
                raise DDSException(samples, f"taking samples on {self._topic.name}")
            for data, info in samples:
                if self._closing.is_set():
                    return
                if not info.valid_data:
                    continue  # writer gone or instance disposed: nothing to forward
                try:
                    self._callback(_unpad(data))
                except Exception:
                    _log.exception("callback for %s raised; the message is dropped", self._topic.name)
            if len(samples) < _TAKE_BATCH:
                return

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        # The waitset first (it detaches what it holds), then the conditions, then the reader.
        _delete(self._waitset)
        _delete(self._wakeup)
        _delete(self._condition)
        _delete(self._reader)


class DdsGraph:
    """One DDS participant on a ROS 2 domain, speaking rmw_cyclonedds_cpp's wire format.

    Args:
        domain_id: the ROS domain; None reads ``$ROS_DOMAIN_ID`` (default 0) now.
        distro: the ROS 2 distribution whose message definitions and type hashes to use.
        types: message types to use instead of a fresh ``MessageTypes(distro)`` (for custom
            messages added with ``register_msg``).
        tune_allocator: call :func:`keep_large_messages_on_heap` (process-wide) so megabyte
            messages are not slowed down by page faults; pass False to leave malloc alone.
        node_name: this graph's own node (``/ns/name`` or ``name``), which owns every endpoint
            made without ``nodes=``; "" picks ``fogros_dist_<pid>_<n>``.
        nodes: further nodes (full names) to list on the graph from the start, even before (or
            without) endpoints of their own.

    Raises:
        ConfigError: the domain id, distro or a node name is invalid.
        BridgeError: Cyclone DDS could not create the participant (e.g. a bad CYCLONEDDS_URI).
    """

    def __init__(
        self,
        domain_id: int | None = None,
        *,
        distro: str = "jazzy",
        types: MessageTypes | None = None,
        tune_allocator: bool = True,
        node_name: str = "",
        nodes: Sequence[str] = (),
    ) -> None:
        self._own_node = parse_node_name(node_name or default_node_name())
        self._roster = NodeRoster([self._own_node, *(parse_node_name(n) for n in nodes)])
        if tune_allocator:
            keep_large_messages_on_heap()
        self._types = types if types is not None else MessageTypes(distro)
        self._domain_id = resolve_domain_id(domain_id)
        self._lock = threading.Lock()
        self._closed = False
        try:
            # rmw marks every participant with its security enclave; "/" is the default one.
            self._participant = DomainParticipant(
                self._domain_id, qos=Qos(Policy.Userdata(data=b"enclave=/;"))
            )
            self._publisher = Publisher(self._participant)
            self._subscriber = Subscriber(self._participant)
        except DDSException as err:
            msg = (
                f"Cyclone DDS could not join ROS domain {self._domain_id} ({err}): "
                "check CYCLONEDDS_URI and the network interface it names"
            )
            raise BridgeError(msg) from err
        self._structs = _Structs(self._types)
        self._topics: dict[tuple[str, str], Topic[Any]] = {}
        self._endpoints: list[DdsPublisher | DdsSubscription] = []
        # Service servers and clients (ros/dds_services.py), each a reader and a writer.
        self._services: list[_Closeable] = []
        self._service_ids = itertools.count(1)
        self._guid = bytes(self._participant.guid.bytes)
        # Held while a roster is encoded and written, so samples go out in the order rosters change.
        self._announce_lock = threading.Lock()
        self._discovery = self._discovery_writer()
        self._announce()

    @property
    def domain_id(self) -> int:
        """The ROS domain this participant is on."""
        return self._domain_id

    @property
    def types(self) -> MessageTypes:
        """The message types this graph resolves topic types with."""
        return self._types

    @property
    def node_name(self) -> str:
        """The full name of this graph's own node."""
        return self._own_node.full

    @property
    def guid(self) -> bytes:
        """This participant's DDS GUID (16 bytes), the GID its ``ros_discovery_info`` names."""
        return self._guid

    def publisher(self, topic: TopicSpec, *, nodes: Sequence[str] = ()) -> DdsPublisher:
        """Create a writer for ``topic``.

        Args:
            topic: the topic; its ``type`` must be set.
            nodes: the nodes (full names) that own the writer on the graph; empty: this graph's
                own node.

        Raises:
            ConfigError: the topic has no type, or its name, type or a node name is invalid.
            BridgeError: the graph is closed, or DDS refused the writer.
        """
        owners = self._owners(nodes)
        dds_topic, message_type = self._topic(topic)
        try:
            writer: DataWriter[Any] = DataWriter(
                self._publisher, dds_topic, Qos(*_dds_policies(topic.effective_qos, message_type))
            )
        except DDSException as err:
            raise BridgeError(f"cannot publish {topic.name}: {err}") from err
        publisher = DdsPublisher(graph=self, topic=topic, writer=writer)
        self._remember(publisher, "writer", publisher._guid, owners)
        return publisher

    def subscribe(
        self, topic: TopicSpec, callback: CdrCallback, *, nodes: Sequence[str] = ()
    ) -> DdsSubscription:
        """Create a reader for ``topic`` delivering each message's CDR bytes to ``callback``.

        The reader ignores this participant's own writers, so a graph that both publishes and
        subscribes one topic (a bidirectional bridge) does not feed its output back to itself.
        However many ``nodes`` own it, it is one reader: each message is delivered once.

        Args:
            topic: the topic; its ``type`` must be set.
            callback: gets each message's CDR bytes, on the subscription's own thread.
            nodes: the nodes (full names) that own the reader on the graph; empty: this graph's
                own node.

        Raises:
            ConfigError: the topic has no type, or its name, type or a node name is invalid.
            BridgeError: the graph is closed, or DDS refused the reader.
        """
        owners = self._owners(nodes)
        dds_topic, message_type = self._topic(topic)
        qos = Qos(*_dds_policies(topic.effective_qos, message_type), Policy.IgnoreLocal.Participant)
        try:
            reader: DataReader[Any] = DataReader(self._subscriber, dds_topic, qos)
        except DDSException as err:
            raise BridgeError(f"cannot subscribe to {topic.name}: {err}") from err
        subscription = DdsSubscription(
            graph=self, topic=topic, participant=self._participant, reader=reader, callback=callback
        )
        self._remember(subscription, "reader", subscription._guid, owners)
        return subscription

    def discover_type(self, topic_name: str, timeout: float) -> str | None:
        """The type (``pkg/msg/Type``) of a publisher on ``topic_name`` other than this graph's own.

        Args:
            topic_name: absolute ROS 2 topic name.
            timeout: seconds to wait for such a publisher to appear.

        Returns:
            The ROS 2 type name, or None if no ROS publisher appeared within ``timeout``.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        found = self.discover_topic(topic_name, timeout)
        return None if found is None else found.type_name

    def discover_topic(self, topic_name: str, timeout: float) -> DiscoveredTopic | None:
        """The type of the publishers on ``topic_name`` other than this graph's own, and the QoS
        that matches them all (:func:`~fogros_dist.ros.qos.matching_subscription`), read from
        DDS discovery (``DCPSPublication``: reliability, durability, history, deadline, lifespan).

        Args:
            topic_name: absolute ROS 2 topic name.
            timeout: seconds to wait for a publisher to appear.

        Returns:
            What was found once the first publisher appeared (and those discovered with it), or
            None if no ROS publisher appeared within ``timeout``.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        wanted = dds_topic_name(topic_name)
        self._check_open()
        own = self._participant.guid
        reader = BuiltinDataReader(self._participant, BuiltinTopicDcpsPublication)
        condition = ReadCondition(reader, _ANY_STATE)
        waitset = WaitSet(self._participant)
        waitset.attach(condition)
        deadline = time.monotonic() + max(0.0, timeout)
        type_name: str | None = None
        offered: list[QosSpec] = []
        try:
            while True:
                for endpoint in reader.take(N=256):
                    if getattr(endpoint, "topic_name", None) != wanted or endpoint.participant_key == own:
                        continue
                    ros_name = ros_type_name(endpoint.type_name)
                    if ros_name is None or type_name not in (None, ros_name):
                        continue
                    if type_name is None:
                        type_name = ros_name
                        # Publishers discovered together arrive within moments: wait for them.
                        deadline = min(deadline, time.monotonic() + _DISCOVERY_SETTLE_S)
                    offered.append(_qos_spec(endpoint.qos))
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waitset.wait(duration(seconds=left))
        finally:
            _delete(waitset)
            _delete(condition)
            _delete(reader)
        if type_name is None:
            return None
        qos = matching_subscription(offered)
        return DiscoveredTopic(type_name=type_name, qos=qos, publishers=len(offered))

    def service_server(
        self, service: ServiceSpec, handler: ServiceHandler, *, nodes: Sequence[str] = ()
    ) -> DdsServiceServer:
        """Serve ``service`` (``type`` set) on the graph as rmw_cyclonedds_cpp does; see
        :class:`~fogros_dist.ros.dds_services.DdsServiceServer`.

        Raises:
            ConfigError: the service has no type, or its name, type or a node name is invalid.
            BridgeError: the graph is closed, or DDS refused the reader or writer.
        """
        from fogros_dist.ros.dds_services import DdsServiceServer  # it builds on this module

        return DdsServiceServer(graph=self, service=service, handler=handler, owners=self._owners(nodes))

    def service_client(self, service: ServiceSpec, *, nodes: Sequence[str] = ()) -> DdsServiceClient:
        """A client of ``service`` (``type`` set); see
        :class:`~fogros_dist.ros.dds_services.DdsServiceClient`.

        Raises:
            ConfigError: the service has no type, or its name, type or a node name is invalid.
            BridgeError: the graph is closed, or DDS refused the reader or writer.
        """
        from fogros_dist.ros.dds_services import DdsServiceClient  # it builds on this module

        return DdsServiceClient(graph=self, service=service, owners=self._owners(nodes))

    def discover_service_type(self, name: str, timeout: float) -> str | None:
        """The type (``pkg/srv/Type``) of a server of ``name`` other than this graph's own, seen
        within ``timeout`` seconds, or None.

        Raises:
            InvalidTopicName: the name is invalid.
            BridgeError: the graph is closed.
        """
        from fogros_dist.ros.dds_services import discover_service_type

        return discover_service_type(self, name, timeout)

    def close(self) -> None:
        """Close every publisher and subscription made here, then leave the domain; idempotent."""
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
        # Leaving the domain disposes the participant, and with it its nodes in every graph cache.
        with self._announce_lock:  # not while a roster is being written
            _delete(self._participant)  # deletes topics, publisher, subscriber and writers with it

    def __enter__(self) -> DdsGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _topic(self, topic: TopicSpec) -> tuple[Topic[Any], MessageType]:
        if topic.type is None:
            msg = (
                f"topic {topic.name} has no message type: set TopicSpec.type, "
                "or learn it first with discover_type()"
            )
            raise ConfigError(msg)
        return self._dds_topic(dds_topic_name(topic.name), topic.type)

    def _dds_topic(
        self, name: str, type_name: str, *, request_header: bool = False
    ) -> tuple[Topic[Any], MessageType]:
        message_type = self._types.resolve(type_name)
        with self._lock:
            self._check_open()
            key = (name, type_name)
            dds_topic = self._topics.get(key)
            if dds_topic is None:
                struct = self._structs.get(type_name, request_header=request_header)
                try:
                    dds_topic = Topic(self._participant, name, struct)
                except DDSException as err:
                    raise BridgeError(f"cannot create DDS topic {name} ({type_name}): {err}") from err
                self._topics[key] = dds_topic
        return dds_topic, message_type

    def _discovery_writer(self) -> DdsPublisher:
        dds_topic, message_type = self._dds_topic(DISCOVERY_TOPIC, PARTICIPANT_INFO_TYPE)
        qos = Qos(*_dds_policies(DISCOVERY_QOS, message_type))
        try:
            writer: DataWriter[Any] = DataWriter(self._publisher, dds_topic, qos)
        except DDSException as err:
            raise BridgeError(f"cannot publish {DISCOVERY_TOPIC}: {err}") from err
        # Not remembered as an endpoint: rmw lists its own discovery writer under no node either.
        topic = TopicSpec(name=f"/{DISCOVERY_TOPIC}", type=PARTICIPANT_INFO_TYPE, qos=DISCOVERY_QOS)
        return DdsPublisher(graph=self, topic=topic, writer=writer)

    def _owners(self, nodes: Sequence[str]) -> tuple[NodeName, ...]:
        if isinstance(nodes, str):  # a lone name would otherwise be split into letters
            nodes = (nodes,)
        return tuple(parse_node_name(n) for n in nodes) or (self._own_node,)

    def _announce(self) -> None:
        """Publish the current roster on ``ros_discovery_info`` (a failure is logged, not raised:
        the endpoints work regardless, only ``ros2 node`` would lag)."""
        with self._announce_lock:
            if self._closed:
                return
            cdr = encode_participant_info(self._types, self._roster.snapshot(self._guid))
            try:
                self._discovery.publish(cdr)
            except BridgeError as err:
                _log.warning("cannot announce the nodes of the DDS graph: %s", err)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"DDS graph on domain {self._domain_id} is closed: open a new DdsGraph"
            raise BridgeError(msg)

    def _remember(
        self,
        endpoint: DdsPublisher | DdsSubscription,
        kind: EndpointKind,
        guid: bytes,
        owners: tuple[NodeName, ...],
    ) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._endpoints.append(endpoint)
                self._roster.add_endpoint(guid, kind, owners)
        if closed:
            endpoint.close()
            self._check_open()
        self._announce()

    def _forget(self, endpoint: DdsPublisher | DdsSubscription) -> None:
        with self._lock:
            if endpoint not in self._endpoints:
                return
            self._endpoints.remove(endpoint)
            self._roster.remove_endpoint(endpoint._guid)
        self._announce()

    def _remember_service(
        self,
        service: _Closeable,
        endpoints: Sequence[tuple[EndpointKind, bytes]],
        owners: tuple[NodeName, ...],
    ) -> None:
        """List a service server's or client's reader and writer under ``owners``, as rmw lists
        them under their node (``ros2 service list``, ``ros2 node info``)."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._services.append(service)
                for kind, guid in endpoints:
                    self._roster.add_endpoint(guid, kind, owners)
        if closed:
            service.close()
            self._check_open()
        self._announce()

    def _forget_service(self, service: _Closeable, guids: Sequence[bytes]) -> None:
        with self._lock:
            if service not in self._services:
                return
            self._services.remove(service)
            for guid in guids:
                self._roster.remove_endpoint(guid)
        self._announce()
