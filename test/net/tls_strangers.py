"""Zenoh sessions that try a deployment's link from outside it (and one from inside, as a control).

A plain module shared by the TLS tests of the net layer and of the SSH provider. Each
:class:`Visitor` is a real Zenoh peer that connects to (or listens at) a bridge's port and then
does what an intruder would: subscribe to everything, watch every liveliness token, query every
key, put messages on the bridged topics' keys and declare a bridge's readiness token. Kinds:

* ``tcp``: a plain Zenoh session over TCP, no TLS at all;
* ``tls-no-cert``: TLS trusting the deployment's CA (its certificate is no secret), no client
  certificate (listening: a server certificate of its own, no client check);
* ``tls-other-ca``: TLS with a certificate of another CA (trusting the deployment's CA for the
  server, so only the client check can refuse it);
* ``member``: the deployment's own credentials (the robot's), the control that shows each probe
  would notice a session that does get in.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zenoh

from fogros_dist.net.tls import BridgeCredentials, DeploymentAuthority
from fogros_dist.net.zenoh_config import TRANSPORT_TUNING, endpoint, tls_values

__all__ = ["STRANGERS", "Visit", "Visitor", "assert_kept_out", "assert_let_in", "visit_link", "visitor"]

STRANGERS = ("tcp", "tls-no-cert", "tls-other-ca")


@dataclass
class Visitor:
    """One session at a bridge's port and what reached it."""

    kind: str
    session: Any
    keys: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _declared: list[Any] = field(default_factory=list)
    _own_tokens: set[str] = field(default_factory=set)

    def watch(self) -> None:
        """Subscribe to every key and every liveliness token (history included)."""

        def on_sample(sample: Any) -> None:
            with self._lock:
                self.keys.append(str(sample.key_expr))

        def on_token(sample: Any) -> None:
            with self._lock:
                if str(sample.key_expr) not in self._own_tokens:
                    self.tokens.append(str(sample.key_expr))

        # Only what comes from elsewhere: its own puts and tokens are no evidence of a link.
        self._declared.append(
            self.session.declare_subscriber("**", on_sample, allowed_origin=zenoh.Locality.REMOTE)
        )
        # "**" matches no chunk that starts with "@": the bridges' own prefixes are named.
        for pattern in ("**", "@fogros/**", "@/*/@ros2_lv/**"):
            self._declared.append(
                self.session.liveliness().declare_subscriber(pattern, on_token, history=True)
            )

    def peers(self) -> list[str]:
        """The Zenoh peers this session has a link with."""
        return [str(zid) for zid in self.session.info.peers_zid()]

    def put(self, key: str, payload: bytes) -> None:
        """Put ``payload`` on ``key`` (a bridged topic's key: an injection attempt)."""
        self.session.put(key, payload)

    def declare_token(self, key: str) -> None:
        """Declare the liveliness token ``key`` (a forged readiness token)."""
        with self._lock:
            self._own_tokens.add(key)
        self._declared.append(self.session.liveliness().declare_token(key))

    def query(self, key: str, *, timeout: float = 2.0) -> list[Any]:
        """The JSON of every reply to a get on ``key`` (the stats queryable)."""
        replies = []
        for reply in self.session.get(key, timeout=timeout):
            if reply.ok is not None:
                replies.append(json.loads(reply.ok.payload.to_bytes()))
        return replies

    def seen(self, prefix: str) -> list[str]:
        """Keys received so far that start with ``prefix``."""
        with self._lock:
            return [key for key in self.keys if key.startswith(prefix)]

    def tokens_seen(self, prefix: str) -> list[str]:
        """Liveliness tokens seen so far that start with ``prefix``."""
        with self._lock:
            return [key for key in self.tokens if key.startswith(prefix)]


