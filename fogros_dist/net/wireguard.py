"""The plan of a deployment's WireGuard mesh: keys, addresses, port and peers (no I/O).

A fleet's ranks (gloo, NCCL) open TCP connections between every pair of machines, on ports they
pick, so machines on different networks need one flat private network between them, never those
ports open to the internet. The mesh is that network: every machine gets one WireGuard interface,
one address in the deployment's mesh subnet, and every other machine as a peer (``AllowedIPs`` is
the peer's one mesh address, ``/32``), reached on its *underlay endpoint*, the address its peers
reach it on. :mod:`fogros_dist.net.wireguard_host` brings the plan up and down on each host.

Keys: one X25519 pair per machine per deployment, generated here on the robot with
``cryptography`` (no ``wg genkey``), clamped as ``wg genkey`` clamps, base64 as WireGuard writes
them. A private key appears only in its own machine's :meth:`MeshPlan.config_for` text and is
never part of any ``repr`` (so never of a log line).

Addresses: a /24 per deployment inside the shared address space 100.64.0.0/10 (RFC 6598). That
range is reserved for carrier-grade NAT, so it is never routed on the internet and almost never
used on a lab LAN, a VPC or by Docker, all of which favour 10/8, 172.16/12 and 192.168/16. The /24
is picked from the deployment's name (16384 of them, so two deployments rarely meet, and a host
already carrying the other one's mesh refuses the second, below); a /24 that holds any machine's
underlay endpoint is skipped for the next one. Collisions with the rest of a machine's networks
(its other interfaces and routes, Tailscale's 100.x addresses) cannot be seen from the robot: the
host side refuses to bring the mesh up on a host with an address or a route (in any table)
overlapping the mesh subnet, naming it; a ``subnet`` given explicitly is checked against the
endpoints here.

Port: one UDP listen port for the whole mesh (every host's firewall then admits one port), by
default 51820 + a number from the deployment's name below 1000, so two deployments sharing a
host do not fight over one port.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fogros_dist.errors import ConfigError

__all__ = [
    "DEFAULT_PORT_BASE",
    "KEEPALIVE_S",
    "MESH_RANGE",
    "HostMesh",
    "MeshMachine",
    "MeshMember",
    "MeshPlan",
    "default_listen_port",
    "generate_key_pair",
    "interface_name",
    "public_key_of",
]

MESH_RANGE = ipaddress.IPv4Network("100.64.0.0/10")
_MESH_PREFIX = 24
DEFAULT_PORT_BASE = 51820
_PORT_SPREAD = 1000
# Keeps NAT and stateful-firewall mappings on the way open while a peer is quiet (WireGuard's own
# recommendation for peers behind NAT).
KEEPALIVE_S = 25
# Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
_INTERFACE_PREFIX = "fdwg"
_IFNAMSIZ = 15
# Networks an explicitly chosen mesh subnet must lie in: mesh addresses must never shadow public
# ones.
_PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _clamp(secret: bytes) -> bytes:
    """Clamp an X25519 scalar as ``wg genkey`` does (the curve ignores those bits either way)."""
    key = bytearray(secret)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def generate_key_pair() -> tuple[str, str]:
    """A fresh WireGuard key pair: (private key, public key), both base64 of 32 raw bytes."""
    secret = _clamp(X25519PrivateKey.generate().private_bytes_raw())
    private = base64.b64encode(secret).decode()
    return private, public_key_of(private)


def public_key_of(private_key: str) -> str:
    """The base64 public key of a base64 private key (what ``wg pubkey`` prints).

    Raises:
        ConfigError: ``private_key`` is not base64 of 32 bytes (the key itself is not echoed).
    """
    try:
        raw = base64.b64decode(private_key, validate=True)
        key = X25519PrivateKey.from_private_bytes(raw)
    except ValueError as err:
        msg = "a WireGuard private key must be base64 of 32 bytes: generate one with generate_key_pair()"
        raise ConfigError(msg) from err
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def interface_name(deployment: str, machine: str) -> str:
    """The mesh interface's name on ``machine`` (<= 15 characters, ``fdwg`` + a hash).

    Per machine, not just per deployment: hosts that share one filesystem (namespaces, containers
    sharing /run) would otherwise share wireguard-go's control socket
    ``/var/run/wireguard/<interface>.sock``.
    """
    digest = hashlib.sha256(f"{deployment}\0{machine}".encode()).hexdigest()
    return (_INTERFACE_PREFIX + digest)[:_IFNAMSIZ]


def _digest_number(deployment: str, purpose: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{purpose}\0{deployment}".encode()).digest()[:8], "big")


def default_listen_port(deployment: str) -> int:
    """The mesh's UDP port unless one is given: known before any machine exists, so a cloud
    security group can admit it when the machines are made."""
    return DEFAULT_PORT_BASE + _digest_number(deployment, "port") % _PORT_SPREAD


@dataclass(frozen=True, kw_only=True)
class MeshMachine:
    """One machine to put in the mesh: its name and the underlay address its peers reach it on.

    The endpoint is also the source address its packets must arrive from (the host firewalls
    admit peers by it): behind NAT, the public address, with the mesh's UDP port forwarded.
    """

    name: str
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class MeshMember:
    """One machine of a planned mesh."""

    name: str
    endpoint: Address
    address: ipaddress.IPv4Address
    public_key: str
    # Never in a repr: plans get logged and printed.
    private_key: str = field(repr=False)

    def endpoint_text(self, port: int) -> str:
        """``address:port`` as WireGuard's ``Endpoint`` wants it (IPv6 in brackets)."""
        host = f"[{self.endpoint}]" if self.endpoint.version == 6 else str(self.endpoint)
        return f"{host}:{port}"


