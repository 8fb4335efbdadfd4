"""ROS 2 services on the DDS graph adapter, in rmw_cyclonedds_cpp's wire format.

A service ``/x`` of type ``pkg/srv/T`` is two DDS topics: requests on ``rq/xRequest`` (type
``pkg::srv::dds_::T_Request_``) and replies on ``rr/xReply`` (``pkg::srv::dds_::T_Response_``),
both reliable, volatile, keep last 10 (``rmw_qos_profile_services_default``). Each sample is the
encapsulation header, then rmw's request header (``cdds_request_header_t``: the client's uint64
writer instance handle and an int64 sequence number, in the sample's byte order), then the
message body. The body starts 16 bytes in, a multiple of CDR's largest alignment, so stripping the
header leaves exactly the CDR of the message alone, which is what handlers and callers see.

A server copies the request header into its reply; a client keeps the replies whose header names
its own writer. The reader and writer of each server carry ``serviceid=<id>;`` in their USER_DATA
and those of a client ``clientid=<id>;`` (before ``typehash=...;``), ids formatted as rmw's
``csid_to_string`` does. A client deems a server ready once a request reader and a reply writer
with one serviceid both match (rmw_service_server_is_available); a server sends a reply only once
its reply writer has matched the reader of the client that asked (Jazzy's
``check_for_response_reader``), since a volatile reply written earlier would be lost.

Both poll the match state every 10 ms while they wait, as rmw does: Cyclone signals matches only
through listeners, which would run Python on its receive thread.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cyclonedds._clayer import ddspy_take
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import DDSException, GuardCondition, Policy, Qos, ReadCondition, WaitSet
from cyclonedds.internal import dds_infinity
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Sample
from cyclonedds.util import duration

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.logs import module_logger
from fogros_dist.ros.dds import _ANY_STATE, _dds_policies, _dds_write, _delete, _pad, _unpad
from fogros_dist.ros.graph import ServiceHandler
from fogros_dist.ros.names import ros_type_name, validate_topic_name, validate_type_name
from fogros_dist.ros.node_names import NodeName
from fogros_dist.ros.types import MessageType
from fogros_dist.spec import QosSpec, ServiceSpec

if TYPE_CHECKING:
    from fogros_dist.ros.dds import DdsGraph

__all__ = [
    "REQUEST_HEADER_SIZE",
    "SERVICE_QOS",
    "DdsServiceClient",
    "DdsServiceServer",
    "RequestHeader",
    "discover_service_type",
    "format_service_id",
    "reply_topic_name",
    "request_topic_name",
    "service_message_types",
    "unwrap_request",
    "user_data_value",
    "wrap_request",
]

_log = module_logger(__name__)
# cyclonedds-python turns each matched endpoint's QoS into Python through calls that seem not to be
# safe from several threads at once: concurrent calls of one service (the bridge runs each on a
# thread) once failed with "Callfunc cqos errored". One thread at a time asks.
_MATCHED_DATA = threading.Lock()

# rmw_qos_profile_services_default: reliable, volatile, keep last 10.
SERVICE_QOS = QosSpec(reliability="reliable", durability="volatile", depth=10)
# cdds_request_header_t: uint64 guid + int64 seq.
REQUEST_HEADER_SIZE = 16
_ENCAPSULATION_SIZE = 4
_UINT64 = 2**64 - 1
_TAKE_BATCH = 32
# How often a waiting client or server looks at the match state again (rmw: 10 ms).
_MATCH_POLL = 0.01
# How long a reply waits for the asking client's reply reader to match; rmw waits 100 ms, but a
# bridged reply may come back before discovery of a freshly started client has settled.
_REPLY_MATCH_WAIT = 1.0


@dataclass(frozen=True)
class RequestHeader:
    """rmw's request id on the wire: the client's writer instance handle and a sequence number."""

    guid: int
    seq: int


def _byte_order(cdr: bytes) -> str:
    # The encapsulation identifier's low bit says little endian (CDR_LE 0x0001, PL_CDR_LE ...).
    return "<" if cdr[1] & 1 else ">"


def wrap_request(header: RequestHeader, cdr: bytes) -> bytes:
    """The wire sample for message ``cdr`` (encapsulation header included) under ``header``.

    Raises:
        ConfigError: ``cdr`` is shorter than an encapsulation header.
    """
    if len(cdr) < _ENCAPSULATION_SIZE:
        msg = f"{len(cdr)} bytes are no CDR message: a message starts with a 4-byte encapsulation header"
        raise ConfigError(msg)
    prefix = struct.pack(f"{_byte_order(cdr)}Qq", header.guid & _UINT64, header.seq)
    return b"".join((cdr[:_ENCAPSULATION_SIZE], prefix, memoryview(cdr)[_ENCAPSULATION_SIZE:]))


def unwrap_request(data: bytes) -> tuple[RequestHeader, bytes]:
    """Split a wire sample into its request header and the message's CDR.

    Raises:
        ConfigError: ``data`` is too short to hold the headers.
    """
    if len(data) < _ENCAPSULATION_SIZE + REQUEST_HEADER_SIZE:
        msg = f"{len(data)} bytes are no service sample: it holds 4 + 16 bytes of headers at least"
        raise ConfigError(msg)
    end = _ENCAPSULATION_SIZE + REQUEST_HEADER_SIZE
    guid, seq = struct.unpack_from(f"{_byte_order(data)}Qq", data, _ENCAPSULATION_SIZE)
    return RequestHeader(guid=guid, seq=seq), data[:_ENCAPSULATION_SIZE] + data[end:]


def request_topic_name(service_name: str) -> str:
    """``/x`` -> ``rq/xRequest``, rmw's DDS topic for a service's requests.

    Raises:
        InvalidTopicName: the name is invalid (service names follow the topic name rules).
    """
    return f"rq{validate_topic_name(service_name)}Request"


def reply_topic_name(service_name: str) -> str:
    """``/x`` -> ``rr/xReply``, rmw's DDS topic for a service's replies.

    Raises:
        InvalidTopicName: the name is invalid.
    """
    return f"rr{validate_topic_name(service_name)}Reply"


def service_message_types(service: ServiceSpec) -> tuple[str, str]:
    """The request and response message types (``pkg/srv/T_Request``, ``pkg/srv/T_Response``).

    Raises:
        ConfigError: the service has no type, or it is not ``pkg/srv/Type``.
    """
    if service.type is None:
        msg = (
            f"service {service.name} has no type: set ServiceSpec.type, "
            "or learn it first with discover_service_type()"
        )
        raise ConfigError(msg)
    validate_type_name(service.type)
    # An action's services are ``pkg/action/T_SendGoal`` and ``pkg/action/T_GetResult``.
    if service.type.split("/")[1] not in ("srv", "action"):
        msg = f"service {service.name} type {service.type!r} is not a service type: use 'package/srv/Type'"
        raise ConfigError(msg)
    return f"{service.type}_Request", f"{service.type}_Response"


def format_service_id(participant_guid: bytes, counter: int) -> str:
    """A client or service id as rmw_cyclonedds_cpp writes it in USER_DATA (``csid_to_string``):
    the participant's 12-byte GUID prefix then the counter (4 bytes, big endian), in hex, the
    first byte two digits wide, the others as short as they get, joined by dots."""
    data = participant_guid[:12] + (counter & 0xFFFFFFFF).to_bytes(4, "big")
    return f"{data[0]:02x}." + ".".join(f"{b:x}" for b in data[1:])


def user_data_value(qos: Qos | None, key: str) -> str | None:
    """The value of ``key`` in an endpoint's USER_DATA (``k1=v1;k2=v2;``), or None."""
    if qos is None:
        return None
    for policy in qos:
        if isinstance(policy, Policy.Userdata):
            text = bytes(policy.data).decode("latin-1")
            for item in text.split(";"):
                name, sep, value = item.partition("=")
                if sep and name == key:
                    return value
    return None