@contextmanager
def visitor(
    kind: str,
    *,
    host: str,
    port: int,
    deployment_ca: Path,
    workdir: Path,
    member: BridgeCredentials | None = None,
    listen: bool = False,
) -> Iterator[Visitor]:
    """A :class:`Visitor` of ``kind`` connecting to ``host``:``port`` (or listening there, to
    impersonate a machine bridge, with ``listen``); closed afterwards.

    Args:
        deployment_ca: the deployment CA's certificate (``ca.pem``: public, so strangers have it).
        workdir: where a stranger keeps its own certificate files.
        member: the credentials a ``member`` uses.
    """
    config = zenoh.Config()
    protocol = "tcp" if kind == "tcp" else "tls"
    locator = endpoint(protocol, host, port)
    values: dict[str, Any] = {
        "mode": "peer",
        "listen/endpoints": [locator] if listen else [],
        "connect/endpoints": [] if listen else [locator],
        "scouting/multicast/enabled": False,
        "transport/shared_memory/enabled": False,
        **TRANSPORT_TUNING,
    }
    if kind == "tls-no-cert" and not listen:
        values["transport/link/tls/root_ca_certificate"] = str(deployment_ca)
        values["transport/link/tls/verify_name_on_connect"] = False
    elif kind == "tls-no-cert":
        # A TLS server needs a certificate: one of its own making, asking none of its clients.
        own = DeploymentAuthority(deployment="stranger").issue(
            workdir / f"stranger-{port}", name="stranger", addresses=(host,)
        )
        values.update(tls_values(own))
        values["transport/link/tls/enable_mtls"] = False
    elif kind == "tls-other-ca":
        other = DeploymentAuthority(deployment="stranger").issue(
            workdir / f"stranger-{port}", name="stranger", addresses=(host,)
        )
        # Its own certificate and key, the deployment's CA for the other side: only the check of
        # its own certificate can keep it out.
        shutil.copyfile(deployment_ca, other.ca_certificate)
        values.update(tls_values(other))
        values["transport/link/tls/verify_name_on_connect"] = False
    elif kind == "member":
        assert member is not None, "a member needs the deployment's credentials"
        values.update(tls_values(member))
    elif kind != "tcp":
        raise ValueError(f"unknown visitor kind {kind!r}")
    for key, value in values.items():
        config.insert_json5(key, json.dumps(value))
    session = zenoh.open(config)
    guest = Visitor(kind=kind, session=session)
    try:
        yield guest
    finally:
        for declared in reversed(guest._declared):
            declared.undeclare()
        session.close()


@dataclass
class Visit:
    """What one visitor got, and what both graphs saw while it was there."""

    kind: str
    peers: list[str]
    keys: list[str]
    tokens: list[str]
    stats_replies: list[Any]
    # frame_ids of the edges the robot's graph received during the visit (real ones are "cam").
    robot_frames: list[str]
    # frame_ids of the images the machine's graph received (None: that graph was not watched).
    machine_frames: list[str] | None


def visit_link(
    *,
    kinds: tuple[str, ...],
    deployment: str,
    machine: str,
    host: str,
    port: int,
    deployment_ca: Path,
    member: BridgeCredentials,
    workdir: Path,
    robot_domain: int,
    machine_domain: int | None = None,
    seconds: float = 3.0,
) -> list[Visit]:
    """Send real traffic through an edge_detector deployment (e2e_helpers) while each visitor in
    turn tries its port: watches everything, injects images whose frame_id is its kind on both
    bridged topics' keys, declares a forged bridge token and queries the machine's stats."""
    from e2e_helpers import IN_TOPIC, OUT_TOPIC

    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes("jazzy")
    seen = _Frames()
    stop = threading.Event()
    graphs = [DdsGraph(robot_domain, distro="jazzy")]
    try:
        publisher = graphs[0].publisher(IN_TOPIC)
        graphs[0].subscribe(OUT_TOPIC, lambda cdr: seen.add("robot", _frame_of(types, cdr)))
        if machine_domain is not None:
            graphs.append(DdsGraph(machine_domain, distro="jazzy"))
            graphs[1].subscribe(IN_TOPIC, lambda cdr: seen.add("machine", _frame_of(types, cdr)))
        real = _image(types, "cam")

        def traffic() -> None:
            while not stop.wait(0.1):
                publisher.publish(real)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        visits = []
        for kind in kinds:
            seen.clear()
            with visitor(
                kind, host=host, port=port, deployment_ca=deployment_ca, workdir=workdir, member=member
            ) as guest:
                stats = _intrude(guest, types, deployment=deployment, machine=machine, seconds=seconds)
                robot, on_machine = seen.snapshot()
                visits.append(
                    Visit(
                        kind=kind,
                        peers=guest.peers(),
                        keys=list(guest.keys),
                        tokens=list(guest.tokens),
                        stats_replies=stats,
                        robot_frames=robot,
                        machine_frames=on_machine if machine_domain is not None else None,
                    )
                )
        stop.set()
        sender.join()
        return visits
    finally:
        stop.set()
        for graph in graphs:
            graph.close()