@dataclass(frozen=True, kw_only=True)
class HostMesh:
    """What one host needs to bring its part of the mesh up (its own private key only)."""

    deployment: str
    machine: str
    interface: str
    address: ipaddress.IPv4Interface  # its mesh address with the mesh's prefix
    listen_port: int
    peer_endpoints: tuple[Address, ...]  # the only sources its firewall admits to listen_port
    config: str = field(repr=False)  # `wg setconf` text, holding the private key


@dataclass(frozen=True, kw_only=True)
class MeshPlan:
    """A deployment's WireGuard mesh: see the module's doc. Build it with :meth:`create`."""

    deployment: str
    subnet: ipaddress.IPv4Network
    listen_port: int
    members: tuple[MeshMember, ...]

    @classmethod
    def create(
        cls,
        deployment: str,
        machines: Sequence[MeshMachine],
        *,
        subnet: str | None = None,
        listen_port: int | None = None,
    ) -> MeshPlan:
        """Plan the mesh of ``deployment`` over ``machines``, with fresh keys.

        Args:
            deployment: the deployment's name (picks the subnet, the port and interface names).
            machines: every machine of the mesh, in the order their mesh addresses are handed out
                (.1, .2, ...).
            subnet: the mesh's IPv4 subnet (default: a /24 of 100.64.0.0/10 picked by name).
            listen_port: the UDP port every machine listens on (default: picked by name).

        Raises:
            ConfigError: a duplicate machine, a machine with no endpoint or one that is not an
                IP address, two machines at one endpoint, a port out of range, a subnet that is
                not private, too small or holds a machine's endpoint.
        """
        if not deployment:
            msg = "a WireGuard mesh needs the deployment's name: it names the mesh's keys and interfaces"
            raise ConfigError(msg)
        if not machines:
            msg = f"deployment {deployment!r}: a WireGuard mesh needs at least one machine"
            raise ConfigError(msg)
        endpoints = _endpoints(deployment, machines)
        port = _listen_port(deployment, listen_port)
        network = _subnet(deployment, subnet, endpoints, len(machines))
        members = []
        for host_address, machine in zip(network.hosts(), machines, strict=False):
            private, public = generate_key_pair()
            members.append(
                MeshMember(
                    name=machine.name,
                    endpoint=endpoints[machine.name],
                    address=host_address,
                    public_key=public,
                    private_key=private,
                )
            )
        return cls(deployment=deployment, subnet=network, listen_port=port, members=tuple(members))

    def member(self, machine: str) -> MeshMember:
        """The member named ``machine``.

        Raises:
            ConfigError: no machine of that name is in the mesh.
        """
        for member in self.members:
            if member.name == machine:
                return member
        names = ", ".join(m.name for m in self.members)
        msg = f"machine {machine!r} is not in deployment {self.deployment!r}'s WireGuard mesh ({names})"
        raise ConfigError(msg)

    def peers_of(self, machine: str) -> tuple[MeshMember, ...]:
        """Every member but ``machine``."""
        self.member(machine)
        return tuple(m for m in self.members if m.name != machine)

    def config_for(self, machine: str) -> str:
        """``machine``'s configuration in ``wg setconf`` format (holds its private key: write it
        only to that machine, mode 0600, and never log it)."""
        me = self.member(machine)
        lines = [
            f"# fogros_dist WireGuard mesh of deployment {self.deployment!r}: {me.name!r} at {me.address}",
            "[Interface]",
            f"PrivateKey = {me.private_key}",
            f"ListenPort = {self.listen_port}",
        ]
        for peer in self.peers_of(machine):
            lines += [
                "",
                f"# {peer.name!r}",
                "[Peer]",
                f"PublicKey = {peer.public_key}",
                f"AllowedIPs = {peer.address}/32",
                f"Endpoint = {peer.endpoint_text(self.listen_port)}",
                f"PersistentKeepalive = {KEEPALIVE_S}",
            ]
        return "\n".join(lines) + "\n"

    def for_host(self, machine: str) -> HostMesh:
        """What ``machine``'s host needs to bring its part up (:mod:`~fogros_dist.net.wireguard_host`)."""
        me = self.member(machine)
        return HostMesh(
            deployment=self.deployment,
            machine=machine,
            interface=interface_name(self.deployment, machine),
            address=ipaddress.IPv4Interface(f"{me.address}/{self.subnet.prefixlen}"),
            listen_port=self.listen_port,
            peer_endpoints=tuple(p.endpoint for p in self.peers_of(machine)),
            config=self.config_for(machine),
        )


