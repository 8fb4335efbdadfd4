"""ROS 2 services on the rclpy graph adapter: servers and clients exchanging raw CDR.

Requests and replies are converted with ``rclpy.serialization`` between the generated service
classes and CDR (encapsulation header included), the same bytes the DDS adapter hands out.

A server must be able to answer later, from another thread, or never, without holding up the
graph's single executor thread. rclpy's executor sends whatever the callback returns with
``Service.send_response(response, header)`` right after the callback; a coroutine callback could
wait for the reply, but could not decline to answer (a None reply raises in the executor and
stops it). So the callback returns a placeholder Response, and the server's ``send_response`` is
replaced on that one object: it learns the request's header there and sends the real reply when
(and if) the handler's responder supplies it, from whichever thread does.

rclpy is imported inside the functions that need it: importing this module never requires ROS 2.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import BridgeError, ConfigError, MissingDependency, UnknownMessageType
from fogros_dist.logs import module_logger
from fogros_dist.ros.graph import ServiceHandler
from fogros_dist.ros.names import validate_topic_name, validate_type_name
from fogros_dist.spec import ServiceSpec

if TYPE_CHECKING:
    from fogros_dist.ros.rclpy_graph import RclpyGraph

__all__ = ["RclpyServiceClient", "RclpyServiceServer", "service_class"]

_log = module_logger(__name__)
# How often a waiting call looks for a server again: rclpy offers no wait on graph changes.
_READY_POLL = 0.01


def service_class(service: ServiceSpec) -> Any:
    """The generated rclpy service class for ``service.type`` (``pkg/srv/Type``).

    Raises:
        ConfigError: the service has no type, or it is not a service type.
        UnknownMessageType: no installed package provides it.
        MissingDependency: ROS 2 is not importable.
    """
    validate_topic_name(service.name)
    if service.type is None:
        msg = (
            f"service {service.name} has no type: set ServiceSpec.type, "
            "or learn it first with discover_service_type()"
        )
        raise ConfigError(msg)
    validate_type_name(service.type)
    if service.type.split("/")[1] != "srv":
        msg = f"service {service.name} type {service.type!r} is not a service type: use 'package/srv/Type'"
        raise ConfigError(msg)
    try:
        from rosidl_runtime_py.utilities import get_service
    except ImportError as err:
        msg = (
            f"the rclpy graph adapter needs ROS 2's rosidl_runtime_py ({err}): "
            "source /opt/ros/<distro>/setup.bash"
        )
        raise MissingDependency(msg) from err
    try:
        return get_service(service.type)
    except (AttributeError, ModuleNotFoundError, ValueError) as err:
        pkg = service.type.split("/", 1)[0]
        msg = (
            f"service type {service.type!r} is not installed in this ROS 2 environment ({err}): "
            f"build package {pkg!r} and source its workspace"
        )
        raise UnknownMessageType(msg) from err


class _Call:
    """One request being served: its header (from the executor) and its reply (from the
    responder), sent once both are there."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.header: Any = None
        self.reply: Any = None
        self.answered = False
        self.started = time.monotonic()


