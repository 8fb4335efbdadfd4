"""The topic bridge: one ROS graph <-> one Zenoh session, both ways, raw CDR bytes end to end.

Each **outbound** topic is subscribed on the graph and every message is ``put`` on the Zenoh key
that zenoh-bridge-ros2dds would use (the topic name without its leading slash). Each **inbound**
topic is a Zenoh subscriber whose samples are published on the graph. Messages are never decoded
on the way out; on the way in they are checked (see below) so that a bad peer cannot make the
graph adapter publish garbage.

Wire format beyond the payload:

* **attachment**: 16 bytes, ``<qQ`` = (the time the sending bridge took the message from its
  graph, as ``time.time_ns()``; per-topic sequence number from 1, assigned as it is put on Zenoh:
  :mod:`fogros_dist.net.sender`). The receiver derives one-way latency (meaningful across hosts
  only with synchronized clocks), counts sequence gaps as ``lost`` after a sanity check
  (:mod:`fogros_dist.net.sequence`) and replays bursts at the original pace
  (:mod:`fogros_dist.net.delivery`). Samples without it (from another Zenoh publisher) are
  forwarded all the same.
* **link health and flow control**: heartbeats, goodbyes and reports of what each side received
  (:mod:`fogros_dist.net.control`): each outbound topic waits in a bounded backlog while the
  receivers have more than about a second of it unconfirmed (:mod:`fogros_dist.net.flow`), so
  latency on a slow link stays bounded; disconnects and reconnects are logged and counted
  (:mod:`fogros_dist.net.link_health`, the stats' ``link`` section).
* **size limit**: messages larger than ``BridgeSpec.max_message_bytes`` are dropped and counted
  (``dropped_oversize``) by whichever side sees them first, before they are copied again.
* **type announcement**: the side that reads a topic from its graph declares a liveliness token
  ``@ros2_lv/<zid>/MP/<key with / as %>/<type with / as %>/<reliability>,<durability>,<depth>``
  (the shape of zenoh-bridge-ros2dds' message-publisher tokens). A receiving side whose
  ``TopicSpec.type`` is None creates its graph publisher when the token arrives; one whose
  producing side has ``type`` None learns the type from its graph with ``discover_type`` first.
* **nodes**: on its graph the bridge is a node of its own (``BridgeRunSpec.node_name``, given when
  the graph is opened); on the robot each bridged topic's endpoint belongs to the offloaded nodes
  that use it on the far side (``inbound_owners`` / ``outbound_owners``), so ``ros2 node info
  /<node>`` on the robot lists that node's topics.
* **bridge liveliness**: ``@fogros/<deployment>/<machine>/bridge`` once the bridge is ready
  (see :func:`wait_for_peer_bridge`), and a queryable ``@fogros/<deployment>/<machine>/stats``
  that answers the JSON stats snapshot.

Inbound validation: every message from Zenoh is checked against its type before it is published
(:class:`~fogros_dist.net.cdr_check.CdrValidator`: header, string lengths/terminators/UTF-8,
sequence counts, bools, alignment, total size — everything decoding relies on, without building
the message). Measured here for ``sensor_msgs/msg/Image``: a full ``rosbags`` deserialization is
3.4 us for 1 KB and 6 MB alike when hot (``uint8[]`` is wrapped, not copied), but at a camera's
20 Hz each message finds the CPU cold, and then it costs ~120 us — a tenth of the bridge's one-way
latency for small images. The structural check costs ~50 us cold and rejects the same inputs (a
test compares both on every message type of a distribution).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zenoh

from fogros_dist.errors import BridgeError, ConfigError, FogError
from fogros_dist.net.cdr_check import CdrValidator
from fogros_dist.net.control import ControlChannel
from fogros_dist.net.delivery import TopicDelivery
from fogros_dist.net.link_health import LinkMonitor
from fogros_dist.net.sender import ATTACHMENT, TopicSender
from fogros_dist.net.sequence import SequenceTracker
from fogros_dist.net.stats import BridgeStats, Direction, TopicStats
from fogros_dist.ros.graph import RawPublisher, RawSubscription, RosGraph
from fogros_dist.ros.names import validate_topic_name, zenoh_key
from fogros_dist.ros.node_names import parse_node_name
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, TopicSpec

__all__ = [
    "ATTACHMENT",
    "Bridge",
    "bridge_token_key",
    "decode_type_token",
    "query_stats",
    "stats_key",
    "type_token_key",
    "wait_for_peer_bridge",
]

_log = logging.getLogger(__name__)

_TYPE_TOKEN_PREFIX = "@ros2_lv"
_FORBIDDEN_IN_CHUNK = set("/*$#?@ ")
# How long one discover_type() call may block: bounds how long close() waits for a discovery
# thread, while a longer wait would not find a publisher any sooner.
_DISCOVERY_SLICE_S = 0.25


def _escape(text: str) -> str:
    # A key chunk cannot contain '/', so topic and type names travel with '/' as '%' (as
    # zenoh-bridge-ros2dds and rmw_zenoh escape them); neither ever contains '%' itself.
    return text.replace("/", "%")


def _check_chunk(value: str, what: str) -> str:
    if not value or _FORBIDDEN_IN_CHUNK & set(value):
        msg = (
            f"{what} {value!r} cannot be part of a Zenoh key: use letters, digits, '-', '_' or '.' "
            "(no '/', '*', '$', '#', '?', '@' or spaces)"
        )
        raise ConfigError(msg)
    return value


def _fogros_prefix(deployment: str, machine: str) -> str:
    return f"@fogros/{_check_chunk(deployment, 'deployment name')}/{_check_chunk(machine, 'machine name')}"


def bridge_token_key(*, deployment: str, machine: str) -> str:
    """The liveliness key a ready bridge declares: ``@fogros/<deployment>/<machine>/bridge``.

    Raises:
        ConfigError: a name cannot be a Zenoh key chunk.
    """
    return f"{_fogros_prefix(deployment, machine)}/bridge"


def stats_key(*, deployment: str, machine: str) -> str:
    """The queryable key answering a bridge's stats: ``@fogros/<deployment>/<machine>/stats``.

    Raises:
        ConfigError: a name cannot be a Zenoh key chunk.
    """
    return (
        f"@fogros/{_check_chunk(deployment, 'deployment name')}/{_check_chunk(machine, 'machine name')}/stats"
    )


def type_token_key(*, zid: str, topic: TopicSpec) -> str:
    """The liveliness key announcing that this session publishes ``topic`` (type set) on Zenoh.

    Raises:
        ConfigError: the topic has no type.
        InvalidTopicName: the topic name is invalid.
    """
    if topic.type is None:
        msg = f"topic {topic.name} has no type to announce: learn it with discover_type() first"
        raise ConfigError(msg)
    qos = f"{topic.qos.reliability},{topic.qos.durability},{topic.qos.depth}"
    return f"{_TYPE_TOKEN_PREFIX}/{zid}/MP/{_escape(zenoh_key(topic.name))}/{_escape(topic.type)}/{qos}"


def decode_type_token(key: str) -> tuple[str, str] | None:
    """``(topic name, type name)`` from a :func:`type_token_key` key, or None for another shape."""
    parts = key.split("/")
    if len(parts) < 5 or parts[0] != _TYPE_TOKEN_PREFIX or parts[2] != "MP":
        return None
    return "/" + parts[3].replace("%", "/"), parts[4].replace("%", "/")


def wait_for_peer_bridge(session: zenoh.Session, *, deployment: str, machine: str, timeout: float) -> None:
    """Block until the bridge of ``machine`` in ``deployment`` is ready and reachable.

    Args:
        session: a Zenoh session linked (directly or through routers) to that bridge.
        deployment: the deployment name.
        machine: the machine name of the bridge to wait for (``BridgeRunSpec.machine`` of that side).
        timeout: seconds to wait.

    Raises:
        BridgeError: the token did not appear within ``timeout``.
        ConfigError: a name cannot be a Zenoh key chunk.
    """
    key = bridge_token_key(deployment=deployment, machine=machine)
    seen = threading.Event()

    def on_token(sample: zenoh.Sample) -> None:
        if sample.kind == zenoh.SampleKind.PUT:
            seen.set()

    # A subscriber with history also reports tokens declared before it; a liveliness get would
    # miss a token still in flight (measured: declared 1 ms before, not yet visible remotely).
    subscriber = session.liveliness().declare_subscriber(key, on_token, history=True)
    try:
        if not seen.wait(timeout):
            msg = (
                f"bridge {machine!r} of deployment {deployment!r} did not become reachable within "
                f"{timeout:g} s (no token {key}): check that it runs and that its endpoint is reachable"
            )
            raise BridgeError(msg)
    finally:
        subscriber.undeclare()  # type: ignore[no-untyped-call]


def query_stats(
    session: zenoh.Session, *, deployment: str, machine: str, timeout: float = 2.0
) -> dict[str, Any]:
    """Ask a running bridge for its stats snapshot over Zenoh.

    Raises:
        BridgeError: no answer within ``timeout``, or the answer is not a stats snapshot.
        ConfigError: a name cannot be a Zenoh key chunk.
    """
    key = stats_key(deployment=deployment, machine=machine)
    for reply in session.get(key, timeout=timeout):
        sample = reply.ok
        if sample is None:
            continue
        try:
            data = json.loads(sample.payload.to_bytes())
        except ValueError as err:
            raise BridgeError(f"bridge {machine!r} answered {key} with non-JSON data ({err})") from err
        if isinstance(data, dict):
            return data
    msg = f"bridge {machine!r} of deployment {deployment!r} did not answer {key} within {timeout:g} s"
    raise BridgeError(msg)


@dataclass
class _Outbound:
    """One topic read from the graph and put on Zenoh."""

    topic: TopicSpec
    key: str
    stats: TopicStats
    publisher: Any  # zenoh.Publisher
    sender: TopicSender
    subscription: RawSubscription | None = None
    token: Any = None  # zenoh.LivelinessToken


@dataclass
class _Inbound:
    """One topic taken from Zenoh and published on the graph."""

    topic: TopicSpec
    key: str
    stats: TopicStats
    type_name: str | None
    tracker: SequenceTracker
    delivery: TopicDelivery | None = None
    publisher: RawPublisher | None = None
    subscriber: Any = None  # zenoh.Subscriber
    type_watch: Any = None  # zenoh.Subscriber on type tokens
    warned_malformed: bool = False
    warned_reset: bool = False
    warned_publish: bool = False


class Bridge:
    """Forwards the topics of a :class:`~fogros_dist.spec.BridgeRunSpec` between a ROS graph and
    a Zenoh session.

    The bridge owns neither the graph nor the session: the caller opens them before and closes
    them after :meth:`close`.

    Args:
        spec: which side this is, its topics and where to write stats.
        graph: this side's ROS graph.
        session: an open Zenoh session (see :func:`fogros_dist.net.zenoh_config.config_for`).
        types: message types for validating inbound messages; defaults to the graph's own
            (``graph.types``) when it has them, else ``MessageTypes(spec.distro)``.
        stats_interval: seconds between stats file writes.

    Raises:
        ConfigError: a topic name or type is invalid, a topic is listed twice in one direction,
            the deployment/machine name cannot be a Zenoh key chunk, or a topic owner is not a
            valid node name among ``proxy_nodes`` or names a topic not bridged that way.
    """

    def __init__(
        self,
        *,
        spec: BridgeRunSpec,
        graph: RosGraph,
        session: zenoh.Session,
        types: MessageTypes | None = None,
        stats_interval: float = 1.0,
    ) -> None:
        if stats_interval <= 0:
            msg = f"stats_interval {stats_interval} must be positive: use e.g. 1.0 (seconds)"
            raise ConfigError(msg)
        self._spec = spec
        self._graph = graph
        self._session = session
        graph_types = getattr(graph, "types", None)
        if types is None:
            types = graph_types if isinstance(graph_types, MessageTypes) else MessageTypes(spec.distro)
        self._types = types
        self._validator = CdrValidator(types)
        self._stats_interval = stats_interval
        self._token_key = bridge_token_key(deployment=spec.deployment, machine=spec.machine)
        self._stats_key = stats_key(deployment=spec.deployment, machine=spec.machine)
        _check_topics(spec.outbound, "outbound", types)
        _check_topics(spec.inbound, "inbound", types)
        self._inbound_owners = _topic_owners(spec, "inbound")
        self._outbound_owners = _topic_owners(spec, "outbound")
        self._stats = BridgeStats(deployment=spec.deployment, side=spec.side, machine=spec.machine)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._started = False
        self._ready = threading.Event()
        self._outbound: list[_Outbound] = []
        self._inbound: list[_Inbound] = []
        self._threads: list[threading.Thread] = []
        self._declared: list[Any] = []  # bridge token, stats queryable
        self._stats_failed = False
        self._peers_wake = threading.Event()
        self._max_bytes = spec.bridge.max_message_bytes
        self._monitor = LinkMonitor(own=spec.machine, on_restored=self._settle, on_gone=self._forget)
        self._stats.set_link_source(self._monitor.snapshot)
        self._senders: dict[str, TopicSender] = {}
        self._control: ControlChannel | None = None
        self._warned_oversize: set[tuple[str, str]] = set()

    # -- public ----------------------------------------------------------------------------------

    @property
    def spec(self) -> BridgeRunSpec:
        """The spec this bridge runs."""
        return self._spec

    @property
    def stats(self) -> BridgeStats:
        """The live counters (take a JSON-able copy with ``stats.snapshot()``)."""
        return self._stats

    @property
    def ready(self) -> bool:
        """True once :meth:`start` has finished and until :meth:`close`."""
        return self._ready.is_set() and not self._closing.is_set()

    def start(self, *, peer_timeout: float = 20.0) -> None:
        """Declare every route, then announce readiness.

        Readiness is, in this order: the bridge token ``@fogros/<deployment>/<machine>/bridge``,
        then the first stats file at ``spec.stats_path`` (any stale file there is removed first,
        so its appearance means this bridge is ready). A side with ``connect`` endpoints first
        waits until as many peer bridges of the deployment are reachable.

        Args:
            peer_timeout: seconds to wait for peer bridges (sides with ``connect`` endpoints).

        Raises:
            BridgeError: already started or closed, Zenoh or the graph refused a declaration, or
                the peer bridges did not appear in time.
        """
        with self._lock:
            if self._started or self._closing.is_set():
                msg = "bridge was already started: create a new Bridge to start again"
                raise BridgeError(msg)
            self._started = True
        try:
            if self._spec.stats_path:
                stats_file = Path(self._spec.stats_path)
                stats_file.parent.mkdir(parents=True, exist_ok=True)
                stats_file.unlink(missing_ok=True)
            for topic in self._spec.outbound:
                self._add_outbound(topic)
            for topic in self._spec.inbound:
                self._add_inbound(topic)
            self._declared.append(self._session.declare_queryable(self._stats_key, self._answer_stats))
            self._control = ControlChannel(
                session=self._session,
                prefix=f"@fogros/{self._spec.deployment}",
                machine=self._spec.machine,
                monitor=self._monitor,
                received=self._received,
                on_report=self._on_report,
                closing=self._closing,
            )
            self._control.start()
            if self._spec.connect:
                self._wait_for_peers(len(self._spec.connect), peer_timeout)
            self._declared.append(self._session.liveliness().declare_token(self._token_key))
        except zenoh.ZError as err:
            self.close()
            msg = f"Zenoh refused a declaration of the {self._spec.side} bridge ({err})"
            raise BridgeError(msg) from err
        except OSError as err:
            self.close()
            path = self._spec.stats_path
            msg = f"cannot prepare the bridge stats file {path!r} ({err}): pick a writable path"
            raise BridgeError(msg) from err
        except BaseException:
            self.close()
            raise
        self._write_stats()
        self._ready.set()
        writer = threading.Thread(target=self._stats_loop, name="bridge-stats", daemon=True)
        self._threads.append(writer)
        writer.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`start` to finish; True if it did."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop forwarding, withdraw every declaration, write the final stats; idempotent.

        The graph and the session stay open (the caller owns them).
        """
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
        self._peers_wake.set()
        if self._control is not None:
            self._control.close()  # says goodbye first: the peers do not count this as an outage
        for declared in reversed(self._declared):
            _undeclare(declared)
        self._declared.clear()
        # Inbound first: stop Zenoh deliveries before their graph publishers go away.
        for route in self._inbound:
            _undeclare(route.type_watch)
            _undeclare(route.subscriber)
            if route.delivery is not None:
                route.delivery.close()
            publisher, route.publisher = route.publisher, None
            if publisher is not None:
                _quietly(publisher.close, f"closing the graph publisher of {route.topic.name}")
        for out in self._outbound:
            subscription, out.subscription = out.subscription, None
            if subscription is not None:
                _quietly(subscription.close, f"closing the graph subscription of {out.topic.name}")
            out.sender.close()
            _undeclare(out.token)
            _undeclare(out.publisher)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        if self._ready.is_set():
            # Only a bridge that was ready writes: the file's appearance means "ready".
            self._write_stats()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outbound: graph -> Zenoh ----------------------------------------------------------------

    def _add_outbound(self, topic: TopicSpec) -> None:
        reliable = topic.qos.reliability == "reliable"
        key = zenoh_key(topic.name)
        publisher = self._session.declare_publisher(
            key,
            # BLOCK: a reliable topic must not lose a frame to a momentarily full queue; a
            # best-effort one would rather drop a stale frame than delay the next one.
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
            # Our own inbound subscriber on the same key (a topic flowing both ways through this
            # side) must not receive what we send: that would echo it back onto the graph.
            allowed_destination=zenoh.Locality.REMOTE,
        )
        stats = self._stats.topic(topic.name, "outbound", type_name=topic.type)
        sender = TopicSender(
            name=topic.name,
            publisher=publisher,
            stats=stats,
            reliable=reliable,
            depth=topic.qos.depth,
            closing=self._closing,
        )
        route = _Outbound(topic=topic, key=key, stats=stats, publisher=publisher, sender=sender)
        self._outbound.append(route)
        self._senders[topic.name] = sender
        if topic.type is not None:
            self._attach_outbound(route, topic.type)
        else:
            self._spawn(f"discover {topic.name}", lambda: self._discover_outbound(route))

    def _discover_outbound(self, route: _Outbound) -> None:
        name = route.topic.name
        while not self._closing.is_set():
            try:
                found = self._graph.discover_type(name, _DISCOVERY_SLICE_S)
            except FogError as err:
                if not self._closing.is_set():
                    _log.error("cannot learn the type of %s: %s", name, err)
                return
            if found is not None:
                _log.info("learned type of %s from the graph: %s", name, found)
                with self._lock:
                    if self._closing.is_set():
                        return
                    self._attach_outbound(route, found, log_errors=True)
                return

    def _attach_outbound(self, route: _Outbound, type_name: str, *, log_errors: bool = False) -> None:
        topic = TopicSpec(name=route.topic.name, type=type_name, qos=route.topic.qos)
        route.stats.set_type(type_name)
        try:
            route.subscription = self._graph.subscribe(
                topic,
                lambda cdr: self._forward_out(route, cdr),
                nodes=self._outbound_owners.get(topic.name, ()),
            )
            route.token = self._session.liveliness().declare_token(
                type_token_key(zid=str(self._session.zid()), topic=topic)
            )
        except (FogError, zenoh.ZError) as err:
            if not log_errors:
                raise
            _log.error("cannot bridge %s (%s): %s", topic.name, type_name, err)

    def _forward_out(self, route: _Outbound, cdr: bytes) -> None:
        # Hot path, on the graph adapter's thread: a size check, then one put (or a queued one).
        if len(cdr) > self._max_bytes:
            route.stats.drop_oversize()
            self._warn_oversize(route.topic.name, len(cdr), "outbound")
            return
        route.sender.offer(cdr)

    # -- inbound: Zenoh -> graph -----------------------------------------------------------------

    def _add_inbound(self, topic: TopicSpec) -> None:
        key = zenoh_key(topic.name)
        stats = self._stats.topic(topic.name, "inbound", type_name=topic.type)
        route = _Inbound(topic=topic, key=key, stats=stats, type_name=topic.type, tracker=SequenceTracker())
        route.delivery = TopicDelivery(
            name=topic.name,
            publish=lambda cdr, latency_ns: self._publish_in(route, cdr, latency_ns),
            stats=stats,
            reliable=topic.qos.reliability == "reliable",
            depth=topic.qos.depth,
            closing=self._closing,
        )
        self._inbound.append(route)
        if topic.type is not None:
            # Publishers up front: the first message must not wait for DDS matching.
            self._validator.prepare(topic.type)
            route.publisher = self._graph.publisher(topic, nodes=self._inbound_owners.get(topic.name, ()))
        else:
            route.type_watch = self._session.liveliness().declare_subscriber(
                f"{_TYPE_TOKEN_PREFIX}/*/MP/{_escape(key)}/**",
                lambda sample: self._on_type_token(route, sample),
                history=True,
            )
        # zenoh-python runs this callback on its own Python thread per subscriber (the default,
        # "indirect" mode): a slow graph publish then delays only this topic, not Zenoh's network
        # thread. Running it on the network thread (indirect=False) measured no faster here.
        route.subscriber = self._session.declare_subscriber(
            key, lambda sample: self._forward_in(route, sample), allowed_origin=zenoh.Locality.REMOTE
        )

    def _on_type_token(self, route: _Inbound, sample: zenoh.Sample) -> None:
        if sample.kind != zenoh.SampleKind.PUT:
            return
        decoded = decode_type_token(str(sample.key_expr))
        if decoded is None or decoded[0] != route.topic.name:
            return
        type_name = decoded[1]
        with self._lock:
            if self._closing.is_set():
                return
            if route.type_name is not None:
                if route.type_name != type_name:
                    _log.warning(
                        "%s is announced as %s but is bridged as %s: ignoring the announcement",
                        route.topic.name,
                        type_name,
                        route.type_name,
                    )
                return
            try:
                self._validator.prepare(type_name)  # also rejects a type the distro lacks
                publisher = self._graph.publisher(
                    TopicSpec(name=route.topic.name, type=type_name, qos=route.topic.qos),
                    nodes=self._inbound_owners.get(route.topic.name, ()),
                )
            except FogError as err:
                _log.error("cannot publish %s as announced type %s: %s", route.topic.name, type_name, err)
                return
            route.type_name = type_name
            route.stats.set_type(type_name)
            route.publisher = publisher
        _log.info("learned type of %s from its Zenoh announcement: %s", route.topic.name, type_name)

    def _forward_in(self, route: _Inbound, sample: zenoh.Sample) -> None:
        # Hot path, on a Zenoh thread. Never raise: Zenoh would only print the traceback.
        received_ns = time.time_ns()
        try:
            if sample.kind != zenoh.SampleKind.PUT:
                return
            # Every arrival counts in the sequence, whatever becomes of it below: a message the
            # bridge drops is counted as dropped, never again as lost.
            origin_ns = self._check_attachment(route, sample.attachment)
            size = len(sample.payload)
            if size > self._max_bytes:
                route.stats.drop_oversize()  # never copied out of Zenoh
                self._warn_oversize(route.topic.name, size, "inbound")
                return
            type_name, delivery = route.type_name, route.delivery
            if route.publisher is None or type_name is None or delivery is None:
                route.stats.drop_other()  # type not known yet: nothing to publish it with
                return
            cdr = sample.payload.to_bytes()
            if not self._valid(route, type_name, cdr):
                route.stats.drop_malformed()
                return
            delivery.offer(cdr, origin_ns, received_ns)
        except Exception:
            route.stats.drop_other()
            _log.exception("unexpected error forwarding %s; the message is dropped", route.topic.name)

    def _publish_in(self, route: _Inbound, cdr: bytes, latency_ns: int | None) -> None:
        # On the Zenoh thread (a message that arrives in its turn) or the topic's delivery thread
        # (a burst replayed at its pace).
        publisher = route.publisher
        if publisher is None:
            route.stats.drop_other()
            return
        try:
            publisher.publish(cdr)
        except FogError as err:
            route.stats.drop_other()
            if not route.warned_publish and not self._closing.is_set():
                route.warned_publish = True
                _log.warning(
                    "publishing %s on the graph failed (further failures at debug): %s",
                    route.topic.name,
                    err,
                )
            else:
                _log.debug("publishing %s failed: %s", route.topic.name, err)
            return
        except Exception:
            route.stats.drop_other()
            _log.exception("unexpected error publishing %s; the message is dropped", route.topic.name)
            return
        route.stats.record(len(cdr), latency_ns)

    def _check_attachment(self, route: _Inbound, attachment: zenoh.ZBytes | None) -> int | None:
        """The message's original time (ns) from its attachment, after counting its sequence
        number; None without one of ours."""
        if attachment is None:
            return None
        raw = attachment.to_bytes()
        if len(raw) != ATTACHMENT.size:
            return None
        origin_ns, seq = ATTACHMENT.unpack(raw)
        check = route.tracker.observe(seq)
        if check.reset:
            route.stats.reset_sequence()
            if not route.warned_reset:
                route.warned_reset = True
                _log.warning(
                    "%s: sequence number %d does not follow the sender's (a restarted bridge, or a "
                    "stranger's message); counting starts afresh (seq_resets; further ones only counted)",
                    route.topic.name,
                    seq,
                )
        elif check.lost:
            route.stats.lose(check.lost)
        return int(origin_ns)

    def _warn_oversize(self, topic: str, size: int, direction: str) -> None:
        key = (topic, direction)
        if key in self._warned_oversize:
            return
        self._warned_oversize.add(key)
        _log.warning(
            "dropping a %d-byte %s message on %s: larger than max_message_bytes %d (raise it in the "
            "deployment's [bridge] settings; further ones are only counted as dropped_oversize)",
            size,
            direction,
            topic,
            self._max_bytes,
        )

    def _valid(self, route: _Inbound, type_name: str, cdr: bytes) -> bool:
        reason = self._validator.check(type_name, cdr)
        if reason is None:
            return True
        if not route.warned_malformed:
            route.warned_malformed = True
            _log.warning(
                "dropping a malformed %s message on %s (%d bytes: %s); further ones are only counted",
                type_name,
                route.topic.name,
                len(cdr),
                reason,
            )
        return False

    # -- readiness and stats ---------------------------------------------------------------------

    def _wait_for_peers(self, count: int, timeout: float) -> None:
        own = self._spec.machine
        seen: set[str] = set()
        enough = self._peers_wake  # close() sets it too, so a stop does not wait out the timeout

        def on_token(sample: zenoh.Sample) -> None:
            parts = str(sample.key_expr).split("/")
            if sample.kind == zenoh.SampleKind.PUT and len(parts) == 4 and parts[2] != own:
                seen.add(parts[2])
                if len(seen) >= count:
                    enough.set()

        pattern = f"@fogros/{self._spec.deployment}/*/bridge"
        _log.info(
            "waiting up to %g s for %d peer bridge(s) at %s", timeout, count, ", ".join(self._spec.connect)
        )
        watcher = self._session.liveliness().declare_subscriber(pattern, on_token, history=True)
        try:
            enough.wait(timeout)
            if self._closing.is_set():
                msg = f"{self._spec.side} bridge was closed while waiting for its peer bridges"
                raise BridgeError(msg)
            if len(seen) < count:
                msg = (
                    f"{self._spec.side} bridge reached {len(seen)} of {count} peer bridge(s) within "
                    f"{timeout:g} s (connect={', '.join(self._spec.connect)}): check that the machine "
                    "bridge runs and that its port is reachable from here"
                )
                raise BridgeError(msg)
        finally:
            watcher.undeclare()  # type: ignore[no-untyped-call]

    # -- link health and flow control ------------------------------------------------------------

    def _received(self) -> dict[str, int]:
        """What the next report says: the latest sequence number received of each inbound topic."""
        return {r.topic.name: r.tracker.last for r in self._inbound if r.tracker.last}

    def _on_report(self, peer: str, topic: str, seq: int) -> None:
        sender = self._senders.get(topic)
        if sender is not None:
            sender.confirmed(peer, seq)

    def _settle(self, peer: str) -> None:
        for sender in self._senders.values():
            sender.settle(peer)

    def _forget(self, peer: str) -> None:
        for sender in self._senders.values():
            sender.forget(peer)

    def _answer_stats(self, query: zenoh.Query) -> None:
        try:
            query.reply(self._stats_key, json.dumps(self._stats.snapshot()))
        except zenoh.ZError as err:
            _log.debug("stats query not answered: %s", err)

    def _stats_loop(self) -> None:
        while not self._closing.wait(self._stats_interval):
            self._write_stats()

    def _write_stats(self) -> None:
        if not self._spec.stats_path:
            return
        try:
            self._stats.write(self._spec.stats_path)
        except OSError as err:
            if not self._stats_failed:
                self._stats_failed = True
                _log.warning("cannot write bridge stats to %s: %s", self._spec.stats_path, err)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()


