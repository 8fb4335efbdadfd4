"""An emulated WAN between two network namespaces: a rate limit (``tc tbf``) and a fixed delay.

Kernel netem is missing here, so the delay is a userspace element: one process holds a TUN device
in each namespace (``robot`` and ``cloud``), reads every IP packet the kernel sends into one,
keeps it ``delay_ms`` (a timestamped FIFO per direction, so order and spacing are preserved) and
writes it into the other. To both kernels the pair is one point-to-point link with a real round
trip of ``2 * delay_ms``: TCP's own RTT, slow start and congestion window see it, unlike a TCP
relay that would acknowledge every segment locally. The rate is ``tc qdisc ... tbf`` on each TUN
device (the kernel's egress into the TUN), so each direction is limited on its own.

    link = open_wan()          # or: with wan_link() as link:
    link.start(argv, side="cloud")
    link.close()               # stops every process by PID, the namespaces and TUNs go with them

Also a command line: ``python bench/wan_link.py`` builds the link, measures it (TCP round trip,
TCP payload rate each way) and prints the figures as JSON. The ``relay`` role is the delay
element itself (started by :func:`open_wan`). Needs root, ``ip``, ``tc`` and ``/dev/net/tun``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import queue
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "net"))

from netns_link import link_unavailable  # noqa: E402

__all__ = ["WanLink", "measure_link", "open_wan", "wan_link", "wan_unavailable"]

_PREFIX = "fdwan"
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_CLONE_NEWNET = 0x40000000
_MTU = 1500
# tbf: a burst of a few full packets; packets that would queue longer than this are dropped, as
# a bottleneck router's buffer drops them (TCP then backs off).
_TBF_BURST = "32kbit"
_TBF_LATENCY = "100ms"
# TCP congestion control inside both namespaces (each namespace has its own default). Loss-based
# by default, as on most robots and cloud images (Debian, Ubuntu and Amazon Linux default to
# cubic). Cubic itself cannot be a namespace's default where the host's
# net.ipv4.tcp_allowed_congestion_control lacks it (this machine allows only reno and bbr), so
# reno stands in for it. BBR (v1) is measured as well: its ProbeRTT phase cuts the window to four
# packets for 200 ms plus a round trip whenever ten seconds pass without a new minimum RTT, which
# on a busy link is every ten seconds, and every frame in flight then waits.
DEFAULT_CONGESTION_CONTROL = "reno"


def wan_unavailable() -> str:
    """Why the WAN link cannot be built here ("" if it can)."""
    why = link_unavailable()
    if why:
        return why
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun (TUN devices) for the delay element"
    return ""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        msg = f"{' '.join(argv)}: {result.stderr.strip()}"
        raise RuntimeError(msg)
    return result


@dataclass
class WanLink:
    """The robot and cloud namespaces, the delay element between them, and what runs in them."""

    robot_ns: str
    cloud_ns: str
    robot_address: str
    cloud_address: str
    rate: str
    delay_ms: float
    relay: subprocess.Popen[str] | None = None
    congestion_control: str = ""
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def in_ns(self, argv: Sequence[str], *, side: str) -> list[str]:
        """``argv`` run inside the ``robot`` or ``cloud`` namespace."""
        netns = {"robot": self.robot_ns, "cloud": self.cloud_ns}[side]
        return ["ip", "netns", "exec", netns, *argv]

    def start(self, argv: Sequence[str], *, side: str, **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in one namespace; it is stopped by PID when the link closes."""
        # `ip netns exec` execs the command, so the PID is the command's own.
        proc: subprocess.Popen[Any] = subprocess.Popen(self.in_ns(argv, side=side), **popen)
        self.processes.append(proc)
        return proc

    def set_congestion_control(self, name: str) -> None:
        """Make ``name`` the TCP congestion control of new connections in both namespaces.

        Raises:
            RuntimeError: the kernel refused it (not built, or not allowed outside the host's
                own namespace), with the fix.
        """
        for netns in (self.robot_ns, self.cloud_ns):
            done = _run(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "sysctl",
                    "-q",
                    "-w",
                    f"net.ipv4.tcp_congestion_control={name}",
                ],
                check=False,
            )
            if done.returncode != 0:
                allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
                msg = (
                    f"TCP congestion control {name!r} cannot be set in a network namespace here "
                    f"({done.stderr.strip()}): choose one of {' '.join(allowed)} "
                    "(net.ipv4.tcp_allowed_congestion_control)"
                )
                raise RuntimeError(msg)
        self.congestion_control = name

    def wire_bytes(self) -> dict[str, int]:
        """IP bytes that entered the link so far, per direction (the TUN devices' tx counters)."""
        out = {}
        for direction, netns in (("robot_to_cloud", self.robot_ns), ("cloud_to_robot", self.cloud_ns)):
            shown = _run(["ip", "-n", netns, "-s", "-j", "link", "show", "dev", "wan0"]).stdout
            out[direction] = int(json.loads(shown)[0]["stats64"]["tx"]["bytes"])
        return out

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) by PID, then the relay, then the namespaces."""
        for proc in reversed(self.processes):
            _stop(proc)
        if self.relay is not None:
            _stop(self.relay)
        for netns in (self.robot_ns, self.cloud_ns):
            _remove_netns(netns)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _remove_netns(netns: str) -> None:
    listed = _run(["ip", "netns", "list"], check=False).stdout
    if not any(line.split()[0] == netns for line in listed.splitlines() if line.strip()):
        return
    # Anything still running there was started by us (a killed run's leftovers included).
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _run(["ip", "netns", "pids", netns], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), sig)
        deadline = time.monotonic() + 3
        while _run(["ip", "netns", "pids", netns], check=False).stdout.split():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    _run(["ip", "netns", "del", netns], check=False)


def _sweep_stale() -> None:
    """Remove namespaces left by runs that were killed before cleaning up (their PID is gone)."""
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        owner = name.removeprefix(_PREFIX)[:-1]
        if not name.startswith(_PREFIX) or not owner.isdigit():
            continue
        if int(owner) != os.getpid() and not Path(f"/proc/{owner}").exists():
            _remove_netns(name)


def open_wan(
    *, rate: str = "50mbit", delay_ms: float = 20.0, congestion_control: str = DEFAULT_CONGESTION_CONTROL
) -> WanLink:
    """Build the two namespaces and the shaped, delayed link between them.

    Args:
        rate: each direction's rate, as ``tc`` spells it.
        delay_ms: one-way delay added by the relay (the round trip is twice this).
        congestion_control: TCP congestion control in both namespaces (see
            :data:`DEFAULT_CONGESTION_CONTROL`).

    Raises:
        RuntimeError: a namespace, TUN device or qdisc could not be made (the partial link is
            removed first).
    """
    _sweep_stale()
    pid = os.getpid()
    subnet = pid % 250 + 1
    link = WanLink(
        robot_ns=f"{_PREFIX}{pid}r",
        cloud_ns=f"{_PREFIX}{pid}c",
        robot_address=f"10.233.{subnet}.1",
        cloud_address=f"10.233.{subnet}.2",
        rate=rate,
        delay_ms=delay_ms,
    )
    try:
        for netns in (link.robot_ns, link.cloud_ns):
            _run(["ip", "netns", "add", netns])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        link.set_congestion_control(congestion_control)
        link.relay = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "relay",
                "--robot-ns",
                link.robot_ns,
                "--cloud-ns",
                link.cloud_ns,
                "--delay-ms",
                str(delay_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert link.relay.stdout is not None
        if link.relay.stdout.readline().strip() != "ready":
            msg = f"the WAN delay relay did not start (exit code {link.relay.poll()})"
            raise RuntimeError(msg)
        for netns, own, peer in (
            (link.robot_ns, link.robot_address, link.cloud_address),
            (link.cloud_ns, link.cloud_address, link.robot_address),
        ):
            _run(["ip", "-n", netns, "addr", "add", own, "peer", peer, "dev", "wan0"])
            _run(["ip", "-n", netns, "link", "set", "wan0", "mtu", str(_MTU), "up"])
            _run(
                [
                    *("ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev", "wan0", "root"),
                    *("tbf", "rate", rate, "burst", _TBF_BURST, "latency", _TBF_LATENCY),
                ]
            )
    except BaseException:
        link.close()
        raise
    return link


@contextlib.contextmanager
def wan_link(
    *, rate: str = "50mbit", delay_ms: float = 20.0, congestion_control: str = DEFAULT_CONGESTION_CONTROL
) -> Iterator[WanLink]:
    """:func:`open_wan` as a context manager: the link is removed on the way out, Ctrl-C too."""
    link = open_wan(rate=rate, delay_ms=delay_ms, congestion_control=congestion_control)
    try:
        yield link
    finally:
        link.close()


# -- the delay element ---------------------------------------------------------------------------


def _open_tun_in(netns: str, name: str) -> int:
    """A TUN device called ``name`` made in ``netns`` (it lives as long as the returned fd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ns_fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        # setns moves only this thread; the TUN device is made in the namespace it is in.
        if libc.setns(ns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            msg = f"setns into {netns} failed: {os.strerror(err)}"
            raise OSError(err, msg)
    finally:
        os.close(ns_fd)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _carry(source: int, sink: int, delay_s: float, stop: threading.Event) -> None:
    """Move packets from ``source`` to ``sink``, each written ``delay_s`` after it was read."""
    held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        while not stop.is_set():
            try:
                packet = os.read(source, 65536)
            except OSError:
                stop.set()
                return
            held.put((time.monotonic() + delay_s, packet))

    threading.Thread(target=read, daemon=True).start()
    while not stop.is_set():
        due, packet = held.get()
        # A constant delay keeps the FIFO in due order: waiting for the head never delays a later one.
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with contextlib.suppress(OSError):  # the device is down (link being removed): drop it
            os.write(sink, packet)


def run_relay(args: argparse.Namespace) -> int:
    robot = _open_tun_in(args.robot_ns, "wan0")
    cloud = _open_tun_in(args.cloud_ns, "wan0")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    delay_s = args.delay_ms / 1000.0
    for source, sink in ((robot, cloud), (cloud, robot)):
        threading.Thread(target=_carry, args=(source, sink, delay_s, stop), daemon=True).start()
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    return 0


# -- measuring the link --------------------------------------------------------------------------

_PORT = 5201


def run_echo(args: argparse.Namespace) -> int:
    """A TCP peer for :func:`measure_link`: echo (``e``), sink (``s``) or source (``f``)."""
    server = socket.create_server((args.address, _PORT))
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        kind = conn.recv(1)
        if kind == b"e":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(65536):
                conn.sendall(data)
        elif kind == b"s":
            while conn.recv(1 << 20):
                pass  # the sender measures what left it; here it only has to be drained
        elif kind == b"f":
            # The reverse direction: send for the number of seconds asked.
            seconds = float(conn.recv(16).decode())
            chunk, end = b"\0" * (1 << 16), time.monotonic() + seconds
            with contextlib.suppress(OSError):
                while time.monotonic() < end:
                    conn.sendall(chunk)
        conn.close()


def _tcp_rtt_ms(address: str, samples: int) -> list[float]:
    with socket.create_connection((address, _PORT), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"e")
        rtts = []
        for _ in range(samples):
            start = time.perf_counter()
            conn.sendall(b"x")
            conn.recv(1)
            rtts.append((time.perf_counter() - start) * 1000)
            time.sleep(0.02)
        return rtts


def _tcp_send_rate(address: str, seconds: float, warmup: float) -> float:
    """Payload Mbit/s this side sustains towards ``address``, after ``warmup`` s of slow start."""
    chunk = b"\0" * (1 << 16)
    with socket.create_connection((address, _PORT), timeout=10) as conn:
        conn.sendall(b"s")
        start = time.monotonic()
        sent, counted_from, counted = 0, 0.0, 0
        while (now := time.monotonic()) < start + warmup + seconds:
            conn.sendall(chunk)
            sent += len(chunk)
            if not counted_from and now >= start + warmup:
                counted_from, counted = now, sent - _unsent_bytes(conn)
        # Bytes the peer acknowledged (handed to the kernel less what still waits) in the window.
        acked = sent - _unsent_bytes(conn)
        elapsed = time.monotonic() - counted_from
        return (acked - counted) * 8 / elapsed / 1e6


def _tcp_receive_rate(address: str, seconds: float, warmup: float) -> float:
    with socket.create_connection((address, _PORT), timeout=10) as conn:
        conn.sendall(b"f" + f"{warmup + seconds:<15}".encode())
        start = time.monotonic()
        total, counted_from, counted = 0, 0.0, 0
        while data := conn.recv(1 << 20):
            total += len(data)
            now = time.monotonic()
            if not counted_from and now >= start + warmup:
                counted_from, counted = now, total
            last = now
        return (total - counted) * 8 / (last - counted_from) / 1e6


def _unsent_bytes(conn: socket.socket) -> int:
    siocoutq = 0x5411  # TIOCOUTQ: bytes in the socket's send queue not yet acknowledged
    raw = fcntl.ioctl(conn.fileno(), siocoutq, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def run_probe(args: argparse.Namespace) -> int:
    rtts = _tcp_rtt_ms(args.address, args.samples)
    up = _tcp_send_rate(args.address, args.seconds, args.warmup)
    down = _tcp_receive_rate(args.address, args.seconds, args.warmup)
    print(json.dumps({"rtt_ms": rtts, "up_mbit_s": up, "down_mbit_s": down}), flush=True)
    return 0


def measure_link(
    link: WanLink, *, samples: int = 50, seconds: float = 4.0, warmup: float = 1.0
) -> dict[str, Any]:
    """The link's own figures, robot -> cloud: TCP round trip (1-byte ping-pong over an
    established connection, median and p99 in ms) and TCP payload rate each way (Mbit/s)."""
    me = str(Path(__file__).resolve())
    echo = link.start(
        [sys.executable, me, "echo", "--address", link.cloud_address],
        side="cloud",
        stdout=subprocess.PIPE,
        text=True,
    )
    assert echo.stdout is not None
    if echo.stdout.readline().strip() != "ready":
        msg = "the link's echo server did not start"
        raise RuntimeError(msg)
    command = [sys.executable, me, "probe", "--address", link.cloud_address, "--samples", str(samples)]
    command += ["--seconds", str(seconds), "--warmup", str(warmup)]
    probe = subprocess.run(
        link.in_ns(command, side="robot"), capture_output=True, text=True, check=True, timeout=120
    )
    _stop(echo)
    link.processes.remove(echo)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    rtts = sorted(found["rtt_ms"])
    return {
        "tcp_rtt_median_ms": round(statistics.median(rtts), 2),
        "tcp_rtt_p99_ms": round(rtts[max(0, -(-99 * len(rtts) // 100) - 1)], 2),
        "tcp_rtt_min_ms": round(rtts[0], 2),
        "tcp_rate_up_mbit_s": round(found["up_mbit_s"], 2),
        "tcp_rate_down_mbit_s": round(found["down_mbit_s"], 2),
        "rate": link.rate,
        "delay_ms_each_way": link.delay_ms,
        "how": (
            f"tc tbf rate {link.rate} burst {_TBF_BURST} latency {_TBF_LATENCY} on each end; "
            f"{link.delay_ms:g} ms per direction added by a userspace relay between two TUN devices; "
            f"TCP congestion control {link.congestion_control} in both namespaces"
        ),
        "congestion_control": link.congestion_control,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("role", nargs="?", choices=("measure", "relay", "echo", "probe"), default="measure")
    parser.add_argument("--robot-ns", default="")
    parser.add_argument("--cloud-ns", default="")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--rate", default="50mbit")
    parser.add_argument("--address", default="")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.role == "relay":
        return run_relay(args)
    if args.role == "echo":
        return run_echo(args)
    if args.role == "probe":
        return run_probe(args)
    why = wan_unavailable()
    if why:
        print(f"error: the WAN link {why}", file=sys.stderr)
        return 1
    # SIGTERM unwinds like Ctrl-C, so the namespaces go either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with wan_link(rate=args.rate, delay_ms=args.delay_ms) as link:
        print(json.dumps(measure_link(link), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
