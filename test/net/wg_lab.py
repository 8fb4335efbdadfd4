"""Two labs and the internet between them, in network namespaces, for the WireGuard mesh tests.

Namespaces ``fdwgt<n>a``, ``fdwgt<n>b``, ``fdwgt<n>c`` and ``fdwgt<n>r``. Hosts a (10.234.<n>.2)
and b (10.234.<n>.66) sit on different subnets (.0/26 and .64/26), each behind the router r (.1,
.65), which forwards between them (``net.ipv4.ip_forward=1`` in r's namespace only; the root
namespace's settings are never touched) and whose nftables forward chain passes nothing but UDP to
the mesh port between a's and b's addresses: the internet between two labs, where only WireGuard
crosses. c (10.234.<n>.130, subnet .128/26) is a stranger on that internet: the router passes
its UDP to a's mesh port too, so only a's own firewall stands in its way. Every rule of the
router counts what it passes or drops (:meth:`WanLab.router_counts`).

The lab number is held with a file lock so concurrent runs never share one; namespaces left by a
killed run are removed (their processes stopped by PID) before their number is reused. Every
process started here is stopped by PID when the lab closes.

Requires root, ``ip``, ``nft``, ``wg`` and kernel WireGuard or ``wireguard-go`` with
/dev/net/tun; :func:`wan_lab_unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fogros_dist.net.wireguard_host import RootRun, local_run

__all__ = ["LabNode", "WanLab", "kernel_wireguard", "open_wan_lab", "wan_lab_unavailable"]

_LOCK_DIR = Path(tempfile.gettempdir()) / "fogros_dist_test_wglab"
_INDICES = range(1, 250)
PREFIX = "fdwgt"
_ROUTER_TABLE = "fdwgt_router"

# Echoes every byte back on each connection until the client closes it.
_ECHO_SERVER = """
import socket, sys, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(16)
print("ready", flush=True)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# Connects, sends `rounds` 64-byte messages one at a time and checks each echo; one JSON line:
# {"outcome": "ok", "rtt_s": [...]} or {"outcome": "timeout"|"refused"|"unreachable"|...}.
_ECHO_CLIENT = """
import json, os, socket, sys, time
address, port, rounds, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
try:
    conn = socket.create_connection((address, port), timeout=timeout)
except socket.timeout:
    print(json.dumps({"outcome": "timeout"})); sys.exit(0)
except ConnectionRefusedError:
    print(json.dumps({"outcome": "refused"})); sys.exit(0)
except OSError as err:
    print(json.dumps({"outcome": "unreachable", "error": str(err)})); sys.exit(0)
rtts = []
with conn:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(rounds):
        message = os.urandom(64)
        began = time.perf_counter()
        conn.sendall(message)
        echoed = b""
        while len(echoed) < len(message):
            chunk = conn.recv(len(message) - len(echoed))
            if not chunk:
                break
            echoed += chunk
        rtts.append(time.perf_counter() - began)
        if echoed != message:
            print(json.dumps({"outcome": "garbled"})); sys.exit(0)
print(json.dumps({"outcome": "ok", "rtt_s": rtts}))
"""

# Sends `count` datagrams shaped like WireGuard handshake initiations (type 1, 148 bytes).
_UDP_PROBE = """
import socket, sys
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    for _ in range(count):
        sock.sendto(bytes([1, 0, 0, 0]) + bytes(144), (address, port))
"""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        msg = f"{' '.join(argv)}: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return done


def _in(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", "netns", "exec", netns, *argv], check=check)


def _namespaces() -> list[str]:
    listed = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def kernel_wireguard() -> bool:
    """Whether this kernel has WireGuard (``ip link add ... type wireguard`` works in a namespace)."""
    probe = f"{PREFIX}probe{os.getpid()}"[:15]
    if _run(["ip", "netns", "add", probe], check=False).returncode != 0:
        return False
    try:
        return _in(probe, "ip", "link", "add", "wgprobe", "type", "wireguard", check=False).returncode == 0
    finally:
        _run(["ip", "netns", "del", probe], check=False)


def wan_lab_unavailable() -> str:
    """Why the lab cannot be built here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, nftables, WireGuard)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("wg", "wireguard-tools")):
        if shutil.which(tool) is None:
            return f"needs '{tool}' (apt-get install {package})"
    probe = f"{PREFIX}probe{os.getpid()}"[:15]
    made = _run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"'ip netns' is unavailable here: {made.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    if not kernel_wireguard():
        if shutil.which("wireguard-go") is None:
            return "no kernel WireGuard and no wireguard-go (apt-get install wireguard-go)"
        if not Path("/dev/net/tun").is_char_device():
            return "no kernel WireGuard and no /dev/net/tun for wireguard-go"
    return ""


@dataclass(frozen=True)
class LabNode:
    """One namespace of the lab and its address on its subnet."""

    netns: str
    address: str

    def run(self) -> RootRun:
        """A root runner executing commands inside this namespace."""
        return local_run(["ip", "netns", "exec", self.netns])


@dataclass
class WanLab:
    """The lab's namespaces (see the module's doc) and what it started."""

    index: int
    port: int
    a: LabNode
    b: LabNode
    c: LabNode
    router: LabNode
    lock_fd: int
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def nodes(self) -> tuple[LabNode, ...]:
        """Every namespace, hosts first."""
        return (self.a, self.b, self.c, self.router)

    def start(self, node: LabNode, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start ``argv`` in ``node``'s namespace; stopped by PID when the lab closes."""
        # `ip netns exec` execs the command, so the PID is the command's own.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(proc)
        return proc

    def start_echo_server(self, node: LabNode, port: int) -> subprocess.Popen[str]:
        """A TCP echo server on every address of ``node``, running once this returns."""
        proc = self.start(node, [sys.executable, "-c", _ECHO_SERVER, str(port)])
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            error = proc.stderr.read() if proc.stderr else ""
            msg = f"echo server in {node.netns} did not start: {line!r} {error}"
            raise RuntimeError(msg)
        return proc

    def echo(
        self, node: LabNode, address: str, port: int, *, rounds: int = 1, timeout: float = 3.0
    ) -> dict[str, object]:
        """Run the echo client in ``node`` against ``address:port``; its JSON answer."""
        done = _in(
            node.netns, sys.executable, "-c", _ECHO_CLIENT, address, str(port), str(rounds), str(timeout)
        )
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def udp_probe(self, node: LabNode, address: str, port: int, count: int) -> None:
        """Send ``count`` handshake-shaped datagrams from ``node`` to ``address:port``."""
        _in(node.netns, sys.executable, "-c", _UDP_PROBE, address, str(port), str(count))

    def router_counts(self) -> dict[str, int]:
        """Packets each router rule has seen, by its comment (``a->b``, ``b->a``, ``c->a``,
        ``dropped``)."""
        out = _in(self.router.netns, "nft", "list", "table", "inet", _ROUTER_TABLE).stdout
        return {
            name: int(packets)
            for packets, name in re.findall(r'counter packets (\d+) bytes \d+ \w+ comment "([^"]+)"', out)
        }

    def stop_processes(self) -> None:
        """Stop every process the lab started (SIGTERM, then SIGKILL), by PID."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
        self.processes.clear()

    def close(self) -> None:
        """Stop what the lab started, remove its namespaces (and with them their veths)."""
        self.stop_processes()
        _remove(self.index)
        os.close(self.lock_fd)


def _names(index: int) -> dict[str, str]:
    return {role: f"{PREFIX}{index}{role}" for role in ("a", "b", "c", "r")}


def _kill_in(netns: str) -> None:
    """Stop, by PID, whatever still runs in ``netns`` (started there by a test of this lab)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while (
            _run(["ip", "netns", "pids", netns], check=False).stdout.split() and time.monotonic() < deadline
        ):
            time.sleep(0.05)


