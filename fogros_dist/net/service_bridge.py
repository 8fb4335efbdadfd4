"""The service bridge: ROS 2 services across the Zenoh link, as zenoh-bridge-ros2dds routes them.

A service crosses as one Zenoh query per call on the service's key (its name without the leading
``/``, :func:`~fogros_dist.net.ros2dds_keys.name_to_key`). The query's payload is the request
CDR (encapsulation header + body, without rmw's request id) and the reply's payload the response
CDR, as in zenoh-bridge-ros2dds' ``route_service_cli.rs`` / ``route_service_srv.rs``, so either
end can be that bridge.

* **remote services** (``BridgeRunSpec.remote_services``: the real server is on the far side):
  this bridge serves the service on its graph, owned by the nodes of ``service_owners``; each call
  becomes a query with the service's ``timeout``. No reply in time, or an error reply: one log
  line naming the service, the machine and the timeout, and no answer (the ROS client times out
  as it would against a dead server; ROS has no way to answer a call with an error).
* **local services** (``local_services``: the real server is on this graph): a queryable that
  calls that server with a graph client and replies with its response; an absent or slow server
  is one log line and an error reply naming it.

Calls run concurrently: a remote call is an asynchronous query, a local one a thread of its own
(at most ``max_calls`` at once per bridge; more are refused with an error reply). A service of
type None is learned on the side of the real server (``discover_service_type``) and announced
there with a service-server liveliness token (``@/<zid>/@ros2_lv/SS/<key>/<type>``); the other
side serves it on its graph once that token arrives. Counters per service and role (calls,
answered, timed out, errors, in flight, latency) are the bridge stats' ``services`` section.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import zenoh

from fogros_dist.errors import BridgeError, ConfigError, FogError
from fogros_dist.logs import module_logger
from fogros_dist.net.closing import quietly, undeclare
from fogros_dist.net.ros2dds_keys import name_to_key, parse_token, service_server_token, token_pattern
from fogros_dist.ros.graph import RawServiceClient, RawServiceServer, RosGraph, ServiceResponder
from fogros_dist.ros.names import validate_topic_name, validate_type_name
from fogros_dist.ros.node_names import parse_node_name
from fogros_dist.spec import BridgeRunSpec, ServiceSpec

__all__ = ["DEFAULT_MAX_CALLS", "ServiceBridge", "ServiceRole", "ServiceStats", "local_call_timeout"]

_log = module_logger(__name__)

ServiceRole = Literal["remote", "local"]
# Enough for many goals waiting on get_result at once; each is a thread blocked in the graph.
DEFAULT_MAX_CALLS = 64
_LATENCY_WINDOW = 1024
# How long one discover_service_type() call may block: bounds how long close() waits for it.
_DISCOVERY_SLICE_S = 0.25
_JOIN_S = 2.0
# The error payload zenoh 1.x delivers to a query's callback when its timeout passes.
_ZENOH_TIMEOUT = "Timeout"


def local_call_timeout(timeout: float) -> float:
    """How long the bridge next to the real server waits for it: the service's ``timeout`` less
    a tenth (at most 1 s), the time left for the error reply to reach the caller's bridge."""
    return max(timeout - 1.0, timeout * 0.9)


