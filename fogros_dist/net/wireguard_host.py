"""Bringing one host's part of a WireGuard mesh up and down, given a way to run commands as root.

The caller supplies ``run(argv, *, stdin=None) -> (returncode, stdout, stderr)`` executing
``argv`` as root on the host (the SSH host agent, a local subprocess, ``ip netns exec``); every
command here is ``sh -c`` with its values as positional arguments (nothing is pasted into a
script), and secrets travel only on stdin, never in an argv, so a runner may log argv but must
never log stdin.

Up (:func:`bring_up`), in this order so the UDP port is never open to everyone:

1. check: root, ``ip`` and ``wg`` present, nft or iptables present, and no address or route of
   the host (in any routing table; catch-alls shorter than /8 aside) overlapping the mesh subnet,
   a collision the robot cannot see;
2. firewall: accept UDP to the listen port only from the peers' underlay addresses, drop the rest
   to that port, in a table (nftables: ``inet fogros_<interface>``) or chain (iptables:
   ``FOGROS-<interface>``, jumped to from INPUT) of the mesh's own, so teardown removes exactly it;
3. interface: kernel WireGuard where ``ip link add <if> type wireguard`` works, else
   ``wireguard-go <if>`` in the foreground (``WG_PROCESS_FOREGROUND=1``) under ``setsid``, its PID
   written to the state directory so teardown stops it by PID;
4. ``wg setconf <if> <state dir>/wg.conf`` (the file mode 0600 in a 0700 directory under /run, a
   tmpfs: the key is never on disk and dies with the host's boot, as the mesh does), then
   ``ip address add`` and ``ip link set up``.

A failure part way tears down what was built and raises one line naming the host, the step and
the fix. :func:`tear_down` needs only the interface's name (derivable from the deployment and
machine, :func:`fogros_dist.net.wireguard.interface_name`), is idempotent and fine on a half-built
mesh: it stops wireguard-go by the recorded PID (after checking that PID still is wireguard-go
for this interface), deletes the interface, removes the firewall table or chain of either kind and
the state directory.

The host's other firewalls still apply: a base chain elsewhere that drops the port drops it for
the mesh too (nftables and iptables verdicts do not override each other), and a cloud security
group must admit the port from the peers as well.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Address
from typing import Literal, Protocol

from fogros_dist.errors import DeploymentError
from fogros_dist.net.wireguard import HostMesh

__all__ = [
    "DEFAULT_STATE_ROOT",
    "MESH_INTERFACE_ENV",
    "FirewallCounters",
    "MeshDown",
    "MeshUp",
    "RootRun",
    "WireGuardError",
    "bring_up",
    "firewall_counters",
    "firewall_names",
    "local_run",
    "tear_down",
]

DEFAULT_STATE_ROOT = "/run/fogros_dist/wireguard"
# The Host environment key naming a mesh interface brought up there (recorded by the fleet before
# bring_up): the remote providers' terminate tears it down, after a crash of the robot too.
MESH_INTERFACE_ENV = "FOGROS_MESH_INTERFACE"
# wireguard-go's control sockets (fixed in wireguard-go; `wg` looks there first).
_SOCKET_DIR = "/var/run/wireguard"
# A root runner over SSH may start with a user's PATH, which lacks the sbin directories.
_PATH = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"; '
# Below the usual filter priority (0), so the mesh's verdict comes first in the input hook.
_NFT_PRIORITY = -5
# How long teardown waits for wireguard-go to end after SIGTERM before SIGKILL, and how long
# bring-up waits for its control socket.
_STOP_WAIT_S = 5
_START_WAIT_S = 10
# Routes shorter than this (default, the 0.0.0.0/1 + 128.0.0.0/1 of full-tunnel VPNs) are
# catch-alls that the mesh's more specific route rightly overrides; any longer route or any
# address overlapping the mesh subnet is a network someone uses there, so the mesh stays down.
_CATCH_ALL_PREFIX = 8

Mode = Literal["auto", "kernel", "userspace"]
Firewall = Literal["auto", "nftables", "iptables"]


class RootRun(Protocol):
    """Runs ``argv`` as root on one host: (return code, stdout, stderr). ``stdin`` may hold a
    private key: never log it."""

    def __call__(self, argv: list[str], *, stdin: str | None = None) -> tuple[int, str, str]: ...


class WireGuardError(DeploymentError):
    """One host's part of the mesh could not be brought up or torn down (host, step and fix)."""