class RclpyServiceServer:
    """Serves one service through an rclpy Service. Made by :meth:`RclpyGraph.service_server`.

    The handler runs on the graph's executor thread and must not block there; it may hand the
    responder to another thread. An exception in it is logged and that call gets no reply.
    """

    def __init__(
        self, *, graph: RclpyGraph, service: ServiceSpec, handler: ServiceHandler, node: Any
    ) -> None:
        from rclpy.qos import qos_profile_services_default

        self._graph = graph
        self._spec = service
        self._handler = handler
        self._node = node
        self._srv_cls = service_class(service)
        self._lock = threading.Lock()
        self._closed = False
        # Placeholder response object -> its call, until the reply is sent or abandoned.
        self._calls: dict[int, _Call] = {}
        self._service = node.create_service(
            self._srv_cls, service.name, self._serve, qos_profile=qos_profile_services_default
        )
        self._send = self._service.send_response
        # Per instance, not per class: only this server's replies take the deferred path.
        self._service.send_response = self._take_header

    @property
    def service(self) -> ServiceSpec:
        """The service this server answers."""
        return self._spec

    def close(self) -> None:
        """Withdraw the server; replies after this are dropped. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._calls.clear()
        self._graph._forget_service(self, self._node, self._service)

    def _serve(self, request: Any, response: Any) -> Any:
        """The rclpy callback: hand the request on and return ``response`` as the placeholder."""
        from rclpy.serialization import serialize_message

        call = _Call()
        with self._lock:
            self._prune()
            self._calls[id(response)] = call
        try:
            self._handler(serialize_message(request), lambda cdr: self._respond(call, cdr))
        except Exception:
            _log.exception("handler of service %s raised; that call gets no reply", self._spec.name)
        return response

    def _take_header(self, response: Any, header: Any) -> None:
        """Stands in for ``Service.send_response`` when the executor sends the placeholder."""
        with self._lock:
            call = self._calls.pop(id(response), None)
        if call is None:  # the server closed meanwhile: no reply, rather than a default one
            return
        with call.lock:
            call.header = header
            reply = call.reply
        if reply is not None:  # the handler answered within the callback
            self._deliver(reply, header)

    def _respond(self, call: _Call, reply_cdr: bytes) -> None:
        from rclpy.serialization import deserialize_message

        with call.lock:
            answered, call.answered = call.answered, True
        if answered:
            _log.warning("service %s call answered twice: the second reply is dropped", self._spec.name)
            return
        try:
            reply = deserialize_message(bytes(reply_cdr), self._srv_cls.Response)
        except Exception as err:  # rclpy raises whatever the C deserializer reports
            _log.error(
                "reply on service %s dropped: %d bytes are no %s_Response (%s)",
                self._spec.name,
                len(reply_cdr),
                self._spec.type,
                err,
            )
            return
        with call.lock:
            call.reply = reply
            header = call.header
        if header is not None:  # the executor has already passed the placeholder on
            self._deliver(reply, header)

    def _deliver(self, reply: Any, header: Any) -> None:
        if self._closed:
            _log.debug("reply on service %s dropped: the server is closed", self._spec.name)
            return
        try:
            self._send(reply, header)
        except Exception as err:  # InvalidHandle once destroyed, RCLError on a failed send
            _log.warning("reply on service %s not sent: %s", self._spec.name, err)

    def _prune(self) -> None:
        """Forget calls the handler never answered, long after any client stopped waiting."""
        horizon = time.monotonic() - 2 * self._spec.timeout
        for key in [k for k, c in self._calls.items() if c.started < horizon]:
            del self._calls[key]


class RclpyServiceClient:
    """Calls one service through an rclpy Client. Made by :meth:`RclpyGraph.service_client`.

    Calls come from any thread; the graph's executor thread receives the replies.
    """

    def __init__(self, *, graph: RclpyGraph, service: ServiceSpec, node: Any) -> None:
        from rclpy.qos import qos_profile_services_default

        self._graph = graph
        self._spec = service
        self._node = node
        self._srv_cls = service_class(service)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._waiting: set[threading.Event] = set()
        self._client = node.create_client(
            self._srv_cls, service.name, qos_profile=qos_profile_services_default
        )

    @property
    def service(self) -> ServiceSpec:
        """The service this client calls."""
        return self._spec

    def server_ready(self) -> bool:
        """Whether a server is matched (rclpy's ``service_is_ready``); False once closed."""
        if self._closed.is_set():
            return False
        try:
            return bool(self._client.service_is_ready())
        except Exception:  # InvalidHandle: destroyed meanwhile
            return False

    def call(self, request_cdr: bytes, timeout: float) -> bytes | None:
        """Send one request and wait for its reply, ``timeout`` seconds in all.

        Returns:
            The reply's CDR, or None when no server was ready or no reply came in time, or the
            client was closed meanwhile.

        Raises:
            BridgeError: the client is closed, or the bytes are no request of the service's type.
        """
        from rclpy.serialization import deserialize_message, serialize_message

        if self._closed.is_set():
            msg = f"client of service {self._spec.name} is closed: create a new one with service_client()"
            raise BridgeError(msg)
        try:
            request = deserialize_message(bytes(request_cdr), self._srv_cls.Request)
        except Exception as err:
            msg = (
                f"request on service {self._spec.name} rejected ({err}): "
                f"check that it is a {self._spec.type}_Request"
            )
            raise BridgeError(msg) from err
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.server_ready():
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.wait(min(_READY_POLL, left)):
                return None
        done = threading.Event()
        with self._lock:
            if self._closed.is_set():
                return None
            self._waiting.add(done)
        try:
            future = self._client.call_async(request)
            future.add_done_callback(lambda _future: done.set())
            if not done.wait(max(0.0, deadline - time.monotonic())) or not future.done():
                self._client.remove_pending_request(future)
                return None
            reply = future.result()
        except Exception as err:  # InvalidHandle when closed under us
            if self._closed.is_set():
                return None
            raise BridgeError(f"call on service {self._spec.name} failed: {err}") from err
        finally:
            with self._lock:
                self._waiting.discard(done)
        return None if reply is None else bytes(serialize_message(reply))

    def close(self) -> None:
        """Withdraw the client; calls in flight return None. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            waiting = list(self._waiting)
        for done in waiting:
            done.set()
        self._graph._forget_service(self, self._node, self._client)