class ServiceStats:
    """Counters of one service in one role; safe to use from any thread.

    ``calls`` = ``answered`` + ``timed_out`` + ``errors`` + ``in_flight``: every call ends in one.
    """

    def __init__(self, *, service: str, role: ServiceRole, type_name: str | None) -> None:
        self.service = service
        self.role: ServiceRole = role
        self._type = type_name
        self._lock = threading.Lock()
        self._calls = 0
        self._answered = 0
        self._timed_out = 0
        self._errors = 0
        self._latencies_ns: list[int] = []

    def set_type(self, type_name: str) -> None:
        """Record the service type once it is learned."""
        with self._lock:
            self._type = type_name

    def call(self) -> None:
        """Count a call that began."""
        with self._lock:
            self._calls += 1

    def answered(self, latency_ns: int) -> None:
        """Count a call answered after ``latency_ns``."""
        with self._lock:
            self._answered += 1
            self._latencies_ns.append(latency_ns)
            if len(self._latencies_ns) > _LATENCY_WINDOW:
                del self._latencies_ns[: len(self._latencies_ns) - _LATENCY_WINDOW]

    def timed_out(self) -> None:
        """Count a call that got no reply in time."""
        with self._lock:
            self._timed_out += 1

    def error(self) -> None:
        """Count a call that failed otherwise (error reply, absent server, refused, crashed)."""
        with self._lock:
            self._errors += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters now, JSON-able (latencies in milliseconds, None without samples)."""
        with self._lock:
            samples = sorted(self._latencies_ns)
            done = self._answered + self._timed_out + self._errors
            out: dict[str, Any] = {
                "service": self.service,
                "role": self.role,
                "type": self._type,
                "calls": self._calls,
                "answered": self._answered,
                "timed_out": self._timed_out,
                "errors": self._errors,
                "in_flight": self._calls - done,
            }

        def at(q: float) -> float | None:
            return samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6 if samples else None

        out["latency_ms"] = {"samples": len(samples), "median": at(0.5), "p99": at(0.99), "max": at(1.0)}
        return out


@dataclass
class _Remote:
    """A service served on this graph whose real server is on the far side."""

    service: ServiceSpec
    key: str
    machine: str
    owners: tuple[str, ...]
    stats: ServiceStats
    querier: Any = None  # zenoh.Querier
    server: RawServiceServer | None = None
    type_watch: Any = None  # zenoh liveliness subscriber on SS tokens


@dataclass
class _Local:
    """A service whose real server is on this graph, answered to Zenoh queries."""

    service: ServiceSpec
    key: str
    stats: ServiceStats
    client: RawServiceClient | None = None
    queryable: Any = None  # zenoh.Queryable
    token: Any = None  # zenoh.LivelinessToken (SS)
    warned: set[str] = field(default_factory=set)


class ServiceBridge:
    """Carries the services of a :class:`~fogros_dist.spec.BridgeRunSpec` between a ROS graph
    and a Zenoh session (see the module doc). Like the topic bridge, it owns neither.

    Args:
        spec: which side this is and its ``remote_services`` / ``local_services``.
        graph: this side's ROS graph (with the service port of :mod:`fogros_dist.ros.graph`).
        session: an open Zenoh session linked to the far side.
        max_calls: local calls allowed in flight at once.

    Raises:
        ConfigError: a service name or type is invalid, a service is listed twice, or an owner is
            not a valid node among ``proxy_nodes`` or names a service that is not remote.
    """

    def __init__(
        self,
        *,
        spec: BridgeRunSpec,
        graph: RosGraph,
        session: zenoh.Session,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        if max_calls < 1:
            msg = f"max_calls {max_calls} must be at least 1: use e.g. {DEFAULT_MAX_CALLS}"
            raise ConfigError(msg)
        _check_services(spec)
        self._spec = spec
        self._graph = graph
        self._session = session
        self._owners = _service_owners(spec)
        self._machines = dict(spec.service_machines)
        self._far = "robot" if spec.side == "machine" else "the far side"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._started = False
        self._slots = threading.BoundedSemaphore(max_calls)
        self._remote: list[_Remote] = []
        self._local: list[_Local] = []
        self._threads: set[threading.Thread] = set()

    # -- public ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve every remote service with a known type and answer every local one; services of
        type None follow once learned.

        Raises:
            BridgeError: already started or closed, or Zenoh or the graph refused a declaration.
            ConfigError: the graph refused a service's type or name.
        """
        with self._lock:
            if self._started or self._closing.is_set():
                msg = "service bridge was already started: create a new ServiceBridge to start again"
                raise BridgeError(msg)
            self._started = True
        try:
            for service in self._spec.remote_services:
                self._add_remote(service)
            for service in self._spec.local_services:
                self._add_local(service)
        except zenoh.ZError as err:
            self.close()
            msg = f"Zenoh refused a service declaration of the {self._spec.side} bridge ({err})"
            raise BridgeError(msg) from err
        except BaseException:
            self.close()
            raise

    def snapshot(self) -> list[dict[str, Any]]:
        """Every service's counters (remote ones first), for the stats' ``services`` section."""
        routes = [*(r.stats for r in self._remote), *(r.stats for r in self._local)]
        return [s.snapshot() for s in routes]

    def close(self) -> None:
        """Withdraw every server, client, queryable and token; idempotent. Calls in flight get no
        answer (their ROS clients time out)."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
        for local in self._local:
            undeclare(local.token)
            undeclare(local.queryable)
            client, local.client = local.client, None
            if client is not None:
                quietly(client.close, f"closing the graph client of {local.service.name}")
        for remote in self._remote:
            undeclare(remote.type_watch)
            server, remote.server = remote.server, None
            if server is not None:
                quietly(server.close, f"closing the graph server of {remote.service.name}")
            undeclare(remote.querier)
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + _JOIN_S
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ServiceBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- remote: a graph server whose calls go to the far side ------------------------------------

    def _add_remote(self, service: ServiceSpec) -> None:
        key = name_to_key(service.name)
        stats = ServiceStats(service=service.name, role="remote", type_name=service.type)
        route = _Remote(
            service=service,
            key=key,
            machine=self._machines.get(service.name, self._far),
            owners=self._owners.get(service.name, ()),
            stats=stats,
        )
        self._remote.append(route)
        route.querier = self._session.declare_querier(
            key,
            timeout=service.timeout,
            # Replies as they come: the default consolidation holds them until the query ends.
            consolidation=zenoh.ConsolidationMode.NONE,
            congestion_control=zenoh.CongestionControl.BLOCK,
            # Our own queryable of the same service (served both ways) must not answer.
            allowed_destination=zenoh.Locality.REMOTE,
        )
        if service.type is not None:
            self._serve_remote(route, service.type)
        else:
            route.type_watch = self._session.liveliness().declare_subscriber(
                token_pattern("SS", service.name),
                lambda sample: self._on_server_token(route, sample),
                history=True,
            )

    def _on_server_token(self, route: _Remote, sample: zenoh.Sample) -> None:
        if sample.kind != zenoh.SampleKind.PUT:
            return
        token = parse_token(str(sample.key_expr))
        if token is None or token.kind != "SS" or token.name != route.service.name:
            return
        with self._lock:
            if self._closing.is_set() or route.server is not None:
                return
            try:
                self._serve_remote(route, token.type_name)
            except FogError as err:
                _log.error(
                    "cannot serve %s as announced type %s: %s", route.service.name, token.type_name, err
                )
                return
        _log.info(
            "learned type of service %s from its Zenoh announcement: %s", route.service.name, token.type_name
        )

    def _serve_remote(self, route: _Remote, type_name: str) -> None:
        service = ServiceSpec(name=route.service.name, type=type_name, timeout=route.service.timeout)
        route.stats.set_type(type_name)
        route.server = self._graph.service_server(
            service, lambda request, respond: self._forward_call(route, request, respond), nodes=route.owners
        )

    def _forward_call(self, route: _Remote, request: bytes, respond: ServiceResponder) -> None:
        # On the graph adapter's thread: start the query and return; replies come on Zenoh's.
        route.stats.call()
        started = time.monotonic_ns()
        outcome = _Outcome()

        def on_reply(reply: zenoh.Reply) -> None:
            try:
                sample = reply.ok
                if sample is None:
                    error = reply.err
                    reason = error.payload.to_string() if error is not None else "an error"
                    if reason == _ZENOH_TIMEOUT:
                        on_done()  # Zenoh's own reply when the query's timeout passed
                        return
                    if outcome.settle("error"):
                        route.stats.error()
                        _log.warning(
                            "service %s: machine %s answered with an error (%s); the caller gets no answer",
                            route.service.name,
                            route.machine,
                            reason,
                        )
                    return
                if not outcome.settle("answered"):
                    return  # a second reply (two servers of one service): the first one counts
                respond(sample.payload.to_bytes())
                route.stats.answered(time.monotonic_ns() - started)
            except Exception:
                _log.exception("unexpected error answering a call of %s", route.service.name)

        def on_done() -> None:
            if outcome.settle("timed_out"):
                route.stats.timed_out()
                if not self._closing.is_set():
                    _log.warning(
                        "service %s: no reply from machine %s within %g s (the service's timeout); "
                        "the caller gets no answer",
                        route.service.name,
                        route.machine,
                        route.service.timeout,
                    )

        try:
            route.querier.get(zenoh.handlers.Callback(on_reply, on_done), payload=request)
        except zenoh.ZError as err:
            if outcome.settle("error"):
                route.stats.error()
                _log.warning(
                    "service %s: the call could not be sent to %s (%s)",
                    route.service.name,
                    route.machine,
                    err,
                )

    # -- local: Zenoh queries answered by this graph's server -------------------------------------

    def _add_local(self, service: ServiceSpec) -> None:
        key = name_to_key(service.name)
        stats = ServiceStats(service=service.name, role="local", type_name=service.type)
        route = _Local(service=service, key=key, stats=stats)
        self._local.append(route)
        if service.type is not None:
            self._answer_local(route, service.type)
        else:
            self._spawn(f"discover {service.name}", lambda: self._discover_local(route))

    def _discover_local(self, route: _Local) -> None:
        name = route.service.name
        while not self._closing.is_set():
            try:
                found = self._graph.discover_service_type(name, _DISCOVERY_SLICE_S)
            except FogError as err:
                if not self._closing.is_set():
                    _log.error("cannot learn the type of service %s: %s", name, err)
                return
            if found is None:
                continue
            _log.info("learned type of service %s from the graph: %s", name, found)
            with self._lock:
                if self._closing.is_set():
                    return
                try:
                    self._answer_local(route, found)
                except (FogError, zenoh.ZError) as err:
                    _log.error("cannot bridge service %s (%s): %s", name, found, err)
            return

    def _answer_local(self, route: _Local, type_name: str) -> None:
        service = ServiceSpec(name=route.service.name, type=type_name, timeout=route.service.timeout)
        route.stats.set_type(type_name)
        route.client = self._graph.service_client(service)
        route.queryable = self._session.declare_queryable(
            route.key, lambda query: self._on_query(route, query), allowed_origin=zenoh.Locality.REMOTE
        )
        # Announced as zenoh-bridge-ros2dds announces a server route; the far side learns the type.
        route.token = self._session.liveliness().declare_token(
            service_server_token(str(self._session.zid()), route.service.name, type_name)
        )

    def _on_query(self, route: _Local, query: zenoh.Query) -> None:
        # On a Zenoh thread: never block here (a slow call would hold up every other query).
        route.stats.call()
        if not self._slots.acquire(blocking=False):
            route.stats.error()
            self._warn_once(
                route, "busy", f"service {route.service.name}: too many calls in flight; refusing one"
            )
            _reply_error(query, f"bridge on {self._spec.machine} is busy: too many calls in flight")
            _drop(query)
            return
        try:
            self._spawn(f"call {route.service.name}", lambda: self._call_local(route, query))
        except RuntimeError:  # no thread could start: the process is at its limit
            self._slots.release()
            route.stats.error()
            _reply_error(query, f"bridge on {self._spec.machine} cannot start a call")
            _drop(query)

    def _call_local(self, route: _Local, query: zenoh.Query) -> None:
        name, machine = route.service.name, self._spec.machine
        # The caller's bridge gives up at the service's timeout: give up a little earlier here, so
        # the error reply saying why still reaches it.
        timeout = local_call_timeout(route.service.timeout)
        try:
            client = route.client
            payload = query.payload
            if client is None or payload is None:
                route.stats.error()
                _reply_error(query, f"service {name} on {machine}: no request or bridge closing")
                return
            started = time.monotonic_ns()
            if not client.server_ready():
                # A server may be starting: the call itself waits for it, up to the timeout.
                self._warn_once(
                    route,
                    "absent",
                    f"service {name} has no server on machine {machine} yet; waiting up to {timeout:g} s",
                )
            reply = client.call(payload.to_bytes(), timeout)
            if reply is None:
                if self._closing.is_set():
                    return
                route.stats.timed_out()
                absent = "has no server" if not client.server_ready() else "did not answer"
                _log.warning("service %s %s on machine %s within %g s", name, absent, machine, timeout)
                _reply_error(query, f"service {name} {absent} on machine {machine} within {timeout:g} s")
                return
            query.reply(query.key_expr, reply)
            route.stats.answered(time.monotonic_ns() - started)
        except zenoh.ZError as err:
            route.stats.error()
            _log.debug("reply to a call of %s not sent: %s", name, err)
        except Exception as err:
            route.stats.error()
            _log.exception("unexpected error calling %s", name)
            # An error reply: the caller's bridge logs why at once instead of waiting out its timeout.
            _reply_error(query, f"service {name} on machine {machine}: the bridge failed the call ({err})")
        finally:
            self._slots.release()
            _drop(query)

    def _warn_once(self, route: _Local, what: str, message: str) -> None:
        if what in route.warned:
            _log.debug("%s", message)
            return
        route.warned.add(what)
        _log.warning("%s (further ones at debug)", message)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()


class _Outcome:
    """How one remote call ended: the first of answered / error / timed out wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: str | None = None

    def settle(self, state: str) -> bool:
        with self._lock:
            if self.state is not None:
                return False
            self.state = state
            return True