def _service_qos(message_type: MessageType, id_key: str, ident: str) -> Qos:
    policies = [p for p in _dds_policies(SERVICE_QOS, message_type) if not isinstance(p, Policy.Userdata)]
    user_data = f"{id_key}={ident};".encode() + message_type.user_data
    return Qos(*policies, Policy.Userdata(data=user_data))


def _write(handle: int, data: bytes) -> int:
    """Write one serialized sample with Cyclone's C dds_write (GIL released); its return code."""
    padded = _pad(data)
    pointer = ctypes.cast(ctypes.c_char_p(padded), ctypes.c_void_p)
    sample = Sample(usample=pointer, usample_size=len(padded))
    return int(_dds_write(handle, ctypes.byref(sample)))


class _ReaderLoop:
    """Takes samples from one reader on its own thread and hands each to ``on_sample`` with its
    SampleInfo; owns the reader and deletes it when closed."""

    def __init__(
        self,
        *,
        graph: DdsGraph,
        reader: DataReader[Any],
        on_sample: Callable[[bytes, Any], None],
        name: str,
    ) -> None:
        participant = graph._participant
        self._reader = reader
        self._on_sample = on_sample
        self._name = name
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._released = False
        self._waitset = WaitSet(participant)
        self._condition = ReadCondition(reader, _ANY_STATE)
        self._wakeup = GuardCondition(participant)
        self._waitset.attach(self._condition)
        self._waitset.attach(self._wakeup)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def reader(self) -> DataReader[Any]:
        return self._reader

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            self._wakeup.set(True)
        except DDSException:  # already deleted with the participant: the thread has stopped
            _log.debug("%s: wake-up condition already gone", self._name)
        if threading.current_thread() is self._thread:
            return  # the loop releases the entities once the running callback returns
        if self._thread.is_alive():
            self._thread.join()
        self._release()

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._waitset.wait(dds_infinity)
                self._drain()
        except Exception:  # a DDS failure here must not vanish silently with the thread
            _log.exception("%s stopped", self._name)
        finally:
            if self._closing.is_set():
                self._release()

    def _drain(self) -> None:
        while not self._closing.is_set():
            samples = ddspy_take(self._reader._ref, _ANY_STATE, _TAKE_BATCH)
            if isinstance(samples, int):
                raise DDSException(samples, f"taking samples in {self._name}")
            for data, info in samples:
                if self._closing.is_set():
                    return
                if info.valid_data:
                    self._on_sample(_unpad(data), info)
            if len(samples) < _TAKE_BATCH:
                return

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        _delete(self._waitset)
        _delete(self._wakeup)
        _delete(self._condition)
        _delete(self._reader)