def local_run(prefix: Sequence[str] = ()) -> RootRun:
    """A :class:`RootRun` running commands here, after ``prefix`` (e.g. ``["sudo", "-n"]`` or
    ``["ip", "netns", "exec", "ns1"]``)."""

    def run(argv: list[str], *, stdin: str | None = None) -> tuple[int, str, str]:
        done = subprocess.run(
            [*prefix, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            # Without stdin the command gets /dev/null, never the caller's terminal.
            stdin=subprocess.DEVNULL if stdin is None else None,
        )
        return done.returncode, done.stdout, done.stderr

    return run


@dataclass(frozen=True, kw_only=True)
class MeshUp:
    """What :func:`bring_up` made on the host."""

    host: str
    interface: str
    mode: Literal["kernel", "userspace"]
    pid: int | None  # wireguard-go's (userspace); None for kernel WireGuard
    firewall: Literal["nftables", "iptables"]


@dataclass(frozen=True, kw_only=True)
class MeshDown:
    """What :func:`tear_down` found and removed (all False/None: nothing was there)."""

    stopped_pid: int | None
    interface_removed: bool
    firewall_removed: tuple[str, ...]  # "nftables", "iptables", "ip6tables"


@dataclass(frozen=True, kw_only=True)
class FirewallCounters:
    """Packets to the mesh's UDP port that the host's mesh firewall accepted (from peers) and
    dropped (from anyone else) since it was set up."""

    accepted: int
    dropped: int


def firewall_names(interface: str) -> tuple[str, str]:
    """(nftables table, iptables chain) of the mesh on ``interface``."""
    return f"fogros_{interface}", f"FOGROS-{interface}"


def _sh(run: RootRun, script: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    return run(["sh", "-c", _PATH + script, "sh", *args], stdin=stdin)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # "Error: Unknown device type." reads better inside a line without its full stop.
    return lines[-1].rstrip(".") if lines else "no message"


@dataclass
class _Step:
    host: str
    interface: str

    def fail(self, step: str, detail: str, fix: str) -> WireGuardError:
        return WireGuardError(f"{self.host}: WireGuard mesh {self.interface}, {step}: {detail}: {fix}")


# -- checks ---------------------------------------------------------------------------------------

_PREFLIGHT = """
echo "uid $(id -u)"
for tool in ip wg nft iptables ip6tables wireguard-go setsid; do
  command -v "$tool" >/dev/null 2>&1 && echo "tool $tool"
done
[ -c /dev/net/tun ] && echo "tun"
ip -o -4 address show 2>/dev/null | sed 's/^/addr /'
ip -4 route show table all 2>/dev/null | sed 's/^/route /'
"""


@dataclass(frozen=True)
class _Facts:
    root: bool
    tools: frozenset[str]
    tun: bool
    networks: tuple[tuple[IPv4Network, str], ...]  # (network, the line that names it)


def _facts(run: RootRun, step: _Step) -> _Facts:
    code, out, err = _sh(run, _PREFLIGHT)
    if code != 0:
        raise step.fail("checking the host", _last_line(err), "the runner must run 'sh' as root there")
    lines = out.splitlines()
    networks: list[tuple[IPv4Network, str]] = []
    for line in lines:
        kind, _, rest = line.partition(" ")
        words = rest.split()
        if kind == "addr" and len(words) >= 4 and words[2] == "inet":
            if words[1] != step.interface:  # our own (stale) interface is torn down first
                networks.append((IPv4Interface(words[3]).network, f"address {words[3]} on {words[1]}"))
        elif kind == "route" and words:
            if words[0] in {"unreachable", "blackhole", "prohibit", "throw", "local", "broadcast"}:
                words = words[1:]
            dev = words[words.index("dev") + 1] if "dev" in words[:-1] else ""
            if words and words[0] != "default" and dev != step.interface:
                try:
                    networks.append((IPv4Network(words[0], strict=False), f"route {rest.strip()}"))
                except ValueError:
                    continue
    return _Facts(
        root="uid 0" in lines,
        tools=frozenset(line.split()[1] for line in lines if line.startswith("tool ")),
        tun="tun" in lines,
        networks=tuple(networks),
    )


def _check(facts: _Facts, mesh: HostMesh, step: _Step) -> None:
    if not facts.root:
        raise step.fail("checking the host", "not running as root", "run the mesh's commands as root (sudo)")
    for tool, package in (("ip", "iproute2"), ("wg", "wireguard-tools")):
        if tool not in facts.tools:
            raise step.fail("checking the host", f"'{tool}' not found", f"apt-get install {package}")
    subnet = mesh.address.network
    for network, what in facts.networks:
        if network.overlaps(subnet) and network.prefixlen >= _CATCH_ALL_PREFIX:
            raise step.fail(
                "checking the host",
                f"the mesh subnet {subnet} overlaps this host's {what}",
                "choose another mesh subnet for the deployment (MeshPlan.create(subnet=...))",
            )


# -- firewall ---------------------------------------------------------------------------------------


def _nft_ruleset(mesh: HostMesh) -> str:
    table, _ = firewall_names(mesh.interface)
    port = mesh.listen_port
    v4 = [str(a) for a in mesh.peer_endpoints if a.version == 4]
    v6 = [str(a) for a in mesh.peer_endpoints if isinstance(a, IPv6Address)]
    rules = []
    if v4:
        rules.append(f"udp dport {port} ip saddr {{ {', '.join(v4)} }} counter accept")
    if v6:
        rules.append(f"udp dport {port} ip6 saddr {{ {', '.join(v6)} }} counter accept")
    rules.append(f"udp dport {port} counter drop")
    body = "\n".join(f"    {r}" for r in rules)
    # Declaring then deleting the table first makes the whole file one atomic replacement.
    return (
        f"table inet {table} {{}}\n"
        f"delete table inet {table}\n"
        f"table inet {table} {{\n"
        f"  chain input {{\n"
        f"    type filter hook input priority {_NFT_PRIORITY}; policy accept;\n"
        f"{body}\n"
        f"  }}\n"
        f"}}\n"
    )


def _iptables_script(tool: str, chain: str, port: int, sources: Sequence[str]) -> str:
    lines = [f"{tool} -w -N {chain} 2>/dev/null || {tool} -w -F {chain}"]
    lines += [f"{tool} -w -A {chain} -s {shlex.quote(s)} -j ACCEPT" for s in sources]
    lines += [
        f"{tool} -w -A {chain} -j DROP",
        f"{tool} -w -C INPUT -p udp --dport {port} -j {chain} 2>/dev/null || "
        f"{tool} -w -I INPUT 1 -p udp --dport {port} -j {chain}",
    ]
    return "set -e\n" + "\n".join(lines) + "\n"


def _set_firewall(run: RootRun, mesh: HostMesh, kind: Literal["nftables", "iptables"], step: _Step) -> None:
    what = "opening the UDP port to the peers only"
    if kind == "nftables":
        code, _, err = _sh(run, "nft -f -", stdin=_nft_ruleset(mesh))
        if code != 0:
            raise step.fail(
                what, f"nft: {_last_line(err)}", "check that nftables works here (nft list ruleset)"
            )
        return
    _, chain = firewall_names(mesh.interface)
    families = [("iptables", [str(a) for a in mesh.peer_endpoints if a.version == 4])]
    families.append(("ip6tables", [str(a) for a in mesh.peer_endpoints if a.version == 6]))
    for tool, sources in families:
        code, _, err = _sh(run, _iptables_script(tool, chain, mesh.listen_port, sources))
        if code != 0:
            if tool == "ip6tables" and not sources:
                continue  # a host without IPv6 filtering and no IPv6 peer: nothing to admit or drop
            raise step.fail(
                what, f"{tool}: {_last_line(err)}", "check that iptables works here (iptables -S)"
            )


def _firewall_kind(requested: Firewall, facts: _Facts, step: _Step) -> Literal["nftables", "iptables"]:
    if requested in ("auto", "nftables") and "nft" in facts.tools:
        return "nftables"
    if requested in ("auto", "iptables") and "iptables" in facts.tools:
        return "iptables"
    wanted = {"auto": "nft nor iptables", "nftables": "nft", "iptables": "iptables"}[requested]
    package = "iptables" if requested == "iptables" else "nftables"
    raise step.fail("checking the host", f"no {wanted} for the mesh's firewall", f"apt-get install {package}")


# -- interface ----------------------------------------------------------------------------------------

_START_WIREGUARD_GO = f"""
dir=$1; ifname=$2
umask 077; mkdir -p "$dir"
cd /
WG_PROCESS_FOREGROUND=1 setsid wireguard-go "$ifname" </dev/null >"$dir/wireguard-go.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/wireguard-go.pid"
i=0
while [ $i -lt {_START_WAIT_S * 20} ]; do
  if [ -S "{_SOCKET_DIR}/$ifname.sock" ]; then echo "$pid"; exit 0; fi
  kill -0 "$pid" 2>/dev/null || {{ tail -n 3 "$dir/wireguard-go.log" >&2; exit 3; }}
  sleep 0.05; i=$((i + 1))
done
echo "no control socket {_SOCKET_DIR}/$ifname.sock after {_START_WAIT_S} s" >&2
exit 4
"""


def _add_interface(
    run: RootRun, mesh: HostMesh, *, mode: Mode, facts: _Facts, state_dir: str, step: _Step
) -> tuple[Literal["kernel", "userspace"], int | None]:
    what = "creating the interface"
    if mode in ("auto", "kernel"):
        code, _, err = _sh(run, 'ip link add dev "$1" type wireguard', mesh.interface)
        if code == 0:
            return "kernel", None
        unsupported = re.search(r"unknown device type|not supported|no such file", err, re.IGNORECASE)
        if mode == "kernel" or not unsupported:
            fix = "load the module (modprobe wireguard)" if unsupported else "run it as root on the host"
            raise step.fail(what, f"ip link add type wireguard: {_last_line(err)}", fix)
    if "wireguard-go" not in facts.tools:
        raise step.fail(
            what,
            "no kernel WireGuard and wireguard-go not found",
            "apt-get install wireguard-go wireguard-tools",
        )
    if "setsid" not in facts.tools:
        raise step.fail(what, "'setsid' not found (wireguard-go runs detached)", "apt-get install util-linux")
    if not facts.tun:
        raise step.fail(
            what,
            "no /dev/net/tun for wireguard-go",
            "modprobe tun (in a container: run it with --device /dev/net/tun and NET_ADMIN)",
        )
    code, out, err = _sh(run, _START_WIREGUARD_GO, state_dir, mesh.interface)
    if code != 0:
        raise step.fail(
            "starting wireguard-go", _last_line(err), "it needs root (NET_ADMIN) and a usable /dev/net/tun"
        )
    return "userspace", int(out.split()[-1])


def _configure(run: RootRun, mesh: HostMesh, state_dir: str, step: _Step) -> None:
    config = f"{state_dir}/wg.conf"
    code, _, err = _sh(
        run, 'umask 077 && mkdir -p "$1" && cat >"$2" && chmod 600 "$2"', state_dir, config, stdin=mesh.config
    )
    if code != 0:
        raise step.fail("writing the configuration", _last_line(err), f"check that {state_dir} is writable")
    code, _, err = _sh(run, 'wg setconf "$1" "$2"', mesh.interface, config)
    if code != 0:
        in_use = "address already in use" in err.lower()
        fix = (
            f"another program uses UDP port {mesh.listen_port} here: give the mesh another listen port"
            if in_use
            else "check the WireGuard tools (wg --version)"
        )
        raise step.fail("wg setconf", _last_line(err), fix)
    code, _, err = _sh(
        run, 'ip address add "$1" dev "$2" && ip link set dev "$2" up', str(mesh.address), mesh.interface
    )
    if code != 0:
        raise step.fail(
            f"adding the address {mesh.address}",
            _last_line(err),
            "remove that address from the host's other interface, or choose another mesh subnet",
        )


def bring_up(
    run: RootRun,
    mesh: HostMesh,
    *,
    host: str,
    mode: Mode = "auto",
    firewall: Firewall = "auto",
    state_root: str = DEFAULT_STATE_ROOT,
) -> MeshUp:
    """Bring ``mesh`` (one host's part of a plan) up on the host ``run`` reaches; see the module's
    doc. A mesh already there under the same interface is torn down first.

    Args:
        run: runs commands as root on the host.
        mesh: :meth:`fogros_dist.net.wireguard.MeshPlan.for_host`'s answer for this host.
        host: the host's name in error lines.
        mode: "auto" (kernel WireGuard where present, else wireguard-go), "kernel", "userspace".
        firewall: "auto" (nftables where present, else iptables), "nftables", "iptables".
        state_root: where the host keeps the mesh's configuration and wireguard-go's PID.

    Raises:
        WireGuardError: one line naming the host, the step and the fix (nothing left behind).
    """
    step = _Step(host=host, interface=mesh.interface)
    facts = _facts(run, step)
    _check(facts, mesh, step)
    kind = _firewall_kind(firewall, facts, step)
    state_dir = f"{state_root}/{mesh.interface}"
    tear_down(run, mesh.interface, host=host, state_root=state_root)
    try:
        _set_firewall(run, mesh, kind, step)
        made, pid = _add_interface(run, mesh, mode=mode, facts=facts, state_dir=state_dir, step=step)
        _configure(run, mesh, state_dir, step)
    except BaseException:
        # The first error is the one to report; a runner that also fails here must not hide it.
        with contextlib.suppress(Exception):
            tear_down(run, mesh.interface, host=host, state_root=state_root, check=False)
        raise
    return MeshUp(host=host, interface=mesh.interface, mode=made, pid=pid, firewall=kind)


# -- teardown -------------------------------------------------------------------------------------

_STOP_WIREGUARD_GO = f"""
pidfile=$1; ifname=$2
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
case "$pid" in ''|*[!0-9]*) exit 0;; esac
alive() {{ [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]; }}
ours() {{
  set -- $(tr '\\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
  [ "${{1##*/}}" = wireguard-go ] && [ "$2" = "$ifname" ]
}}
# Gone already, or the PID has been reused by another process: nothing of ours to stop.
alive && ours || exit 0
kill -TERM "$pid"
i=0
while alive && [ $i -lt {_STOP_WAIT_S * 10} ]; do sleep 0.1; i=$((i + 1)); done
alive && kill -KILL "$pid"
echo "$pid"
"""

_REMOVE_INTERFACE = f"""
ifname=$1
if ip link show dev "$ifname" >/dev/null 2>&1; then
  # wireguard-go's interface may vanish on its own meanwhile: only one still there is a failure.
  error=$(ip link del dev "$ifname" 2>&1) && echo removed
  if ip link show dev "$ifname" >/dev/null 2>&1; then echo "$error" >&2; exit 1; fi
fi
rm -f "{_SOCKET_DIR}/$ifname.sock"
exit 0
"""

_REMOVE_NFT = """
command -v nft >/dev/null 2>&1 || exit 0
nft list table inet "$1" >/dev/null 2>&1 || exit 0
nft delete table inet "$1" && echo nftables
"""

_REMOVE_IPTABLES = """
chain=$1
for tool in iptables ip6tables; do
  command -v "$tool" >/dev/null 2>&1 || continue
  "$tool" -w -S "$chain" >/dev/null 2>&1 || continue
  # Each rule jumping to the chain, "-A INPUT ..." turned into "-D INPUT ...".
  "$tool" -w -S INPUT | grep -e "-j $chain\\$" | sed 's/^-A /-D /' | while read -r rule; do
    "$tool" -w $rule
  done
  "$tool" -w -F "$chain" && "$tool" -w -X "$chain" && echo "$tool"
done
exit 0
"""


def tear_down(
    run: RootRun, interface: str, *, host: str, state_root: str = DEFAULT_STATE_ROOT, check: bool = True
) -> MeshDown:
    """Remove the mesh on ``interface`` from the host: wireguard-go (by its recorded PID), the
    interface, the firewall table/chain, the state directory. Idempotent; every step runs even if
    one before it failed.

    Raises:
        WireGuardError: a step failed (``check``: the first one, named), after every step ran.
    """
    step = _Step(host=host, interface=interface)
    state_dir = f"{state_root}/{interface}"
    table, chain = firewall_names(interface)
    failures: list[WireGuardError] = []

    def attempt(what: str, script: str, *args: str) -> str:
        code, out, err = _sh(run, script, *args)
        if code != 0:
            failures.append(step.fail(f"teardown, {what}", _last_line(err), "remove it by hand"))
        return out

    stopped = attempt("stopping wireguard-go", _STOP_WIREGUARD_GO, f"{state_dir}/wireguard-go.pid", interface)
    removed = attempt("deleting the interface", _REMOVE_INTERFACE, interface)
    firewalls = attempt("removing the nftables table", _REMOVE_NFT, table).split()
    firewalls += attempt("removing the iptables chain", _REMOVE_IPTABLES, chain).split()
    attempt("removing the state directory", 'rm -rf -- "$1"', state_dir)
    if check and failures:
        raise failures[0]
    return MeshDown(
        stopped_pid=int(stopped.split()[-1]) if stopped.split() else None,
        interface_removed="removed" in removed.split(),
        firewall_removed=tuple(firewalls),
    )


# -- counters ----------------------------------------------------------------------------------------

_NFT_COUNTER = re.compile(r"counter packets (\d+) bytes \d+ (accept|drop)")
_IPT_COUNTER = re.compile(r"^\s*(\d+)\s+\d+\s+(ACCEPT|DROP)\b", re.MULTILINE)


def firewall_counters(run: RootRun, interface: str, *, host: str) -> FirewallCounters:
    """What the host's mesh firewall on ``interface`` has accepted and dropped so far.

    Raises:
        WireGuardError: the host has no mesh firewall for ``interface``.
    """
    table, chain = firewall_names(interface)
    code, out, _ = _sh(run, 'nft list table inet "$1"', table)
    pattern = _NFT_COUNTER
    if code != 0:
        code, out, _ = _sh(run, 'iptables -w -L "$1" -v -n -x', chain)
        pattern = _IPT_COUNTER
    if code != 0:
        msg = (
            f"{host}: WireGuard mesh {interface}, reading the firewall counters: no table {table} "
            f"or chain {chain}: bring the mesh up first"
        )
        raise WireGuardError(msg)
    counts = {"accept": 0, "drop": 0}
    for packets, verdict in pattern.findall(out):
        counts[verdict.lower()] += int(packets)
    return FirewallCounters(accepted=counts["accept"], dropped=counts["drop"])