def _check_services(spec: BridgeRunSpec) -> None:
    for role, services in (("remote", spec.remote_services), ("local", spec.local_services)):
        seen: set[str] = set()
        for service in services:
            validate_topic_name(service.name)
            if service.name in seen:
                msg = f"service {service.name} is listed twice as {role}: list each service once per side"
                raise ConfigError(msg)
            seen.add(service.name)
            if service.type is not None:
                validate_type_name(service.type)


def _service_owners(spec: BridgeRunSpec) -> dict[str, tuple[str, ...]]:
    remote = {s.name for s in spec.remote_services}
    proxies = {parse_node_name(n).full for n in spec.proxy_nodes}
    owners: dict[str, tuple[str, ...]] = {}
    for service, nodes in spec.service_owners:
        if service not in remote:
            msg = (
                f"service_owners names service {service}, which is not a remote service of the "
                f"{spec.side} bridge: list owners only for services in remote_services"
            )
            raise ConfigError(msg)
        for node in nodes:
            full = parse_node_name(node).full
            if full not in proxies:
                known = ", ".join(sorted(proxies)) or "none"
                msg = (
                    f"service_owners gives service {service} the node {full}, which is not in "
                    f"proxy_nodes: add it there (known: {known})"
                )
                raise ConfigError(msg)
            if full not in owners.get(service, ()):
                owners[service] = (*owners.get(service, ()), full)
    return owners


def _reply_error(query: zenoh.Query, text: str) -> None:
    try:
        query.reply_err(text)
    except zenoh.ZError as err:
        _log.debug("error reply not sent: %s", err)


def _drop(query: zenoh.Query) -> None:
    # Finalizes the query now (the asker's get ends) instead of whenever Python collects it.
    try:
        query.drop()  # type: ignore[no-untyped-call]
    except zenoh.ZError as err:
        _log.debug("query not dropped: %s", err)
