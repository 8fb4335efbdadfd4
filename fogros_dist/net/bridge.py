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
* **type and QoS announcement**: the side that reads a topic from its graph declares
  zenoh-bridge-ros2dds 1.x's publisher token ``@/<zid>/@ros2_lv/MP/<key>/<type>/<qos>`` (``/`` as
  ``§``; QoS ``<keyless>:<reliability>:<durability>:<history>,<depth>:<typehash=...;>``:
  :mod:`fogros_dist.net.ros2dds_keys`). With ``TopicSpec.qos`` None the producing side takes
  type and QoS from the graph's publishers (``discover_topic``: what matches them all), holding
  what its provisional default-QoS subscription receives until then, and announces only the QoS
  it settled on; the receiving side publishes on its graph with the announced QoS (a type it was
  not given, too), switching from ROS's default when the announcement comes after the first
  messages. An explicit QoS is used as is; publishers it can never match are one warning line.
* **transient-local cache**: a transient-local topic is put through a ``zenoh.ext``
  AdvancedPublisher that caches its latest ``depth`` samples (numbered, so the receiver orders and
  deduplicates them); the receiving side's AdvancedSubscriber queries those caches when it starts
  and whenever a new producer appears, and its graph publisher is transient local with that
  depth, so DDS serves late joiners there. A replayed message (taken from the far graph before
  this side subscribed) is published without a latency, which would only be its age; it is in
  sequence like any other, so replays are never ``lost`` nor ``seq_resets``.
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
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zenoh
import zenoh.ext

from fogros_dist.errors import BridgeError, ConfigError, FogError
from fogros_dist.logs import module_logger
from fogros_dist.net.cdr_check import CdrValidator
from fogros_dist.net.closing import quietly, undeclare
from fogros_dist.net.codecs import CodecError, FrameDecoder, TopicEncoder, check_codec_for_type, parse_codec
from fogros_dist.net.control import ControlChannel
from fogros_dist.net.delivery import TopicDelivery
from fogros_dist.net.link_health import LinkMonitor
from fogros_dist.net.ros2dds_keys import name_to_key, parse_token, publisher_token, token_pattern
from fogros_dist.net.sender import ATTACHMENT, TopicSender
from fogros_dist.net.sequence import SequenceTracker
from fogros_dist.net.stats import BridgeStats, Direction, TopicStats
from fogros_dist.ros.graph import RawPublisher, RawSubscription, RosGraph
from fogros_dist.ros.names import validate_topic_name
from fogros_dist.ros.node_names import parse_node_name
from fogros_dist.ros.qos import describe, mismatch
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, QosSpec, TopicSpec

__all__ = [
    "ATTACHMENT",
    "Bridge",
    "bridge_token_key",
    "query_stats",
    "stats_key",
    "wait_for_peer_bridge",
]

_log = module_logger(__name__)

_FORBIDDEN_IN_CHUNK = set("/*$#?@ ")
# How long one discover_type() call may block: bounds how long close() waits for a discovery
# thread, while a longer wait would not find a publisher any sooner.
_DISCOVERY_SLICE_S = 0.25
# The most messages an inbound topic keeps for a transient-local publisher that replaces its
# first one (latched topics rarely keep more than one).
_RECENT_MESSAGES = 16
_RECENT_BYTES = 32 * 1024 * 1024
# How often a topic's publishers are looked at again once it is bridged, for one that its
# subscription's QoS can never match (warned about once).
_QOS_WATCH_S = 2.0


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


class _ZenohPut:
    """The Zenoh publisher an outbound topic's sender puts on. Replaceable (by a caching one once
    the topic turns out to be transient local) without a new sender, whose numbering goes on."""

    def __init__(self, target: Any) -> None:
        self.target = target  # zenoh.Publisher, or zenoh.ext.AdvancedPublisher (transient local)

    def put(self, payload: bytes, *, attachment: bytes) -> None:
        self.target.put(payload, attachment=attachment)