def _open_endpoints(
    graph: DdsGraph, service: ServiceSpec, *, role: Literal["server", "client"], ident: str
) -> tuple[DataWriter[Any], DataReader[Any]]:
    """The writer and reader of a server (reads requests, writes replies) or a client."""
    request_type, response_type = service_message_types(service)
    request_topic, request_mt = graph._dds_topic(
        request_topic_name(service.name), request_type, request_header=True
    )
    reply_topic, reply_mt = graph._dds_topic(
        reply_topic_name(service.name), response_type, request_header=True
    )
    id_key = "serviceid" if role == "server" else "clientid"
    if role == "server":
        writer_topic, writer_mt, reader_topic, reader_mt = reply_topic, reply_mt, request_topic, request_mt
    else:
        writer_topic, writer_mt, reader_topic, reader_mt = request_topic, request_mt, reply_topic, reply_mt
    writer: DataWriter[Any] | None = None
    try:
        writer = DataWriter(graph._publisher, writer_topic, _service_qos(writer_mt, id_key, ident))
        reader: DataReader[Any] = DataReader(
            graph._subscriber, reader_topic, _service_qos(reader_mt, id_key, ident)
        )
    except DDSException as err:
        _delete(writer)
        raise BridgeError(f"cannot create the service {role} of {service.name}: {err}") from err
    return writer, reader