def _endpoints(deployment: str, machines: Sequence[MeshMachine]) -> dict[str, Address]:
    found: dict[str, Address] = {}
    owner: dict[Address, str] = {}
    for machine in machines:
        where = f"deployment {deployment!r}, machine {machine.name!r}"
        if not machine.name or not machine.name.isprintable():
            msg = f"deployment {deployment!r}: machine name {machine.name!r} is empty or not printable"
            raise ConfigError(msg)
        if machine.name in found:
            msg = f"{where} is in the WireGuard mesh twice: list each machine once"
            raise ConfigError(msg)
        if not machine.endpoint:
            msg = (
                f"{where} has no WireGuard endpoint: give the IP address its peers reach it on "
                "(its public or LAN address)"
            )
            raise ConfigError(msg)
        try:
            address = ipaddress.ip_address(machine.endpoint)
        except ValueError:
            msg = (
                f"{where}: WireGuard endpoint {machine.endpoint!r} is not an IP address: give the "
                "address its peers reach it on (the host firewalls admit peers by address)"
            )
            raise ConfigError(msg) from None
        if address.is_unspecified or address.is_multicast:
            msg = f"{where}: WireGuard endpoint {address} is not one host's address: give the machine's own"
            raise ConfigError(msg)
        if address in owner:
            msg = (
                f"{where}: WireGuard endpoint {address} is also {owner[address]!r}'s: two machines at one "
                "address cannot both take the mesh's UDP port there; give each machine its own address"
            )
            raise ConfigError(msg)
        owner[address] = machine.name
        found[machine.name] = address
    return found


def _listen_port(deployment: str, requested: int | None) -> int:
    if requested is None:
        return default_listen_port(deployment)
    if not 1 <= requested <= 65535:
        msg = f"deployment {deployment!r}: WireGuard listen port {requested} is out of range: use 1-65535"
        raise ConfigError(msg)
    return requested


def _holding(network: ipaddress.IPv4Network, endpoints: dict[str, Address]) -> str | None:
    for name, address in endpoints.items():
        if address.version == 4 and address in network:
            return name
    return None


def _subnet(
    deployment: str, requested: str | None, endpoints: dict[str, Address], count: int
) -> ipaddress.IPv4Network:
    network = (
        _pick_subnet(deployment, endpoints) if requested is None else _given_subnet(deployment, requested)
    )
    if network.num_addresses - 2 < count:
        msg = (
            f"deployment {deployment!r}: WireGuard mesh subnet {network} has room for "
            f"{max(network.num_addresses - 2, 0)} machines and the mesh has {count}: give a larger subnet"
        )
        raise ConfigError(msg)
    holder = _holding(network, endpoints)
    if holder is not None:
        msg = (
            f"deployment {deployment!r}: WireGuard mesh subnet {network} overlaps machine {holder!r}'s "
            f"underlay address {endpoints[holder]}: choose a subnet none of the machines is on"
        )
        raise ConfigError(msg)
    return network


def _given_subnet(deployment: str, requested: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(requested)
    except ValueError:
        msg = (
            f"deployment {deployment!r}: WireGuard mesh subnet {requested!r} is not an IPv4 network: "
            "write it as e.g. 100.90.7.0/24 (host bits zero)"
        )
        raise ConfigError(msg) from None
    if not any(network.subnet_of(r) for r in _PRIVATE_RANGES):
        msg = (
            f"deployment {deployment!r}: WireGuard mesh subnet {network} is not private: use one inside "
            "100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        )
        raise ConfigError(msg)
    return network


def _pick_subnet(deployment: str, endpoints: dict[str, Address]) -> ipaddress.IPv4Network:
    count = 2 ** (_MESH_PREFIX - MESH_RANGE.prefixlen)
    start = _digest_number(deployment, "subnet") % count
    size = 2 ** (32 - _MESH_PREFIX)
    for step in range(count):
        base = int(MESH_RANGE.network_address) + ((start + step) % count) * size
        network = ipaddress.IPv4Network((base, _MESH_PREFIX))
        if _holding(network, endpoints) is None:
            return network
    # Unreachable: fewer endpoints than /24s. Kept so a mistake cannot return a colliding subnet.
    msg = f"deployment {deployment!r}: every /24 of {MESH_RANGE} holds a machine's endpoint"
    raise ConfigError(msg)