@dataclass
class _Outbound:
    """One topic read from the graph and put on Zenoh; publisher and sender exist once its type
    and QoS are known (given, or discovered on the graph)."""

    topic: TopicSpec
    key: str
    stats: TopicStats
    publisher: _ZenohPut | None = None
    sender: TopicSender | None = None
    qos: QosSpec | None = None
    subscription: RawSubscription | None = None
    token: Any = None  # zenoh.LivelinessToken
    # Set once the publishers' QoS was discovered and mirrored (or the given one checked).
    mirrored: bool = False
    # While a topic subscribed up front with ROS's default QoS waits to mirror its publishers':
    # what it received meanwhile, forwarded once the QoS stands (or dropped when a
    # transient-local subscription will get it again from the publishers' history).
    held: deque[bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Counts (re)subscriptions: a replaced subscription's late callbacks are ignored.
    generation: int = 0
    warned_qos: bool = False
    # The topic's codec (net/codecs.py), made once the type is known; None: CDR as it is.
    encoder: TopicEncoder | None = None


@dataclass
class _Inbound:
    """One topic taken from Zenoh and published on the graph; its Zenoh subscriber, delivery and
    graph publisher exist once its type and QoS are known (given, or from the announcement)."""

    topic: TopicSpec
    key: str
    stats: TopicStats
    type_name: str | None
    tracker: SequenceTracker
    qos: QosSpec | None = None
    delivery: TopicDelivery | None = None
    publisher: RawPublisher | None = None
    subscriber: Any = None  # zenoh.Subscriber, or zenoh.ext.AdvancedSubscriber (transient local)
    type_watch: Any = None  # zenoh.Subscriber on publisher tokens
    # time.time_ns() when a transient-local subscriber started: messages taken from the far
    # graph before it are replays of the far side's cache (no latency, no pacing).
    history_since_ns: int = 0
    # The latest sequence number a volatile subscriber delivered before it was switched to a
    # transient-local one (whose cache replies repeat it); 0 once live messages arrive.
    delivered_through: int = 0
    # The sequence number of the latest message handed to delivery (to be published).
    offered_through: int = 0
    # Held while a message is forwarded and while the topic's publisher and subscriber change.
    switch_lock: threading.Lock = field(default_factory=threading.Lock)
    # Counts Zenoh subscribers made: a replaced one's callbacks forward nothing.
    sub_generation: int = 0
    # Until the announcement says the QoS (type known, no QoS given): the latest messages
    # published, so that a transient-local publisher replacing the first one holds them too.
    recent: deque[bytes] | None = None
    recent_lock: threading.Lock = field(default_factory=threading.Lock)
    replayed: int = 0
    warned_malformed: bool = False
    warned_reset: bool = False
    warned_publish: bool = False
    # Turns codec frames back into CDR (whatever codec the sender chose; raw CDR passes).
    decoder: FrameDecoder | None = None
    warned_codec: bool = False


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
            undeclare(declared)
        self._declared.clear()
        # Inbound first: stop Zenoh deliveries before their graph publishers go away.
        for route in self._inbound:
            undeclare(route.type_watch)
            undeclare(route.subscriber)
            if route.delivery is not None:
                route.delivery.close()
            publisher, route.publisher = route.publisher, None
            if publisher is not None:
                quietly(publisher.close, f"closing the graph publisher of {route.topic.name}")
        for out in self._outbound:
            subscription, out.subscription = out.subscription, None
            if subscription is not None:
                quietly(subscription.close, f"closing the graph subscription of {out.topic.name}")
            if out.sender is not None:
                out.sender.close()
            undeclare(out.token)
            undeclare(None if out.publisher is None else out.publisher.target)
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
        key = name_to_key(topic.name)
        stats = self._stats.topic(topic.name, "outbound", type_name=topic.type)
        route = _Outbound(topic=topic, key=key, stats=stats)
        self._outbound.append(route)
        if topic.type is not None:
            # Subscribed up front (the offloaded node's subscription shows on the graph at once);
            # without a QoS, ROS's default stands until the publishers' QoS is discovered.
            if topic.qos is None:
                route.held = deque()
            # Announced once the QoS stands: a far side never mirrors the provisional one.
            self._attach_outbound(route, topic.type, topic.effective_qos, announce=topic.qos is not None)
        # The graph's publishers say what is missing (type, QoS or both), and are then watched
        # for a QoS that the subscription can never match.
        self._spawn(f"discover {topic.name}", lambda: self._discover_outbound(route))

    def _discover_outbound(self, route: _Outbound) -> None:
        name = route.topic.name
        while not self._closing.is_set():
            try:
                found = self._graph.discover_topic(name, _DISCOVERY_SLICE_S)
            except FogError as err:
                if not self._closing.is_set():
                    _log.error("cannot learn the type and QoS of %s: %s", name, err)
                if route.token is None and route.qos is not None and route.topic.type is not None:
                    self._announce(route, route.topic.type, route.qos, log_errors=True)
                self._release_held(route, forward=True)
                return
            if found is None:
                continue
            if route.qos is None or (route.topic.qos is None and not route.mirrored):
                type_name = route.topic.type or found.type_name
                qos = route.topic.qos or found.qos
                with self._lock:
                    if self._closing.is_set():
                        return
                    if qos.durability == "transient_local":
                        # Dropped before the new subscription delivers the publishers' history,
                        # which holds the same messages again.
                        self._release_held(route, forward=False)
                    if route.qos is None or not _same_qos(route.qos, qos):
                        self._attach_outbound(route, type_name, qos, log_errors=True)
                    elif route.token is None:
                        self._announce(route, type_name, qos, log_errors=True)
                    route.mirrored = True
                self._release_held(route, forward=True)
                _log.info(
                    "learned %s from the graph: %s, QoS %s (%d publisher(s)%s)",
                    name,
                    type_name,
                    describe(found.qos),
                    found.publishers,
                    "" if route.topic.qos is None else f"; bridged with the given {describe(qos)}",
                )
            self._check_outbound_qos(route, found.qos)
            self._closing.wait(_QOS_WATCH_S)

    def _check_outbound_qos(self, route: _Outbound, offered: QosSpec) -> None:
        requested = route.qos
        if requested is None or route.warned_qos:
            return
        reason = mismatch(offered=offered, requested=requested)
        if reason is None:
            return
        route.warned_qos = True
        fix = (
            "remove the topic's qos to mirror the publishers' QoS, or change it"
            if route.topic.qos is not None
            else "give the topic a qos that every publisher matches, or align the publishers"
        )
        _log.warning(
            "%s: the bridge subscribes with QoS %s but the graph's publishers offer %s: %s, so "
            "nothing crosses from them (%s)",
            route.topic.name,
            describe(requested),
            describe(offered),
            reason,
            fix,
        )

    def _announce(self, route: _Outbound, type_name: str, qos: QosSpec, *, log_errors: bool = False) -> None:
        """Declare (or replace) the topic's publisher token: its type and QoS for the far side."""
        try:
            token = self._session.liveliness().declare_token(
                publisher_token(
                    str(self._session.zid()),
                    route.topic.name,
                    type_name,
                    qos,
                    user_data=self._types.resolve(type_name).user_data.decode(),
                )
            )
        except (FogError, zenoh.ZError) as err:
            if not log_errors:
                raise
            _log.error("cannot announce %s (%s): %s", route.topic.name, type_name, err)
            return
        old, route.token = route.token, token
        undeclare(old)

    def _attach_outbound(
        self,
        route: _Outbound,
        type_name: str,
        qos: QosSpec,
        *,
        log_errors: bool = False,
        announce: bool = True,
    ) -> None:
        """Subscribe ``route`` on the graph with ``qos``, put on a Zenoh publisher made for it and
        announce both; again with a new QoS, each part is replaced (new before old goes)."""
        topic = TopicSpec(name=route.topic.name, type=type_name, qos=qos, codec=route.topic.codec)
        route.stats.set_type(type_name)
        if route.encoder is None:
            route.encoder = TopicEncoder.for_topic(
                topic.codec, type_name, types=self._types, stats=route.stats.codec, topic=topic.name
            )
        try:
            publisher = self._declare_publisher(route.key, qos)
            replaced = None if route.publisher is None else route.publisher.target
            if route.publisher is None:
                route.publisher = _ZenohPut(publisher)
            else:
                route.publisher.target = publisher
            if route.sender is None or route.sender.last_seq == 0:
                # A sender that sent nothing yet is made again for the QoS (its backlog policy);
                # one that did keeps numbering on, so the far side sees no restart.
                unused, route.sender = (
                    route.sender,
                    TopicSender(
                        name=topic.name,
                        publisher=route.publisher,
                        stats=route.stats,
                        reliable=qos.reliability == "reliable",
                        depth=qos.depth,
                        closing=self._closing,
                    ),
                )
                self._senders[topic.name] = route.sender
                if unused is not None:
                    unused.close()
            route.qos = qos
            # The announcement before the subscription: the far side learns type and QoS before
            # the first message (a transient-local publisher's history comes at once).
            if announce:
                self._announce(route, type_name, qos)
            route.generation += 1
            generation = route.generation

            def forward(cdr: bytes) -> None:
                if route.generation != generation:
                    return  # a replaced subscription's last words
                if route.held is not None:
                    with route.lock:
                        if route.held is not None:
                            self._hold(route, cdr)
                            return
                self._forward_out(route, cdr)

            old_subscription, route.subscription = (
                route.subscription,
                self._graph.subscribe(topic, forward, nodes=self._outbound_owners.get(topic.name, ())),
            )
            if old_subscription is not None:
                quietly(old_subscription.close, f"closing the replaced graph subscription of {topic.name}")
            undeclare(replaced)
        except (FogError, zenoh.ZError) as err:
            if not log_errors:
                raise
            _log.error("cannot bridge %s (%s): %s", topic.name, type_name, err)

    def _hold(self, route: _Outbound, cdr: bytes) -> None:
        # Called with route.lock held. Discovery takes a fraction of a second: a topic's
        # depth covers it; whatever a faster burst pushes out is counted as the backlog's.
        held = route.held
        if held is None:
            return
        held.append(cdr)
        if len(held) > route.topic.effective_qos.depth:
            held.popleft()
            route.stats.drop_backlog(1)

    def _release_held(self, route: _Outbound, *, forward: bool) -> None:
        """Stop holding ``route``'s messages: forward what was held (in order, before anything
        newer), or drop it."""
        with route.lock:  # a message arriving meanwhile waits, then goes after these
            for cdr in route.held if route.held is not None and forward else ():
                self._forward_out(route, cdr)
            route.held = None

    def _declare_publisher(self, key: str, qos: QosSpec) -> Any:
        reliable = qos.reliability == "reliable"
        options: dict[str, Any] = {
            # BLOCK: a reliable topic must not lose a frame to a momentarily full queue; a
            # best-effort one would rather drop a stale frame than delay the next one.
            "congestion_control": zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            "reliability": zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
            # Our own inbound subscriber on the same key (a topic flowing both ways through this
            # side) must not receive what we send: that would echo it back onto the graph.
            "allowed_destination": zenoh.Locality.REMOTE,
        }
        if qos.durability != "transient_local":
            return self._session.declare_publisher(key, **options)
        # Transient local: the latest `depth` messages stay in a cache that a far subscriber
        # starting later queries (as zenoh-bridge-ros2dds' route_publisher.rs does), and the
        # publisher announces itself so subscribers already running query it when it appears.
        # Miss detection numbers the samples (instead of timestamping them, which would need
        # the session's timestamping on), so the far subscriber orders replies and live
        # samples and delivers each once; no heartbeat: misses are the sequence check's job.
        return zenoh.ext.declare_advanced_publisher(
            self._session,
            key,
            cache=zenoh.ext.CacheConfig(qos.depth),
            sample_miss_detection=zenoh.ext.MissDetectionConfig(heartbeat=None, sporadic_heartbeat=None),
            publisher_detection=True,
            **options,
        )

    def _forward_out(self, route: _Outbound, cdr: bytes) -> None:
        # Hot path, on the graph adapter's thread: a size check, then one put (or a queued one).
        if len(cdr) > self._max_bytes:
            route.stats.drop_oversize()
            self._warn_oversize(route.topic.name, len(cdr), "outbound")
            return
        sender = route.sender
        if sender is not None:
            # max_message_bytes bounds the raw CDR (above); what crosses is the encoded frame.
            encoder = route.encoder
            sender.offer(cdr if encoder is None else encoder.encode(cdr))

    # -- inbound: Zenoh -> graph -----------------------------------------------------------------

    def _add_inbound(self, topic: TopicSpec) -> None:
        key = name_to_key(topic.name)
        stats = self._stats.topic(topic.name, "inbound", type_name=topic.type)
        route = _Inbound(topic=topic, key=key, stats=stats, type_name=topic.type, tracker=SequenceTracker())
        route.decoder = FrameDecoder(types=self._types, max_bytes=self._max_bytes, stats=stats.codec)
        self._inbound.append(route)
        if topic.type is not None:
            # Everything up front: the first message must not wait for DDS matching (nor for an
            # announcement, which a plain Zenoh publisher never makes). Without a QoS, ROS's
            # default stands until the producing side announces the QoS to mirror.
            self._validator.prepare(topic.type)
            if topic.qos is None:
                route.recent = deque(maxlen=_RECENT_MESSAGES)
            self._open_publishing(route, topic.type, topic.effective_qos)
            self._subscribe_zenoh(route, topic.effective_qos)
        else:
            # Subscribed at once all the same: what arrives before the type is counted
            # (dropped_other), and the subscription is in place when the first one is sent.
            self._subscribe_zenoh(route, topic.effective_qos)
        if topic.type is None or topic.qos is None:
            # The producing side's announcement says what is missing (type, QoS or both).
            route.type_watch = self._session.liveliness().declare_subscriber(
                token_pattern("MP", topic.name),
                lambda sample: self._on_type_token(route, sample),
                history=True,
            )

    def _open_publishing(self, route: _Inbound, type_name: str, qos: QosSpec) -> Callable[[], None]:
        """Make the topic's graph publisher (with ``qos``) and delivery, replacing any earlier
        ones; returns what closes the replaced ones. Raises FogError."""
        topic = TopicSpec(name=route.topic.name, type=type_name, qos=qos, codec=route.topic.codec)
        publisher = self._graph.publisher(topic, nodes=self._inbound_owners.get(topic.name, ()))
        delivery = TopicDelivery(
            name=topic.name,
            publish=lambda cdr, latency_ns: self._publish_in(route, cdr, latency_ns),
            stats=route.stats,
            reliable=qos.reliability == "reliable",
            depth=qos.depth,
            closing=self._closing,
        )
        old_publisher, old_delivery = route.publisher, route.delivery
        route.type_name = type_name
        route.qos = qos
        route.stats.set_type(type_name)
        route.publisher, route.delivery = publisher, delivery

        def close_replaced() -> None:
            if old_delivery is not None:
                old_delivery.close()
            if old_publisher is not None:
                quietly(old_publisher.close, f"closing the replaced graph publisher of {topic.name}")

        return close_replaced

    def _sample_handler(self, route: _Inbound) -> Callable[[zenoh.Sample], None]:
        """The callback of a new Zenoh subscriber of ``route``; those of the one it replaces
        stop forwarding."""
        route.sub_generation += 1
        generation = route.sub_generation

        # zenoh-python runs this callback on its own Python thread per subscriber (the default,
        # "indirect" mode): a slow graph publish then delays only this topic, not Zenoh's network
        # thread. Running it on the network thread (indirect=False) measured no faster here.
        def on_sample(sample: zenoh.Sample) -> None:
            with route.switch_lock:  # uncontended but while the topic's QoS changes
                if route.sub_generation == generation:
                    self._forward_in(route, sample)

        return on_sample

    def _subscribe_zenoh(self, route: _Inbound, qos: QosSpec) -> Any:
        """Declare the topic's Zenoh subscriber for ``qos``, or switch a volatile one to a
        transient-local one; returns the replaced subscriber, for the caller to undeclare.
        Raises zenoh.ZError."""
        # A topic also sent from this side would find its own cache in a history query.
        also_outbound = any(out.topic.name == route.topic.name for out in self._outbound)
        if qos.durability != "transient_local" or also_outbound:
            if route.subscriber is None:
                route.subscriber = self._session.declare_subscriber(
                    route.key, self._sample_handler(route), allowed_origin=zenoh.Locality.REMOTE
                )
            return None
        if route.history_since_ns:
            return None  # already transient local
        # Transient local: ask the far side's cache for its latest `depth` messages now, and
        # again whenever a new producer appears (route_subscriber.rs does the same). Zenoh
        # delivers each producer's messages once and in order, replies and live ones alike.
        # What a volatile subscriber already delivered comes again in the replies: skipped.
        stale = route.subscriber
        route.delivered_through = route.offered_through
        if route.tracker.last != route.offered_through:
            # Some arrivals were not published (no type yet): their replies are wanted now, and
            # must not look like a sender going back.
            route.tracker = SequenceTracker()
        route.history_since_ns = time.time_ns()
        route.subscriber = zenoh.ext.declare_advanced_subscriber(
            self._session,
            route.key,
            self._sample_handler(route),
            allowed_origin=zenoh.Locality.REMOTE,
            history=zenoh.ext.HistoryConfig(detect_late_publishers=True, max_samples=qos.depth),
        )
        return stale

    def _on_type_token(self, route: _Inbound, sample: zenoh.Sample) -> None:
        if sample.kind != zenoh.SampleKind.PUT:
            return
        token = parse_token(str(sample.key_expr))
        if token is None or token.kind != "MP" or token.name != route.topic.name or token.qos is None:
            return
        type_name, qos = token.type_name, route.topic.qos or token.qos.qos
        close_replaced: Callable[[], None] | None = None
        with self._lock:
            if self._closing.is_set():
                return
            if route.type_name is not None and route.type_name != type_name:
                _log.warning(
                    "%s is announced as %s but is bridged as %s: ignoring the announcement",
                    route.topic.name,
                    type_name,
                    route.type_name,
                )
                return
            if route.qos is not None and _same_qos(route.qos, qos):
                self._carry_recent(route, qos)  # nothing to carry: only stops keeping them
                return  # a further producer, or the QoS already mirrored
            try:
                self._validator.prepare(type_name)  # also rejects a type the distro lacks
                # No message is forwarded meanwhile: publisher, kept messages and subscriber
                # change together.
                with route.switch_lock:
                    close_replaced = self._open_publishing(route, type_name, qos)
                    self._carry_recent(route, qos)
                    stale = self._subscribe_zenoh(route, qos)
            except (FogError, zenoh.ZError) as err:
                _log.error("cannot publish %s as announced (%s): %s", route.topic.name, type_name, err)
                return
        undeclare(stale)  # not under the lock its last callbacks wait for
        close_replaced()
        _log.info(
            "learned %s from its Zenoh announcement: %s, QoS %s", route.topic.name, type_name, describe(qos)
        )

    def _carry_recent(self, route: _Inbound, qos: QosSpec) -> None:
        """Stop keeping the latest messages; a transient-local publisher that replaces a volatile
        one gets the latest ``depth`` of them, so that late subscribers find them in its history
        (they were counted when first published)."""
        with route.recent_lock:
            recent, route.recent = route.recent, None
        publisher = route.publisher
        if recent is None or publisher is None or qos.durability != "transient_local":
            return
        for cdr in list(recent)[-qos.depth :]:
            try:
                publisher.publish(cdr)
            except FogError as err:
                _log.debug(
                    "republishing %s into its transient-local history failed: %s", route.topic.name, err
                )

    def _forward_in(self, route: _Inbound, sample: zenoh.Sample) -> None:
        # Hot path, on a Zenoh thread. Never raise: Zenoh would only print the traceback.
        received_ns = time.time_ns()
        try:
            if sample.kind != zenoh.SampleKind.PUT:
                return
            if route.delivered_through and self._delivered_before(route, sample.attachment):
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
            cdr = self._decoded(route, sample.payload.to_bytes())
            if cdr is None:
                return
            if not self._valid(route, type_name, cdr):
                route.stats.drop_malformed()
                return
            if origin_ns is not None and origin_ns < route.history_since_ns:
                # Taken from the far graph before this side subscribed: a replay of the far
                # side's cache, published at once, without a "latency" that is only its age.
                origin_ns = None
                self._note_replay(route)
            route.offered_through = route.tracker.last
            delivery.offer(cdr, origin_ns, received_ns)
        except Exception:
            route.stats.drop_other()
            _log.exception("unexpected error forwarding %s; the message is dropped", route.topic.name)

    def _delivered_before(self, route: _Inbound, attachment: zenoh.ZBytes | None) -> bool:
        """Whether a cache reply is a message the volatile subscriber that preceded the
        transient-local one already delivered (and counted)."""
        raw = b"" if attachment is None else attachment.to_bytes()
        if len(raw) != ATTACHMENT.size:
            return False
        origin_ns, seq = ATTACHMENT.unpack(raw)
        if origin_ns >= route.history_since_ns:
            route.delivered_through = 0  # live messages now: nothing more to skip
            return False
        return bool(seq <= route.delivered_through)

    def _note_replay(self, route: _Inbound) -> None:
        route.replayed += 1
        if route.replayed == 1:
            _log.info("%s: replaying the far side's cached message(s) (transient_local)", route.topic.name)

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
        if route.recent is not None:
            self._keep_recent(route, cdr)

    def _keep_recent(self, route: _Inbound, cdr: bytes) -> None:
        with route.recent_lock:
            recent = route.recent
            if recent is None:
                return
            recent.append(cdr)
            while len(recent) > 1 and sum(map(len, recent)) > _RECENT_BYTES:
                recent.popleft()

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

    def _decoded(self, route: _Inbound, data: bytes) -> bytes | None:
        """The raw CDR of what arrived (decoded before it is validated), or None for a corrupt
        codec frame, counted as ``dropped_codec``."""
        decoder = route.decoder
        if decoder is None:
            return data
        try:
            return decoder.decode(data)
        except CodecError as err:
            route.stats.drop_codec()
            if not route.warned_codec:
                route.warned_codec = True
                _log.warning(
                    "dropping a %d-byte message on %s whose codec frame does not decode (%s); "
                    "further ones are only counted (dropped_codec)",
                    len(data),
                    route.topic.name,
                    err,
                )
            return None

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
        for sender in list(self._senders.values()):  # a copy: routes attach on other threads
            sender.settle(peer)

    def _forget(self, peer: str) -> None:
        for sender in list(self._senders.values()):
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
        check_codec_for_type(parse_codec(topic.codec, topic=topic.name), topic.type, topic=topic.name)


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


def _same_qos(a: QosSpec, b: QosSpec) -> bool:
    """Whether two QoS are the same in everything an announcement carries."""
    return a == b