def _remove(index: int) -> None:
    existing = set(_namespaces())
    for netns in _names(index).values():
        if netns in existing:
            _kill_in(netns)
            _run(["ip", "netns", "del", netns], check=False)


def _sweep_stale() -> None:
    """Remove labs left by killed runs: a lab whose number's lock nobody holds is no live run's."""
    indices = set()
    for name in _namespaces():
        number = re.fullmatch(rf"{PREFIX}(\d+)[abcr]", name)
        if number:
            indices.add(int(number.group(1)))
    for index in indices:
        fd = os.open(_LOCK_DIR / f"{index}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _remove(index)
        os.close(fd)


def _claim() -> tuple[int, int]:
    start = os.getpid() % len(_INDICES)
    order = list(_INDICES)[start:] + list(_INDICES)[:start]
    for index in order:
        fd = os.open(_LOCK_DIR / f"{index}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return index, fd
    msg = "every WireGuard test lab number 1-249 is in use"
    raise RuntimeError(msg)


def _router_ruleset(lab: WanLab) -> str:
    a, b, c, port = lab.a.address, lab.b.address, lab.c.address, lab.port
    return (
        f"table inet {_ROUTER_TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy drop;\n"
        f'    ip saddr {a} ip daddr {b} udp dport {port} counter accept comment "a->b"\n'
        f'    ip saddr {b} ip daddr {a} udp dport {port} counter accept comment "b->a"\n'
        f'    ip saddr {c} ip daddr {a} udp dport {port} counter accept comment "c->a"\n'
        '    counter drop comment "dropped"\n'
        "  }\n"
        "}\n"
    )


def open_wan_lab(port: int) -> WanLab:
    """Build the lab (see the module's doc) for a mesh on UDP ``port``."""
    _LOCK_DIR.mkdir(exist_ok=True)
    _sweep_stale()
    index, lock_fd = _claim()
    names = _names(index)
    base = f"10.234.{index}"
    lab = WanLab(
        index=index,
        port=port,
        a=LabNode(names["a"], f"{base}.2"),
        b=LabNode(names["b"], f"{base}.66"),
        c=LabNode(names["c"], f"{base}.130"),
        router=LabNode(names["r"], ""),
        lock_fd=lock_fd,
    )
    try:
        _remove(index)  # a half-removed lab of a run that died holding nothing
        for node in lab.nodes:
            _run(["ip", "netns", "add", node.netns])
            _in(node.netns, "ip", "link", "set", "lo", "up")
        router = lab.router.netns
        for role, node, gateway in (("a", lab.a, 1), ("b", lab.b, 65), ("c", lab.c, 129)):
            # Made inside the namespaces directly: no name ever exists in the root namespace.
            veth = ["type", "veth", "peer", "name", f"to{role}", "netns", router]
            _run(["ip", "link", "add", "wan0", "netns", node.netns, *veth])
            _in(router, "ip", "address", "add", f"{base}.{gateway}/26", "dev", f"to{role}")
            _in(router, "ip", "link", "set", f"to{role}", "up")
            _in(node.netns, "ip", "address", "add", f"{node.address}/26", "dev", "wan0")
            _in(node.netns, "ip", "link", "set", "wan0", "up")
            _in(node.netns, "ip", "route", "add", "default", "via", f"{base}.{gateway}")
        _in(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        done = subprocess.run(
            ["ip", "netns", "exec", router, "nft", "-f", "-"],
            input=_router_ruleset(lab),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            msg = f"router firewall: {done.stderr.strip()}"
            raise RuntimeError(msg)
    except BaseException:
        lab.close()
        raise
    return lab
