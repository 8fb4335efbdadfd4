"""Zenoh session configuration for one side of a bridge.

Every bridge session is a peer with explicit endpoints: multicast scouting is off (nothing is
announced on a real network unless a deployment asks for it), and shared memory is off because
Zenoh would otherwise hand payloads over 3 KB to another process on the same host through shared
memory, bypassing the network path a deployment (or a benchmark) means to use.

The transport settings make multi-megabyte camera frames fast and keep reliable topics reliable:
see :data:`TRANSPORT_TUNING` for each value and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import zenoh

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.spec import BridgeRunSpec, BridgeSpec

__all__ = [
    "TRANSPORT_TUNING",
    "build_config",
    "config_for",
    "config_values",
    "validate_endpoint",
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

_PROTOCOLS = ("tcp", "tls", "quic")
# <proto>/<host>:<port>, host a name, an IPv4 address or a bracketed IPv6 address; an optional
# "#key=value" tail carries per-endpoint Zenoh settings.
_ENDPOINT = re.compile(
    r"^(?P<proto>[a-z]+)/(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})(#.*)?$"
)


def validate_endpoint(endpoint: str, *, protocol: str) -> str:
    """Check that ``endpoint`` is a Zenoh locator of the bridge's protocol.

    Args:
        endpoint: e.g. ``tcp/127.0.0.1:7447``.
        protocol: the protocol the bridge uses (``BridgeSpec.protocol``).

    Returns:
        ``endpoint`` unchanged.

    Raises:
        ConfigError: the endpoint is malformed, names another protocol or a port above 65535.
    """
    match = _ENDPOINT.match(endpoint)
    if match is None:
        msg = (
            f"Zenoh endpoint {endpoint!r} is malformed: use '<protocol>/<host>:<port>', "
            f"e.g. '{protocol}/127.0.0.1:7447'"
        )
        raise ConfigError(msg)
    if match["proto"] != protocol:
        msg = (
            f"Zenoh endpoint {endpoint!r} uses {match['proto']!r} but the bridge protocol is "
            f"{protocol!r}: write it as '{protocol}/{match['host']}:{match['port']}'"
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
        bridge: scouting, shared memory and protocol choices; defaults to ``BridgeSpec()``.

    Returns:
        An ordered mapping of Zenoh config keys to JSON-able values.

    Raises:
        ConfigError: an endpoint is invalid, or neither listen nor connect endpoints are given.
    """
    bridge = bridge if bridge is not None else BridgeSpec()
    if bridge.protocol not in _PROTOCOLS:
        msg = f"bridge protocol {bridge.protocol!r} is unknown: use one of {', '.join(_PROTOCOLS)}"
        raise ConfigError(msg)
    listen = [validate_endpoint(e, protocol=bridge.protocol) for e in listen]
    connect = [validate_endpoint(e, protocol=bridge.protocol) for e in connect]
    if not listen and not connect and not bridge.scouting:
        msg = (
            "a bridge session needs a listen or a connect endpoint when scouting is off: "
            f"set BridgeRunSpec.listen (e.g. '{bridge.protocol}/127.0.0.1:7447') or .connect"
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
    return values


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