def _check_topics(topics: Sequence[TopicSpec], direction: Direction, types: MessageTypes) -> None:
    seen: set[str] = set()
    for topic in topics:
        validate_topic_name(topic.name)
        if topic.name in seen:
            msg = f"topic {topic.name} is listed twice as {direction}: list each topic once per direction"
            raise ConfigError(msg)
        seen.add(topic.name)
        if topic.type is not None:
            types.resolve(topic.type)


def _topic_owners(spec: BridgeRunSpec, direction: Direction) -> dict[str, tuple[str, ...]]:
    """``spec``'s owners of each ``direction`` topic, as full node names, checked against the
    spec's topics and ``proxy_nodes``."""
    pairs = spec.inbound_owners if direction == "inbound" else spec.outbound_owners
    topics = {t.name for t in (spec.inbound if direction == "inbound" else spec.outbound)}
    proxies = {parse_node_name(n).full for n in spec.proxy_nodes}
    owners: dict[str, tuple[str, ...]] = {}
    for topic, nodes in pairs:
        if topic not in topics:
            msg = (
                f"{direction}_owners names topic {topic}, which is not an {direction} topic of the "
                f"{spec.side} bridge: list owners only for topics in {direction}"
            )
            raise ConfigError(msg)
        names = tuple(dict.fromkeys(parse_node_name(n).full for n in nodes))
        for name in names:
            if name not in proxies:
                msg = (
                    f"{direction}_owners gives topic {topic} the node {name}, which is not in "
                    f"proxy_nodes: add it there (known: {', '.join(sorted(proxies)) or 'none'})"
                )
                raise ConfigError(msg)
        owners[topic] = (*owners.get(topic, ()), *(n for n in names if n not in owners.get(topic, ())))
    return owners


def _undeclare(entity: Any) -> None:
    if entity is None:
        return
    try:
        entity.undeclare()
    except zenoh.ZError as err:  # the session may already be closed: nothing left to withdraw
        _log.debug("undeclare failed: %s", err)


def _quietly(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception:  # closing must go on for the other topics
        _log.exception("%s failed", what)