def _intrude(guest: Visitor, types: Any, *, deployment: str, machine: str, seconds: float) -> list[Any]:
    """What an intruder tries; returns the stats replies it got."""
    import time

    from e2e_helpers import IN_TOPIC, OUT_TOPIC

    from fogros_dist.net.bridge import bridge_token_key, stats_key
    from fogros_dist.ros.names import zenoh_key

    guest.watch()
    guest.declare_token(bridge_token_key(deployment=deployment, machine=f"forged-{guest.kind}"))
    forged = _image(types, guest.kind)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for topic in (IN_TOPIC, OUT_TOPIC):
            guest.put(zenoh_key(topic.name), forged)
        time.sleep(0.2)
    stats = guest.query(stats_key(deployment=deployment, machine=machine))
    time.sleep(0.5)  # what the last injection caused comes back
    return stats


class _Frames:
    """frame_ids seen on the robot's and the machine's graph."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, list[str]] = {"robot": [], "machine": []}

    def add(self, where: str, frame_id: str) -> None:
        with self._lock:
            self._seen[where].append(frame_id)

    def clear(self) -> None:
        with self._lock:
            for frames in self._seen.values():
                frames.clear()

    def snapshot(self) -> tuple[list[str], list[str]]:
        with self._lock:
            return list(self._seen["robot"]), list(self._seen["machine"])


def _image(types: Any, frame_id: str) -> bytes:
    """An 8x8 mono8 image with a bright square (edge_detector answers with its edges)."""
    import numpy as np
    from e2e_helpers import IMAGE

    cls = types.message_class
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[2:6, 2:6] = 200
    msg = cls(IMAGE)(
        header=cls("std_msgs/msg/Header")(
            stamp=cls("builtin_interfaces/msg/Time")(sec=1, nanosec=2), frame_id=frame_id
        ),
        height=8,
        width=8,
        encoding="mono8",
        is_bigendian=0,
        step=8,
        data=pixels.reshape(-1),
    )
    cdr: bytes = types.serialize(IMAGE, msg)
    return cdr


def _frame_of(types: Any, cdr: bytes) -> str:
    from e2e_helpers import IMAGE

    return str(types.deserialize(IMAGE, cdr).header.frame_id)


def assert_kept_out(visit: Visit) -> None:
    """A stranger got nothing, injected nothing, read no stats and forged no readiness, while real
    traffic flowed."""
    assert "cam" in visit.robot_frames, f"{visit.kind}: no real traffic flowed during the visit"
    assert visit.peers == [], f"{visit.kind} has a link: {visit.peers}"
    assert visit.keys == [], f"{visit.kind} received {visit.keys[:5]}"
    assert visit.tokens == [], f"{visit.kind} saw tokens {visit.tokens[:5]}"
    assert visit.stats_replies == [], f"{visit.kind} read the stats"
    assert visit.kind not in visit.robot_frames, f"{visit.kind} injected into the robot's graph"
    if visit.machine_frames is not None:
        assert "cam" in visit.machine_frames
        assert visit.kind not in visit.machine_frames, f"{visit.kind} injected into the machine's graph"


def assert_let_in(visit: Visit, *, deployment: str, machine: str) -> None:
    """The control: a session with the deployment's credentials does get what strangers do not."""
    from e2e_helpers import OUT_TOPIC

    from fogros_dist.net.bridge import bridge_token_key
    from fogros_dist.ros.names import zenoh_key

    assert visit.peers, "the member has no link"
    assert zenoh_key(OUT_TOPIC.name) in visit.keys, visit.keys[:5]
    assert bridge_token_key(deployment=deployment, machine=machine) in visit.tokens, visit.tokens
    assert visit.stats_replies, "the member read no stats"
    # Its images went through the machine's node and came back to the robot as edges.
    assert visit.kind in visit.robot_frames, visit.robot_frames[-5:]
    if visit.machine_frames is not None:
        assert visit.kind in visit.machine_frames
