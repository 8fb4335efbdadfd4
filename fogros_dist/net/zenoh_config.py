"""Zenoh session configuration for one side of a bridge, and how each machine's link is chosen.

Every bridge session is a peer with explicit endpoints: multicast scouting is off (nothing is
announced on a real network unless a deployment asks for it), and shared memory is off because
Zenoh would otherwise hand payloads over 3 KB to another process on the same host through shared
memory, bypassing the network path a deployment (or a benchmark) means to use.

A link is private by default (:func:`machine_link`): TLS with certificates of the deployment's
own CA on both ends (``enable_mtls``; :mod:`fogros_dist.net.tls`), the robot checking the name of
every machine it connects to, and each machine bridge listening only on the address the robot
reaches. Plain TCP is left to Local machines on loopback (their link is no more exposed than the
DDS graphs at both of its ends, which any local user can join) and to an explicit
``protocol = "tcp"``.

The transport settings make multi-megabyte camera frames fast and keep reliable topics reliable:
see :data:`TRANSPORT_TUNING` for each value and why.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zenoh

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.net.tls import BridgeCredentials
from fogros_dist.spec import BridgeRunSpec, BridgeSpec

__all__ = [
    "TRANSPORT_TUNING",
    "MachineLink",
    "build_config",
    "config_for",
    "config_values",
    "endpoint",
    "is_loopback",
    "machine_link",
    "plaintext_exposed",
    "tls_values",
    "validate_endpoint",
    "zenoh_message_limit",
]

# Zenoh refuses more than 16 batches per priority queue: a larger value passes Config but makes
# the transport panic when a link opens (zenoh 1.10, pipeline.rs "num <= RBLEN").
_MAX_QUEUE_BATCHES = 16

TRANSPORT_TUNING: Mapping[str, Any] = {
    # Data is put at priority DATA; 16 batches of 64 KiB in flight instead of 2 lets the sender
    # keep fragmenting a 6 MB frame while the link drains (measured: 6 MB one-way 4.4 -> 3.0 ms).
    "transport/link/tx/queue/size/data": _MAX_QUEUE_BATCHES,
    "transport/link/tx/queue/size/data_high": _MAX_QUEUE_BATCHES,
    "transport/link/tx/queue/size/data_low": _MAX_QUEUE_BATCHES,
    # A reliable (BLOCK) publisher may wait for the queue this long before Zenoh closes the whole
    # link. The default 5 s is one 6 MB frame on a 10 Mbit/s uplink: a slow WAN must not look
    # like a dead peer. (microseconds)
    "transport/link/tx/queue/congestion_control/block/wait_before_close": 60_000_000,
    # Kernel socket buffers for the TCP link (the kernel caps them at net.core.[rw]mem_max).
    "transport/link/tcp/so_sndbuf": 8 * 1024 * 1024,
    "transport/link/tcp/so_rcvbuf": 8 * 1024 * 1024,
}

# Kernel socket buffers for TLS links (the same as TCP's: TLS runs over a TCP socket).
_TLS_BUFFERS: Mapping[str, Any] = {
    "transport/link/tls/so_sndbuf": 8 * 1024 * 1024,
    "transport/link/tls/so_rcvbuf": 8 * 1024 * 1024,
}

# What Zenoh adds to a message of the bridge's (attachment, key, encoding, framing), generously.
_MESSAGE_OVERHEAD = 64 * 1024


def zenoh_message_limit(max_message_bytes: int) -> int:
    """Zenoh's ``transport/link/rx/max_message_size`` for a bridge whose largest message is
    ``max_message_bytes`` (``BridgeSpec.max_message_bytes``): that plus Zenoh's overhead, so
    the bridge itself sees, counts and drops messages just above its limit, and Zenoh discards
    (uncounted) anything far larger before it takes that much memory."""
    return max_message_bytes + _MESSAGE_OVERHEAD


_LINK_PROTOCOLS = ("tcp", "tls", "quic")
_PROTOCOLS = ("auto", *_LINK_PROTOCOLS)
# The protocols whose links carry the deployment's certificates (QUIC is TLS 1.3 inside).
_SECURE = ("tls", "quic")
# <proto>/<host>:<port>, host a name, an IPv4 address or a bracketed IPv6 address; an optional
# "#key=value" tail carries per-endpoint Zenoh settings.
_ENDPOINT = re.compile(
    r"^(?P<proto>[a-z]+)/(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})(#.*)?$"
)


def validate_endpoint(endpoint: str, *, protocol: str) -> str:
    """Check that ``endpoint`` is a Zenoh locator of the bridge's protocol.

    Args:
        endpoint: e.g. ``tls/127.0.0.1:7447``.
        protocol: the protocol the bridge uses (``BridgeSpec.protocol``); ``auto`` admits ``tcp``
            and ``tls`` (what :func:`machine_link` chooses between).

    Returns:
        ``endpoint`` unchanged.

    Raises:
        ConfigError: the endpoint is malformed, names another protocol or a port above 65535.
    """
    example = "tls" if protocol == "auto" else protocol
    match = _ENDPOINT.match(endpoint)
    if match is None:
        msg = (
            f"Zenoh endpoint {endpoint!r} is malformed: use '<protocol>/<host>:<port>', "
            f"e.g. '{example}/127.0.0.1:7447'"
        )
        raise ConfigError(msg)
    allowed = ("tcp", "tls") if protocol == "auto" else (protocol,)
    if match["proto"] not in allowed:
        msg = (
            f"Zenoh endpoint {endpoint!r} uses {match['proto']!r} but the bridge protocol is "
            f"{protocol!r}: write it as '{example}/{match['host']}:{match['port']}'"
        )
        raise ConfigError(msg)
    if int(match["port"]) > 65535:
        msg = f"Zenoh endpoint {endpoint!r} has port {match['port']}: use 1..65535 (0 to listen on any)"
        raise ConfigError(msg)
    return endpoint


def config_values(
    *, listen: Sequence[str] = (), connect: Sequence[str] = (), bridge: BridgeSpec | None = None
) -> dict[str, Any]:
    """The Zenoh configuration a bridge session uses, as ``{key path: value}``.

    Args:
        listen: endpoints to accept links on; empty means none (Zenoh's default for a peer would
            be every interface on a random port).
        connect: endpoints to connect to; Zenoh keeps retrying until they answer.
        bridge: scouting, shared memory, protocol and TLS choices; defaults to ``BridgeSpec()``.
            A ``tls/`` or ``quic/`` endpoint needs ``bridge.tls_dir`` (see :func:`tls_values`).

    Returns:
        An ordered mapping of Zenoh config keys to JSON-able values.

    Raises:
        ConfigError: an endpoint is invalid, neither listen nor connect endpoints are given, or a
            TLS endpoint has no credentials.
    """
    bridge = bridge if bridge is not None else BridgeSpec()
    if bridge.protocol not in _PROTOCOLS:
        msg = f"bridge protocol {bridge.protocol!r} is unknown: use one of {', '.join(_PROTOCOLS)}"
        raise ConfigError(msg)
    listen = [validate_endpoint(e, protocol=bridge.protocol) for e in listen]
    connect = [validate_endpoint(e, protocol=bridge.protocol) for e in connect]
    if not listen and not connect and not bridge.scouting:
        example = "tls" if bridge.protocol == "auto" else bridge.protocol
        msg = (
            "a bridge session needs a listen or a connect endpoint when scouting is off: "
            f"set BridgeRunSpec.listen (e.g. '{example}/127.0.0.1:7447') or .connect"
        )
        raise ConfigError(msg)
    values: dict[str, Any] = {
        "mode": "peer",
        "listen/endpoints": listen,
        # A bridge that cannot bind its port must fail at start, not run deaf.
        "listen/exit_on_failure": True,
        "connect/endpoints": connect,
        "scouting/multicast/enabled": bridge.scouting,
        "transport/shared_memory/enabled": bridge.shared_memory,
    }
    values.update(TRANSPORT_TUNING)
    # Zenoh reassembles a message before anyone sees it: cap that at the bridge's own limit.
    values["transport/link/rx/max_message_size"] = zenoh_message_limit(bridge.max_message_bytes)
    secure = [e for e in (*listen, *connect) if e.split("/", 1)[0] in _SECURE]
    if secure:
        if not bridge.tls_dir:
            msg = (
                f"Zenoh endpoint {secure[0]!r} needs the deployment's certificates but "
                "BridgeSpec.tls_dir is empty: a deployment sets it for each bridge; by hand, issue "
                "them with fogros_dist.net.tls.DeploymentAuthority"
            )
            raise ConfigError(msg)
        values.update(tls_values(BridgeCredentials(directory=Path(bridge.tls_dir))))
    return values


def tls_values(credentials: BridgeCredentials) -> dict[str, Any]:
    """The Zenoh settings (``transport/link/tls/...``, used by TLS and QUIC links alike) for mTLS
    with the deployment's CA.

    Both ends present their certificate (``enable_mtls``), and the deployment's CA is the only
    private root: a listener refuses any client without a certificate it signed. A connecting
    side also trusts the public Web PKI roots (zenoh 1.10 always adds them), so it must keep
    checking that the machine's certificate names the address it connects to
    (``verify_name_on_connect``); the deployment's certificates name exactly those addresses.
    Every bridge gets the same certificate for listening and connecting.
    """
    return {
        "transport/link/tls/root_ca_certificate": str(credentials.ca_certificate),
        "transport/link/tls/listen_private_key": str(credentials.private_key),
        "transport/link/tls/listen_certificate": str(credentials.certificate),
        "transport/link/tls/connect_private_key": str(credentials.private_key),
        "transport/link/tls/connect_certificate": str(credentials.certificate),
        "transport/link/tls/enable_mtls": True,
        "transport/link/tls/verify_name_on_connect": True,
        **_TLS_BUFFERS,
    }


@dataclass(frozen=True, kw_only=True)
class MachineLink:
    """How the robot bridge reaches one machine bridge (see :func:`machine_link`)."""

    protocol: str
    # The machine bridge's endpoint, on the machine.
    listen: str
    # The robot bridge's endpoint for it.
    connect: str
    # What the machine's certificate must name: the address the robot connects to, and the one
    # the machine listens on.
    names: tuple[str, ...]

    @property
    def secure(self) -> bool:
        """Whether the link runs mTLS (TLS or QUIC with the deployment's certificates)."""
        return self.protocol in _SECURE

    @property
    def exposed(self) -> bool:
        """Plaintext that leaves a machine's loopback: anyone who reaches it reads and injects."""
        return plaintext_exposed(self.listen)


def machine_link(
    *, protocol: str, address: str, port: int, listen_address: str = "", remote: bool
) -> MachineLink:
    """Choose one machine's link: its protocol, both endpoints and its certificate's names.

    Args:
        protocol: ``BridgeSpec.protocol``. ``auto`` is mTLS over TLS unless the machine is local
            (not ``remote``) and reached on loopback, where it stays plain TCP; ``tls`` and
            ``quic`` are mTLS for every machine; ``tcp`` is plaintext for every machine.
        address: where the robot reaches the machine (``Host.address``).
        port: the machine bridge's port.
        listen_address: the machine's own address for the connections the robot makes to
            ``address`` (behind NAT, its private address; the server side of its SSH connection);
            "" listens on ``address`` itself. A machine reached on loopback (a Local machine, or a
            host behind a bastion whose bridge port is forwarded over SSH to its loopback) always
            listens on loopback.
        remote: whether the machine is another host (its provider's ``capabilities.remote``).

    Returns:
        The link; its ``listen`` endpoint never names every interface (``0.0.0.0``).

    Raises:
        ConfigError: ``protocol`` is unknown.
    """
    if protocol not in _PROTOCOLS:
        msg = f"bridge protocol {protocol!r} is unknown: use one of {', '.join(_PROTOCOLS)}"
        raise ConfigError(msg)
    bind = address if is_loopback(address) else (_listenable(listen_address) or address)
    if protocol == "auto":
        protocol = "tcp" if not remote and is_loopback(address) else "tls"
    names = tuple(dict.fromkeys((address, bind)))
    return MachineLink(
        protocol=protocol,
        listen=endpoint(protocol, bind, port),
        connect=endpoint(protocol, address, port),
        names=names,
    )


def _listenable(address: str) -> str:
    """``address`` as a Zenoh locator can name it: an IPv4-mapped IPv6 address as IPv4; "" for a
    link-local address with a zone (``fe80::1%eth0``), which a locator cannot carry."""
    if "%" in address:
        return ""
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def endpoint(protocol: str, host: str, port: int) -> str:
    """A Zenoh locator, ``<protocol>/<host>:<port>``, with an IPv6 address in brackets."""
    host = host.strip("[]")
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"{protocol}/{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plaintext_exposed(locator: str) -> bool:
    """Whether ``locator`` is plain TCP on something other than loopback."""
    match = _ENDPOINT.match(locator)
    return match is not None and match["proto"] == "tcp" and not is_loopback(match["host"])


def build_config(
    *, listen: Sequence[str] = (), connect: Sequence[str] = (), bridge: BridgeSpec | None = None
) -> zenoh.Config:
    """A ``zenoh.Config`` for a bridge session: :func:`config_values` applied to Zenoh's defaults.

    Raises:
        ConfigError: as :func:`config_values`.
        BridgeError: Zenoh rejected a value (a Zenoh version without one of the keys).
    """
    config = zenoh.Config()
    for key, value in config_values(listen=listen, connect=connect, bridge=bridge).items():
        try:
            config.insert_json5(key, json.dumps(value))
        except zenoh.ZError as err:
            msg = f"Zenoh {_zenoh_version()} rejects config {key}={value!r} ({err}): use eclipse-zenoh 1.10"
            raise BridgeError(msg) from err
    return config


def config_for(spec: BridgeRunSpec) -> zenoh.Config:
    """The Zenoh configuration of the bridge process that ``spec`` describes.

    Raises:
        ConfigError: as :func:`config_values`.
        BridgeError: as :func:`build_config`.
    """
    return build_config(listen=spec.listen, connect=spec.connect, bridge=spec.bridge)


def _zenoh_version() -> str:
    """The installed eclipse-zenoh version, for error messages."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eclipse-zenoh")
    except PackageNotFoundError:
        return "(unknown version)"