class DdsServiceServer:
    """Serves one ROS 2 service on a DDS graph. Made by :meth:`DdsGraph.service_server`.

    The handler runs on the server's own thread, one request at a time, and may hand the
    responder to another thread to answer later. An exception in it is logged; that call gets no
    reply (its client times out), later calls are served.
    """

    def __init__(
        self,
        *,
        graph: DdsGraph,
        service: ServiceSpec,
        handler: ServiceHandler,
        owners: tuple[NodeName, ...],
    ) -> None:
        self._graph = graph
        self._service = service
        self._handler = handler
        self._closed = threading.Event()
        ident = format_service_id(graph.guid, next(graph._service_ids))
        self._writer, reader = _open_endpoints(graph, service, role="server", ident=ident)
        self._reply_handle = int(self._writer._ref)
        self._guids = (bytes(reader.guid.bytes), bytes(self._writer.guid.bytes))
        self._loop = _ReaderLoop(
            graph=graph, reader=reader, on_sample=self._on_request, name=f"dds-srv {service.name}"
        )
        graph._remember_service(self, [("reader", self._guids[0]), ("writer", self._guids[1])], owners)
        self._loop.start()

    @property
    def service(self) -> ServiceSpec:
        """The service this server answers."""
        return self._service

    def close(self) -> None:
        """Withdraw the server; idempotent. Replies sent after this are dropped."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._graph._forget_service(self, self._guids)
        self._loop.close()
        _delete(self._writer)

    def _on_request(self, data: bytes, info: Any) -> None:
        try:
            header, request = unwrap_request(data)
        except ConfigError as err:
            _log.warning("request on service %s dropped: %s", self._service.name, err)
            return
        responder = _Responder(self, header, int(info.publication_handle))
        try:
            self._handler(request, responder)
        except Exception:
            _log.exception("handler of service %s raised; that call gets no reply", self._service.name)

    def _client_reader(self, request_writer: int) -> Literal["yes", "maybe", "gone"]:
        """Whether the reply writer has matched the reader of the client whose request writer
        is ``request_writer`` (rmw's check_for_response_reader)."""
        writer_data = self._loop.reader.get_matched_publication_data(request_writer)
        if writer_data is None:
            return "gone"
        clientid = user_data_value(writer_data.qos, "clientid")
        if clientid is None:
            return "yes"  # a client of an rmw without client ids: assume all is well, as rmw does
        for handle in self._writer.get_matched_subscriptions():
            reader_data = self._writer.get_matched_subscription_data(handle)
            if reader_data is not None and user_data_value(reader_data.qos, "clientid") == clientid:
                return "yes"
        return "maybe"

    def _reply(self, header: RequestHeader, request_writer: int, reply_cdr: bytes) -> None:
        name = self._service.name
        deadline = time.monotonic() + _REPLY_MATCH_WAIT
        try:
            while (state := self._client_reader(request_writer)) == "maybe":
                if time.monotonic() >= deadline or self._closed.wait(_MATCH_POLL):
                    break
        except DDSException:
            state = "gone"  # the server closed under us
        if self._closed.is_set():
            _log.debug("reply on service %s dropped: the server is closed", name)
            return
        if state == "gone":
            _log.debug("reply on service %s dropped: the client left", name)
            return
        if state == "maybe":
            _log.warning(
                "reply on service %s dropped: the client's reply reader did not match within %.1f s",
                name,
                _REPLY_MATCH_WAIT,
            )
            return
        try:
            sample = wrap_request(header, reply_cdr)
        except ConfigError as err:
            _log.error("reply on service %s dropped: %s", name, err)
            return
        ret = _write(self._reply_handle, sample)
        if ret < 0 and not self._closed.is_set():
            _log.error(
                "reply on service %s rejected by DDS (%s): check that it is a %s_Response",
                name,
                DDSException(ret),
                self._service.type,
            )


class _Responder:
    """Sends the reply to one request; the first call counts, later ones are logged and dropped."""

    def __init__(self, server: DdsServiceServer, header: RequestHeader, request_writer: int) -> None:
        self._server = server
        self._header = header
        self._request_writer = request_writer
        self._lock = threading.Lock()
        self._answered = False

    def __call__(self, reply_cdr: bytes) -> None:
        with self._lock:
            answered, self._answered = self._answered, True
        if answered:
            _log.warning(
                "service %s call %d answered twice: the second reply is dropped",
                self._server.service.name,
                self._header.seq,
            )
            return
        self._server._reply(self._header, self._request_writer, bytes(reply_cdr))


@dataclass
class _PendingCall:
    done: threading.Event
    reply: bytes | None = None


class DdsServiceClient:
    """Calls one ROS 2 service on a DDS graph. Made by :meth:`DdsGraph.service_client`.

    :meth:`call` is thread-safe: concurrent calls are in flight together, each matched to its
    reply by sequence number.
    """

    def __init__(self, *, graph: DdsGraph, service: ServiceSpec, owners: tuple[NodeName, ...]) -> None:
        self._graph = graph
        self._service = service
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, _PendingCall] = {}
        self._sequence = itertools.count(1)
        ident = format_service_id(graph.guid, next(graph._service_ids))
        self._writer, reader = _open_endpoints(graph, service, role="client", ident=ident)
        self._request_handle = int(self._writer._ref)
        # rmw puts the request writer's instance handle in the header; servers echo it back.
        # (The Python binding hands it out signed; on the wire it is a uint64.)
        self._client_key = int(self._writer.instance_handle) & _UINT64
        self._guids = (bytes(self._writer.guid.bytes), bytes(reader.guid.bytes))
        self._loop = _ReaderLoop(
            graph=graph, reader=reader, on_sample=self._on_reply, name=f"dds-cli {service.name}"
        )
        graph._remember_service(self, [("writer", self._guids[0]), ("reader", self._guids[1])], owners)
        self._loop.start()

    @property
    def service(self) -> ServiceSpec:
        """The service this client calls."""
        return self._service

    def server_ready(self) -> bool:
        """Whether a server's request reader and reply writer (one serviceid) both match
        (rmw_service_server_is_available); False once closed."""
        if self._closed.is_set():
            return False
        with _MATCHED_DATA:
            return self._server_matched()

    def _server_matched(self) -> bool:
        try:
            readers = self._writer.get_matched_subscriptions()
            writers = self._loop.reader.get_matched_publications()
            ids: set[str] = set()
            for handle in readers:
                data = self._writer.get_matched_subscription_data(handle)
                value = user_data_value(None if data is None else data.qos, "serviceid")
                if value is not None:
                    ids.add(value)
            if not ids:  # servers of an rmw without service ids: any match both ways will do
                return bool(readers) and bool(writers)
            for handle in writers:
                data = self._loop.reader.get_matched_publication_data(handle)
                if user_data_value(None if data is None else data.qos, "serviceid") in ids:
                    return True
        except DDSException:
            return False  # closed meanwhile
        return False

    def call(self, request_cdr: bytes, timeout: float) -> bytes | None:
        """Send one request and wait for its reply, ``timeout`` seconds in all.

        Args:
            request_cdr: the request message's CDR (encapsulation header, no request header).
            timeout: seconds to wait for a server to be ready and then for the reply.

        Returns:
            The reply's CDR, or None if no server was ready or no reply came in time, or the
            client was closed meanwhile.

        Raises:
            BridgeError: the client is closed, or DDS rejected the request (not a valid request of
                the service's type).
            ConfigError: ``request_cdr`` is shorter than an encapsulation header.
        """
        if self._closed.is_set():
            msg = f"client of service {self._service.name} is closed: create a new one with service_client()"
            raise BridgeError(msg)
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.server_ready():
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.wait(min(_MATCH_POLL, left)):
                return None
        seq = next(self._sequence)
        sample = wrap_request(RequestHeader(guid=self._client_key, seq=seq), request_cdr)
        pending = _PendingCall(done=threading.Event())
        with self._lock:
            if self._closed.is_set():
                return None
            self._pending[seq] = pending
        try:
            ret = _write(self._request_handle, sample)
            if ret < 0:
                if self._closed.is_set():
                    return None
                msg = (
                    f"request on service {self._service.name} rejected by DDS ({DDSException(ret)}): "
                    f"check that it is a {self._service.type}_Request"
                )
                raise BridgeError(msg)
            pending.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._lock:
                self._pending.pop(seq, None)
        return pending.reply

    def close(self) -> None:
        """Withdraw the client; calls in flight return None. Idempotent."""
        if self._closed.is_set():
            return
        with self._lock:
            self._closed.set()
            waiting = list(self._pending.values())
        for pending in waiting:
            pending.done.set()
        self._graph._forget_service(self, self._guids)
        self._loop.close()
        _delete(self._writer)

    def _on_reply(self, data: bytes, info: Any) -> None:
        del info
        try:
            header, reply = unwrap_request(data)
        except ConfigError as err:
            _log.warning("reply on service %s dropped: %s", self._service.name, err)
            return
        if header.guid != self._client_key:
            return  # a reply to another client of the same service
        with self._lock:
            pending = self._pending.get(header.seq)
        if pending is None:
            _log.debug("late reply %d on service %s dropped", header.seq, self._service.name)
            return
        pending.reply = reply
        pending.done.set()


def discover_service_type(graph: DdsGraph, name: str, timeout: float) -> str | None:
    """The type (``pkg/srv/Type``) of a server of ``name`` outside ``graph``'s own participant,
    from the type of its reply writer, seen within ``timeout`` seconds; None if none appeared.

    Raises:
        InvalidTopicName: the name is invalid.
        BridgeError: the graph is closed.
    """
    wanted = reply_topic_name(name)
    graph._check_open()
    participant = graph._participant
    own = participant.guid
    reader = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
    condition = ReadCondition(reader, _ANY_STATE)
    waitset = WaitSet(participant)
    waitset.attach(condition)
    deadline = time.monotonic() + max(0.0, timeout)
    try:
        while True:
            for endpoint in reader.take(N=256):
                if getattr(endpoint, "topic_name", None) != wanted or endpoint.participant_key == own:
                    continue
                response = ros_type_name(endpoint.type_name)
                if response is not None and "/srv/" in response and response.endswith("_Response"):
                    return response.removesuffix("_Response")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waitset.wait(duration(seconds=left))
    finally:
        _delete(waitset)
        _delete(condition)
        _delete(reader)
